"""Where a recipe's training cells run: here (``--launcher local``, today's ``--jobs``), or as one cluster job per
run through submitit (``--launcher slurm``; ``--launcher submitit-local`` is the same path through submitit's local
executor: real subprocesses and pickling on this machine, for checking a setup). See docs/cluster.md.

A submitted job calls :class:`CellJob`, which runs :func:`.cells.run_cell` in the job: a finished run is read, an
interrupted one resumed from its ``checkpoint.pt``. The job is a :class:`submitit.helpers.Checkpointable`: when Slurm
signals a preemption or the end of the time limit (SIGUSR2, ``--signal USR2@90``), submitit requeues it and the
requeued job resumes from the run's last checkpoint.

What was submitted is kept in ``OUT/jobs.json``: per run folder (``CELL`` or ``CELL/seedK``, relative to ``OUT``) its
job id, the submitit folder that holds the job's pickles and logs, and the state last seen. A state is read, not
remembered: a run whose folder holds its ``summary.json`` (with the same settings) is ``finished``; otherwise the job's
result pickle (written by submitit when the job ends: a traceback on failure), else the scheduler (Slurm's ``sacct``
through submitit; for a local job, whether its controller process is alive) says ``pending``, ``running`` or
``failed``; ``unknown`` when the scheduler cannot say (sacct unavailable, the job forgotten).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.rundir import CONFIG, SUMMARY, RunDir
from ssltheory.theory.checks import ConfigError
from ssltheory.theory.io import save_json

from .parallel import Job, cores, to_train

LAUNCHERS = ("local", "slurm", "submitit-local")
"""The values of ``--launcher``."""
CLUSTER = ("slurm", "submitit-local")
"""The launchers that submit jobs through submitit."""
REPORT = "report"
"""The launcher of a later call on a results folder that holds ``jobs.json`` (no ``--launcher`` given): it reads the
finished runs and reports the others, training nothing."""
JOBS_FILE = "jobs.json"
ACTIVE = ("pending", "running", "unknown")
"""States of a job that may still write its run folder: not resubmitted, not trained here."""
INSTALL = "pip install 'ssltheory[slurm]'"

UNKNOWN_POLLS = 10
"""Polls a wait goes on while the only jobs left are ``unknown`` (5 minutes on Slurm)."""
SLURM_PENDING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "RESIZING", "SUSPENDED",
                 "STOPPED"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


@dataclass(frozen=True)
class SlurmSettings:
    """What a cluster job asks for (``--slurm-*`` flags, or ``--config FILE``'s keys without the prefix)."""

    partition: str | None = None
    time: int = 60
    """minutes per job (a job that reaches it is signalled, requeued and resumes)"""
    gpus: int = 0
    """GPUs per run: one process each (DDP across them, see :func:`_ddp_environment`)"""
    cpus_per_task: int | None = None
    """CPUs per process, and its torch threads [the cluster's default; the CPUs the job may use]"""
    account: str | None = None
    logs: str | None = None
    """the folder of submitit's pickles and logs [OUT/submitit]"""
    submitit: dict[str, Any] = field(default_factory=dict)
    """further submitit parameters as they are named there (``slurm_qos``, ``slurm_constraint``, ``mem_gb``,
    ``slurm_setup``): ``--config`` only"""


SETTINGS = {"partition": "--slurm-partition", "time": "--slurm-time", "gpus": "--slurm-gpus",
            "cpus_per_task": "--slurm-cpus-per-task", "account": "--slurm-account", "logs": "--slurm-logs",
            "submitit": None}
"""Each cluster setting and its flag (None: in ``--config`` only)."""


def _key(name: str) -> str:
    """A settings file's key as a :class:`SlurmSettings` field: ``slurm-cpus-per-task``, ``--slurm-time`` and
    ``cpus_per_task`` all name theirs."""
    key = name.strip().lstrip("-").replace("-", "_").lower()
    return key[len("slurm_"):] if key.startswith("slurm_") else key


def read_config(path: Path) -> dict[str, Any]:
    """The cluster settings in a JSON or YAML file (read as ``ssltheory train --config`` reads a settings file), keyed
    by :class:`SlurmSettings` field; an unknown key is a one-line error."""
    from ssltheory.practice.config import load_settings

    doc = {_key(str(k)): v for k, v in load_settings(Path(path)).items()}
    unknown = sorted(k for k in doc if k not in SETTINGS)
    if unknown:
        raise ConfigError(f"--config {path}: unknown cluster setting {unknown[0]!r}: expected "
                          f"{', '.join(SETTINGS)}")
    return doc


def _check_text(flag: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(f"{flag} {value!r} is not accepted: expected a non-empty name")
    return value


def _check_count(flag: str, value: Any, low: int, what: str) -> int:
    """An integer >= ``low`` (a whole number given as text, as a flag gives it, too)."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not text.lstrip("+").isdigit() or int(text) < low:
        raise ConfigError(f"{flag} {value!r} is out of range: expected {what} (an integer >= {low})")
    return int(text)


def slurm_settings(from_file: dict[str, Any], flags: dict[str, Any]) -> SlurmSettings:
    """The cluster settings: ``from_file`` (:func:`read_config`) overridden by the ``flags`` given (None: not given),
    each checked (one line naming the flag or key)."""
    merged = {**from_file, **{k: v for k, v in flags.items() if v is not None}}
    out: dict[str, Any] = {}
    for name, value in merged.items():
        flag = SETTINGS.get(name) or name
        if name in ("partition", "account", "logs"):
            out[name] = _check_text(flag, value)
        elif name == "time":
            out[name] = _check_count(flag, value, 1, "whole minutes per job, such as 240")
        elif name == "gpus":
            out[name] = _check_count(flag, value, 0, "GPUs per run")
        elif name == "cpus_per_task":
            out[name] = _check_count(flag, value, 1, "CPUs per process")
        elif name == "submitit":
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ConfigError(f"submitit {value!r} is not accepted: expected a mapping of submitit parameters, "
                                  "such as {slurm_qos: high, mem_gb: 64}")
            out[name] = dict(value)
    return SlurmSettings(**out)


@dataclass(frozen=True)
class Launcher:
    """How :func:`.run.run_recipe` runs the training cells: ``kind`` is one of :data:`LAUNCHERS` or :data:`REPORT`;
    ``wait`` (cluster kinds) waits for the jobs and then gathers the results, otherwise the call returns once they
    are submitted; ``poll_s`` is the wait's polling interval [5 s locally, 30 s on Slurm]."""

    kind: str = "local"
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    wait: bool = True
    poll_s: float | None = None
    label: str = "ssltheory"

    @property
    def gathers(self) -> bool:
        """Whether the call reads the runs and writes results (not after a ``--no-wait`` submission)."""
        return self.kind in ("local", REPORT) or self.wait


def make_launcher(kind: str | None, out: Path, flags: dict[str, Any] | None = None, config: Path | None = None,
                  wait: bool = True, label: str = "ssltheory") -> Launcher:
    """The launcher of ``ssltheory experiment``: ``kind`` None is ``local``, or :data:`REPORT` when ``out`` holds a
    ``jobs.json``; cluster settings (``flags``, ``config``) or ``wait=False`` are one-line errors unless ``kind`` is
    a cluster one; a cluster kind without submitit installed is one line naming the install command."""
    from ssltheory.theory.checks import check_choice

    if kind is not None:
        check_choice("--launcher", kind, LAUNCHERS)
    given = [SETTINGS[k] for k, v in (flags or {}).items() if v is not None] + (["--config"] if config else []) \
        + ([] if wait else ["--no-wait"])
    if given and kind not in CLUSTER:
        raise ConfigError(f"{given[0]} is for a cluster launcher: expected --launcher slurm (or submitit-local) with "
                          f"it, or no {given[0]}")
    if kind is None:
        kind = REPORT if (out / JOBS_FILE).exists() else "local"
    settings = slurm_settings(read_config(config) if config else {}, flags or {})
    if kind in CLUSTER:
        submitit_module()
    return Launcher(kind, settings, wait, label=label)


def submitit_module():
    """submitit, or a one-line error naming the install command."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"the cluster launcher needs submitit, which is not installed: expected {INSTALL}") from None
    return submitit


# the job


def _ddp_environment() -> None:
    """With several processes in the job (``--slurm-gpus`` > 1), the variables torchrun would set (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) from submitit's view of the job, so that
    :mod:`ssltheory.practice.engine.distributed` joins them into one DDP run."""
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks <= 1:
        return
    digits = "".join(c for c in str(env.job_id) if c.isdigit()) or "0"
    os.environ.update(RANK=str(env.global_rank), WORLD_SIZE=str(env.num_tasks), LOCAL_RANK=str(env.local_rank),
                      MASTER_ADDR=env.hostnames[0], MASTER_PORT=str(20000 + int(digits) % 20000))


def cell_job(cfg: TrainConfig, run_dir: Path, force: bool = False, threads: int | None = None):
    """The callable one job runs: :class:`CellJob` of ``cfg`` into ``run_dir`` (absolute: a cluster job may start
    elsewhere)."""
    submitit_module()
    return CellJob(cfg, Path(run_dir).absolute(), force, threads)


try:  # the job's class needs submitit's base; without it, cell_job() names the install command first
    from submitit.helpers import Checkpointable, DelayedSubmission
except ImportError:  # pragma: no cover
    Checkpointable = object  # type: ignore[misc,assignment]
    DelayedSubmission = None  # type: ignore[assignment]


class CellJob(Checkpointable):
    """One run as a submitit job: :func:`.cells.run_cell` (read when finished, resumed from its checkpoint when not;
    replaced on its first start with ``force``), with ``threads`` torch threads [the CPUs the job may use]. On a
    preemption or timeout signal, :meth:`checkpoint` hands submitit this job again without ``force``: the requeued job
    resumes from the run's last checkpoint (written atomically; the lines after it in metrics.jsonl are cut back)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, force: bool = False, threads: int | None = None) -> None:
        self.cfg, self.run_dir, self.force, self.threads = cfg, Path(run_dir), force, threads

    def __call__(self) -> dict:
        import torch

        from .cells import run_cell

        _ddp_environment()
        torch.set_num_threads(self.threads or cores())
        print(f"ssltheory: run {self.run_dir} ({'replacing it' if self.force else 'new, resumed or read'})",
              flush=True)
        summary = run_cell(self.cfg, self.run_dir, force=self.force)
        return {k: summary.get(k) for k in ("steps", "knn_acc_final")}

    def checkpoint(self, *args: Any, **kwargs: Any):
        print(f"ssltheory: {self.run_dir} signalled (preempted or timed out): requeued, it resumes from its last "
              "checkpoint", flush=True)
        return DelayedSubmission(CellJob(self.cfg, self.run_dir, False, self.threads))


# states


@dataclass(frozen=True)
class JobState:
    """One run's job as last seen: ``state`` is finished, pending, running, failed, unknown or not submitted;
    ``error`` the failure's line, ``log`` the job's stderr file."""

    run: str
    state: str
    job_id: str | None = None
    error: str | None = None
    log: str | None = None
    launcher: str | None = None
    folder: str | None = None

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def run_key(out: Path, run_dir: Path) -> str:
    """A run's key in jobs.json: its folder relative to the results folder (``CELL`` or ``CELL/seedK``)."""
    try:
        return Path(run_dir).relative_to(out).as_posix()
    except ValueError:
        return Path(run_dir).as_posix()


def finished(cfg: TrainConfig, run_dir: Path) -> bool:
    """Whether ``run_dir`` holds the finished run of ``cfg`` (its summary.json, the same settings)."""
    folder = RunDir(run_dir)
    return folder.file(SUMMARY).exists() and folder.file(CONFIG).exists() and folder.config() == cfg


def read_jobs(out: Path) -> dict[str, dict]:
    """jobs.json's entries by run (none when there is no file); an unreadable file is a one-line error."""
    path = out / JOBS_FILE
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        return dict(doc["jobs"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} cannot be read ({type(e).__name__}): expected the {JOBS_FILE} that ssltheory "
                          "experiment --launcher slurm writes (remove it to forget the jobs)") from None


def write_jobs(out: Path, states: dict[str, JobState]) -> None:
    """Keep ``states`` (the runs that have a job) in ``out/jobs.json``."""
    jobs = {k: s.row() for k, s in states.items() if s.job_id is not None}
    save_json(out / JOBS_FILE, {"about": "one cluster job per run (ssltheory experiment --launcher): states as last "
                                         "seen; ssltheory experiment NAME --out THIS_FOLDER refreshes them",
                                "jobs": jobs})


def _last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (not ended, not a zombie)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OverflowError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def scheduler_state(launcher: str, folder: str, job_id: str) -> tuple[str, str | None, str]:
    """(state, error line, stderr log) of a job from submitit's files and the scheduler: its result pickle when it
    ended (success: finished; a traceback: failed), else Slurm's state (sacct) or, locally, whether its controller
    process lives."""
    import submitit
    from submitit.core.utils import pickle_load

    job = (submitit.SlurmJob if launcher == "slurm" else submitit.LocalJob)(folder, job_id)
    log = str(job.paths.stderr)
    if job.paths.result_pickle.exists():
        try:
            outcome, value = pickle_load(job.paths.result_pickle)
        except Exception as e:  # a result pickle being written, or unreadable
            return "unknown", f"its result cannot be read ({type(e).__name__})", log
        return ("finished", None, log) if outcome == "success" else ("failed", _last_line(str(value)), log)
    if launcher != "slurm":
        if job_id.isdigit() and _alive(int(job_id)):
            return "running", None, log
        return "failed", _last_line(_read(log)) or "the job's process ended without a result", log
    return (*slurm_state(str(job.state or "UNKNOWN"), log), log)


def slurm_state(name: str, log: str) -> tuple[str, str | None]:
    """(state, error line) of a Slurm job without a result from its state in sacct (``CANCELLED by 123`` reads as
    CANCELLED); a failure's line names the state and the last line of ``log``."""
    state = (name.split() or ["UNKNOWN"])[0].upper()
    if state in SLURM_PENDING:
        return "pending", None
    if state in SLURM_RUNNING:
        return "running", None
    if state.startswith("UNKNOWN"):
        return "unknown", None
    return "failed", f"Slurm state {state}: {_last_line(_read(log)) or 'no log line'}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")[-20000:]
    except OSError:
        return ""


def refresh(out: Path, runs: Sequence[Job], poll: Callable[[str, str, str], tuple] = scheduler_state
            ) -> dict[str, JobState]:
    """Each run's state now (see the module's docstring), keyed by :func:`run_key`; ``poll`` asks the scheduler."""
    jobs = read_jobs(out)
    states = {}
    for cfg, run_dir in runs:
        key = run_key(out, run_dir)
        entry = jobs.get(key, {})
        base = JobState(key, "not submitted", entry.get("job_id"), None, entry.get("log"), entry.get("launcher"),
                        entry.get("folder"))
        if finished(cfg, run_dir):
            states[key] = replace(base, state="finished")
        elif base.job_id is None:
            states[key] = base
        else:
            state, error, log = poll(base.launcher or "slurm", base.folder or "", base.job_id)
            if state == "finished":  # the job ended well, yet the folder holds no finished run of these settings
                state, error = "failed", "the job ended, but its folder holds no finished run of these settings"
            states[key] = replace(base, state=state, error=error, log=log)
    return states


# submitting


def _executor(launcher: Launcher, folder: Path):
    """submitit's executor for ``launcher`` (Slurm's, or the local one), with the settings as its parameters."""
    submitit = submitit_module()
    s = launcher.slurm
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if launcher.kind == "slurm" else "local")
    except RuntimeError as e:  # no srun here
        raise ConfigError(f"--launcher slurm cannot submit from this machine ({' '.join(str(e).split())}): expected a "
                          "Slurm login node, or --launcher submitit-local to check the setup here") from None
    params: dict[str, Any] = {"name": launcher.label, "timeout_min": s.time, "nodes": 1,
                              "tasks_per_node": max(1, s.gpus), "gpus_per_node": s.gpus,
                              "cpus_per_task": s.cpus_per_task, "slurm_partition": s.partition,
                              "slurm_account": s.account, **s.submitit}
    try:
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    except (NameError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(f"the cluster settings are not accepted by submitit ({_last_line(str(e))}): expected the "
                          "parameters docs/cluster.md lists") from None
    return executor


def submit(launcher: Launcher, out: Path, runs: Sequence[Job], force: bool) -> dict[str, JobState]:
    """Submit one job per run of ``runs`` (a job array on Slurm); returns their states (pending) by run."""
    folder = Path(launcher.slurm.logs or out / "submitit").absolute()
    executor = _executor(launcher, folder)
    threads = launcher.slurm.cpus_per_task
    with executor.batch():
        jobs = [executor.submit(cell_job(cfg, run_dir, force, threads)) for cfg, run_dir in runs]
    return {run_key(out, run_dir): JobState(run_key(out, run_dir), "pending", str(job.job_id), None,
                                            str(job.paths.stderr), launcher.kind, str(folder))
            for (_, run_dir), job in zip(runs, jobs, strict=True)}


def dispatch(launcher: Launcher, out: Path, runs: Sequence[Job], force: bool = False,
             announce: Callable[[str], None] | None = None, describe: Callable[[Job], str] | None = None,
             poll: Callable[[str, str, str], tuple] = scheduler_state) -> dict[str, JobState] | None:
    """The launcher's part of a recipe: None with ``local`` (the caller trains, after a one-line error if a job of
    ``out/jobs.json`` still holds one of the runs); else each run's :class:`JobState`, after submitting (cluster
    kinds) the runs not finished and not held by a live job (all of them with ``force``), and, with ``wait``,
    waiting until no job is pending or running. ``announce`` is told each submission and each job that ends."""
    say = announce or (lambda line: None)
    if launcher.kind == "local":
        if (out / JOBS_FILE).exists():
            _refuse_active(refresh(out, runs, poll))
        return None
    submitit_module()
    states = refresh(out, runs, poll)
    if launcher.kind == REPORT:
        write_jobs(out, states)
        return states
    held = {k for k, s in states.items() if s.state in ACTIVE}
    todo = [job for job in to_train(runs, force) if run_key(out, job[1]) not in held]
    for job in todo if describe else ():
        say(describe(job))
    if todo:
        states.update(submit(launcher, out, todo, force))
        write_jobs(out, states)
        for key in (run_key(out, d) for _, d in todo):
            say(f"submitted {key} as job {states[key].job_id} ({launcher.kind}; log {states[key].log})")
    for key in sorted(held):
        say(f"{key}: job {states[key].job_id} is still {states[key].state}: not submitted again")
    if not launcher.wait:
        return states
    return wait_for(launcher, out, runs, states, say, poll)


def wait_for(launcher: Launcher, out: Path, runs: Sequence[Job], states: dict[str, JobState],
             say: Callable[[str], None], poll: Callable[[str, str, str], tuple] = scheduler_state
             ) -> dict[str, JobState]:
    """Poll until no job of ``runs`` is pending or running, nor ``unknown`` for :data:`UNKNOWN_POLLS` polls in a row
    (sacct may not know a job just submitted; without sacct every job stays unknown); each job that ends is
    announced; jobs.json is kept up to date. Returns the states."""
    interval = launcher.poll_s or (30.0 if launcher.kind == "slurm" else 5.0)
    unknown = 0
    while any(s.state in ("pending", "running") for s in states.values()) or (
            unknown < UNKNOWN_POLLS and any(s.state == "unknown" and s.job_id for s in states.values())):
        unknown = 0 if any(s.state in ("pending", "running") for s in states.values()) else unknown + 1
        time.sleep(interval)
        now = refresh(out, runs, poll)
        for key, s in now.items():
            if s.state != states[key].state and s.state in ("finished", "failed"):
                say(f"{key}: job {s.job_id} {s.state}" + (f": {s.error} (log {s.log})" if s.error else ""))
        states = now
        write_jobs(out, states)
    return states


def _refuse_active(states: dict[str, JobState]) -> None:
    """A one-line error when a job still holds one of the runs (training it here too would write the same folder)."""
    active = [s for s in states.values() if s.state in ACTIVE and s.job_id is not None]
    if active:
        s = active[0]
        raise ConfigError(f"{s.run} is held by job {s.job_id} ({s.state}; {len(active)} run(s) in all): expected to "
                          "wait for the jobs (ssltheory experiment NAME --out DIR reports them) or to cancel them "
                          f"(scancel {s.job_id}) before --launcher local trains here")


def report(states: dict[str, JobState]) -> list[str]:
    """One line per run that is not finished: its state, job, and for a failure the error line and the log."""
    lines = []
    for key, s in sorted(states.items()):
        if s.state == "finished":
            continue
        job = f"job {s.job_id}" if s.job_id else "no job"
        lines.append(f"{key}: {s.state} ({job})" + (f": {s.error}" if s.error else "")
                     + (f"; log {s.log}" if s.state == "failed" and s.log else ""))
    return lines
