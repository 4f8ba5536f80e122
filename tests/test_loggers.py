"""``--log tensorboard,wandb`` mirrors metrics.jsonl: the event file's scalars and the offline W&B history equal the
records step by step; a run killed and resumed logs no step twice (TensorBoard's purge step, W&B's kept id); a
missing extra or an unknown logger is one line. W&B runs offline (WANDB_MODE=offline), its files in the run folder.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import cli
from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.rundir import read_metrics
from ssltheory.practice.engine.train import train
from ssltheory.practice.report.loggers import LEADING, Loggers, flatten, open_loggers

FAST = dict(dataset="digits", epochs=1, batch_size=64, measure_every=5, checkpoint_every=10, probe_size=64,
            proj_hidden=32, proj_dim=16, predictor="directpred", log="tensorboard,wandb")
KILL_AT = 17  # of 20 steps: the checkpoint is at step 10, the measurement at 15 is logged before the kill


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A digits run logging to both, killed at step 17 (library) and resumed (``train --resume``): the folder and
    what wandb.json held before the resume."""
    run = tmp_path_factory.mktemp("loggers") / "run"

    def kill(p):
        if p.step == KILL_AT:
            raise Killed

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.delenv("WANDB_DIR", raising=False)
        mp.delenv("WANDB_PROJECT", raising=False)
        with pytest.raises(Killed):
            train(TrainConfig(**FAST), run, on_progress=kill)
        before = json.loads((run / "wandb.json").read_text())
        r = cli("train", "--resume", str(run))
        assert r.returncode == 0, r.stderr
    return run, before


def expected(records: list[dict]) -> dict[str, dict[int, float]]:
    """What the loggers must hold, ``{tag: {step: value}}``: each record flattened, a tag's first value at a step."""
    out: dict[str, dict[int, float]] = {}
    for rec in records:
        scalars, series = flatten(rec)
        tags = {**scalars, **{f"{k}/{j}": v for k, modes in series.items() for j, v in modes.items()}}
        for tag, value in tags.items():
            out.setdefault(tag, {}).setdefault(rec["step"], value)
    return out


def same32(a: float, b: float) -> bool:
    """Equal to float32 precision (TensorBoard stores float32), NaN equal to NaN."""
    return bool(np.float32(a) == np.float32(b)) or (math.isnan(a) and math.isnan(b))


