"""Training a recipe's cells in several processes at once (``ssltheory experiment NAME --jobs N``).

The small runs of the smoke and cpu scales use one core no slower than two (digits, the default convnet, batch 128:
18.1 s against 17.8 s for 300 steps on the 2-core developer box), so N processes of ``cores / N`` threads each finish
N runs in about the time of one. On a GPU the processes share it (each its own CUDA context). Each process trains one
run at a time through :func:`.cells.run_cell`, so a run is written, checkpointed and resumed exactly as when the
cells run one after another; the recipe then reads the finished runs as it always does.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.rundir import CONFIG, SUMMARY, RunDir
from ssltheory.theory.params import ConfigError

Job = tuple[TrainConfig, Path]
"""One run: its config and its folder."""


def to_train(jobs: Sequence[Job], force: bool = False) -> list[Job]:
    """The runs among ``jobs`` that still need training (not finished with the same settings, or all with
    ``force``); a folder that holds a run of other settings is a one-line error now, before anything trains, unless
    ``force``."""
    out = []
    for cfg, run_dir in jobs:
        folder = RunDir(run_dir)
        same = folder.file(CONFIG).exists() and folder.config() == cfg
        if same and folder.file(SUMMARY).exists() and not force:
            continue
        if folder.holds_run() and not same and not force:
            raise ConfigError(f"cell {run_dir} holds a run with other settings: expected another --out, or --force "
                              "to replace it")
        out.append((cfg, run_dir))
    return out


def _train_one(cfg: TrainConfig, run_dir: Path, force: bool, threads: int) -> Path:
    """One worker's run (in its own process): ``threads`` torch threads, then :func:`.cells.run_cell`."""
    import torch

    from .cells import run_cell

    torch.set_num_threads(threads)
    run_cell(cfg, run_dir, force=force)
    return run_dir


def train_parallel(jobs: Sequence[Job], processes: int, force: bool = False,
                   update: Callable[[float], None] | None = None) -> int:
    """Train every run of ``jobs`` that is not finished (:func:`to_train`) in ``processes`` worker processes
    (spawned, ``max(1, cores // processes)`` torch threads each); ``update(fraction)`` is told after each run
    finishes. Returns how many runs were trained. The first failure stops new runs from starting, lets the running
    ones finish (their work is kept) and is raised."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"--jobs {processes} is out of range: expected an integer >= 1")
    todo = to_train(jobs, force)
    if not todo:
        return 0
    processes = min(processes, len(todo))
    threads = max(1, (os.cpu_count() or 1) // processes)
    done = 0
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(_train_one, cfg, run_dir, force, threads) for cfg, run_dir in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            failed = [f for f in finished if f.exception() is not None]
            done += len(finished) - len(failed)
            if update:
                update(done / len(todo))
            if failed:
                for f in pending:
                    f.cancel()
                wait(pending)
                raise failed[0].exception()
    return done
