"""The run figure (dynamics.png) shows what was measured and says why when it cannot: tested on what each panel drew
(``fig.panels``), from records made here."""

from __future__ import annotations

import numpy as np
import pytest

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.report.plots import run_figure, run_title


def record(step: int, s, p=None, asym=1e-16, std=0.7, cos=0.5, auc=0.75) -> dict:
    s = list(map(float, s))
    rec = {"step": step, "epoch": step / 10, "s": s, "loss": 1.0, "probe_auc": auc, "probe_k_eq": 60.0,
           "feature_std_x_sqrt_d": std, "positive_cosine": cos}
    if p is not None:
        rec.update(p_sym=list(p), alignment=[1.0] * len(s), asymmetry=asym, asymmetry_top=asym)
    return rec


def healthy(n: int, d: int = 8) -> list[dict]:
    return [record(10 * (k + 1), np.linspace(1, 0.2, d), np.linspace(1, 0.5, d)) for k in range(n)]


def test_one_measurement_is_drawn_with_markers_not_as_empty_panels():
    fig = run_figure(healthy(1), "t", "directpred")
    for ax in fig.axes[:4]:
        assert ax.lines and all(line.get_marker() == "o" for line in ax.lines), ax.get_title()


def test_no_predictor_shows_no_identity_as_W_p():
    fig = run_figure(healthy(5), "t", "none")
    for name in ("p_sym", "alignment", "asymmetry"):
        assert "no predictor" in fig.panels[name]["note"] and "y" not in fig.panels[name]


def test_rounding_noise_in_the_asymmetry_is_not_drawn_as_a_trend():
    fig = run_figure(healthy(5), "t", "directpred")
    assert fig.panels["asymmetry"]["ylim"] == (0.0, 0.05)


def test_a_rank_one_collapse_is_not_read_as_perfect_alignment():
    recs = healthy(3) + [record(40, [1.0] + [1e-6] * 7, np.ones(8))]
    fig = run_figure(recs, "t", "linear")
    assert "one leading mode" in fig.panels["alignment"]["note"]
    assert "one leading mode" in fig.panels["asymmetry"]["note"]
    assert "note" not in run_figure(healthy(4), "t", "linear").panels["alignment"]


def test_knn_axis_is_not_stretched_over_a_wiggle():
    recs = [{"step": 0, "epoch": 0, "knn_acc": 0.852}, {"step": 10, "epoch": 1.0, "knn_acc": 0.854}]
    assert run_figure(recs, "t").panels["knn"]["ylim"] == (pytest.approx(75.2), 100.0)


def test_feature_std_and_the_other_collapse_signals_have_a_panel_with_the_warnings():
    recs = healthy(4)
    recs[2]["warning"] = "collapse"
    fig = run_figure(recs, "t", "linear")
    signals = fig.panels["signals"]
    assert any("feature std" in k for k in signals["y"]) and any("cosine" in k for k in signals["y"])
    assert signals["warnings"] == [recs[2]["epoch"]]
    auc_ax = next(a for a in fig.axes if a.get_title().startswith("collapse metric"))
    assert auc_ax.get_legend() is not None and len(auc_ax.get_legend().get_texts()) == 2


def test_the_title_names_gamma_a_only_for_an_ema_target():
    assert "γ_a" in run_title(TrainConfig(dataset="digits"))
    assert "γ_a" not in run_title(TrainConfig(dataset="digits", method="simsiam"))
