"""The collapse paper's claims read off a study's runs (experiments/collapse_claims.py): each verdict turns with the
numbers that should turn it, and the numbers are Spearman's and the fidelity rule's."""

from __future__ import annotations

import pytest
from scipy import stats

from ssltheory.experiments.collapse_claims import collapse_claims, data_trend, forecast_verdicts, schedule_effects

FRACTIONS = (0.01, 0.1, 1.0)


def _points(group: str, auc_of, seeds=(0, 1, 2), probe=0.7) -> list[dict]:
    """Fixed-fraction runs of one size: ``auc_of(fraction, seed)``."""
    return [{"group": group, "cell": f"{group}-f{100 * f:g}", "seed": s, "fraction": f, "schedule": "last",
             "auc": auc_of(f, s), "probe_acc": probe} for f in FRACTIONS for s in seeds]


def test_the_data_claim_turns_with_the_trend_and_is_spearmans():
    rising = _points("small", lambda f, s: 0.7 + 0.05 * FRACTIONS.index(f) + 0.001 * s)
    falling = _points("small", lambda f, s: 0.8 - 0.05 * FRACTIONS.index(f) + 0.001 * s)
    noise = [0.003, -0.002, 0.001, -0.003, 0.002, 0.0, 0.001, -0.001, 0.002]
    flat = [{**p, "auc": 0.78 + n} for p, n in zip(_points("small", lambda f, s: 0.0), noise, strict=True)]
    assert data_trend(rising)["small"]["verdict"] == "shows"
    assert data_trend(falling)["small"]["verdict"] == "opposite"
    assert data_trend(flat)["small"]["verdict"] == "absent"
    # the large model: the paper's claim is that its AUC does not rise
    assert data_trend([{**p, "group": "large"} for p in rising])["large"]["verdict"] == "opposite"
    assert data_trend([{**p, "group": "large"} for p in flat])["large"]["verdict"] == "shows"
    assert data_trend([{**p, "group": "large"} for p in falling])["large"]["verdict"] == "shows"
    row = data_trend(flat)["small"]
    rho, p = stats.spearmanr([q["fraction"] for q in flat], [q["auc"] for q in flat])
    assert row["rho"] == pytest.approx(rho) and row["p"] == pytest.approx(p) and row["n"] == 9
    assert row["auc_by_fraction"] == pytest.approx([0.78 + sum(noise[i:i + 3]) / 3 for i in (0, 3, 6)])
    # another size gets its trend, no verdict; one fraction gives no correlation
    assert data_trend([{**p, "group": "mid"} for p in rising])["mid"]["verdict"] is None
    one = [p for p in rising if p["fraction"] == 1.0]
    assert data_trend(one)["small"]["verdict"] == "n/a" and data_trend(one)["small"]["rho"] is None


def test_the_schedule_claim_reads_the_stream_against_the_most_data_by_the_2_sd_rule():
    iid = _points("small", lambda f, s: 0.70 + 0.1 * f + 0.002 * s, probe=0.68)

    def stream(name: str, auc: float, probe: float, seeds=(0, 1, 2), spread=0.002) -> list[dict]:
        return [{"group": "small", "cell": name, "seed": s, "fraction": 1.0, "schedule": "current",
                 "auc": auc + spread * s, "probe_acc": probe + spread * s} for s in seeds]

    rows = schedule_effects(iid + stream("small-continual", 0.75, 0.72) + stream("small-hybrid", 0.80, 0.68))
    cont, hyb = rows["small-continual"], rows["small-hybrid"]
    assert cont["reference_cell"] == "small-f100" and cont["auc"]["reference"] == pytest.approx(0.802)
    assert cont["auc"]["diff"] == pytest.approx(0.75 + 0.002 - 0.802)
    assert cont["auc"]["verdict"] == "shows" and cont["probe"]["verdict"] == "shows"  # less collapse, more accuracy
    assert hyb["auc"]["verdict"] == "absent" and hyb["probe"]["verdict"] == "absent"  # 0.802 vs 0.802
    worse = schedule_effects(iid + stream("small-accumulate", 0.90, 0.60))["small-accumulate"]
    assert worse["auc"]["verdict"] == "opposite" and worse["probe"]["verdict"] == "opposite"
    noisy = schedule_effects(iid + stream("small-continual", 0.77, 0.68, spread=0.02))["small-continual"]
    assert noisy["auc"]["diff"] < 0 and noisy["auc"]["verdict"] == "absent"  # below, within its spread
    one = schedule_effects(iid + stream("small-continual", 0.75, 0.72, seeds=(0,)))["small-continual"]
    assert one["auc"]["verdict"] == "n/a (1 seed)"
    assert schedule_effects(iid) == {}


