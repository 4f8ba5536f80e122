"""The live collapse warning is a signal a person can trust: it stays silent on healthy digits runs and fires, once, on
the collapse ablations. The traces are the (feature std x sqrt(d), s2/s1 of F̂) series of real 30-epoch digits runs:
measured every 10 steps, seeds 0-2 (tests/fixtures/collapse_traces.json, made by
tests/fixtures/record_collapse_traces.py), and measured every 5 steps, where the rule before issue 22 warned on healthy
runs (tests/fixtures/collapse_watch_traces.json, made by ``experiments/collapse_watch_study.py --fixture``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssltheory.experiments.collapse_watch_study import PreviousWatch
from ssltheory.practice.measure.quantities import (
    COLLAPSE_RANK_DROP,
    COLLAPSE_STD_DROP,
    COLLAPSE_WARMUP_EPOCHS,
    CollapseWatch,
)

TRACES = json.loads((Path(__file__).parent / "fixtures" / "collapse_traces.json").read_text())
EVERY5 = json.loads((Path(__file__).parent / "fixtures" / "collapse_watch_traces.json").read_text())
STEPS_PER_EPOCH = 20
"""Digits at batch 64: 1,297 training images, 20 whole batches (collapse_traces.json has steps, not epochs)."""


def records(trace: dict) -> list[dict]:
    """A trace's measurements as the records train.py feeds the watch."""
    epochs = trace.get("epoch") or [step / STEPS_PER_EPOCH for step in trace["step"]]
    return [{"step": step, "epoch": epoch, "feature_std_x_sqrt_d": std, "s": [1.0, rank]}
            for step, epoch, std, rank in zip(trace["step"], epochs, trace["std"], trace["rank"], strict=True)]


def onsets(trace: dict, window: int = 5, watch: CollapseWatch | PreviousWatch | None = None) -> list[int]:
    """Steps at which the warning fires, replaying a run's measurements through the watch."""
    watch, out = watch or CollapseWatch(window), []
    for rec in records(trace):
        if watch.update(rec):
            out.append(rec["step"])
    return out


def test_no_false_alarm_on_healthy_runs():
    healthy = {k: v for k, v in TRACES.items() if k.startswith("healthy")}
    assert len(healthy) == 9
    assert {k: onsets(v) for k, v in healthy.items()} == {k: [] for k in healthy}


@pytest.mark.parametrize("ablation", ["collapse-simsiam-nosg", "collapse-simsiam-nopred"])
def test_the_collapse_ablations_are_caught_within_the_first_150_steps(ablation):
    runs = {k: v for k, v in TRACES.items() if k.startswith(ablation)}
    assert len(runs) == 3
    for name, trace in runs.items():
        fired = onsets(trace)
        # once, by step 150 (measured: 120-150 / 110-120, 3 seeds); the rule before issue 22 said 70-80, but only by
        # taking its reference inside the first epoch, which made it warn on healthy runs measured every 5 steps
        assert len(fired) == 1 and fired[0] <= 150, (name, fired)
        knn = trace["knn"]
        assert knn[-1][1] < knn[0][1]  # and these runs did lose what they had: kNN below random init at the end


def test_the_warning_needs_both_signals_and_a_whole_window():
    watch = CollapseWatch(3)
    spread = {"step": 0, "feature_std_x_sqrt_d": 0.8, "s": [1.0, 0.5]}
    assert watch.update(dict(spread)) is None
    only_std = {"step": 1, "feature_std_x_sqrt_d": 0.1, "s": [1.0, 0.5]}  # spread falls, rank holds: no alarm
    for _ in range(5):
        assert watch.update(dict(only_std)) is None
    both = {"step": 2, "feature_std_x_sqrt_d": 0.1, "s": [1.0, 0.001]}
    assert watch.update(dict(both)) is None and watch.update(dict(both)) is None
    rec = dict(both)
    text = watch.update(rec)
    assert rec["collapse_alarm"] and "collapse at step 2" in text
    assert watch.update(dict(both)) is None  # fires when it turns on, not at every measurement
    assert COLLAPSE_STD_DROP == 0.6 and COLLAPSE_RANK_DROP == 0.25


def test_the_watch_resumes_from_its_checkpointed_history():
    trace = next(v for k, v in TRACES.items() if k.startswith("collapse-simsiam-nosg"))
    whole = onsets(trace)
    for cut in (1, 5, 14, 16):  # before the warm-up ends, after it, just before the alarm turns on, while it is on
        watch = CollapseWatch(5)
        for rec in records(trace)[:cut]:
            watch.update(rec)
        resumed, fired = CollapseWatch(5, [list(h) for h in watch.history]), []  # as a checkpoint stores it
        for rec in records(trace)[cut:]:
            if resumed.update(rec):
                fired.append(rec["step"])
        assert fired == [s for s in whole if s > trace["step"][cut - 1]], cut


def test_a_checkpoint_from_before_the_warm_up_resumes():
    """Its history holds (std, rank) pairs: they count as past the warm-up, as the rule then had none."""
    watch = CollapseWatch(2, [[0.8, 0.5], [0.1, 0.01]])
    assert watch.history == [(0.8, 0.5, float("inf")), (0.1, 0.01, float("inf"))] and watch.reference(1) == (0.8, 0.5)
    assert watch.update({"step": 3, "epoch": 3.0, "feature_std_x_sqrt_d": 0.1, "s": [1.0, 0.01]})


