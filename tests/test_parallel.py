"""``experiment --jobs N``: a recipe's cells trained in N processes give the runs and results the sequential path
gives, a finished run is not trained again, a folder of other settings is refused before anything trains, and a
worker's failure reaches the caller as its one-line error."""

from __future__ import annotations

import json

import pytest

from ssltheory.experiments.parallel import to_train, train_parallel
from ssltheory.experiments.recipes import Recipe
from ssltheory.experiments.run import run_recipe
from ssltheory.practice.config import ConfigError, TrainConfig

CELLS = {"reg": {"predictor": "linear"}, "sym": {"predictor": "symmetric", "method": "simsiam"}}
RECIPE = Recipe("two", "two cells", "reg 74.51, sym 36.62", CELLS, paper={"reg": 74.51, "sym": 36.62},
                reference="reg")


def test_jobs_train_every_seed_of_every_cell_and_read_them_as_the_sequential_path(tmp_path):
    res = run_recipe(RECIPE, "cpu", tmp_path / "par", max_steps=3, seeds=2, jobs=2)
    runs = [(cfg, tmp_path / "par" / c / f"seed{k}") for k in range(2)
            for c, cfg in RECIPE.configs("cpu", 3, seed=k).items()]
    assert to_train(runs) == []  # all four finished with their own settings
    for cfg, d in runs:
        summary = json.loads((d / "summary.json").read_text())
        assert summary["steps"] == 3 and TrainConfig.from_settings(
            json.loads((d / "config.json").read_text())["config"]).seed == cfg.seed
    sym = next(r for r in res["cells"] if r["cell"] == "sym")
    assert sym["stats"]["knn_acc_final"]["n"] == 2 and "verdict" in sym
    # the sequential path reads the same runs: nothing is trained again, the rows are the same
    def never(*args):
        raise AssertionError("a finished run was trained again")

    again = run_recipe(RECIPE, "cpu", tmp_path / "par", max_steps=3, seeds=2, trainer=never)
    assert [r["stats"] for r in again["cells"]] == [r["stats"] for r in res["cells"]]
    assert train_parallel(runs, 2) == 0


def test_a_folder_of_other_settings_is_refused_before_any_process_trains(tmp_path):
    run_recipe(RECIPE, "cpu", tmp_path, max_steps=2)  # one seed: folders reg/, sym/ hold 2-step runs
    with pytest.raises(ConfigError, match="holds a run with other settings"):
        run_recipe(RECIPE, "cpu", tmp_path, max_steps=3, jobs=2)
    assert json.loads((tmp_path / "sym" / "summary.json").read_text())["steps"] == 2  # untouched
    with pytest.raises(ConfigError, match="--jobs 0 is out of range"):
        run_recipe(RECIPE, "cpu", tmp_path, max_steps=2, jobs=0)


def test_a_workers_failure_is_raised_and_the_finished_runs_are_kept(tmp_path):
    good = TrainConfig.from_settings({"dataset": "digits", "max_steps": 2, "batch_size": 64, "epochs": 1})
    bad = TrainConfig.from_settings({"dataset": "cifar10", "data_dir": str(tmp_path / "nowhere"), "max_steps": 2})
    with pytest.raises(ConfigError, match="nowhere"):
        train_parallel([(good, tmp_path / "good"), (bad, tmp_path / "bad")], 2)
    assert (tmp_path / "good" / "summary.json").exists()


def test_ctrl_c_stops_every_process_and_starts_no_further_run(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) during ``experiment --jobs 2``: the command ends within
    seconds with its one-line notice, and none of the queued runs starts afterwards."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "ssltheory.cli.main", "experiment", "table8", "--scale", "cpu", "--seeds", "2",
           "--jobs", "2", "--out", str(out)]
    # SIGINT as a terminal delivers it: a pytest started in the background of a non-interactive shell ignores SIGINT,
    # and a child inherits that (Python then installs no KeyboardInterrupt handler), so the child restores it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*/seed*/checkpoint.pt"))) < 2:
        time.sleep(0.5)  # both processes are training (each has written its first epoch's checkpoint)
    assert len(list(out.glob("*/seed*/checkpoint.pt"))) >= 2, "the runs did not start"
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:  # no orphans left training after a failure
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    started = {p.parent for p in out.glob("*/seed*/config.json")}
    time.sleep(3)
    assert {p.parent for p in out.glob("*/seed*/config.json")} == started and len(started) == 2
    assert not list(out.glob("*/seed*/summary.json"))