def test_the_forecast_verdict_is_the_sign_of_a_significant_rank_correlation():
    assert forecast_verdicts({
        "a": {"spearman_rho": -0.5, "spearman_p": 0.01},
        "b": {"spearman_rho": 0.5, "spearman_p": 0.01},
        "c": {"spearman_rho": -0.5, "spearman_p": 0.2},
        "d": {"n": 2, "reading": "2 runs cannot be correlated"},
    }) == {"a": "shows", "b": "opposite", "c": "absent", "d": "n/a"}
    claims = collapse_claims(_points("small", lambda f, s: 0.7 + 0.1 * f + 0.001 * s))
    assert set(claims) == {"data", "schedules", "forecast"} and claims["forecast"] == {}


def test_missing_values_few_runs_and_a_size_without_fixed_runs_read_n_a_not_a_verdict():
    """A NaN AUC is no run; three or four runs in perfect order are not significant by the exact test (p 0.33 /
    0.083, where scipy's t approximation says 0); a stream cell with no fixed-fraction run of its size and a cell
    whose every value is missing read n/a with the reason."""
    rising = _points("small", lambda f, s: 0.7 + 0.05 * FRACTIONS.index(f) + 0.001 * s)
    nan_one = [{**p, "auc": float("nan")} if i == 0 else p for i, p in enumerate(rising)]
    row = data_trend(nan_one)["small"]
    assert row["n"] == 8 and row["verdict"] == "shows"
    four = [p for p in rising if p["seed"] == 0] + [{**rising[-1], "fraction": 2.0, "auc": 0.9}]
    assert data_trend(four)["small"]["p"] == pytest.approx(2 / 24) and data_trend(four)["small"]["verdict"] == "absent"
    stream = [{"group": "mid", "cell": "mid-continual", "seed": s, "fraction": 1.0, "schedule": "current",
               "auc": 0.7, "probe_acc": 0.6} for s in range(3)]
    lone = schedule_effects(rising + stream)["mid-continual"]
    assert lone["reference_cell"] is None and lone["auc"]["verdict"].startswith("n/a") and "mid" in lone["reading"]
    empty = [{**p, "group": "small", "cell": "small-hybrid", "auc": float("nan")} for p in stream]
    hybrid = schedule_effects(rising + empty)["small-hybrid"]
    assert hybrid["auc"]["verdict"] == "n/a (no value)" and hybrid["probe"]["verdict"] == "opposite"  # 0.6 < 0.7
    assert forecast_verdicts({"a": {"spearman_rho": float("nan"), "spearman_p": float("nan")}}) == {"a": "n/a"}


def test_a_last_run_sized_by_chunks_counts_its_share_of_the_data():
    from ssltheory.experiments.run import _design
    from ssltheory.practice.config import TrainConfig

    chunks = TrainConfig.from_settings({"dataset": "digits", "data_schedule": "last", "n_chunks": 10, "epochs": 10})
    assert _design(chunks) == {"seed": 0, "fraction": 0.1, "schedule": "last"}
    assert _design(TrainConfig.from_settings({"dataset": "digits", "data_fraction": 0.05}))["fraction"] == 0.05
    hybrid = TrainConfig.from_settings({"dataset": "digits", "data_schedule": "current", "n_chunks": 2, "epochs": 4,
                                        "hybrid_epoch": 2})
    assert _design(hybrid)["schedule"] == "hybrid" and _design(TrainConfig())["schedule"] == "iid"