def test_the_first_epoch_sets_no_reference():
    """Every run contracts its random-init spread in its first epoch: a fall from there is not a collapse, a fall
    from the best after it is."""
    watch = CollapseWatch(3)
    init = {"step": 5, "epoch": 0.25, "feature_std_x_sqrt_d": 0.4, "s": [1.0, 0.03]}
    assert watch.update(dict(init)) is None and watch.reference(0) is None and not watch.collapsing(0)
    contracted = [{"step": 5 * k, "epoch": k / 4, "feature_std_x_sqrt_d": 0.1, "s": [1.0, 0.002]} for k in range(2, 12)]
    assert all(watch.update(rec) is None for rec in contracted)  # 4x and 15x below the step-5 values: no alarm
    assert watch.reference(1) is None and watch.reference(3) == (0.1, 0.002)  # from epoch 1 on
    assert COLLAPSE_WARMUP_EPOCHS == 1.0
    falls = [{"step": 60 + 5 * k, "epoch": 3 + k / 4, "feature_std_x_sqrt_d": 0.05, "s": [1.0, 0.0004]}
             for k in range(3)]
    assert [watch.update(rec) is not None for rec in falls] == [False, False, True]


@pytest.mark.parametrize("name", ["issue-sim-hybrid-short-s1", "sim-hybrid-directpred-s0", "byol-current-linear-s0"])
def test_no_alarm_on_the_healthy_runs_the_previous_rule_warned_on(name):
    """Measured every 5 steps, the first measurement (step 5) still has the random init's spread; the rule before
    issue 22 took it as the reference and warned at step 30-40 on the issue's SimSiam hybrid (kNN 0.846 -> 0.870),
    a SimSiam DirectPred hybrid (0.852 -> 0.952) and a BYOL stream (0.852 -> 0.882)."""
    trace = EVERY5[name]
    assert trace["outcome"] == "healthy" and trace["knn"][-1][1] >= trace["knn"][0][1] + 0.02
    assert 30 <= onsets(trace, watch=PreviousWatch(5))[0] <= 40
    assert onsets(trace) == []


@pytest.mark.parametrize("name,visible", [("coll-sim-nosg-hybrid-s1", 25), ("coll-byol-wd-iid-s0", 80)])
def test_a_collapse_measured_every_5_steps_warns_once_within_20_measurements(name, visible):
    """SimSiam without stop-gradient on the hybrid schedule (features below std x sqrt(d) 0.1 and s2/s1 1e-3 from
    step 25, kNN 0.846 -> 0.700) and BYOL with weight decay 0.3 (kNN 0.852 -> 0.592 at step 80, -> 0.104: every image
    one point). Measured: warnings at step 100 and 125; the previous rule warned 3 times on the second, as s2/s1 of
    a zero F̂ jumps about."""
    trace = EVERY5[name]
    assert trace["outcome"] == "collapsed"
    fired = onsets(trace)
    assert len(fired) == 1 and 0 < fired[0] - visible <= 20 * 5, fired
    assert len(onsets(trace, watch=PreviousWatch(5))) == (3 if "wd" in name else 1)


def test_a_slow_drift_is_not_called_a_collapse():
    """BYOL without predictor over 30 epochs: spread falls to ~half but s2/s1 holds and kNN still rises."""
    drift = {k: v for k, v in TRACES.items() if k.startswith("collapse-byol-nopred")}
    assert len(drift) == 3 and all(onsets(v) == [] for v in drift.values())
    assert all(v["knn"][-1][1] > v["knn"][0][1] for v in drift.values())


def test_once_on_the_alarm_holds_while_the_spread_stays_down():
    """s2/s1 of a nearly collapsed F̂ jumps about (BYOL at weight decay 0.3 measured 0.0077 -> 0.025 -> 0.0104 while
    std x sqrt(d) stayed below a third of its best): the alarm stays on, one warning; it goes off when the spread is
    back above COLLAPSE_STD_DROP of its best."""
    watch = CollapseWatch(2)
    rec = {"step": 0, "epoch": 1.0, "feature_std_x_sqrt_d": 0.5, "s": [1.0, 0.1]}
    assert watch.update(rec) is None
    down = {"step": 1, "epoch": 2.0, "feature_std_x_sqrt_d": 0.1, "s": [1.0, 0.01]}
    assert watch.update(dict(down)) is None and watch.update(dict(down)) is not None
    jump = dict(down, s=[1.0, 0.05])  # rank back above a quarter of its best, spread still down: held
    rec = dict(jump)
    assert watch.update(rec) is None and rec["collapse_alarm"] and not watch.collapsing(len(watch.history) - 1)
    assert watch.update(dict(down)) is None  # no second warning
    back = {"step": 5, "epoch": 3.0, "feature_std_x_sqrt_d": 0.4, "s": [1.0, 0.01]}
    rec = dict(back)
    assert watch.update(rec) is None and not rec["collapse_alarm"]
