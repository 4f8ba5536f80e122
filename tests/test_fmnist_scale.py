"""The fmnist recipe scale (issue 25): every training recipe has valid settings at fmnist and fmnist-gpu, the
collapse study's cells there are the ones its claims need, and one table runs end to end through ``experiment`` on
small Fashion-MNIST-format files, with its baselines (random init, raw pixels) beside the cells."""

from __future__ import annotations

import json

import pytest
from test_datasets import fashion_files

from conftest import cli
from ssltheory.experiments.recipes import COLLAPSE_FRACTIONS, FMNIST_TRAIN, RECIPES


@pytest.mark.parametrize("scale", ["fmnist", "fmnist-gpu"])
def test_every_training_recipe_has_valid_settings_at_the_fmnist_scales(scale):
    for name, recipe in RECIPES.items():
        if not recipe.training:
            continue
        configs = recipe.configs(scale)
        assert configs, name
        for cell, cfg in configs.items():
            assert cfg.dataset == "fashion-mnist", (name, cell)
            if scale == "fmnist":
                assert cfg.resolved_backbone == "convnet", (name, cell)
            else:
                assert cfg.resolved_backbone.startswith("resnet") and cfg.image_size == 32, (name, cell)


def test_the_collapse_study_at_fmnist_has_the_cells_its_claims_need():
    configs = RECIPES["collapse-imagenet"].configs("fmnist")
    for model in ("small", "large"):
        fractions = sorted(cfg.data_fraction for cell, cfg in configs.items()
                           if cell.startswith(model + "-f"))
        assert fractions == sorted(p / 100 for p in COLLAPSE_FRACTIONS)
    assert configs["small-f100"].width < configs["large-f100"].width
    for cell in ("small-continual", "small-accumulate", "small-hybrid"):
        assert configs[cell].n_chunks == configs[cell].epochs == 3  # one chunk per epoch
    assert configs["small-hybrid"].hybrid_epoch == 1  # the epoch nearest the paper's 40 % switch
    assert not any(c.startswith("large-") and not c.startswith("large-f") for c in configs)


def test_a_shortened_fmnist_table_runs_end_to_end_through_experiment(tmp_path):
    data = fashion_files(tmp_path / "fm", n_train=256, n_test=64)
    out = tmp_path / "table7"
    r = cli("experiment", "table7", "--scale", "fmnist", "--max-steps", "3", "--data-dir", str(data),
            "--out", str(out))
    assert r.returncode == 0, r.stderr + r.stdout
    results = json.loads((out / "results.json").read_text())
    cells = {row["cell"]: row for row in results["cells"]}
    assert set(cells) == {"c0.1-freq1", "c0.05-freq1", "c-0.05-freq1", "c-0.1-freq1", "c0.1-freq2"}
    for cell, row in cells.items():
        cfg = json.loads((out / cell / "config.json").read_text())["config"]
        assert cfg["dataset"] == "fashion-mnist" and cfg["data_dir"] == str(data)
        assert cfg["width"] == FMNIST_TRAIN["width"] and cfg["max_steps"] == 3
        assert row["steps"] == 3 and 0 <= row["knn_acc_final"] <= 1
    base = results["baselines"]
    assert base["dataset"] == "fashion-mnist"
    # the files' classes are bright squares at their own places: the pixels' kNN finds them, a random init not as well
    assert base["raw_pixels_knn"] > 0.9
    assert base["random_init_knn"] == pytest.approx(sum(r["knn_acc_init"] for r in cells.values()) / len(cells))
    assert json.loads((out / "baselines.json").read_text())["key"]["data_dir"] == str(data)
    assert (out / "results.png").stat().st_size > 0 and (out / "results.csv").exists()


@pytest.mark.parametrize("scale", ["smoke", "fmnist"])
def test_every_unigrad_cell_builds_its_objective(scale):
    """Each method x target branch of UniGrad's table makes its objective (MoCo's queue with stop-gradient negatives
    once asked the contrastive objective to mask a query's own entry, which only SimCLR's batch bank holds)."""
    from ssltheory.practice.methods.registry import METHODS

    for name in ("unigrad-methods", "unigrad-table2", "unigrad-table3"):
        for cell, cfg in RECIPES[name].configs(scale).items():
            assert METHODS[cfg.method].objective(cfg) is not None, (name, cell)
