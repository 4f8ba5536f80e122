"""Mirror ``metrics.jsonl`` to TensorBoard and Weights & Biases as it is written (``--log tensorboard,wandb``).

``metrics.jsonl`` stays the record; a logger only repeats it. Each record becomes, at its ``step``:

- one scalar per numeric key, named as in metrics.jsonl (``loss``, ``lr``, ``knn_acc``, ``probe_auc``,
  ``feature_std``, ``asymmetry``, ``positive_cosine``, ``balance_ratio``, ...; a boolean such as
  ``collapse_alarm`` as 0 / 1); text and missing values (None) are left out;
- one multi-line chart per list of numbers (the eigenvalues ``s`` of F̂, ``p_sym`` and ``p_along_F`` of W_p, the
  per-mode ``alignment``, the method's ``s_method``): its :data:`LEADING` first entries as ``KEY/1`` ...
  ``KEY/8`` (mode j, 1-based), drawn together by a TensorBoard custom-scalars layout and a W&B section;
- at the end of the run, the run's figures (``*.png`` in the folder) as images ``figures/NAME``.

A tag is written once per step: a key that a second record of the same step repeats (``epoch`` in the kNN record)
is not written again. Only rank 0 of a DDP run logs. A resumed run continues the same curves: TensorBoard's event
files in ``RUN/tensorboard`` are purged from the step after the checkpoint on (``purge_step``), so the steps trained
again replace the ones logged before the kill; W&B's run id is kept in ``RUN/wandb.json`` with the last step it was
sent, the run is resumed with ``resume="allow"``, and steps it already holds are not sent again. Both libraries are
optional extras, imported only when asked for.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from ssltheory.practice.settings import Setting, declare, rule
from ssltheory.theory.checks import ConfigError
from ssltheory.theory.io import write_atomic

LOGGERS = {"tensorboard": "torch.utils.tensorboard", "wandb": "wandb"}
"""Each logger's name (``--log``) and the module it needs (the extra ``ssltheory[NAME]`` installs it)."""
LEADING = 8
"""Entries of a list (eigenvalues, per-mode values) drawn in its multi-line chart: modes 1 to 8."""
TENSORBOARD_DIR, WANDB_STATE, WANDB_DIR = "tensorboard", "wandb.json", "wandb"
"""In the run folder: TensorBoard's event files, W&B's run id and last step, W&B's own files (offline runs)."""

declare(Setting("log", "", "mirror metrics.jsonl as it is written to tensorboard | wandb, comma-separated "
                           "(tensorboard,wandb); W&B uses your login, or WANDB_MODE=offline [none]",
                "Measurement", str, aliases=("--logger",), panel="Logging"))
"""``--logger`` is the same setting: torchrun's own parser takes ``--log`` anywhere on its line for an abbreviation of
its ``--log-dir`` options and stops, so under torchrun the setting is spelled ``--logger``."""


def log_names(text: str) -> tuple[str, ...]:
    """The loggers a ``--log`` value names, in order, once each (``"tensorboard, wandb"`` ->
    ``("tensorboard", "wandb")``; ``""`` -> none); a name not in :data:`LOGGERS` is a one-line ConfigError."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for n in names:
        if n not in LOGGERS:
            raise ConfigError(f"--log {n!r} is not known: expected one of {', '.join(LOGGERS)} (comma-separated, "
                              "e.g. --log tensorboard,wandb; spelled --logger under torchrun)")
    return names


@rule
def _check_log(cfg) -> None:
    log_names(cfg.log)


def require(text: str) -> None:
    """A one-line ConfigError naming the extra to install when a logger ``text`` asks for cannot be imported;
    called before a run touches its folder."""
    for name in log_names(text):
        try:
            importlib.import_module(LOGGERS[name])
        except ImportError:
            raise ConfigError(f"--log {name} needs the {name} package, which is not installed: pip install "
                              f"'ssltheory[{name}]'") from None


def flatten(record: dict) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """A metrics.jsonl record as ``(scalars, series)``: ``{key: value}`` for every number and boolean (as 0 / 1)
    but ``step``, and ``{key: {"1": v_1, ..., "8": v_8}}`` for every non-empty list of numbers (its
    :data:`LEADING` first entries); text, None and anything else are left out."""
    scalars, series = {}, {}
    for key, value in record.items():
        if key == "step":
            continue
        if _number(value):
            scalars[key] = float(value)
        elif isinstance(value, list) and value and all(_number(v) for v in value):
            series[key] = {str(j + 1): float(v) for j, v in enumerate(value[:LEADING])}
    return scalars, series


def _number(value: Any) -> bool:
    """A JSON number or boolean (NaN and infinities included: a diverging quantity is shown as it is)."""
    return isinstance(value, (int, float))


class Logger(Protocol):
    """Where records are mirrored: ``log`` one record's values at a step, ``figures`` once at the end, ``close``."""

    def log(self, step: int, scalars: dict[str, float], series: dict[str, dict[str, float]]) -> None: ...

    def figures(self, step: int, paths: list[Path]) -> None: ...

    def close(self, failed: bool = False) -> None: ...


