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
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from pathlib import Path

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.rundir import CONFIG, SUMMARY, RunDir
from ssltheory.theory.checks import ConfigError, RunError

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


def cores() -> int:
    """The cores this process may use (its CPU affinity, as ``nproc`` counts them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def check_jobs(jobs: int) -> None:
    """A one-line error unless ``jobs`` is an integer >= 1, or when ``jobs`` > 1 under torchrun (each rank would
    start its own processes over the same folders)."""
    from ssltheory.practice.engine.distributed import from_env

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs {jobs} is out of range: expected an integer >= 1")
    if jobs > 1 and from_env().world > 1:
        raise ConfigError(f"--jobs {jobs} under torchrun is not accepted: expected --jobs 1 (the ranks already share "
                          "each run)")


def train_parallel(jobs: Sequence[Job], processes: int, force: bool = False,
                   update: Callable[[float], None] | None = None) -> int:
    """Train every run of ``jobs`` that is not finished (:func:`to_train`) in ``processes`` worker processes
    (spawned, ``max(1, cores // processes)`` torch threads each; a run starts only when a process is free);
    ``update(fraction)`` is told after each run finishes. Returns how many runs were trained. A failure or Ctrl-C
    starts no further run, waits for the running ones (each keeps its last checkpoint: the same command resumes it)
    and is raised; a worker process that dies (out of memory, killed) is a one-line :class:`RunError`."""
    check_jobs(processes)
    todo = to_train(jobs, force)
    if not todo:
        return 0
    processes = min(processes, len(todo))
    threads = max(1, cores() // processes)
    queue = iter(todo)
    running: dict = {}
    done = 0
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))

    def start() -> None:
        job = next(queue, None)
        if job is not None:
            running[pool.submit(_train_one, *job, force, threads)] = job[1]

    try:
        for _ in range(processes):
            start()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                run_dir = running.pop(f)
                error = f.exception()
                if isinstance(error, BrokenProcessPool):
                    raise RunError(f"a worker process died while training {run_dir} (out of memory, or killed): "
                                   "the finished runs are kept; the same command resumes the others") from None
                if error is not None:
                    raise error
                done += 1
                if update:
                    update(done / len(todo))
                start()
    except BaseException:
        _stop(pool, running)
        raise
    pool.shutdown(wait=True)
    return done


STOP_GRACE = 30.0
"""Seconds a failure or Ctrl-C waits for the running workers to end on their own (each got the same SIGINT, or
finishes its run) before they are terminated; a run keeps its last checkpoint either way (written atomically)."""


def _stop(pool: ProcessPoolExecutor, running: dict) -> None:
    """Start no further run, give the running ones :data:`STOP_GRACE` seconds, then terminate what is left, so that
    a worker that missed or ignored the interrupt cannot keep the command (and the machine) busy."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # (no public handle on the workers)
    pool.shutdown(wait=False, cancel_futures=True)
    wait(running, timeout=STOP_GRACE)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=10)


def train_first(runs: Sequence[Job], processes: int, force: bool, progress=None, label: str = "runs",
                announce: Callable[[str], None] | None = None, describe: Callable[[Job], str] | None = None) -> None:
    """The ``--jobs`` pre-pass of a recipe or a phase grid: each run still to train is announced (``describe(job)``),
    then all are trained by :func:`train_parallel` under ``progress``'s bar (``progress(description)`` yields
    ``update(fraction)``, as ``ssltheory.cli.output.progress``); the caller then reads them as finished runs."""
    pending = to_train(runs, force)
    for job in pending if announce and describe else ():
        announce(describe(job))
    if not pending:
        return
    n = len(pending)
    with progress(f"{label}: {n} runs in {min(processes, n)} processes") if progress else nullcontext(None) as update:
        train_parallel(runs, processes, force, update)
