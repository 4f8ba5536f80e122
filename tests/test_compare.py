"""The bridge: synthetic linear runs through the real trainer agree with the ODE; compare on a digits run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.train import train
from ssltheory.practice.studies.compare import FINAL_P_TOL, TRAJECTORY_TOL, agreement, compare_run, predict
from ssltheory.theory.fixed_points import parabola_fixed_points


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`ssltheory train synthetic` at its defaults (d = 128, batch 128, lr 0.03, wd 4e-4, EMA 0.996), 10 epochs."""
    d = tmp_path_factory.mktemp("syn") / "run"
    train(TrainConfig(dataset="synthetic", epochs=10), d)
    return d


def test_synthetic_linear_run_agrees_with_the_ode_at_default_settings(default_run):
    c = compare_run(default_run)
    assert all(a["holds"] for a in c.assumptions), c.assumptions
    # measured: final p 1.8%, p trajectory 4.2%, s trajectory 2.4% (8 leading modes, 640 SGD steps)
    assert c.agreement["p"]["max_final_rel_err"] <= FINAL_P_TOL
    assert c.agreement["p"]["max_trajectory_rel_err"] <= TRAJECTORY_TOL
    assert c.agreement["s"]["max_trajectory_rel_err"] <= TRAJECTORY_TOL
    assert c.agreement["within_claim"]
    assert np.all(np.diff(c.measured.p[:, 0]) > -0.05)  # the run really moved: p rises from 0.5 toward 2/3
    assert c.measured.p[-1, 0] - c.measured.p[0, 0] > 0.1


def test_weight_decay_maps_to_eta_as_torch_applies_it(tmp_path):
    """wd 0.04: eta = wd (torch's coupled decay) predicts p -> p*_+ ~ 0.62-0.68; the paper's eta_bar = alpha eta
    reading (eta = wd / lr = 1.33, above the threshold 1/6) would predict collapse. The run decides."""
    train(TrainConfig(dataset="synthetic", epochs=20, proj_dim=16, weight_decay=0.04), tmp_path / "wd")
    c = compare_run(tmp_path / "wd")
    assert c.agreement["within_claim"], c.agreement  # measured: 0.8% / 1.3% / 2.4%
    tau = c.tau_pred[-1, 0]
    p_plus = parabola_fixed_points(0.04, tau, 0.5)[1]
    assert c.measured.p[-1, 0] == pytest.approx(p_plus, rel=0.03)
    wrong = c.params.replace(eta=0.04 / 0.03, eta_p=0.04 / 0.03)
    p_wrong, _, _ = predict(wrong, c.measured)
    assert agreement(c.measured.p, p_wrong)["max_final_rel_err"] > 0.5


def test_compare_on_a_digits_resnet_run_writes_figure_and_honest_json(tmp_path):
    from conftest import cli

    run = tmp_path / "digits"
    train(TrainConfig(dataset="digits", backbone="resnet18", batch_size=32, epochs=1, max_steps=12, measure_every=3,
                      knn_every=0, probe_size=64), run)
    r = cli("compare", str(run), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
    out = json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"][0]
    held = {a["assumption"]: a["holds"] for a in out["assumptions"]}
    assert not held["two-layer linear network"] and not held["L2 loss of Eq. 1"]
    assert out["ode_constants"]["alpha (time per step)"] == pytest.approx(0.03 / (1 - 0.9))
    assert {"log_s_vs_log_p2_slope", "alignment_end", "offset_left"} <= out["qualitative"].keys()
    assert len(out["series"]["p"]) == len(out["series"]["t"]) > 2

    r = cli("report", str(run))  # one self-contained page: the run's figures and the compare figure, embedded
    assert r.returncode == 0, r.stderr
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "assumptions of the theory" in page
    assert "src=\"http" not in page and "knn_acc_final" in page


@pytest.mark.parametrize("make,needle", [(None, "RUN_DIR"), ("mlp", "--predictor mlp")])
def test_compare_bad_input_is_one_line(make, needle, tmp_path):
    from conftest import cli

    run = tmp_path / "run"
    if make:
        train(TrainConfig(dataset="digits", predictor=make, batch_size=64, epochs=1, measure_every=5,
                          knn_every=0, probe_size=64, max_steps=10), run)
    r = cli("compare", str(run), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr
