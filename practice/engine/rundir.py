"""The run folder: every file a training run reads or writes, and nothing else touches them.

| file | what |
|---|---|
| ``config.json`` | the settings (:class:`..config.TrainConfig`), versions, git commit, ``run``: what was resolved |
| ``metrics.jsonl`` | one JSON record per line: measurements, kNN, notes |
| ``checkpoint.pt`` | everything a run needs to continue exactly (written atomically) |
| ``checkpoint.prev.pt`` | the one before it, kept so that a damaged checkpoint costs one interval, not the run |
| ``summary.json`` | the final numbers |
| ``dynamics.png`` | the run's figure, drawn from ``metrics.jsonl`` when the run ends |

A folder that already holds a run is never started over silently: :meth:`RunDir.start` refuses unless told to
replace it (``--force``), and then removes the old run's files first so none of them outlives it.

**A record is never glued, dropped or summarised from a cut file.** A checkpoint holds ``metrics_lines``, how many
lines metrics.jsonl had when it was written; a resume keeps those lines and trains again what came after them. A
line is *whole* when it is a JSON object (a blank line counts as a line and holds no record); the first line that
is not (cut short by a kill, a full disk or a copy stopped half-way; overwritten) ends the whole part.
:meth:`RunDir.resume_point` picks the checkpoint to continue from, reading only:

- the whole part holds all the checkpoint's lines: that checkpoint (a line cut after them is trained again);
- it does not (the cut is inside the records the checkpoint covers, which are lost from the file):
  checkpoint.prev.pt when its own lines are all whole. :meth:`RunDir.resume_at` then moves the cut line and all
  after it to ``metrics.damaged.jsonl`` (appended, so an earlier one is kept) and checkpoint.pt to
  ``checkpoint.cut.pt`` (its model is kept; its records are not), and the user is told in one line
  (:attr:`RunDir.note`);
- no kept checkpoint is at or before the cut: a one-line :class:`ConfigError` naming the line and what was lost,
  and **nothing is changed**: the user restores metrics.jsonl from a copy and resumes, or trains the run anew
  (``--config RUN/config.json --out RUN --force``). Training it again from step 0 unasked would overwrite the
  checkpoints, which are finished work.

This holds for a finished run too: its resume writes summary.json again only after the records are whole again.
:meth:`RunDir.finish` reads metrics.jsonl strictly (a cut last line is an error there, not left out as readers
such as :func:`read_metrics` do), and :meth:`RunDir.append` / :meth:`RunDir.truncate` never leave a record after a
line without its end: a complete record missing only its newline gets it, anything else is set aside first.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.datasets import build_data
from ssltheory.practice.engine.step import build_model
from ssltheory.theory.checks import ConfigError
from ssltheory.theory.io import check_out_dir, save_json, write_atomic

CONFIG, METRICS, CHECKPOINT, SUMMARY, FIGURE = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json", \
    "dynamics.png"
PREVIOUS = "checkpoint.prev.pt"
DAMAGED_METRICS, DAMAGED_CHECKPOINT, CUT_CHECKPOINT = "metrics.damaged.jsonl", "checkpoint.damaged.pt", \
    "checkpoint.cut.pt"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, PREVIOUS, SUMMARY, FIGURE, "probe.json", "report.html",
             "forecast_point.json", DAMAGED_METRICS, DAMAGED_CHECKPOINT, CUT_CHECKPOINT)
"""What a run (and its probe, report and forecast point) writes into its folder; a new run clears them all."""


class RunDir:
    """The folder of one training run (only rank 0 of a DDP run writes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.note: str | None = None  # what load_checkpoint / resume_point had to do, for the user
        self.cut = False  # resume_point went back before a cut in metrics.jsonl: resume_at sets the cut aside

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
        """Add ``record`` as one line; a last line without its end is first ended or set aside (:meth:`_end_line`),
        so a record is never glued onto it."""
        path = self.file(METRICS)
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._end_line()
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def records(self) -> list[dict]:
        if not self.file(METRICS).exists():
            raise ConfigError(f"RUN_DIR {self.path} has no metrics.jsonl: expected the folder of a run of ssltheory "
                              "train that has started")
        return read_metrics(self.file(METRICS))

    def count(self) -> int:
        """How many lines metrics.jsonl has (a last one without its end included): a checkpoint's
        ``metrics_lines``."""
        path = self.file(METRICS)
        return _line_count(path.read_bytes()) if path.exists() else 0

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` lines: what was written after the checkpoint is redone on resume. Only whole lines
        are kept: a line among them that is not (and all after it) goes to metrics.damaged.jsonl first."""
        path = self.file(METRICS)
        data = path.read_bytes() if path.exists() else b""
        ends, bad = _scan(data)[1:]
        if n > len(ends) and bad is not None:
            self._set_aside(data[ends[-1] if ends else 0:])
        kept = data[:ends[min(n, len(ends)) - 1]] if n > 0 and ends else b""
        write_atomic(path, kept if kept.endswith(b"\n") or not kept else kept + b"\n")

    def _end_line(self) -> None:
        """metrics.jsonl's last line has no end: a whole record (or a blank line) gets one, anything else (a
        record cut short) is moved to metrics.damaged.jsonl."""
        path = self.file(METRICS)
        data = path.read_bytes()
        start = data.rfind(b"\n") + 1
        if not data[start:].strip() or _record(data[start:]) is not None:
            write_atomic(path, data + b"\n")
        else:
            self._set_aside(data[start:])
            write_atomic(path, data[:start])

    def _set_aside(self, piece: bytes) -> None:
        """Append ``piece`` of metrics.jsonl (from a line that is not whole to the end) to metrics.damaged.jsonl,
        ended by a newline, so that a piece set aside earlier stays."""
        with open(self.file(DAMAGED_METRICS), "ab") as f:
            f.write(piece if piece.endswith(b"\n") else piece + b"\n")

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

    def resume_point(self) -> dict | None:
        """The checkpoint a resume continues from (None when there is none): :meth:`load_checkpoint`'s when
        metrics.jsonl holds all the lines it covers as whole records, else checkpoint.prev.pt when its lines are
        whole (:attr:`note` says so, and :meth:`resume_at` sets the cut aside), else a one-line error naming the
        cut and what to do, with nothing changed (see the module's docstring). It only reads, so every rank of a
        run reaches the same answer."""
        self.cut = False
        state = self.load_checkpoint()
        if state is None:
            return None
        path = self.file(METRICS)
        data = path.read_bytes() if path.exists() else None
        ends, bad = _scan(data or b"")[1:]
        whole, covered = len(ends), state["metrics_lines"]
        if whole >= covered:
            return state
        used = PREVIOUS if self.note else CHECKPOINT  # load_checkpoint fell back already: nothing older is kept
        at = f"{used} (step {state['step']})"
        what = (f"{path} is missing, where {at} covers {covered} lines of it" if data is None else
                f"{path} ends after line {whole}, where {at} covers {covered} lines" if bad is None else
                f"{path} line {whole + 1} {bad}, inside the {covered} lines that {at} covers")
        if used == PREVIOUS:
            why = f"{CHECKPOINT} cannot be read, and no older checkpoint is kept"
        elif not self.file(PREVIOUS).exists():
            why = f"there is no {PREVIOUS} to go back to"
        else:
            try:
                prev = _read_checkpoint(self.file(PREVIOUS))
            except ConfigError:
                why = f"{PREVIOUS} cannot be read"
            else:
                if prev["metrics_lines"] <= whole:
                    self.cut = True
                    aside = f"set aside in {DAMAGED_METRICS}; " if bad is not None else ""
                    self.note = (f"{what}: {aside}{CHECKPOINT} kept as {CUT_CHECKPOINT}, and continued from "
                                 f"{PREVIOUS} (step {prev['step']}), whose {prev['metrics_lines']} lines are whole; "
                                 "the steps after it are done again")
                    return prev
                why = f"{PREVIOUS} (step {prev['step']}) covers {prev['metrics_lines']} lines, past it too"
        span = f"lines {whole + 1} to {covered}" if covered > whole + 1 else f"line {covered}"
        raise ConfigError(f"{what}, and {why}: the records of {span} are not all there; nothing was changed: expected "
                          f"{path.name} restored from a copy (then --resume again), or the run trained anew (train "
                          f"--config {self.file(CONFIG)} --out {self.path} --force)")

    def resume_at(self, metrics_lines: int) -> None:
        """Make the folder as its checkpoint left it: partial writes removed, a damaged checkpoint set aside,
        metrics.jsonl cut back to the checkpoint's ``metrics_lines``. After :meth:`resume_point` went back before a
        cut, the cut line and all after it go to metrics.damaged.jsonl and checkpoint.pt to checkpoint.cut.pt
        first (so that the next save does not rotate it into checkpoint.prev.pt)."""
        self.clean_partial_writes()
        if self.cut:
            path = self.file(METRICS)
            data = path.read_bytes() if path.exists() else b""
            ends, bad = _scan(data)[1:]
            if bad is not None:
                self._set_aside(data[ends[-1] if ends else 0:])
            if self.file(CHECKPOINT).exists():
                os.replace(self.file(CHECKPOINT), self.file(CUT_CHECKPOINT))
        else:
            self.set_aside_damaged()
        self.truncate(metrics_lines)

    def set_aside_damaged(self) -> None:
        """After :meth:`load_checkpoint` fell back to checkpoint.prev.pt: move the unreadable checkpoint.pt to
        checkpoint.damaged.pt, so that the next save does not rotate it over the good one."""
        if self.note and self.file(CHECKPOINT).exists():
            os.replace(self.file(CHECKPOINT), self.file(DAMAGED_CHECKPOINT))

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
    def finish(self) -> tuple[dict, list[dict]]:
        """Write summary.json from metrics.jsonl; returns (the summary, the records) for the run's figure. Only from
        whole records: a line cut short, even the last, is a one-line error (nothing is written), which ``--resume``
        mends."""
        from ssltheory.practice.measure.quantities import summarize

        self.records()  # a one-line error when there is no metrics.jsonl
        path = self.file(METRICS)
        records, ends, bad = _scan(path.read_bytes())
        if bad is not None:
            raise ConfigError(f"{path} line {len(ends) + 1} {bad}: summary.json is written from whole records only "
                              f"(nothing was written): expected --resume {self.path}, which goes back to a "
                              "checkpoint before that line")
        summary = summarize(records)
        save_json(self.file(SUMMARY), summary)
        return summary, records


def _read_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path} is missing: expected a checkpoint written by ssltheory train")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated, overwritten, not a checkpoint at all
        raise ConfigError(f"{path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:120]}): "
                          "expected a checkpoint written by ssltheory train") from None


def read_metrics(path: Path, whole: bool = False) -> list[dict]:
    """All records of a ``metrics.jsonl``. A last line cut short (a write killed half-way) is left out, or with
    ``whole`` a one-line error; any other line that is not a JSON object is a one-line error naming the file and the
    line."""
    data = Path(path).read_bytes()
    records, ends, bad = _scan(data)
    if bad is not None and (whole or bad != CUT_SHORT):
        line = len(ends) + 1
        raise ConfigError(f"{path} line {line} {bad}: expected one JSON object per line, as ssltheory train writes")
    return records


CUT_SHORT, NOT_JSON = "is cut short", "is not a JSON record"


def _record(line: bytes) -> dict | None:
    """The JSON object on ``line``, None when it is not one (cut, overwritten, not UTF-8, a list)."""
    try:
        rec = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    return rec if isinstance(rec, dict) else None


def _scan(data: bytes) -> tuple[list[dict], list[int], str | None]:
    """Read ``data`` (a metrics.jsonl) up to its first line that is not whole: the records of the whole lines
    (blank lines hold none), where each whole line ends (after its newline; a last line that is a whole record
    without one ends at the end), and what the first other line is (:data:`CUT_SHORT` for a last line without its
    end, :data:`NOT_JSON`), None when every line is whole."""
    records, ends, start = [], [], 0
    while start < len(data):
        stop = data.find(b"\n", start)
        end = len(data) if stop < 0 else stop + 1
        line = data[start:end]
        if line.strip():
            rec = _record(line)
            if rec is None:
                return records, ends, CUT_SHORT if stop < 0 else NOT_JSON
            records.append(rec)
        ends.append(end)
        start = end
    return records, ends, None


def _line_count(data: bytes) -> int:
    """Lines in ``data``, a last one without its end included."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


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


def check_run_dir(run_dir: Path | str, file_hint: str = "") -> None:
    """A one-line error unless ``run_dir`` is a folder with a config.json (a run of ``ssltheory train``);
    ``file_hint`` tells the user where a file given as RUN_DIR belongs instead (the caller's own flags)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ConfigError(f"RUN_DIR {run_dir} does not exist: expected the folder of a run of ssltheory train "
                          "(config.json + checkpoint.pt)")
    if not run_dir.is_dir():
        raise ConfigError(f"RUN_DIR {run_dir} is a file: expected the folder of a run of ssltheory train"
                          + (f" ({file_hint})" if file_hint else ""))
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"RUN_DIR {run_dir} has no config.json: expected the folder of a run of ssltheory train "
                          "(config.json + checkpoint.pt)")
    if not any((run_dir / f).exists() for f in (CHECKPOINT, PREVIOUS)):
        raise ConfigError(f"RUN_DIR {run_dir} has no checkpoint.pt: expected a run that finished at least one epoch "
                          "(or saved one with --checkpoint-every)")


def load_run(run_dir, device: torch.device, data_dir: str | None = None):
    """A training run's model with its last checkpoint's weights: ``(cfg, data, model, step)``, the data of
    :func:`..data.datasets.build_data` (``data_dir`` replaces the run's ``--data-dir``: a run moved to another machine).
    A one-line :class:`ConfigError` for a folder that is not a run or has no checkpoint."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    folder = RunDir(run_dir)
    cfg = folder.config()
    state = folder.load_checkpoint()
    if state is None:
        raise ConfigError(f"RUN_DIR {run_dir} has no checkpoint.pt: expected a run that finished at least one epoch "
                          "(or saved one with --checkpoint-every)")
    if data_dir is not None:
        cfg = cfg.replace(data_dir=data_dir)
    data = build_data(cfg)
    model = build_model(cfg, data.in_channels, device)
    model.online.load_state_dict(state["modules"]["online"])
    return cfg, data, model, int(state["step"])