class TensorBoardLogger:
    """Event files in ``RUN/tensorboard``: scalars by key, lists as ``KEY/j`` with a custom-scalars layout that
    draws each list as one multi-line chart (category "modes"), figures as images. ``resume_step``: the step of the
    checkpoint a resumed run continues from (None for a new run); events after it are purged."""

    def __init__(self, folder: Path, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_step is None else resume_step + 1  # the checkpoint's own step is not trained again
        self.writer = SummaryWriter(log_dir=str(folder / TENSORBOARD_DIR), purge_step=purge)
        self.charts: set[str] = set()

    def log(self, step: int, scalars: dict[str, float], series: dict[str, dict[str, float]]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        for key, modes in series.items():
            for j, value in modes.items():
                self.writer.add_scalar(f"{key}/{j}", value, step)
        if not set(series) <= self.charts:
            self.charts |= set(series)
            self.writer.add_custom_scalars({"modes": {k: ["Multiline", [rf"^{re.escape(k)}/\d+$"]]
                                                      for k in sorted(self.charts)}})
        self.writer.flush()

    def figures(self, step: int, paths: list[Path]) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            with Image.open(path) as im:
                self.writer.add_image(f"figures/{path.stem}", np.asarray(im.convert("RGB")), step, dataformats="HWC")
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class WandbLogger:
    """A W&B run named after the folder, with the run's settings as its config (project: ``WANDB_PROJECT`` or
    ``ssltheory``; files: ``WANDB_DIR`` or the run folder). Its id and the last step sent are kept in
    ``RUN/wandb.json``: a resumed run reuses the id (``resume="allow"``) and skips the steps already sent."""

    def __init__(self, folder: Path, config: dict, resumed: bool) -> None:
        import wandb

        self.state = folder / WANDB_STATE
        saved = _read_state(self.state) if resumed else None
        self.sent = saved["step"] if saved else -1  # the last step this W&B run holds
        self.floor = self.sent  # steps up to it were sent before a resume: not sent again
        self.run = wandb.init(project=None if os.environ.get("WANDB_PROJECT") else "ssltheory", name=folder.name,
                              id=saved["id"] if saved else None, resume="allow" if saved else None, config=config,
                              dir=None if os.environ.get("WANDB_DIR") else str(folder),
                              settings=wandb.Settings(console="off"))
        self._save()

    def log(self, step: int, scalars: dict[str, float], series: dict[str, dict[str, float]]) -> None:
        if step <= self.floor:
            return
        data = {**scalars, **{f"{k}/{j}": v for k, modes in series.items() for j, v in modes.items()}}
        self.run.log(data, step=step)
        if step != self.sent:
            self.sent = step
            self._save()

    def figures(self, step: int, paths: list[Path]) -> None:
        import wandb

        if paths:
            self.run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in paths}, step=max(step, self.sent))

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)

    def _save(self) -> None:
        write_atomic(self.state, (json.dumps({"id": self.run.id, "step": self.sent}) + "\n").encode())


def _read_state(path: Path) -> dict | None:
    """``wandb.json`` (``{"id", "step"}``), None when it is missing or unreadable (a new W&B run is made)."""
    try:
        doc = json.loads(path.read_text())
        return {"id": str(doc["id"]), "step": int(doc["step"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Loggers:
    """The fan-out: every record to every logger, each tag once per step (:func:`flatten`). Empty (no loggers, or a
    rank other than 0) it does nothing."""

    def __init__(self, loggers: Iterable[Logger] = ()) -> None:
        self.loggers = list(loggers)
        self.step, self.tags = None, set()

    def write(self, record: dict) -> None:
        """Mirror one metrics.jsonl record (one without an integer ``step`` is left out)."""
        step = record.get("step")
        if not self.loggers or not isinstance(step, int):
            return
        if step != self.step:
            self.step, self.tags = step, set()
        scalars, series = flatten(record)
        scalars = {k: v for k, v in scalars.items() if k not in self.tags}
        series = {k: v for k, v in series.items() if k not in self.tags}
        self.tags |= set(scalars) | set(series)
        for logger in self.loggers:
            logger.log(step, scalars, series)

    def figures(self, step: int, paths: list[Path]) -> None:
        """Log the run's figures (PNG files) at ``step``, its last."""
        for logger in self.loggers:
            logger.figures(step, paths)

    def __enter__(self) -> Loggers:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(failed=kind is not None)

    def close(self, failed: bool = False) -> None:
        """Flush and close every logger (once; ``failed``: the run stopped on an error)."""
        loggers, self.loggers = self.loggers, []
        for logger in loggers:
            logger.close(failed)


def open_loggers(cfg, folder: Path, resume_step: int | None, main: bool = True) -> Loggers:
    """The loggers ``cfg.log`` names for the run in ``folder``: a new run (``resume_step`` None) first clears the
    loggers' files a replaced run left there; a resumed one continues from its checkpoint's ``resume_step``.
    Nothing for a rank other than 0 (``main`` False)."""
    if not main:
        return Loggers()
    folder = Path(folder)
    if resume_step is None:
        clear(folder)
    made: list[Logger] = []
    for name in log_names(cfg.log):
        if name == "tensorboard":
            made.append(TensorBoardLogger(folder, resume_step))
        else:
            made.append(WandbLogger(folder, cfg.to_dict(), resumed=resume_step is not None))
    return Loggers(made)


def clear(folder: Path) -> None:
    """Remove what loggers wrote in ``folder`` (``tensorboard/``, ``wandb/``, ``wandb.json``): a new run there
    starts its curves afresh."""
    for name in (TENSORBOARD_DIR, WANDB_DIR):
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)
    (folder / WANDB_STATE).unlink(missing_ok=True)
