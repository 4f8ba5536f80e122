"""DDP on CPU (gloo): two ranks with the same global batch compute what one process computes, and a run resumes
on another number of ranks. Launched the way users launch it: ``torchrun ... -m ssltheory.cli.main train``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssltheory.practice.engine.rundir import RunDir, read_metrics

ARGS = ["train", "digits", "--batch-size", "64", "--max-steps", "6", "--measure-every", "2", "--knn-every", "0",
        "--probe-size", "200", "--data-path", "device", "--predictor", "optimal", "--freq", "2", "--ridge", "0.05",
        "--device", "cpu"]


def _run(ranks: int, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if ranks == 1:
        cmd = [sys.executable, "-m", "ssltheory.cli.main"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               "-m", "ssltheory.cli.main"]
    r = subprocess.run(cmd + list(extra) + ["--out", str(out)] if "--resume" not in extra else cmd + list(extra),
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / max(float(b.double().norm()), 1e-12))


def _by_step(run: Path, key: str) -> dict[int, object]:
    return {r["step"]: r[key] for r in read_metrics(run / "metrics.jsonl") if key in r}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "one"
    _run(1, out, *ARGS)
    return out


def test_two_ranks_give_the_losses_and_F_of_one_process(one_process, tmp_path):
    """Same global batch 64 = 2 x 32: losses, F̂'s spectrum, the plug-in predictor's statistics, kNN and the weights
    agree to 1e-4 relative (measured ~1e-6) over 6 steps (global batch norm, F̂ and E[f_a f^T] all-reduced,
    DDP-averaged gradients)."""
    two = tmp_path / "two"
    _run(2, two, *ARGS)
    for key in ("loss", "s", "feature_std", "probe_auc", "knn_acc"):
        a, b = _by_step(one_process, key), _by_step(two, key)
        assert a.keys() == b.keys() and a, key
        for step in a:
            assert torch.allclose(torch.tensor(b[step], dtype=torch.float64), torch.tensor(a[step],
                                  dtype=torch.float64), rtol=1e-4, atol=1e-6), (key, step, a[step], b[step])
    sa, sb = RunDir(one_process).load_checkpoint(), RunDir(two).load_checkpoint()
    assert _rel(sb["corr"]["F"], sa["corr"]["F"]) < 1e-4  # measured 1.0e-6
    for name in ("online", "predictor", "target"):  # measured <= 2.7e-6
        for k, v in sa["modules"][name].items():
            if v.is_floating_point():
                assert _rel(sb["modules"][name][k], v) < 1e-4, (name, k)
    run = json.loads((two / "config.json").read_text())["run"]
    assert run["world_size"] == 2 and run["per_rank_batch"] == 32 and run["global_batch"] == 64


def test_a_two_rank_run_resumes_on_one_process(one_process, tmp_path):
    """Stopped after 3 steps on 2 ranks, continued on 1: the last steps' loss, the final weights and F̂ are those of
    the uninterrupted one-process run."""
    part = tmp_path / "part"
    _run(2, part, *[a if a != "6" else "3" for a in ARGS])
    cfg_path = part / "config.json"
    doc = json.loads(cfg_path.read_text())
    doc["config"]["max_steps"] = 6  # as if it had been stopped at step 3 of 6
    cfg_path.write_text(json.dumps(doc))
    _run(1, part, "train", "--resume", str(part))
    a, b = _by_step(one_process, "loss"), _by_step(part, "loss")
    assert b[6] == pytest.approx(a[6], rel=1e-4)  # the mean over steps 5-6 (the step-4 record averages other steps)
    for k, v in RunDir(one_process).load_checkpoint()["modules"]["online"].items():
        if v.is_floating_point():
            assert _rel(RunDir(part).load_checkpoint()["modules"]["online"][k], v) < 1e-4, k
    assert _rel(RunDir(part).load_checkpoint()["corr"]["F"], RunDir(one_process).load_checkpoint()["corr"]["F"]) \
        < 1e-4
    starts = json.loads(cfg_path.read_text())["run"]["starts"]
    assert [s["world_size"] for s in starts] == [2, 1] and starts[1]["step"] == 3


@pytest.mark.parametrize("method", [
    ["--method", "simclr"],  # its own loss: online keys, gathered with their gradient, each query's own key masked
])  # (UniGrad's all-reduced F: test_asymmetric.py's two fake ranks; passes here too, 24 s)
def test_two_ranks_train_the_unigrad_family_as_one_process(method, tmp_path):
    """Same global batch 64 = 2 x 32, 4 steps: losses, the method's F spectrum and the weights agree to 1e-4."""
    args = ["train", "digits", "--batch-size", "64", "--max-steps", "4", "--measure-every", "2", "--knn-every", "0",
            "--probe-size", "64", "--data-path", "device", "--device", "cpu", "--proj-hidden", "64", "--proj-dim",
            "32", *method]
    _run(1, tmp_path / "one", *args)
    _run(2, tmp_path / "two", *args)
    for key in ("loss", "s_method", "balance_ratio"):
        a, b = _by_step(tmp_path / "one", key), _by_step(tmp_path / "two", key)
        assert a.keys() == b.keys() and a, key
        for step in a:
            assert torch.allclose(torch.tensor(b[step], dtype=torch.float64), torch.tensor(a[step],
                                  dtype=torch.float64), rtol=1e-4, atol=1e-6), (key, step, a[step], b[step])
    sa, sb = RunDir(tmp_path / "one").load_checkpoint(), RunDir(tmp_path / "two").load_checkpoint()
    for k, v in sa["modules"]["online"].items():
        if v.is_floating_point():
            assert _rel(sb["modules"]["online"][k], v) < 1e-4, k
