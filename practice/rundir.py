"""The run folder: every file a training run reads or writes, and nothing else touches them.

| file | what |
|---|---|
| ``config.json`` | the settings (:class:`.config.TrainConfig`), versions, git commit, ``run``: what was resolved |
| ``metrics.jsonl`` | one JSON record per line: measurements, kNN, notes |
| ``checkpoint.pt`` | everything a run needs to continue exactly (written atomically) |
| ``checkpoint.prev.pt`` | the one before it, kept so that a damaged checkpoint costs one interval, not the run |
| ``summary.json`` | the final numbers |
| ``dynamics.png`` | the run's figure, drawn from ``metrics.jsonl`` when the run ends |

A folder that already holds a run is never started over silently: :meth:`RunDir.start` refuses unless told to
replace it (``--force``), and then removes the old run's files first so none of them outlives it.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from ssltheory.theory.io import check_out_dir, save_figure, save_json, write_atomic
from ssltheory.theory.params import ConfigError

from .config import TrainConfig

CONFIG, METRICS, CHECKPOINT, SUMMARY, FIGURE = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json", \
    "dynamics.png"
PREVIOUS = "checkpoint.prev.pt"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, PREVIOUS, SUMMARY, FIGURE, "probe.json", "report.html",
             "forecast_point.json")
"""What a run (and its probe, report and forecast point) writes into its folder; a new run clears them all."""


class RunDir:
    """The folder of one training run (only rank 0 of a DDP run writes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.note: str | None = None  # what load_checkpoint had to do, for the user

    def file(self, name: str) -> Path:
        return self.path / name

    def holds_run(self) -> bool:
        """Whether a run was started here (a config, metrics or a checkpoint)."""
        return any(self.file(n).exists() for n in (CONFIG, METRICS, CHECKPOINT))

    # settings
    def check_free(self, force: bool = False) -> None:
        """A one-line error unless a new run may start here: the folder is new or empty of runs, or ``force``."""
        check_out_dir(self.path)  # a file, inside a file, read-only, /proc: one line before anything is loaded
        if self.holds_run() and not force:
            raise ConfigError(f"--out {self.path} already holds a run: expected a new folder, --resume "
                              f"{self.path} to continue it, or --force to replace it")

    def start(self, cfg: TrainConfig, resolved: dict, force: bool = False, **entry) -> None:
        """Begin a new run here (see :meth:`check_free`; ``force`` removes the old run's files first), writing
        config.json (with ``run``: ``resolved`` and the first start, with ``entry``: e.g. its data schedule) and an
        empty metrics.jsonl."""
        self.check_free(force)
        for name in RUN_FILES:
            self.file(name).unlink(missing_ok=True)
        self.clean_partial_writes()
        self.path.mkdir(parents=True, exist_ok=True)
        cfg.save(self.file(CONFIG), {**resolved, "starts": [{"step": 0, "world_size": resolved["world_size"],
                                                             **entry}]})
        write_atomic(self.file(METRICS), b"")

    def config(self, name: str = "RUN_DIR") -> TrainConfig:
        """The run's settings; a one-line error naming the folder as the user gave it (``name``) when it holds no
        run."""
        if not self.file(CONFIG).exists():
            raise ConfigError(f"{name} {self.path} has no config.json: expected the folder of a run of ssltheory "
                              "train")
        return TrainConfig.load(self.file(CONFIG))

    def record_start(self, resolved: dict, step: int, cfg: TrainConfig | None = None, **entry) -> None:
        """Note a resume (its step, world size and ``entry``) in config.json's ``run`` block. A ``cfg`` that differs
        from the saved settings (a stream changed on resume) replaces them, and the start names what ``changed``."""
        doc = json.loads(self.file(CONFIG).read_text())
        if cfg is not None:
            old = TrainConfig.from_dict(doc["config"]).to_dict()
            changed = {k: [v, getattr(cfg, k)] for k, v in old.items() if getattr(cfg, k) != v}
            if changed:
                doc["config"], entry = cfg.to_dict(), {**entry, "changed": changed}
        starts = doc.get("run", {}).get("starts", [])
        doc["run"] = {**resolved, "starts": [*starts, {"step": step, "world_size": resolved["world_size"], **entry}]}
        save_json(self.file(CONFIG), doc)

    def record_switch(self, step: int, data_schedule: str, why: str) -> None:
        """Note in config.json's ``starts`` that the data schedule changes to ``data_schedule`` at ``step`` (once)."""
        doc = json.loads(self.file(CONFIG).read_text())
        starts = doc.get("run", {}).get("starts", [])
        switch = {"step": step, "data_schedule": data_schedule, "switch": why}
        if switch not in starts:
            doc.setdefault("run", {})["starts"] = [*starts, switch]
            save_json(self.file(CONFIG), doc)

    # metrics.jsonl
    def append(self, record: dict) -> None:
        with open(self.file(METRICS), "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def records(self) -> list[dict]:
        if not self.file(METRICS).exists():
            raise ConfigError(f"RUN_DIR {self.path} has no metrics.jsonl: expected the folder of a run of ssltheory "
                              "train that has started")
        return read_metrics(self.file(METRICS))

    def count(self) -> int:
        path = self.file(METRICS)
        return sum(1 for _ in open(path)) if path.exists() else 0

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` lines: what was written after the checkpoint is redone on resume."""
        path = self.file(METRICS)
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        write_atomic(path, "".join(lines[:n]).encode())

    # checkpoint.pt
    def save_checkpoint(self, state: dict) -> Path:
        """Write ``state`` through a temporary file and a rename; the checkpoint it replaces becomes
        checkpoint.prev.pt (a kill between the two renames leaves that one, which :meth:`load_checkpoint` reads)."""
        buf = io.BytesIO()
        torch.save(state, buf)
        if self.file(CHECKPOINT).exists():
            os.replace(self.file(CHECKPOINT), self.file(PREVIOUS))
        write_atomic(self.file(CHECKPOINT), buf.getvalue())
        return self.file(CHECKPOINT)

    def resume_at(self, metrics_lines: int) -> None:
        """Make the folder as its checkpoint left it: partial writes removed, a damaged checkpoint set aside,
        metrics.jsonl cut back to the checkpoint's ``metrics_lines``."""
        self.clean_partial_writes()
        self.set_aside_damaged()
        self.truncate(metrics_lines)

    def set_aside_damaged(self) -> None:
        """After :meth:`load_checkpoint` fell back to checkpoint.prev.pt: move the unreadable checkpoint.pt to
        checkpoint.damaged.pt, so that the next save does not rotate it over the good one."""
        if self.note and self.file(CHECKPOINT).exists():
            os.replace(self.file(CHECKPOINT), self.file("checkpoint.damaged.pt"))

    def clean_partial_writes(self) -> None:
        """Remove what a write killed half-way left behind (``.NAME.*.tmp``; the file itself was never replaced)."""
        if self.path.is_dir():
            for name in RUN_FILES:
                for tmp in self.path.glob(f".{name}.*.tmp"):
                    tmp.unlink(missing_ok=True)

    def load_checkpoint(self) -> dict | None:
        """The saved state, None when there is no checkpoint yet. When checkpoint.pt cannot be read (or is missing
        after a kill between renames) the previous one is used and :attr:`note` says so; when neither can be read,
        a one-line error naming the file."""
        self.note = None
        path, prev = self.file(CHECKPOINT), self.file(PREVIOUS)
        if not path.exists() and not prev.exists():
            return None
        try:
            return _read_checkpoint(path)
        except ConfigError as damaged:
            if not prev.exists():
                raise
            try:
                state = _read_checkpoint(prev)
            except ConfigError:
                raise damaged from None
            self.note = (f"{path.name} {'cannot be read' if path.exists() else 'is missing'}: continued from "
                         f"{prev.name} (step {state['step']}); the steps after it are done again")
            return state

    # results
    def finish(self, cfg: TrainConfig) -> dict:
        """Write summary.json and dynamics.png from metrics.jsonl; returns the summary."""
        from .measure import summarize
        from .plots import run_figure, run_title

        records = self.records()
        summary = summarize(records)
        save_json(self.file(SUMMARY), summary)
        from .methods import METHODS

        predictor = cfg.predictor if METHODS[cfg.method].predictor(cfg) else "none"  # the identity: no W_p to show
        save_figure(run_figure(records, run_title(cfg), predictor), self.file(FIGURE))
        return summary


def _read_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path} is missing: expected a checkpoint written by ssltheory train")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated, overwritten, not a checkpoint at all
        raise ConfigError(f"{path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:120]}): "
                          "expected a checkpoint written by ssltheory train") from None


def read_metrics(path: Path) -> list[dict]:
    """All records of a ``metrics.jsonl``. A last line cut short (a write killed half-way) is left out; any other
    line that is not JSON is a one-line error naming the file and the line."""
    text = Path(path).read_text()
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not text.endswith("\n"):
                break
            raise ConfigError(f"{path} line {i + 1} is not a JSON record: expected one JSON object per line, as "
                              "ssltheory train writes") from None
    return out


def rng_state() -> dict:
    """Torch (CPU and CUDA), numpy and Python random states."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_run_dir(run_dir: Path | str) -> None:
    """A one-line error unless ``run_dir`` is a folder with a config.json (a run of ``ssltheory train``)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ConfigError(f"RUN_DIR {run_dir} does not exist: expected the folder of a run of ssltheory train "
                          "(config.json + checkpoint.pt)")
    if not run_dir.is_dir():
        raise ConfigError(f"RUN_DIR {run_dir} is a file: expected the folder of a run of ssltheory train (a file of "
                          "singular values goes to --spectra, a state dict to --state-dict)")
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"RUN_DIR {run_dir} has no config.json: expected the folder of a run of ssltheory train "
                          "(config.json + checkpoint.pt)")
    if not any((run_dir / f).exists() for f in (CHECKPOINT, PREVIOUS)):
        raise ConfigError(f"RUN_DIR {run_dir} has no checkpoint.pt: expected a run that finished at least one epoch "
                          "(or saved one with --checkpoint-every)")
