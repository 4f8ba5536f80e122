"""Label-free forecasting (practice/studies/forecast.py, ``ssltheory forecast``) and the collapse study's recipes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli
from ssltheory.experiments.recipes import COLLAPSE_FRACTIONS, RECIPES
from ssltheory.experiments.run import run_recipe
from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.rundir import read_metrics
from ssltheory.practice.engine.train import train
from ssltheory.practice.studies import forecast
from ssltheory.theory.checks import ConfigError


def _points(auc, acc, group=""):
    return [{"run": f"r{i}", "group": group, "auc": a, "probe_acc": b}
            for i, (a, b) in enumerate(zip(auc, acc, strict=True))]


def test_the_correlation_is_spearmans_and_a_forecast_is_negative():
    down = forecast.correlate(_points([0.6, 0.7, 0.8, 0.9, 0.95, 0.96, 0.97, 0.98],
                                      [0.9, 0.8, 0.85, 0.5, 0.4, 0.3, 0.2, 0.1]))  # one swapped pair of eight
    assert down["spearman_rho"] == pytest.approx(-(1 - 6 * 2 / (8 * 63))) and down["forecasts"]
    assert down["spearman_p"] == pytest.approx(2 * 8 / 40320)  # exact: 8 of 8! pairings as far out on each side
    # one swapped pair of five: rho -0.9, but 10 of the 120 pairings are as extreme (p 0.083, the exact test; the t
    # approximation says 0.037), so five runs ordered so do not make a forecast
    five = forecast.correlate(_points([0.6, 0.7, 0.8, 0.9, 0.95], [0.9, 0.8, 0.85, 0.5, 0.4]))
    assert five["spearman_rho"] == pytest.approx(-0.9) and five["spearman_p"] == pytest.approx(10 / 120)
    assert not five["forecasts"]
    up = forecast.correlate(_points([0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.4]))
    assert up["spearman_rho"] == pytest.approx(1.0) and not up["forecasts"]
    # a monotone but curved relation: rank 1 exactly, Pearson below it
    curved = forecast.correlate(_points([1, 2, 3, 4, 5], [-1, -2, -4, -8, -16]))
    assert curved["spearman_rho"] == pytest.approx(-1.0) and -1 < curved["pearson_r"] < -0.9


def test_groups_are_correlated_apart_from_the_pool():
    """Two model sizes, each forecasting inside itself, pooled to a positive correlation by their offset (the
    larger model has both the higher AUC range and the higher accuracy): by_group keeps the forecast."""
    small = _points([0.60, 0.62, 0.64, 0.66], [0.80, 0.78, 0.76, 0.74], "small")
    large = _points([0.80, 0.82, 0.84, 0.86], [0.98, 0.96, 0.94, 0.92], "large")
    doc = forecast.forecast(small + large)
    assert doc["correlation"]["spearman_rho"] > 0
    assert all(doc["by_group"][g]["spearman_rho"] == pytest.approx(-1.0) for g in ("small", "large"))
    # forecast.png leads with each size's rho and p; the pooled rho comes last, named as no forecast (issue 22)
    lines = forecast.title_lines(doc)
    assert lines[0].startswith("small: Spearman ρ = -1.00 (p = ") and lines[1].startswith("large: Spearman ρ = -1.00")
    assert lines[-1].startswith("(pooled over 2 sizes, not a forecast: ρ = +") and len(lines) == 3
    title = forecast.figure(doc).axes[0].get_title()
    assert title.index("small: Spearman") < title.index("pooled")
    one = forecast.forecast(small)
    assert forecast.title_lines(one) == [f"all 4 runs: Spearman ρ = -1.00 (p = {one['correlation']['spearman_p']:.2g})"
                                         f", Pearson r = {one['correlation']['pearson_r']:+.2f}"]


@pytest.mark.parametrize("auc,acc,needle", [([0.6, 0.7], [0.5, 0.4], "at least 3"),
                                            ([0.7, 0.7, 0.7], [0.5, 0.4, 0.3], "same AUC"),
                                            ([0.6, 0.7, 0.8], [0.5, 0.5, 0.5], "same probe accuracy")])
def test_an_undefined_correlation_is_a_one_line_error(auc, acc, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        forecast.correlate(_points(auc, acc))
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Three short digits runs that differ in data fraction."""
    root = tmp_path_factory.mktemp("forecast")
    dirs = []
    for frac in (0.1, 0.5, 1.0):
        d = root / f"f{frac:g}"
        train(TrainConfig(dataset="digits", epochs=1, max_steps=6, batch_size=64, measure_every=3, probe_size=64,
                          knn_every=0, data_fraction=frac, backbone="convnet", width=0.25), d)
        dirs.append(d)
    return dirs


