"""The ``ssltheory`` command: outputs on disk, and one-line errors with exit status 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import cli


def cli_subprocess(*args: str) -> subprocess.CompletedProcess:
    """The installed module as a user runs it (for what only a fresh process shows: --version, --help layout)."""
    return subprocess.run([sys.executable, "-m", "ssltheory.cli.main", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args,needle", [
    (["simulate", "--alpha-p", "-1"], "--alpha-p -1"),
    (["simulate", "--sigma2", "-0.5"], "--sigma2 -0.5"),
    (["simulate", "--beta", "0"], "--beta 0"),
    (["simulate", "--beta", "1.5"], "--beta 1.5"),
    (["simulate", "--eta", "abc"], "'abc'"),
    (["simulate", "--alpha-p", "abc"], "abc"),
    (["simulate", "--dim", "0"], "--dim 0"),
    (["simulate", "--predictor", "mlp2"], "'mlp2'"),
    (["simulate", "--model", "resnet"], "'resnet'"),
    (["simulate", "--ema", "--no-stop-grad"], "--no-stop-grad"),
    (["phase-portrait", "--eta", "0,,1"], "--eta"),
    (["phase-portrait", "--eta", "-0.1"], "--eta -0.1"),
    (["simulate", "--no-such-flag"], "--no-such-flag"),
    (["simulate", "--integrator", "heun"], "'heun'"),
    (["simulate", "--model", "sgd", "--integrator", "rk45"], "--integrator 'rk45'"),
])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    r = cli(*args, "--out", str(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("ssltheory: error:") and needle in lines[0]
    assert any(word in lines[0] for word in ("expected", "should be", "Possible", "No such option"))


def test_help_lists_every_command_and_version_works():
    r = cli("--help")
    assert r.returncode == 0
    for name in ("phase-portrait", "fixed-points", "simulate"):
        assert name in r.stdout
    v = cli_subprocess("--version")
    assert v.returncode == 0 and v.stdout.startswith("ssltheory ")


def test_help_keeps_the_bracketed_hints():
    """Rich markup would eat "[paper Fig. 5: 0.4]"; cli.output.hint escapes it."""
    env = {**os.environ, "COLUMNS": "400"}
    r = subprocess.run([sys.executable, "-m", "ssltheory.cli.main", "simulate", "--help"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    for text in ("[paper Fig. 5: 0.4]", "[default: same as --eta]", "[paper: 0.3]", "--integrator"):
        assert text in r.stdout
    assert "\\[" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "ssltheory.cli.main", "phase-portrait", "--help"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert "[paper Fig. 3: 0,0.01,1]" in r.stdout and "[Fig. 3 does not state it; 0.5]" in r.stdout


def test_config_saved_with_method_still_loads():
    """Configs saved before ``method`` became ``integrator`` load unchanged."""
    from ssltheory.theory.params import SimulationConfig

    old = SimulationConfig(integrator="rk45").to_dict()
    old["method"] = old.pop("integrator")
    assert SimulationConfig.from_dict(old).integrator == "rk45"


def test_simulation_configs_sweeps_and_names_unknown_settings():
    from ssltheory.theory.checks import ConfigError
    from ssltheory.theory.outputs import simulation_configs
    from ssltheory.theory.params import ModeParams, SimulationConfig

    cfgs = simulation_configs(eta="0,0.1", beta=(0.3, 0.5), tau=1.0, p0=(0.1, 0.2), lr=0.02)
    assert [(c.params.beta, c.params.eta) for c in cfgs] == [(0.3, 0.0), (0.3, 0.1), (0.5, 0.0), (0.5, 0.1)]
    assert cfgs[0].params.tau_fixed == 1.0 and cfgs[0].p0 == (0.1, 0.2) and cfgs[0].lr == 0.02
    assert cfgs[0].steps == SimulationConfig().steps and cfgs[0].params.sigma2 == ModeParams().sigma2
    with pytest.raises(ConfigError, match="'methd'"):
        simulation_configs(methd="rk45")


def test_phase_portrait_writes_figure_and_fixed_points(tmp_path):
    r = cli("phase-portrait", "--eta", "0,0.01,1", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "phase_portrait.png").stat().st_size > 20_000
    panels = json.loads((tmp_path / "fixed_points.json").read_text())["panels"]
    assert [p["eta"] for p in panels] == [0, 0.01, 1]
    kinds = [(round(fp["p"], 4), fp["kind"]) for fp in panels[1]["fixed_points"]]
    assert kinds == [(0.0, "stable"), (0.0102, "saddle"), (0.6565, "stable")]
    assert [fp["kind"] for fp in panels[2]["fixed_points"]] == ["stable"]
    assert json.loads((tmp_path / "config.json").read_text())["tau"] == 1.0


def test_fixed_points_writes_the_three_regimes(tmp_path):
    r = cli("fixed-points", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "fixed_points.json").read_text())
    assert [len(reg["fixed_points"]) for reg in data["regimes"]] == [2, 3, 1]
    assert (tmp_path / "parabola_flow.png").exists()


@pytest.mark.parametrize("model", ["modes", "matrix", "sgd"])
def test_simulate_each_model_writes_trajectories(model, tmp_path):
    r = cli("simulate", "--model", model, "--steps", "300", "--lr", "0.05", "--eta", "0,0.04", "--dim", "3",
            "--batch", "64", "--samples", "20", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    runs = json.loads((tmp_path / "trajectories.json").read_text())["runs"]
    assert [run["eta"] for run in runs] == [0.0, 0.04]
    assert len(runs[0]["t"]) == 20
    cfg = json.loads((tmp_path / "config.json").read_text())["runs"]
    assert cfg[1]["model"] == model and cfg[1]["params"]["eta"] == 0.04
    assert (tmp_path / "trajectories.png").stat().st_size > 20_000


def test_saved_config_reproduces_the_run(tmp_path):
    """config.json is enough to re-run a simulation and get the same numbers."""
    from ssltheory.theory.params import SimulationConfig
    from ssltheory.theory.simulate import simulate

    r = cli("simulate", "--model", "sgd", "--steps", "200", "--dim", "3", "--batch", "32", "--samples", "10",
            "--eta", "0.02", "--predictor", "symmetric", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    cfg = SimulationConfig.from_dict(json.loads((tmp_path / "config.json").read_text())["runs"][0])
    saved = json.loads((tmp_path / "trajectories.json").read_text())["runs"][0]["summary"]
    again = simulate(cfg).summary
    assert again["final_s"] == pytest.approx(saved["final_s"], rel=1e-12)
    assert cfg.params.predictor == "symmetric" and cfg.batch == 32