def test_tensorboard_scalars_equal_metrics_step_by_step_and_no_step_twice(resumed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    run, _ = resumed
    want = expected(read_metrics(run / "metrics.jsonl"))
    assert {"loss", "lr", "knn_acc", "probe_auc", "feature_std", "asymmetry", "positive_cosine", "negative_cosine",
            "s/1", f"s/{LEADING}", "p_sym/1", "alignment/1"} <= set(want)
    files = sorted((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 2  # the killed process's and the resumed one's
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == set(want)
    compared = 0
    for tag, by_step in want.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == sorted(by_step), tag  # every step once, in order: none twice, none lost
        for step, value in got:
            assert same32(value, by_step[step]), (tag, step, value, by_step[step])
            compared += 1
    assert compared > 150
    # the measurement at step 15 was written by both processes; the purge step (11) leaves the resumed one's
    raw = Counter(e.step for f in files for e in EventFileLoader(str(f)).Load()
                  for v in e.summary.value if v.tag == "loss")
    assert raw[15] == 2 and raw[10] == 1 and acc.Scalars("loss")[-1].step == 20
    assert "figures/dynamics" in acc.Tags()["images"] and "custom_scalars__config__" in acc.Tags()["tensors"]


def wandb_history(path: Path) -> list[dict]:
    """The history rows of an offline W&B run file (``run-ID.wandb``: W&B's header, then LevelDB-log records of
    protobuf ``Record``s), each ``{key: value}`` with ``_step``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, part, rows = 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or kind == 0:  # a block's padding
            pos += left
            continue
        part, pos = part + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # FULL, LAST
            rec = pb.Record()
            rec.ParseFromString(part)
            part = b""
            if rec.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
    return rows


def test_wandb_offline_keeps_the_id_and_the_history_equals_metrics(resumed):
    run, before = resumed
    after = json.loads((run / "wandb.json").read_text())
    assert after["id"] == before["id"] and before["step"] == 15 and after["step"] == 20
    dirs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(dirs) == 2 and all(d.name.endswith("-" + after["id"]) for d in dirs)
    rows = [r for d in dirs for r in wandb_history(d / f"run-{after['id']}.wandb")]
    steps = [r["_step"] for r in rows]
    want = expected(read_metrics(run / "metrics.jsonl"))
    assert len(steps) == len(set(steps)) and set(steps) == {s for by_step in want.values() for s in by_step}
    compared = 0
    for row in rows:
        for tag, by_step in want.items():
            if row["_step"] in by_step:
                assert row[tag] == by_step[row["_step"]], (tag, row["_step"])  # JSON doubles: exact
                compared += 1
    assert compared > 150 and rows[-1]["figures/dynamics/_type"] == "image-file"
    assert list((dirs[-1] / "files" / "media" / "images" / "figures").glob("dynamics*.png"))


@pytest.mark.parametrize("name, module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")])
def test_a_missing_extra_is_one_line_naming_the_install(name, module, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if the package were not installed
    r = cli("train", "digits", "--log", name, "--max-steps", "2", "--out", str(tmp_path / "run"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0] == (f"ssltheory: error: --log {name} needs the {name} package, which is not installed: pip "
                        f"install 'ssltheory[{name}]'")
    assert not (tmp_path / "run").exists()  # refused before the folder is made


def test_an_unknown_logger_is_one_line(tmp_path):
    r = cli("train", "digits", "--log", "tensorboard,mlflow", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "ssltheory: error: --log 'mlflow' is not known: expected one of tensorboard, wandb (comma-separated, e.g. "
        "--log tensorboard,wandb; spelled --logger under torchrun)"]
    r = cli("train", "digits", "--logger", "mlflow", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "--log 'mlflow' is not known" in r.stderr and "--logger" in r.stderr


def test_flatten_and_only_rank_0(tmp_path):
    rec = {"step": 5, "epoch": 0.25, "loss": 2.5, "collapse_alarm": True, "note": "x", "knn_acc": None,
           "s": list(range(20, 0, -1)), "probe_n": 64, "empty": [], "mixed": [1, "a"]}
    scalars, series = flatten(rec)
    assert scalars == {"epoch": 0.25, "loss": 2.5, "collapse_alarm": 1.0, "probe_n": 64.0}
    assert series == {"s": {str(j): float(21 - j) for j in range(1, LEADING + 1)}}
    other_rank = open_loggers(TrainConfig(**FAST), tmp_path, None, main=False)
    assert isinstance(other_rank, Loggers) and other_rank.loggers == [] and not any(tmp_path.iterdir())


def test_only_rank_0_logs_under_ddp(tmp_path):
    """Two ranks (torchrun, gloo): one event file, its loss the records' loss. The setting spelled ``--logger``
    (torchrun's own parser takes ``--log`` for an abbreviation of its ``--log-dir`` options and stops)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "ssltheory.cli.main", "train", "digits", "--batch-size", "64", "--max-steps", "4", "--measure-every", "2",
           "--knn-every", "0", "--probe-size", "64", "--proj-hidden", "32", "--proj-dim", "16", "--device", "cpu",
           "--logger", "tensorboard", "--out", str(run)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    loss = expected(read_metrics(run / "metrics.jsonl"))["loss"]
    assert len(loss) == 2 and [(e.step, np.float32(e.value)) for e in acc.Scalars("loss")] == [
        (s, np.float32(v)) for s, v in loss.items()]