def test_the_command_measures_each_run_and_caches_its_point(runs, tmp_path, monkeypatch):
    r = cli("forecast", *map(str, runs), "--groups", "a,a,b", "--probe-epochs", "3", "--out", str(tmp_path / "f"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "f" / "forecast.json").read_text())
    assert [p["group"] for p in doc["runs"]] == ["a", "a", "b"]
    for p, d in zip(doc["runs"], runs, strict=True):
        assert (p["d"] + 1) / (2 * p["d"]) <= p["auc"] <= 1 and 0 <= p["probe_acc"] <= 1
        assert p["k_eq"] == pytest.approx(1 + 2 * p["d"] * (1 - p["auc"]))
        assert p["n"] == 1297 and p["step"] == 6  # the whole train split (the paper's protocol), the last checkpoint
        assert json.loads((d / forecast.POINT).read_text())["probe"]["epochs"] == 3
    assert (tmp_path / "f" / "forecast.png").stat().st_size > 10_000
    assert (tmp_path / "f" / "forecast.csv").read_text().count("\n") == 4
    # the cached points are read again: nothing is measured
    monkeypatch.setattr("ssltheory.practice.engine.rundir.load_run", lambda *a, **k: pytest.fail("measured again"))
    again = cli("forecast", *map(str, runs), "--probe-epochs", "3", "--out", str(tmp_path / "g"))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "g" / "forecast.json").read_text())["correlation"] == doc["correlation"]


def test_a_run_replaced_with_force_is_measured_again(runs, tmp_path):
    """The cached point goes with the run it measured: `train --force` clears it, and a point of other settings
    is never read for this run."""
    d = tmp_path / "run"
    cfg = TrainConfig(dataset="digits", epochs=1, max_steps=6, batch_size=64, measure_every=3, probe_size=64,
                      knn_every=0, backbone="convnet", width=0.25)
    train(cfg, d)
    (d / forecast.POINT).write_text((runs[0] / forecast.POINT).read_text())  # another run's point, same step
    from ssltheory.practice.engine.step import resolve_device

    p = forecast.run_point(d, resolve_device("cpu"), probe={"epochs": 3})
    assert json.loads((d / forecast.POINT).read_text())["config"] == cfg.to_dict() and "config" not in p
    train(cfg, d, force=True)
    assert not (d / forecast.POINT).exists()


@pytest.mark.parametrize("args,needle", [
    (["{a}", "{b}"], "at least 3"),
    (["{a}", "{b}", "{synthetic}"], "no labels"),
    (["{a}", "{b}", "{empty}"], "no config.json"),
    (["{a}", "{b}", "{c}", "--groups", "x,y"], "--groups x,y has 2 values"),
    (["{a}", "{b}", "{missing}"], "does not exist"),
    (["{a}", "{b}", "{c}", "--probe-epochs", "0"], "--probe-epochs"),
])
def test_bad_input_is_one_line(runs, tmp_path, args, needle):
    (tmp_path / "empty").mkdir()
    train(TrainConfig(dataset="synthetic", epochs=1, max_steps=2, measure_every=2, proj_dim=8, synthetic_size=256),
          tmp_path / "synthetic")
    names = {"a": runs[0], "b": runs[1], "c": runs[2], "missing": tmp_path / "nope", "empty": tmp_path / "empty",
             "synthetic": tmp_path / "synthetic"}
    r = cli("forecast", *[a.format(**names) for a in args], "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") <= 1, r.stderr
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- the collapse study's recipes

