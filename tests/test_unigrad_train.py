"""The UniGrad family in the trainer: every method and form runs and measures, F survives a kill, the target
branches are knobs, and bad input is one line."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import assert_same, cli
from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.rundir import RunDir, read_metrics
from ssltheory.practice.engine.step import build_model
from ssltheory.practice.engine.train import train
from ssltheory.practice.methods.registry import METHODS
from ssltheory.practice.methods.target import MomentumEncoder, StopGradient, ema_gamma

TINY = dict(dataset="digits", batch_size=64, measure_every=3, probe_size=64, proj_hidden=32, proj_dim=32, seed=3,
            epochs=1, max_steps=6, queue_size=256, knn_every=0)
METHOD_KEYS = {"positive_cosine", "negative_cosine", "decorrelation"}


@pytest.mark.parametrize("method,form,extra", [
    # one per family (UniGrad trains in the resume test below; every form's math in test_{contrastive,asymmetric,
    # decorrelation}.py; every method x branch on digits in `experiment unigrad-methods`)
    ("moco", "loss", set()), ("byol", "gradient", {"adaptive_balance"}), ("barlowtwins", "unified", set()),
    ("vicreg", "gradient", set()),
])
def test_every_method_trains_and_measures_its_quantities(method, form, extra, tmp_path):
    train(TrainConfig(**TINY, method=method, form=form), tmp_path)
    meas = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "probe_auc" in r]
    assert meas and all(math.isfinite(r["loss"]) for r in meas)
    last = meas[-1]
    assert METHOD_KEYS | {"balance_ratio", "grad_cosine", "s_method"} | extra <= set(last)
    assert last["balance_ratio"] > 0 and -1 <= last["grad_cosine"] <= 1
    if method != "barlowtwins":  # l2 forms: the method's F has trace 1 (Barlow Twins' is a cross-correlation)
        assert sum(last["s_method"]) == pytest.approx(1.0, abs=1e-5)


def test_a_killed_unigrad_run_resumes_to_the_same_metrics_with_its_F(tmp_path):
    """F is state of the objective: checkpointed, restored, and the resumed run writes what the whole one wrote."""
    cfg = TrainConfig(**{**TINY, "max_steps": 12}, method="unigrad", checkpoint_every=7)
    train(cfg, tmp_path / "whole")
    whole = read_metrics(tmp_path / "whole" / "metrics.jsonl")

    class Killed(Exception):
        pass

    def kill(p):
        if p.step == 10:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tmp_path / "cut", on_progress=kill)
    state = RunDir(tmp_path / "cut").load_checkpoint()
    assert state["step"] == 7
    F = state["modules"]["objective"]["running.F"]
    assert F.dtype == torch.float32 and float(F.trace()) == pytest.approx(1.0, abs=1e-5)
    train(cfg, tmp_path / "cut", resume=True)
    assert_same(read_metrics(tmp_path / "cut" / "metrics.jsonl"), whole, "resumed")


def test_positive_and_negative_branches_are_separate_knobs():
    """Table 3's third row: momentum positives, stop-gradient negatives; one momentum encoder at most."""
    model = build_model(TrainConfig(**TINY, method="unigrad", negative_target="stop-grad"), 1, torch.device("cpu"))
    assert isinstance(model.target.positive, MomentumEncoder) and isinstance(model.target.negative, StopGradient)
    x = torch.randn(4, 1, 8, 8)
    f1, f2 = model.online(x), model.online(x.flip(-1))
    z1, z2, n1, n2 = model.target(x, x.flip(-1), f1, f2)
    assert torch.equal(n1, f1.detach()) and not n1.requires_grad and not z1.requires_grad
    both = build_model(TrainConfig(**TINY, method="unigrad"), 1, torch.device("cpu"))
    assert both.target.positive is both.target.negative and len(both.target.branches) == 1
    sg = build_model(TrainConfig(**TINY, method="unigrad", positive_target="stop-grad"), 1, torch.device("cpu"))
    assert sg.target.network is None  # stop-gradient both ways: no momentum encoder, no "target" in checkpoints
    # SimCLR's own loss: both branches train
    assert TrainConfig(**TINY, method="simclr").resolved_positive_target == "online"
    assert TrainConfig(**TINY, method="simclr", form="gradient").resolved_positive_target == "ema"  # the paper's (b)


