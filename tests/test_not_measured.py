"""Issue 22: a number is reported only where it was measured, and the two collapse AUCs are named apart.

- A run without a predictor (W_p = I by construction) records no W_p numbers, and its summary holds null for them;
- the live AUC is the probe subset's (``probe_auc``), the offline one of ``ssltheory collapse`` is ``auc``; records and
  summaries of older runs (``auc``, ``k_eq``, ``auc_projector``) read under today's names.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.rundir import read_metrics
from ssltheory.practice.engine.train import train
from ssltheory.practice.measure.quantities import PREDICTOR_KEYS, summarize, upgrade
from ssltheory.practice.report.plots import run_figure
from ssltheory.practice.studies.compare import compare_run
from ssltheory.theory.checks import ConfigError

TINY = dict(dataset="digits", batch_size=64, measure_every=4, probe_size=64, proj_hidden=64, proj_dim=32, seed=1,
            epochs=1, max_steps=12, knn_every=0)


def measurement(step: int, **extra) -> dict:
    s = list(np.linspace(1.0, 0.1, 8))
    return {"step": step, "epoch": step / 20, "s": s, "loss": -0.5, "probe_auc": 0.7, "probe_k_eq": 6.0,
            "probe_auc_projector": 0.8, "probe_n": 64, "feature_std": 0.1, "feature_std_x_sqrt_d": 0.6, **extra}


def test_a_run_without_a_predictor_records_no_W_p_numbers_and_its_summary_holds_null(tmp_path):
    progress = []
    summary = train(TrainConfig(**TINY, predictor="none"), tmp_path, on_progress=progress.append)
    meas = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "probe_auc" in r]
    assert len(meas) == 3
    for r in meas:  # W_p = I: eigenvalues 1, alignment 1, asymmetry 0 by construction, not measured
        assert not {"p_sym", "p_along_F", "alignment", "asymmetry", "asymmetry_top", "commutator"} & set(r), r.keys()
        assert {"auc", "k_eq", "auc_projector"}.isdisjoint(r) and r["probe_n"] == 64
    for key in PREDICTOR_KEYS:
        assert key in summary and summary[key] is None, key
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["mean_alignment_top_modes"] is None and saved["asymmetry"] is None
    assert saved["probe_auc"] == meas[-1]["probe_auc"] and "auc" not in saved and saved["probe_n"] == 64
    assert progress[-1].probe_auc == meas[-1]["probe_auc"]  # the progress bar's number is the probe subset's
    with pytest.raises(ConfigError, match="fewer than 2 measurements of F̂ and W_p"):  # compare: one line, no 1.0s
        compare_run(tmp_path)


def test_a_linear_W_p_keeps_its_numbers_in_the_summary():
    n = 8
    rec = measurement(10, p_sym=[1.0] * n, alignment=[0.9] * 3 + [0.0] * (n - 3), asymmetry=0.2, asymmetry_top=0.1)
    out = summarize([rec])
    assert out["asymmetry"] == 0.2 and out["asymmetry_top"] == 0.1
    assert out["top_modes"] == n and out["mean_alignment_top_modes"] == pytest.approx(np.mean(rec["alignment"]))
    bare = summarize([measurement(10)])  # no W_p: null, not 1.0 and 0.0
    assert all(bare[k] is None for k in PREDICTOR_KEYS) and bare["top_modes"] == n


def test_older_runs_auc_reads_as_the_probe_auc():
    old = {"step": 10, "epoch": 0.5, "s": [1.0, 0.5], "loss": -0.5, "auc": 0.7379, "k_eq": 12.0,
           "auc_projector": 0.81, "feature_std_x_sqrt_d": 0.6}
    new = upgrade(old)
    assert (new["probe_auc"], new["probe_k_eq"], new["probe_auc_projector"]) == (0.7379, 12.0, 0.81)
    assert "auc" not in new and upgrade(new) == new
    assert summarize([old])["probe_auc"] == 0.7379 and "auc" not in summarize([old])
    assert upgrade({"auc": 0.1, "probe_auc": 0.2}) == {"auc": 0.1, "probe_auc": 0.2}  # nothing overwritten
    fig = run_figure([old, {**old, "step": 20}], "old run", "linear")
    assert fig.panels["auc"]["y"] == [0.7379, 0.7379]
    assert upgrade({"step": 0, "knn_acc": 0.85}) == {"step": 0, "knn_acc": 0.85}