def test_the_recipes_cells_at_every_scale():
    """Paper scale: ResNet-18 and ResNet-50, the six shipped fractions, the continual streams (current, accumulate)
    one chunk per epoch, hybrid at epoch 40 of 100 under one cosine schedule; cpu and smoke skip 1 % (below one batch
    of digits) and the accumulate stream (added after their recorded study)."""
    r = RECIPES["collapse-imagenet"]
    paper = r.configs("paper")
    assert paper["small-accumulate"].data_schedule == "accumulate"
    assert len(paper) == 18 and paper["small-f1"].data_fraction == 0.01 and paper["large-f100"].data_fraction == 1
    assert {paper[c].backbone for c in paper if c.startswith("small")} == {"resnet18"}
    assert {paper[c].backbone for c in paper if c.startswith("large")} == {"resnet50"}
    hybrid = paper["small-hybrid"]
    assert (hybrid.data_schedule, hybrid.n_chunks, hybrid.hybrid_epoch, hybrid.epochs) == ("current", 0, 40, 100)
    assert hybrid.lr_schedule == "cosine" and hybrid.fix_pred_lr and hybrid.zero_init_residual
    cpu = r.configs("cpu")
    assert len(cpu) == 14 and "small-f1" not in cpu and cpu["small-f5"].width == 0.125
    assert [cpu[f"large-f{p}"].data_fraction for p in COLLAPSE_FRACTIONS[1:]] == [0.05, 0.1, 0.2, 0.5, 1.0]
    assert RECIPES["collapse-places"].configs("paper")["large-f20"].dataset == "folder"


def _image_tree(root: Path, splits: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    for split in splits:
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(8):
                Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


@pytest.mark.parametrize("name,cell", [("collapse-imagenet", "large-hybrid"), ("collapse-places", "small-f50")])
def test_paper_scale_cells_run_their_first_steps_on_a_small_image_folder(name, cell, tmp_path):
    """The paper-scale config as the recipe makes it, on a tiny tree of images in its dataset's layout, on the CPU
    at 16 px and batch 4 (everything else as at paper scale; a stream over 2 epochs, so that a chunk of the 16
    images holds a batch): two steps."""
    cfg = RECIPES[name].configs("paper")[cell]
    data = tmp_path / "data"
    _image_tree(data, ("train", "val"))
    root = data if cfg.dataset == "imagenet" else data / "train"
    small = cfg.replace(data_dir=str(root), device="cpu", workers=0, batch_size=4, image_size=16, max_steps=2,
                    measure_every=2, probe_size=8, knn_every=0, lr_scale="none", **(
                        {"epochs": 2} if cfg.data_schedule != "iid" else {}), **(
                        {"hybrid_epoch": 1} if cfg.hybrid_epoch else {}))
    summary = train(TrainConfig.from_settings(small.to_dict()), tmp_path / "run")
    assert summary["steps"] == 2
    assert any("probe_auc" in rec for rec in read_metrics(tmp_path / "run" / "metrics.jsonl"))


def test_the_smoke_study_writes_its_forecast_and_study_figure(tmp_path, monkeypatch):
    """Four of the recipe's smoke cells (1 % is skipped at this scale), a few steps each, a 2-epoch probe: the
    forecast over the runs, per model size, and the study figure."""
    full = RECIPES["collapse-imagenet"]
    keep = ("small-f1", "small-f10", "small-f100", "large-f10", "large-f100", "large-hybrid")
    monkeypatch.setitem(forecast.PROBE_DEFAULTS, "epochs", 2)
    res = run_recipe(replace(full, cells={c: full.cells[c] for c in keep}), "smoke", tmp_path, max_steps=3)
    assert [r["cell"] for r in res["cells"]] == list(keep[1:])
    assert res["forecast"]["n"] == 5 and set(res["forecast"]["by_group"]) == {"small", "large"}
    # the paper's claims: the data trend per size over its fixed-fraction runs, the hybrid against the most data
    claims = json.loads((tmp_path / "results.json").read_text())["claims"]
    assert {g: row["n"] for g, row in claims["data"].items()} == {"small": 2, "large": 2}
    assert claims["data"]["large"]["fractions"] == [0.1, 1.0]
    hybrid = claims["schedules"]["large-hybrid"]
    rows = {r["cell"]: r for r in res["cells"]}
    assert hybrid["reference_cell"] == "large-f100" and hybrid["auc"]["verdict"] == "n/a (1 seed)"
    auc = {c: rows[c]["offline_auc"] for c in ("large-hybrid", "large-f100")}
    assert hybrid["auc"]["diff"] == pytest.approx(auc["large-hybrid"] - auc["large-f100"])
    assert set(claims["forecast"]) == {"small", "large"}
    assert all(0 <= r["probe_acc"] <= 1 and (r["d"] + 1) / (2 * r["d"]) <= r["offline_auc"] <= 1
               for r in res["cells"])
    for f in ("forecast.png", "forecast.json", "forecast.csv", "study.png", "results.csv"):
        assert (tmp_path / f).stat().st_size > 0
    assert "probe_acc" in (tmp_path / "results.csv").read_text().splitlines()[0]
