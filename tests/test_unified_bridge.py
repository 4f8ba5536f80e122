"""The unified-gradient bridge: synthetic linear runs of UniGrad and VICReg's unified form through the real trainer
(raw outputs, --norm none) against the mode flow (U3)-(U4) of theory/unified.py, read off by ``compare``."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest

from ssltheory.practice.config import ConfigError, TrainConfig
from ssltheory.practice.engine.rundir import read_metrics
from ssltheory.practice.engine.train import train
from ssltheory.practice.studies.compare import FINAL_P_TOL, TRAJECTORY_TOL, agreement, compare_run, predict_unified

BRIDGE = dict(dataset="synthetic", proj_dim=8, batch_size=512, epochs=40, f_rho=0.0, data_path="device",
              measure_every=20)
"""d = 8 outputs, batch 512, lr 0.03, 640 steps (t = 19.2): the batch's F carries an O(d / B) bias and SGD a spread
of the modes around s*, both small enough here (at d = 128, B = 128 the modes settle 25% apart)."""


@pytest.fixture(scope="module")
def unigrad_run(tmp_path_factory):
    """`train synthetic --method unigrad` (its EMA target, gamma_a 0.996: beta = 0.133) on the raw outputs."""
    d = tmp_path_factory.mktemp("unigrad") / "run"
    train(TrainConfig(method="unigrad", **BRIDGE), d)
    return d


def test_a_unigrad_linear_run_follows_the_mode_flow_and_whitens(unigrad_run):
    c = compare_run(unigrad_run)
    assert all(a["holds"] for a in c.assumptions), c.assumptions
    assert c.params.form == "unigrad" and c.params.ema and c.params.lam == 1.0  # lambda 1 on raw outputs
    # measured: final s 3.5%, s trajectory 5.2% (8 ranks over the spectrum)
    assert c.agreement["s"]["max_final_rel_err"] <= FINAL_P_TOL
    assert c.agreement["s"]["max_trajectory_rel_err"] <= TRAJECTORY_TOL
    assert c.agreement["within_claim"]
    s0, s1 = c.measured.s[0], c.measured.s[-1]
    assert s0.max() / max(s0.min(), 1e-12) > 100  # a spread spectrum at init (the smallest mode near 0) ...
    assert s1.max() / s1.min() < 1.15  # ... whitened: every mode at one value,
    assert np.median(s1) == pytest.approx(c.params.s_star, rel=0.05)  # s* = (1 - eta) / (lam (1 + sigma^2)^2)


def test_the_bridge_can_fail_a_wrong_balance_factor_or_a_missing_ema(unigrad_run):
    """The agreement is not automatic: the same run against the flow with lambda 1.5, or without the EMA's lag."""
    c = compare_run(unigrad_run)
    for wrong in (dataclasses.replace(c.params, lam=1.5), dataclasses.replace(c.params, ema=False, beta=0.0)):
        _, s_wrong, _ = predict_unified(wrong, c.measured)
        a = agreement(c.measured.s, s_wrong)
        assert a["max_final_rel_err"] > FINAL_P_TOL or a["max_trajectory_rel_err"] > TRAJECTORY_TOL


def test_a_vicreg_unified_linear_run_follows_the_same_flow(tmp_path):
    """VICReg's row (j) has UniGrad's flow (U1) in expectation, with F of one view and no running average."""
    train(TrainConfig(method="vicreg", form="unified", positive_target="stop-grad", **BRIDGE), tmp_path / "v")
    c = compare_run(tmp_path / "v")
    assert all(a["holds"] for a in c.assumptions), c.assumptions
    assert c.params.form == "vicreg" and not c.params.ema
    assert c.agreement["within_claim"], c.agreement  # measured: 4.2% / 5.6% (unigrad at these settings)
    assert "tau" not in c.agreement  # stop-gradient: tau = 1


def test_the_synthetic_device_path_resumes_exactly(tmp_path):
    """Fresh Gaussian draws a batch at a time from a checkpointed generator: a killed run resumes to the same
    records."""
    cfg = TrainConfig(method="unigrad", dataset="synthetic", proj_dim=8, batch_size=64, synthetic_size=512, epochs=3,
                      f_rho=0.0, data_path="device", measure_every=4, checkpoint_every=5)
    train(cfg, tmp_path / "whole")
    kill_at = random.Random().randint(6, 22)

    class Killed(Exception):
        pass

    def kill(p):
        if p.step == kill_at:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tmp_path / "cut", on_progress=kill)
    train(cfg, tmp_path / "cut", resume=True)
    whole, cut = (read_metrics(tmp_path / n / "metrics.jsonl") for n in ("whole", "cut"))
    assert [r["step"] for r in cut] == [r["step"] for r in whole]
    for a, b in zip(whole, cut, strict=True):
        assert a.get("s_model") == pytest.approx(b.get("s_model"), rel=1e-9, abs=1e-12), kill_at


def test_norm_none_is_the_linear_models_default_and_refused_where_no_form_takes_it():
    assert TrainConfig(dataset="synthetic", method="unigrad").resolved_norm == "none"
    assert TrainConfig(dataset="synthetic", method="barlowtwins", form="unified").resolved_lam == 1.0
    assert TrainConfig(dataset="digits", method="unigrad").resolved_norm == "l2"
    assert TrainConfig(dataset="digits", method="unigrad").resolved_lam == 100.0
    with pytest.raises(ConfigError, match="--norm none with --method moco"):
        TrainConfig(dataset="digits", method="moco", norm="none")
    with pytest.raises(ConfigError, match="expected --norm bn"):
        TrainConfig(dataset="digits", method="barlowtwins", norm="none")


def test_compare_refuses_a_method_no_theory_describes(tmp_path):
    from ssltheory.practice.studies.compare import _covered

    with pytest.raises(ConfigError, match="--method moco --form loss: no theory"):
        _covered(TrainConfig(dataset="digits", method="moco"))
    with pytest.raises(ConfigError, match="barlowtwins --form unified"):
        _covered(TrainConfig(dataset="digits", method="barlowtwins"))


def test_compare_json_of_a_unified_run_names_its_theory_and_constants(unigrad_run, tmp_path):
    from typer.testing import CliRunner

    from ssltheory.cli.main import app

    res = CliRunner().invoke(app, ["compare", str(unigrad_run), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    j = json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"][0]
    assert j["theory"].startswith("ssltheory.theory.unified")
    assert j["ode_constants"]["s_star"] == pytest.approx(1.0 / 2.25 * (1 - 4e-4))
    assert j["agreement"]["within_claim"] is True
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
