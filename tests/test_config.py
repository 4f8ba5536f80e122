"""One source for every setting: the train command's flags come from the config, settings files go through the same
checks, and a run folder is never overwritten or resumed with other settings by accident."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli
from ssltheory.practice.config import TrainConfig, flag_of
from ssltheory.practice.engine.rundir import RunDir, read_metrics

FAST = ["--batch-size", "64", "--max-steps", "3", "--measure-every", "3", "--probe-size", "64", "--proj-hidden", "32",
        "--proj-dim", "16", "--knn-every", "0"]


def test_every_setting_is_a_flag_with_help_and_no_flag_is_unknown_to_the_config():
    import typer

    from ssltheory.cli.main import app

    cmd = typer.main.get_command(app).commands["train"]
    opts = {o for p in cmd.params for o in p.opts}
    for f in TrainConfig.settings():
        if f.name != "dataset":
            assert flag_of(f.name) in opts, f.name
            assert f.help, f.name
    own = {"--config", "--resume", "--force", "--out", "--help"}
    assert {o for o in opts if o.startswith("--") and not o.startswith("--no-")} - own == {
        flag for f in TrainConfig.settings() if f.name != "dataset" for flag in (flag_of(f.name), *f.aliases)}


def test_defaults_are_the_papers():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.gamma_a, cfg.rho, cfg.eps, cfg.alpha_p) == \
        (0.03, 4e-4, 128, 0.996, 0.3, 0.1, 1.0)


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "dataset: digits\npredictor: directpred\nlr: 0.05\nalpha-p: 2\n"),
    (".json", '{"dataset": "digits", "predictor": "directpred", "lr": 0.05, "alpha_p": 2}'),
])
def test_a_settings_file_with_flags_overriding_it(suffix, text, tmp_path):
    path = tmp_path / f"settings{suffix}"
    path.write_text(text)
    r = cli("train", "--config", str(path), "--alpha-p", "3", *FAST, "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    cfg = RunDir(tmp_path / "run").config()
    assert (cfg.dataset, cfg.predictor, cfg.lr, cfg.alpha_p, cfg.batch_size) == ("digits", "directpred", 0.05, 3.0, 64)


def test_a_saved_config_json_starts_the_same_run(tmp_path):
    assert cli("train", "digits", "--seed", "4", *FAST, "--out", str(tmp_path / "a")).returncode == 0
    r = cli("train", "--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert RunDir(tmp_path / "b").config() == RunDir(tmp_path / "a").config()
    assert read_metrics(tmp_path / "b" / "metrics.jsonl") == read_metrics(tmp_path / "a" / "metrics.jsonl")


@pytest.mark.parametrize("text,needle", [
    ("predictr: directpred\n", "'predictr' is not known (did you mean --predictor"),
    ("dataset: digits\nlr: fast\n", "--lr 'fast' is not a number"),
    ("dataset: digits\nstop_grad: maybe\n", "--stop-grad 'maybe' is not a boolean"),
    ("- a\n- b\n", "holds a list: expected a mapping"),
    ("dataset: [digits\n", "cannot be parsed"),
])
def test_a_bad_settings_file_is_one_line(text, needle, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    r = cli("train", "--config", str(path), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr and not (tmp_path / "run").exists()


def test_configs_of_earlier_versions_load_under_todays_names():
    old = {"dataset": "digits", "ema": 0.99, "schedule": "cosine", "predictor": "optimal", "eps": 0.01,
           "compile": False}
    cfg = TrainConfig.from_dict(old)
    assert (cfg.gamma_a, cfg.lr_schedule, cfg.ridge, cfg.compile) == (0.99, "cosine", 0.01, "none")


def test_a_finished_run_is_not_overwritten_without_force(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "digits", *FAST, "--out", str(run)).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    r = cli("train", "digits", "--epochs", "2", *FAST, "--out", str(run))
    assert r.returncode == 2 and "already holds a run" in r.stderr and "--force" in r.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # untouched
    r = cli("train", "digits", "--seed", "5", *FAST, "--out", str(run), "--force")
    assert r.returncode == 0, r.stderr
    assert RunDir(run).config().seed == 5 and json.loads((run / "config.json").read_text())["run"]["starts"] == [
        {"step": 0, "world_size": 1}]


def test_resume_takes_no_other_setting_and_needs_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "digits", *FAST, "--out", str(run)).returncode == 0
    before = (run / "metrics.jsonl").read_bytes()
    r = cli("train", "--resume", str(run), "--epochs", "8", "--lr", "0.1")
    assert r.returncode == 2 and "--epochs, --lr cannot change on resume" in r.stderr, r.stderr
    (run / "checkpoint.pt").unlink()
    r = cli("train", "--resume", str(run))
    assert r.returncode == 2 and "has no checkpoint.pt" in r.stderr, r.stderr
    assert (run / "metrics.jsonl").read_bytes() == before


def test_a_run_saved_before_the_settings_moved_loads_and_resumes_to_the_same_numbers(tmp_path):
    """tests/fixtures/run_before_settings: a DirectPred digits run written by the code before each component owned
    its settings (commit 747f849: the old config.json, and a checkpoint.pt whose F̂ is {F, count, rho}), stopped at
    step 15 with its checkpoint at step 10. Today's code loads its config and resumes it; the records equal those of
    the same run trained uninterrupted by the old code (uninterrupted.metrics.jsonl), within the arithmetic spread of
    tests/test_unchanged.py."""
    import shutil

    from test_unchanged import assert_close_record, spread_tolerance

    from ssltheory.practice.engine.rundir import RunDir, read_metrics
    from ssltheory.practice.engine.train import train

    fixture = Path(__file__).parent / "fixtures" / "run_before_settings"
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "checkpoint.pt", "metrics.jsonl"):
        shutil.copy(fixture / name, run / name)
    cfg = RunDir(run).config()
    assert (cfg.method, cfg.predictor, cfg.epochs, cfg.width) == ("byol", "directpred", 2, 0.25)
    train(cfg, run, resume=True)
    new = read_metrics(run / "metrics.jsonl")
    old = read_metrics(fixture / "uninterrupted.metrics.jsonl")
    assert [r["step"] for r in new] == [r["step"] for r in old]
    for i, (a, b) in enumerate(zip(new, old, strict=True)):
        assert_close_record({k: v for k, v in a.items() if k in b}, b, f"resumed[{i}]", rel=spread_tolerance("train"))