def test_the_momentum_schedule_goes_from_0996_to_1_per_iteration():
    assert ema_gamma(0.996, 0, 1000, "cosine") == pytest.approx(0.996, abs=1e-15)
    assert ema_gamma(0.996, 1000, 1000, "cosine") == 1.0
    assert ema_gamma(0.996, 500, 1000, "cosine") == pytest.approx(0.998, abs=1e-12)


def test_every_table2_row_is_a_command():
    """Rows (a)-(j) of UniGrad's Table 2 as settings the trainer accepts, each its own objective and form."""
    from ssltheory.experiments.recipes import RECIPES

    rows = RECIPES["unigrad-table2"].configs("smoke")
    assert sorted(rows) == list("abcdefghij")
    kinds = {k: (type(METHODS[c.method].objective(c)).__name__, c.resolved_form, c.resolved_positive_target)
             for k, c in rows.items()}
    assert kinds["d"] == ("DirectPredGradient", "gradient", "ema")
    assert kinds["e"] == ("UniGrad", "gradient", "ema")
    assert kinds["g"][0] == kinds["h"][0] == "BarlowTwins" and rows["g"].resolved_norm == "bn"
    assert rows["h"].resolved_norm == "l2" and rows["e"].resolved_lam == 12.5  # 100 x the smoke width 256 / 2048
    assert {c.resolved_positive_target for c in rows.values()} == {"ema"}


@pytest.mark.parametrize("args,message", [
    (["--method", "swav"], "--method 'swav' is not known: expected one of"),
    (["--form", "closed"], "--form 'closed' is not known: expected one of auto, loss, gradient, unified"),
    (["--method", "simsiam", "--form", "unified"], "--form unified with --method simsiam is not accepted: expected "
                                                  "one of loss"),
    (["--method", "unigrad", "--lambda", "0"], "--lambda 0"),
    (["--method", "unigrad", "--lambda", "-3"], "--lambda -3"),
    (["--method", "unigrad", "--multi-crop", "6*96"], "--multi-crop '6*96' does not parse"),
    (["--method", "moco", "--cutmix", "1"], "--cutmix 1.0 with --method moco (--form loss) is not accepted"),
    (["--method", "byol", "--lambda", "5"], "--lambda 5.0 with --method byol (--form loss) is not accepted"),
    (["--method", "simclr", "--form", "gradient", "--positive-target", "online"],
     "--positive-target online with --method simclr --form gradient is not accepted"),
    (["--method", "unigrad", "--form", "loss", "--positive-target", "online"],
     "--positive-target online with --method unigrad --form loss is not accepted"),
    (["--method", "unigrad", "--cutmix", "1", "--negative-target", "stop-grad"],
     "--cutmix with --positive-target ema --negative-target stop-grad is not accepted"),
    (["--method", "byol", "--form", "gradient", "--predictor", "directpred"],
     "--predictor directpred with --method byol --form gradient is not accepted"),
    (["--method", "byol", "--negative-target", "ema"], "--negative-target ema with --method byol (--form loss) is "
                                                      "not accepted"),
    (["--method", "barlowtwins", "--negative-target", "ema"], "--negative-target ema with --method barlowtwins "
                                                             "(--form loss) is not accepted"),
    (["--method", "barlowtwins", "--norm", "l2"], "--norm l2 with --method barlowtwins --form loss is not accepted"),
])
def test_bad_method_settings_are_one_line(args, message, tmp_path):
    r = cli("train", "digits", *args, "--out", str(tmp_path / "run"))
    assert r.returncode == 2, r.stderr
    line = " ".join(r.stderr.split())
    assert message in line, line
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()
