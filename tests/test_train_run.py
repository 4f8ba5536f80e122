"""The training loop on digits: resume after a kill, NaN handling, and bad input on the command line."""

from __future__ import annotations

import random

import pytest
import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.rundir import RunDir, read_metrics
from ssltheory.practice.engine.train import TrainingDiverged, train
from ssltheory.practice.methods.objectives import regression as objectives

TINY = dict(dataset="digits", batch_size=64, epochs=3, measure_every=4, checkpoint_every=5, probe_size=64,
            proj_hidden=64, proj_dim=32, predictor="directpred", seed=3)


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    cfg = TrainConfig(**TINY)
    train(cfg, tmp_path / "whole")
    total = read_metrics(tmp_path / "whole" / "metrics.jsonl")[-1]["step"]
    kill_at = random.Random().randint(6, total - 2)  # a random step, not on a checkpoint boundary by design

    def kill(p):
        if p.step == kill_at:
            raise Killed  # nothing after the last atomic checkpoint survives, as with SIGKILL

    with pytest.raises(Killed):
        train(cfg, tmp_path / "cut", on_progress=kill)
    saved = RunDir(tmp_path / "cut").load_checkpoint()
    assert 0 < saved["step"] <= kill_at
    train(cfg, tmp_path / "cut", resume=True)
    whole = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    cut = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    assert [r["step"] for r in cut] == [r["step"] for r in whole]
    for a, b in zip(whole, cut, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            same = a[k] == b[k] if isinstance(a[k], str) else a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12)
            assert same, (kill_at, a["step"], k)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real = objectives.symmetric_loss
    calls = {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        loss = real(*args)
        return loss * float("nan") if calls["n"] == 9 else loss

    monkeypatch.setattr(objectives, "symmetric_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="at step 9") as e:
        train(TrainConfig(**TINY), tmp_path)
    assert "step 5" in str(e.value)  # the checkpoint written at step 5 is named and kept
    assert RunDir(tmp_path).load_checkpoint()["step"] == 5
    assert torch.isfinite(next(iter(RunDir(tmp_path).load_checkpoint()["modules"]["online"].values()))).all()


@pytest.mark.parametrize("args,needle", [
    (["train", "mnist9"], "'mnist9'"),
    (["train", "digits", "--predictor", "deep"], "'deep'"),
    (["train", "digits", "--freq", "5"], "--freq 5"),
    (["train", "digits", "--lr", "-0.1"], "--lr -0.1"),
    (["train", "digits", "--weight-decay", "-1"], "--weight-decay -1"),
    (["train", "digits", "--alpha-p", "0"], "--alpha-p 0"),
    (["train", "digits", "--no-stop-grad"], "--no-stop-grad"),
    (["train", "stl10", "--data-dir", "/nonexistent/stl"], "stl10_binary"),
    (["train", "folder", "--data-dir", "/nonexistent/imgs"], "/nonexistent/imgs"),
    (["train", "--resume", "/nonexistent/run"], "--resume"),
    (["probe", "/nonexistent/run"], "RUN_DIR"),
    (["train", "synthetic", "--backbone", "resnet18"], "--backbone resnet18"),
    (["train", "digits", "--backbone", "linear"], "--backbone linear"),
    (["train", "digits", "--predictor", "mlp", "--predictor-init", "identity"], "--predictor-init identity"),
    (["train", "digits", "--loss", "huber"], "'huber'"),
    (["train", "digits", "--eps-inside"], "--eps-inside"),
    (["train", "digits", "--predictor", "directpred", "--eps", "-0.1"], "--eps -0.1"),
    (["train", "synthetic", "--sigma2", "-1"], "--sigma2 -1"),
])
def test_bad_training_input_is_one_line_exit_2(args, needle, tmp_path):
    from conftest import cli

    r = cli(*args, *(["--out", str(tmp_path)] if args[0] == "train" and "--resume" not in args else []))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0]


def test_measuring_more_often_does_not_change_the_training(tmp_path):
    cfg = dict(TINY, checkpoint_every=0)
    train(TrainConfig(**{**cfg, "measure_every": 2, "knn_every": 1}), tmp_path / "often")
    train(TrainConfig(**{**cfg, "measure_every": 7, "knn_every": 0}), tmp_path / "rarely")
    a = RunDir(tmp_path / "often").load_checkpoint()["modules"]["online"]
    b = RunDir(tmp_path / "rarely").load_checkpoint()["modules"]["online"]
    assert all(torch.equal(a[k], b[k]) for k in a)
