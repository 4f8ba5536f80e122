"""Atomic file writes and portable JSON: a reader never sees half a file, a crash never loses a finished one."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .checks import ConfigError, RunError


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, complex):
        return [x.real, x.imag]
    return x


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a reader never sees half a file. The file
    gets the permissions a plain ``open`` would give (0644 under the usual umask), like every file of a run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # what open() would give, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_out_dir(path: Path | str, flag: str = "--out") -> Path:
    """Check, without leaving anything behind, that folder ``path`` exists or can be created, and can be written.

    Raises :class:`ConfigError` naming ``flag PATH`` and why not: the path or one of its existing parts is a file, a
    name is too long, or the deepest existing folder refuses a new entry (read-only, no permission, or a pseudo
    file system like /proc). The last is found by creating and removing a temporary folder there, since
    ``os.access`` says yes to root everywhere. Returns the path; nothing is created.
    """
    text = str(path)
    if text.strip() == "" or "\0" in text:
        raise ConfigError(f"{flag} {text!r} is not a folder path: expected the path of a folder to write into")
    path = Path(path)
    where = f"{flag} {text}"
    anc = path.absolute()
    missing: list[str] = []
    try:
        while not anc.exists() and not anc.is_symlink():
            missing.append(anc.name)
            if anc.parent == anc:
                break
            anc = anc.parent
        if anc.is_symlink() and not anc.exists():
            raise ConfigError(f"{where}: {anc} is a broken link: expected a folder path whose existing parts are "
                              "folders")
        if not anc.is_dir():
            what = "is a file" if anc.is_file() else "is not a folder"
            if not missing:
                raise ConfigError(f"{where} {what}: expected a folder (an existing one or one to create)")
            raise ConfigError(f"{where} cannot be created: {anc} {what}: expected a folder path whose existing parts "
                              "are folders")
        name_max = os.pathconf(anc, "PC_NAME_MAX")
        for name in missing:
            if len(os.fsencode(name)) > name_max:
                raise ConfigError(f"{where} cannot be created: the name {name[:20]!r}... is longer than {name_max} "
                                  "bytes: expected shorter folder names")
        probe = tempfile.mkdtemp(dir=anc, prefix=".ssltheory-probe-")
        os.rmdir(probe)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise ConfigError(f"{flag} {text[:60]!r}... cannot be created: the path or one of its names is too "
                              "long: expected a shorter path") from None
        verb = "cannot be created" if missing else "is not writable"
        raise ConfigError(f"{where} {verb}: {e.strerror or e} in {anc}: expected a folder that can be created and "
                          "written") from None
    return path


def make_out_dir(path: Path | str, flag: str = "--out") -> Path:
    """Create folder ``path`` (and parents) after :func:`check_out_dir`; an ``OSError`` becomes a one-line
    :class:`ConfigError` naming ``flag PATH``."""
    path = check_out_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path} cannot be created: {e.strerror or e}: expected a folder that can be "
                          "created and written") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_json(path: Path, obj: Any) -> Path:
    """Save ``obj`` as indented JSON (numpy arrays and non-finite floats made portable), atomically."""
    write_atomic(path, (json.dumps(_jsonable(obj), indent=2) + "\n").encode())
    return path


def use_file_backend() -> None:
    """Select matplotlib's non-interactive Agg backend (figures made to be saved, in any process or thread) unless a
    backend was asked for: ``MPLBACKEND`` set (ipykernel sets it to the inline backend in every notebook kernel) or an
    IPython kernel running, whose own backend draws the figures in the notebook. Called by the plotting modules that
    use pyplot when they load; the others draw on ``matplotlib.figure.Figure``, which needs no backend."""
    import sys

    import matplotlib

    if os.environ.get("MPLBACKEND") or "ipykernel" in sys.modules:
        return
    matplotlib.use("Agg")


def save_figure(fig, path: Path, dpi: int = 130) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def write_files(out: Path, files: list[tuple[str, Callable[[Path], Path]]]) -> list[Path]:
    """Create ``out`` and write ``(name, save)`` pairs into it (each ``save(path)`` writes one file atomically and
    returns its path); a failed write (disk full, ...) is a one-line RunError."""
    folder = make_out_dir(out)
    try:
        return [save(folder / name) for name, save in files]
    except OSError as e:
        raise RunError(f"writing into --out {out} failed: {e.strerror or e}") from None


def common(values: list) -> Any:
    """The value if all are equal, else the list (a config.json entry for panels that share or differ in it)."""
    return values[0] if all(v == values[0] for v in values) else values
