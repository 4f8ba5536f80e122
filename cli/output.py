"""What every command shares: the output folder, atomic JSON and PNG writes, a rich progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ssltheory.theory.checks import ConfigError
from ssltheory.theory.io import (  # noqa: F401  (save_figure, save_json, write_atomic: re-exported for the commands)
    check_out_dir,
    save_figure,
    save_json,
    write_atomic,
)

console = Console()
err_console = Console(stderr=True)


def hint(text: str) -> str:
    """Help text for a Typer option or argument, with its square-bracket hints kept in ``--help``.

    Typer renders help as rich markup, which swallows ``[paper Fig. 5: 0.4]`` or ``[default: same as --eta]`` as
    unknown tags. Wrap the whole finished help string once: ``typer.Option(..., help=hint("... [paper: 1]"))``.
    Only tag-like brackets are escaped (``\\[``), so rich prints them as written; build the string first and do
    not wrap twice (the escape would show).
    """
    return escape(text)


def out_dir(path: Path | str, flag: str = "--out") -> Path:
    """Check that the output folder exists or can be created, and can be written, and return it; nothing is created.

    A path that is a file, runs through a file, or lies where nothing can be created (``/proc/x``) raises a one-line
    :class:`~ssltheory.theory.checks.ConfigError` naming ``--out PATH`` and why (exit status 2), before any
    computation. The folder itself is made when the results are written (``ssltheory.theory.outputs``), so a run
    that fails leaves no empty folder behind.
    """
    return check_out_dir(path, flag)


def path_of(flag: str, value: str | None, expected: str, kind: str = "folder") -> Path | None:
    """``value`` as a :class:`~pathlib.Path` (None stays None), or a one-line
    :class:`~ssltheory.theory.checks.ConfigError` naming ``flag`` when it is empty or blank.

    ``Path("")`` is the current folder: ``train --out ""`` would start a run there, ``--resume ""`` or ``probe ""``
    read one from there. The path options and arguments are therefore read as text and checked here, as ``--out`` of
    the theory commands is (``check_out_dir``). ``kind`` (folder, file) and ``expected`` make the message: ``--out
    '' is not a folder path: expected ...``.
    """
    if value is None:
        return None
    if value.strip() == "" or "\0" in value:
        raise ConfigError(f"{flag} {value!r} is not a {kind} path: expected {expected}")
    return Path(value)


def paths_of(flag: str, values: list[str] | None, expected: str, kind: str = "folder") -> list[Path]:
    """:func:`path_of` for each value of a repeatable option or argument (None is none)."""
    return [path_of(flag, v, expected, kind) for v in values or []]


@contextmanager
def progress(description: str) -> Iterator[Callable[[float], None]]:
    """A rich progress bar on stderr; yields ``update(fraction)`` for the computation to call."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
                   disable=not err_console.is_terminal and "SSLTHEORY_PROGRESS" not in os.environ)
    with bar:
        task = bar.add_task(description, total=1.0)

        def update(fraction: float) -> None:
            bar.update(task, completed=min(max(fraction, 0.0), 1.0))

        yield update


def wrote(paths: list[Path]) -> None:
    """Tell the user where the results are."""
    for p in paths:
        console.print(f"wrote [cyan]{p}[/cyan]")

