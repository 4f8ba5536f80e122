"""The phase diagram (experiments/phase.py): real runs of the linear model on a small grid fall on the theory's side
of its collapse boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssltheory.experiments.phase import PhaseDiagram, answered_modes, cell_settings, collapsed_modes, outcome
from ssltheory.practice.config import TrainConfig
from ssltheory.theory.checks import ConfigError


def test_outcome_rule():
    s0 = np.array([1.0, 0.5, 1e-6])
    assert outcome(np.array([0.8, 0.4, 2e-6]), s0) == "healthy"  # a tiny mode that grew has not collapsed
    assert outcome(np.array([0.8, 1e-5, 1e-7]), s0) == "partial"
    assert outcome(np.array([1e-4, 1e-5, 1e-7]), s0) == "collapsed"
    assert collapsed_modes(np.array([2e-3, 5e-4, 0.0]), s0).tolist() == [False, True, True]


def test_the_beta_axis_sets_gamma_a_through_compares_mapping():
    settings = cell_settings("beta", 0.1, 0.3, {"dataset": "synthetic", "lr": 0.1})
    cfg = TrainConfig.from_settings(settings)
    assert cfg.gamma_a == pytest.approx(1 - 0.3 * 0.1) and cfg.weight_decay == 0.1 and cfg.method == "byol"
    with pytest.raises(ConfigError, match="beta 20"):
        cell_settings("beta", 0.1, 20.0, {"dataset": "synthetic", "lr": 0.1})


def test_synthetic_runs_fall_on_the_theorys_side_of_the_boundary(tmp_path):
    """eta x beta, 3 x 2 runs: every cell's outcome (healthy / partial / collapsed over all 16 modes) is the ODE's
    from the same initial modes, except within one grid step of the theory's boundary (measured: 6 of 6 agree), and
    the grid spans both sides (a healthy and a collapsed cell)."""
    doc = PhaseDiagram("beta", (0.05, 0.15, 0.3), (0.1, 1.0)).run(tmp_path)
    assert doc["disagree_beyond_one_step"] == [] and doc["agreement"] >= 5 / 6
    assert {"healthy", "collapsed"} <= {c["run"] for c in doc["cells"]}
    for c in doc["cells"]:  # the leading surviving p of run and theory are close where both survive
        if c["run"] == c["theory"] != "collapsed":
            assert c["p_lead_run"] == pytest.approx(c["p_lead_theory"], abs=0.05), c
    assert json.loads((tmp_path / "phase.json").read_text())["agreement"] == doc["agreement"]
    assert (tmp_path / "phase.png").stat().st_size > 20_000


def test_without_ema_the_fixed_tau_threshold_decides(tmp_path):
    """SimSiam (tau = 1): Eq. 16's threshold eta = 1 / (4 (1 + sigma^2)) = 1/6. Below it the leading modes survive,
    above it every mode collapses, in the run as in the theory (the cells trained by --jobs 2, as make
    experiments-cpu does)."""
    doc = PhaseDiagram("alpha_p", (0.1, 0.3), (1.0,)).run(tmp_path, jobs=2)  # the two cells in two processes
    by_eta = {c["eta"]: c for c in doc["cells"]}
    assert by_eta[0.1]["run"] != "collapsed" and by_eta[0.1]["p_lead_run"] > 0.4
    assert by_eta[0.3]["run"] == by_eta[0.3]["theory"] == "collapsed"


def test_modes_starting_at_negative_p_under_ema_are_left_out_of_run_and_theory():
    """Under EMA with a trained predictor a mode from p_j(0) < 0 has no trustworthy answer (tau = W_a / W can blow
    up in finite time: from p = -0.08, s = 2.6e-3, beta 0.03, eta 0.02 every solve_ivp method stalls at t ~ 14.5, a
    convnet's weak mode on Fashion-MNIST); such modes are left out and counted, the others kept in rank order. At
    fixed tau (SimSiam) and with DirectPred every mode stays."""
    from ssltheory.practice.studies.compare import Measured
    from ssltheory.theory import ModeParams, integrate, modes
    from ssltheory.theory.checks import RunError

    p = np.array([[0.9, -0.08, 0.3, -0.01], [0.8, -0.05, 0.3, 0.0]])
    s = np.array([[280.0, 2.6e-3, 1.0, 1e-3], [270.0, 2.0e-3, 0.9, 1e-3]])
    meas = Measured(t=np.array([0.0, 1.0]), step=np.array([0, 10]), p=p, s=s, tau=None, alignment=None, t_align=None,
                    source="test")
    byol = ModeParams(eta=0.02, beta=0.03, ema=True)
    kept, left = answered_modes(meas, byol)
    assert left == 2 and kept.ranks.tolist() == [0, 2]
    # at the first record the kept modes (ranks 0 and 2), later the 2 largest (the records sort the spectrum)
    assert kept.p.tolist() == [[0.9, 0.3], [0.8, -0.05]] and kept.s.tolist() == [[280.0, 1.0], [270.0, 2.0e-3]]
    # a left-out mode that collapses sinks below the kept ones, so the run's kept modes read as they are
    sinking = Measured(t=np.array([0.0, 1.0]), step=np.array([0, 10]), p=np.array([[0.9, -0.08, 0.3], [0.9, 0.3, 0.0]]),
                       s=np.array([[1.0, 0.5, 0.4], [1.0, 0.4, 1e-4]]), tau=None, alignment=None, t_align=None,
                       source="test")
    run = answered_modes(sinking, byol)[0]
    assert outcome(run.s[-1], run.s[0]) == "healthy" and outcome(sinking.s[-1], sinking.s[0]) == "partial"
    for params in (ModeParams(eta=0.02, ema=False), ModeParams(eta=0.02, beta=0.03, predictor="directpred")):
        same, none = answered_modes(meas, params)
        assert same is meas and none == 0
    # why: the left-out mode alone, integrated over T = 275 (a Fashion-MNIST run's), fails; the kept ones do not
    field = modes.mode_field(byol)
    with pytest.raises(RunError):
        integrate.ode(field, modes.pack([-0.084], [2.6e-3], [1.0]), 275.0, samples=2, rtol=1e-8, atol=1e-11)
    tr = integrate.ode(field, modes.pack(kept.p[0], kept.s[0], [1.0, 1.0]), 275.0, samples=2, rtol=1e-8, atol=1e-11)
    assert np.isfinite(tr.y).all()


def test_a_collapsed_modes_runaway_tau_is_read_as_its_collapse_not_as_an_ode_failure():
    """Under EMA with eta > beta a collapsed mode's tau grows as e^{(eta - beta) t}: from a Fashion-MNIST run's weak
    mode (p 0.0068, s 1e-5; eta 0.3, beta 0.03) it passes the 1e30 guard at t ~ 256 of 275 while s_j is long gone.
    All modes at once stop there; one at a time, that mode ends collapsed and the others as they integrate alone."""
    from ssltheory.experiments.phase import final_by_mode
    from ssltheory.practice.studies.compare import Measured, predict
    from ssltheory.theory import ModeParams
    from ssltheory.theory.integrate import IntegrationError

    params = ModeParams(eta=0.3, beta=0.03, ema=True)
    meas = Measured(t=np.array([0.0, 275.0]), step=np.array([0, 900]), p=np.array([[0.5, 0.0068], [0.5, 0.0]]),
                    s=np.array([[1.0, 1e-5], [1.0, 0.0]]), tau=None, alignment=None, t_align=None, source="test")
    with pytest.raises(IntegrationError, match="passed 1e.30") as stop:
        predict(params, meas)
    assert stop.value.state is not None and 200 < stop.value.t < 275
    p_end, s_end = final_by_mode(params, meas)
    assert s_end[1] == 0.0
    alone = Measured(t=meas.t, step=meas.step, p=meas.p[:, :1], s=meas.s[:, :1], tau=None, alignment=None,
                     t_align=None, source="test")
    p_one, s_one, _ = predict(params, alone)
    assert p_end[0] == pytest.approx(p_one[-1, 0], rel=1e-6) and s_end[0] == pytest.approx(s_one[-1, 0], rel=1e-6)
