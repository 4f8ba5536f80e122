"""How far the live collapse warning (:class:`~ssltheory.practice.measure.quantities.CollapseWatch`) can be trusted: its
false-alarm rate on healthy digits runs and its detection delay on collapsing ones (issue 22).

``python -m ssltheory.experiments.collapse_watch_study RUNS_DIR [--out DIR] [--replay-only]`` trains the runs of
:data:`RUNS` that RUNS_DIR does not hold yet (one after another, about 40-65 s each on one core; the whole study about
25 min), then replays every run's measurement records through the watch offline (``CollapseWatch.update`` takes the
records as train.py wrote them) under today's rule and under the rule before issue 22 (:class:`PreviousWatch`), and
writes ``results.json``, ``results.csv`` and ``results.png`` to DIR (default
``experiments/results/collapse-watch``). The runs: digits, batch 64, 30 epochs (the issue's own run: 3), a measurement
every 5 steps and kNN every 2 epochs; BYOL and SimSiam; IID, the continual streams ``current`` / ``accumulate`` /
``last`` (5 chunks) and the hybrid (``current`` until epoch 12, then IID); linear, DirectPred and 2-layer
predictors; seeds 0-2; and the settings known to collapse (SimSiam without stop-gradient, SimSiam without predictor,
BYOL with weight decay 0.3).

A run's outcome is read off its kNN records alone (:func:`outcome`): **healthy** when the last kNN is at least
:data:`GAIN` above the random-init one (step 0) and at most :data:`GAIN` below the run's best; **collapsed** when
it ends at least :data:`LOSS` below random init; **stalled** otherwise (SimSiam with a linear predictor on digits:
kNN within 2.5 points of random init for 30 epochs). When the collapse became visible (:func:`onsets`): the first
measurement with feature std x sqrt(d) < :data:`VISIBLE_STD` and s2/s1 of F̂ < :data:`VISIBLE_RANK` (below every
healthy and stalled run measured), and the first kNN record :data:`GAIN` below random init.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

from ssltheory.practice.measure.quantities import CollapseWatch, is_measurement

BASE = dict(dataset="digits", batch_size=64, epochs=30, measure_every=5, knn_every=2)
"""What every run shares (the CLI's ``train digits --batch-size 64 --epochs 30 --measure-every 5 --knn-every 2``)."""
STREAM = dict(n_chunks=5)
HYBRID = dict(data_schedule="current", n_chunks=5, hybrid_epoch=12)
SIMSIAM = dict(method="simsiam")

RUNS: dict[str, dict] = {
    # the run: SimSiam, hybrid (one chunk per epoch, IID from epoch 2), 3 epochs, seed 1
    "issue-sim-hybrid-short-s1": dict(SIMSIAM, data_schedule="current", hybrid_epoch=2, epochs=3, seed=1),
    "byol-iid-linear-s0": dict(seed=0),
    "byol-iid-linear-s1": dict(seed=1),
    "byol-iid-directpred-s1": dict(predictor="directpred", seed=1),
    "byol-iid-mlp-s2": dict(predictor="mlp", seed=2),
    "byol-current-linear-s0": dict(STREAM, data_schedule="current", seed=0),
    "byol-current-directpred-s0": dict(STREAM, data_schedule="current", predictor="directpred", seed=0),
    "byol-accumulate-directpred-s1": dict(STREAM, data_schedule="accumulate", predictor="directpred", seed=1),
    "byol-accumulate-linear-s2": dict(STREAM, data_schedule="accumulate", seed=2),
    "byol-last-linear-s2": dict(STREAM, data_schedule="last", seed=2),
    "byol-hybrid-linear-s1": dict(HYBRID, seed=1),
    "byol-hybrid-directpred-s2": dict(HYBRID, predictor="directpred", seed=2),
    "byol-hybrid-mlp-s0": dict(HYBRID, predictor="mlp", seed=0),
    "sim-iid-linear-s0": dict(SIMSIAM, seed=0),
    "sim-iid-directpred-s1": dict(SIMSIAM, predictor="directpred", seed=1),
    "sim-iid-mlp-s2": dict(SIMSIAM, predictor="mlp", seed=2),
    "sim-current-directpred-s0": dict(SIMSIAM | STREAM, data_schedule="current", predictor="directpred", seed=0),
    "sim-current-mlp-s1": dict(SIMSIAM | STREAM, data_schedule="current", predictor="mlp", seed=1),
    "sim-accumulate-linear-s1": dict(SIMSIAM | STREAM, data_schedule="accumulate", seed=1),
    "sim-accumulate-directpred-s2": dict(SIMSIAM | STREAM, data_schedule="accumulate", predictor="directpred", seed=2),
    "sim-last-directpred-s2": dict(SIMSIAM | STREAM, data_schedule="last", predictor="directpred", seed=2),
    "sim-hybrid-linear-s0": dict(SIMSIAM | HYBRID, seed=0),
    "sim-hybrid-linear-s1": dict(SIMSIAM | HYBRID, seed=1),
    "sim-hybrid-directpred-s0": dict(SIMSIAM | HYBRID, predictor="directpred", seed=0),
    "sim-hybrid-directpred-s1": dict(SIMSIAM | HYBRID, predictor="directpred", seed=1),
    "sim-hybrid-mlp-s2": dict(SIMSIAM | HYBRID, predictor="mlp", seed=2),
    # settings known to collapse
    "coll-sim-nosg-iid-s0": dict(SIMSIAM, stop_grad=False, seed=0),
    "coll-sim-nosg-hybrid-s1": dict(SIMSIAM | HYBRID, stop_grad=False, seed=1),
    "coll-sim-nopred-iid-s2": dict(SIMSIAM, predictor="none", seed=2),
    "coll-sim-nopred-current-s1": dict(SIMSIAM | STREAM, data_schedule="current", predictor="none", seed=1),
    "coll-sim-nopred-hybrid-s0": dict(SIMSIAM | HYBRID, predictor="none", seed=0),
    "coll-byol-wd-iid-s0": dict(weight_decay=0.3, seed=0),
    "coll-byol-wd-iid-s2": dict(weight_decay=0.3, seed=2),
    "coll-byol-wd-hybrid-s1": dict(HYBRID, weight_decay=0.3, seed=1),
}
"""The study's runs: name -> the TrainConfig fields on top of :data:`BASE`."""

GAIN = 0.02
"""kNN gain over random init a healthy run ends with (and the most it may end below its own best)."""
LOSS = 0.05
"""kNN loss below random init a collapsed run ends with."""
VISIBLE_STD = 0.1
"""Collapse visible in the features: std x sqrt(d) below this (healthy runs measured: >= 0.14) ..."""
VISIBLE_RANK = 1e-3
"""... and s2/s1 of F̂ below this (healthy and stalled runs measured: >= 0.0017)."""
WINDOW = 5
"""``--collapse-window`` of the replay (the default)."""
FIXTURE_RUNS = ("issue-sim-hybrid-short-s1", "sim-hybrid-directpred-s0", "byol-current-linear-s0",
                "coll-sim-nosg-hybrid-s1", "coll-byol-wd-iid-s0")
"""The traces tests/test_collapse_watch.py replays (``--fixture``): three healthy runs the rule before issue 22 warned
on (the issue's, a SimSiam DirectPred hybrid, a BYOL stream), a collapse and a complete collapse."""
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "collapse_watch_traces.json"


class PreviousWatch:
    """The rule before issue 22, for comparison (its code as it was): every measurement, the first one included, sets
    the reference; a measurement is collapsing when std x sqrt(d) < 0.5 of its best so far and s2/s1 of F̂ < 0.25 of
    its best so far; the alarm is on while the last ``window`` measurements all are."""

    def __init__(self, window: int) -> None:
        self.window, self.history = window, []

    def collapsing(self, upto: int) -> bool:
        """Whether measurement ``upto`` is collapsing under the previous rule."""
        std, rank = self.history[upto]
        return (std < 0.5 * max(h[0] for h in self.history[:upto + 1])
                and rank < 0.25 * max(h[1] for h in self.history[:upto + 1]))

    def alarm(self, end: int | None = None) -> bool:
        """Whether the alarm is on after the first ``end`` measurements."""
        end = len(self.history) if end is None else end
        return end >= self.window and all(self.collapsing(k) for k in range(end - self.window, end))

    def update(self, rec: dict) -> str | None:
        """Add a measurement record; sets ``rec["collapse_alarm"]``, returns a warning when the alarm turns on."""
        self.history.append((float(rec["feature_std_x_sqrt_d"]), rank_ratio(rec)))
        rec["collapse_alarm"] = on = self.alarm()
        return f"collapse at step {rec['step']}" if on and not self.alarm(len(self.history) - 1) else None


def train_missing(runs_dir: Path, names: list[str]) -> None:
    """Train the runs of ``names`` that have no summary.json in ``runs_dir`` yet, one after another."""
    from ssltheory.practice.config import TrainConfig
    from ssltheory.practice.engine.train import train

    for name in names:
        folder = runs_dir / name
        if not (folder / "summary.json").exists():
            print(f"training {name}", flush=True)
            train(TrainConfig(**(BASE | RUNS[name])), folder, force=True)


def load(folder: Path) -> dict:
    """A run's trace from its metrics.jsonl: the measurement records (as written) and the kNN records (step, acc)."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"measurements": [r for r in records if is_measurement(r)],
            "knn": [(r["step"], r["knn_acc"]) for r in records if "knn_acc" in r]}


def outcome(knn: list[tuple[int, float]]) -> str:
    """healthy | collapsed | stalled, from the kNN records alone (the first is random init)."""
    init, last, best = knn[0][1], knn[-1][1], max(a for _, a in knn)
    if last >= init + GAIN and last >= best - GAIN:
        return "healthy"
    return "collapsed" if last <= init - LOSS else "stalled"


def replay(measurements: list[dict], make: Callable[[int], CollapseWatch | PreviousWatch]) -> dict:
    """The steps at which the warning fires and the measurements with the alarm on, replaying the records."""
    watch, fired, on = make(WINDOW), [], 0
    for rec in measurements:
        rec = dict(rec)
        if watch.update(rec):
            fired.append(rec["step"])
        on += bool(rec["collapse_alarm"])
    return {"fired": fired, "alarm_on": on, "measurements": len(measurements)}


def rank_ratio(rec: dict) -> float:
    """s2/s1 of F̂ of a measurement record (0 when F̂ is zero)."""
    s = rec["s"]
    return float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else 0.0


def onsets(trace: dict) -> dict:
    """When the collapse became visible: in the features (:data:`VISIBLE_STD`, :data:`VISIBLE_RANK`) and in kNN
    (first record :data:`GAIN` below random init); None where it never did."""
    feat = next((r["step"] for r in trace["measurements"]
                 if r["feature_std_x_sqrt_d"] < VISIBLE_STD and rank_ratio(r) < VISIBLE_RANK), None)
    init = trace["knn"][0][1]
    knn = next((s for s, a in trace["knn"][1:] if a <= init - GAIN), None)
    return {"features": feat, "knn": knn}


def study(runs_dir: Path, names: list[str]) -> dict:
    """Every run's row (outcome, kNN, when the warning fired under each rule, the collapse onsets) and the rates."""
    rows = []
    for name in names:
        trace = load(runs_dir / name)
        meas, knn = trace["measurements"], trace["knn"]
        cfg = BASE | RUNS[name]
        now, before = replay(meas, CollapseWatch), replay(meas, PreviousWatch)
        row = {"run": name, "method": cfg.get("method", "byol"), "predictor": cfg.get("predictor", "linear"),
               "schedule": ("hybrid" if cfg.get("hybrid_epoch") else cfg.get("data_schedule", "iid")),
               "seed": cfg["seed"], "epochs": cfg["epochs"], "outcome": outcome(knn),
               "knn_init": knn[0][1], "knn_best": max(a for _, a in knn), "knn_final": knn[-1][1],
               "std_final": meas[-1]["feature_std_x_sqrt_d"], "rank_final": rank_ratio(meas[-1]),
               "fired": now["fired"], "alarm_on": now["alarm_on"], "measurements": now["measurements"],
               "fired_before": before["fired"], "alarm_on_before": before["alarm_on"]}
        if row["outcome"] == "collapsed":
            seen = onsets(trace)
            row |= {"visible_features": seen["features"], "visible_knn": seen["knn"]}
            for key in ("features", "knn"):
                for rule, fired in (("", now["fired"]), ("_before", before["fired"])):
                    row[f"delay_{key}{rule}"] = (fired[0] - seen[key]) if fired and seen[key] is not None else None
        rows.append(row)
    return {"rows": rows, "summary": summary(rows)}


def summary(rows: list[dict]) -> dict:
    """False-alarm rates (per run and per measurement) on the healthy and stalled runs, detection and delays on the
    collapsed ones, under today's rule and the previous one."""
    out: dict = {"window": WINDOW, "measure_every": BASE["measure_every"]}
    for rule in ("", "_before"):
        tag = "now" if not rule else "before"
        for kind in ("healthy", "stalled"):
            group = [r for r in rows if r["outcome"] == kind]
            out[f"{kind}_runs"] = len(group)
            out[f"{kind}_false_alarm_runs_{tag}"] = sum(bool(r[f"fired{rule}"]) for r in group)
            out[f"{kind}_alarm_measurements_{tag}"] = sum(r[f"alarm_on{rule}"] for r in group)
            out[f"{kind}_measurements"] = sum(r["measurements"] for r in group)
        coll = [r for r in rows if r["outcome"] == "collapsed"]
        out["collapsed_runs"] = len(coll)
        out[f"collapsed_detected_{tag}"] = sum(bool(r[f"fired{rule}"]) for r in coll)
        out[f"collapsed_warnings_per_run_{tag}"] = [len(r[f"fired{rule}"]) for r in coll]
        out[f"first_warning_steps_{tag}"] = [r[f"fired{rule}"][0] if r[f"fired{rule}"] else None for r in coll]
        for key in ("features", "knn"):
            delays = [r[f"delay_{key}{rule}"] for r in coll if r[f"delay_{key}{rule}"] is not None]
            out[f"delay_{key}_{tag}"] = {"min": min(delays), "median": sorted(delays)[len(delays) // 2],
                                         "max": max(delays)} if delays else None
    return out


def write(result: dict, runs_dir: Path, out: Path) -> None:
    """results.json, results.csv (one row per run) and results.png (the traces relative to the reference)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    keys = [k for k in result["rows"][0]]
    extra = sorted({k for r in result["rows"] for k in r} - set(keys))
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys + extra)
        w.writeheader()
        for r in result["rows"]:
            w.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    plot(result, runs_dir, out / "results.png")


def plot(result: dict, runs_dir: Path, path: Path) -> None:
    """Four panels over training steps: the raw std x sqrt(d) over the first 150 steps (the first-epoch contraction
    the previous rule read as a collapse); std x sqrt(d) and s2/s1 of F̂ as a fraction of the best after the first
    epoch (today's reference); kNN minus random init. Healthy grey, stalled orange, collapsed red; the warnings of
    today's rule as circles, of the previous rule as crosses."""
    from ssltheory.theory.io import use_file_backend

    use_file_backend()
    import matplotlib.pyplot as plt

    from ssltheory.practice.measure.quantities import COLLAPSE_RANK_DROP, COLLAPSE_STD_DROP, COLLAPSE_WARMUP_EPOCHS

    colour = {"healthy": "0.6", "stalled": "tab:orange", "collapsed": "tab:red"}
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))

    def marks(ax: plt.Axes, steps: list[int], values: list[float], row: dict, c: str) -> None:
        for fired, marker in ((row["fired"], "o"), (row["fired_before"], "x")):
            shown = [s for s in fired if s in steps and s <= ax.get_xlim()[1]]
            ax.plot(shown, [values[steps.index(s)] for s in shown], marker, color=c, ms=6,
                    mfc="none" if marker == "o" else c)

    axes[0].set_xlim(0, 150)
    for row in result["rows"]:
        trace, c = load(runs_dir / row["run"]), colour[row["outcome"]]
        meas = trace["measurements"]
        steps = [r["step"] for r in meas]
        stds, ranks = [r["feature_std_x_sqrt_d"] for r in meas], [rank_ratio(r) for r in meas]
        axes[0].plot(steps, stds, color=c, lw=0.8, alpha=0.8)
        marks(axes[0], steps, stds, row, c)
        for ax, values in ((axes[1], stds), (axes[2], ranks)):
            ref, rel = 0.0, []
            for r, v in zip(meas, values, strict=True):
                ref = max(ref, v) if r.get("epoch", math.inf) >= COLLAPSE_WARMUP_EPOCHS else ref
                rel.append(v / ref if ref > 0 else math.nan)
            ax.plot(steps, rel, color=c, lw=0.8, alpha=0.8)
            marks(ax, steps, rel, row, c)
        axes[3].plot([s for s, _ in trace["knn"]], [a - trace["knn"][0][1] for _, a in trace["knn"]], color=c, lw=0.8)
    axes[0].axvline(20, color="k", ls=":", lw=0.8)
    axes[0].set(title="feature std x sqrt(d), first 150 steps (epoch 1 dotted)", xlabel="step", yscale="log",
                ylim=(0.02, 1.2))
    axes[1].axhline(COLLAPSE_STD_DROP, color="k", ls="--", lw=0.8)
    axes[2].axhline(COLLAPSE_RANK_DROP, color="k", ls="--", lw=0.8)
    axes[1].set(title="std x sqrt(d) / its best after epoch 1", xlabel="step", yscale="log", ylim=(1e-3, 5))
    axes[2].set(title="s2/s1 of F̂ / its best after epoch 1", xlabel="step", yscale="log", ylim=(1e-3, 5))
    axes[3].set(title="kNN - random init", xlabel="step")
    s = result["summary"]
    for kind, c in colour.items():
        axes[3].plot([], [], color=c, label=f"{kind} ({s[f'{kind}_runs']})")
    axes[3].plot([], [], "o", color="k", mfc="none", label="warning (today's rule)")
    axes[3].plot([], [], "x", color="k", label="warning (rule before issue 22)")
    axes[3].legend(fontsize=8)
    fig.suptitle(f"collapse warning on digits, measured every {s['measure_every']} steps: healthy runs warned "
                 f"{s['healthy_false_alarm_runs_now']}/{s['healthy_runs']} (before issue 22: "
                 f"{s['healthy_false_alarm_runs_before']}/{s['healthy_runs']}), collapses caught "
                 f"{s['collapsed_detected_now']}/{s['collapsed_runs']} (before: {s['collapsed_detected_before']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_fixture(runs_dir: Path, path: Path = FIXTURE) -> None:
    """The traces of :data:`FIXTURE_RUNS` (step, epoch, std x sqrt(d), s2/s1 of F̂ per measurement; the kNN records;
    the outcome) as JSON, 6 significant digits."""
    def g(x: float) -> float:
        return float(f"{x:.6g}")

    traces = {}
    for name in FIXTURE_RUNS:
        trace = load(runs_dir / name)
        meas = trace["measurements"]
        traces[name] = {"outcome": outcome(trace["knn"]), "step": [r["step"] for r in meas],
                        "epoch": [g(r["epoch"]) for r in meas], "std": [g(r["feature_std_x_sqrt_d"]) for r in meas],
                        "rank": [g(rank_ratio(r)) for r in meas], "knn": [[s, a] for s, a in trace["knn"]]}
    path.write_text(json.dumps(traces) + "\n")


def main() -> None:
    """Train what is missing, replay, write the results (and the test fixture with ``--fixture``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "collapse-watch")
    parser.add_argument("--replay-only", action="store_true", help="train nothing: replay the runs RUNS_DIR holds")
    parser.add_argument("--fixture", action="store_true", help=f"also write {FIXTURE.name} for the tests")
    args = parser.parse_args()
    names = list(RUNS)
    if args.replay_only:
        names = [n for n in names if (args.runs_dir / n / "summary.json").exists()]
    else:
        train_missing(args.runs_dir, names)
    result = study(args.runs_dir, names)
    write(result, args.runs_dir, args.out)
    if args.fixture:
        write_fixture(args.runs_dir)
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
