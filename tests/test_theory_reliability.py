"""Reliability of the theory commands: every bad input is one line and exit status 2 (a failed run: exit status 1),
never a traceback, and nothing is written; runs that blow up say "diverged"; the figures show what they claim."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import cli
from ssltheory.theory import integrate, plots, resources
from ssltheory.theory.checks import ConfigError
from ssltheory.theory.fixed_points import fixed_points, parabola_fixed_points
from ssltheory.theory.params import ModeParams, SimulationConfig
from ssltheory.theory.simulate import simulate

# numpy's overflow warnings would be a second stderr line: any RuntimeWarning fails these tests.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

FAST = ["--steps", "20", "--samples", "5", "--dim", "2", "--batch", "8"]
"""Valid but small settings, so that a bad value that slipped through would still finish fast."""


def snapshot(root: Path) -> dict:
    """Every entry under ``root``: kind, size, mtime and a hash of the content."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture
def area(tmp_path, monkeypatch):
    """A folder holding one regular file, made the working directory (so a default --out would land here too)."""
    (tmp_path / "file").write_bytes(b"keep me")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_one_line_error(r, code: int = 2, needle: str | None = None) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ssltheory: error:"), r.stderr
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- 1. --out --------------------------------------------------------------------------------------------------

COMMANDS = {"phase-portrait": ["phase-portrait", "--eta", "0.01"], "fixed-points": ["fixed-points"],
            "simulate": ["simulate", *FAST]}


def _bad_outs(root: Path) -> dict[str, str]:
    return {"proc": "/proc/x", "file": str(root / "file"), "under-file": str(root / "file" / "sub"), "empty": ""}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind,why", [("proc", "cannot be created"), ("file", "is a file"),
                                      ("under-file", "is a file"), ("empty", "not a folder path")])
def test_bad_out_is_one_line_and_writes_nothing(command, kind, why, area):
    if kind == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    out = _bad_outs(area)[kind]
    before = snapshot(area)
    line = assert_one_line_error(cli(*COMMANDS[command], "--out", out), 2, f"--out {out}" if out else "--out ''")
    assert why in line and "expected" in line
    assert snapshot(area) == before
    assert (area / "file").read_bytes() == b"keep me"


def test_out_dir_checks_without_creating_and_the_run_creates_it(area):
    from ssltheory.cli.output import out_dir

    target = area / "new" / "deeper"
    assert out_dir(target) == target and not (area / "new").exists()
    r = cli("phase-portrait", "--eta", "1", "--out", str(target))
    assert r.returncode == 0, r.stderr
    assert (target / "phase_portrait.png").is_file()


def test_a_failed_run_leaves_no_folder_behind(area):
    """The folder is made only when the results are written: a run that diverges creates nothing."""
    r = cli("simulate", "--no-ema", "--eta", "0", "--lr", "1", "--p0", "1000", "--steps", "50", "--out",
            str(area / "run"))
    assert_one_line_error(r, 1, "every trajectory diverged")
    assert not (area / "run").exists()


# --- 2. huge constants ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["phase-portrait", "--eta", "1e308"], "--eta 1e+308 is out of range: expected a number in [0, 1e+06]"),
    (["phase-portrait", "--tau", "1e200"], "--tau 1e+200 is out of range: expected a number in [0, 1e+06]"),
    (["phase-portrait", "--alpha-p", "1e-300"], "--alpha-p 1e-300"),
    (["fixed-points", "--eta", "1e308"], "--eta 1e+308"),
    (["fixed-points", "--sigma2", "1e308"], "--sigma2 1e+308"),
])
def test_constants_beyond_the_float64_cap_are_refused(args, needle, area):
    line = assert_one_line_error(cli(*args, "--out", str(area / "o")), 2, needle)
    assert "capped at 1e6" in line or "[1e-06, 1e+06]" in line
    assert not (area / "o").exists()


@pytest.mark.parametrize("tau,eta,alpha_p,sigma2", [(1e6, 0.0, 1e-6, 0.0), (0.0, 1e6, 1e6, 1e6),
                                                    (1e-300, 1e-300, 1e6, 1e6)])
def test_phase_portrait_computes_at_the_corners_of_the_accepted_box(tau, eta, alpha_p, sigma2):
    """Inside the bounds the portrait, its fixed points and the figure compute (RuntimeWarnings are errors here)."""
    params = ModeParams(eta=eta, alpha_p=alpha_p, sigma2=sigma2, tau_fixed=tau, ema=False)
    fig = plots.phase_portrait_figure([params], tau)
    fig.canvas.draw()
    plots.close(fig)


# --- 3, 7. seed and alpha_p ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["matrix", "sgd"])
def test_negative_seed_is_one_line(model, area):
    line = assert_one_line_error(cli("simulate", "--model", model, "--seed", "-1", *FAST, "--out", str(area / "o")),
                                 2, "--seed -1 is out of range")
    assert "expected an integer >= 0" in line


@pytest.mark.parametrize("command", [["simulate", *FAST], ["phase-portrait"]])
def test_alpha_p_zero_is_refused(command, area):
    """alpha_p = 0 used to give s0 = 1 silently (the parabola s = p^2 / alpha_p does not exist there)."""
    line = assert_one_line_error(cli(*command, "--alpha-p", "0", "--out", str(area / "o")), 2, "--alpha-p 0 ")
    assert "α_p > 0" in line
    with pytest.raises(ConfigError, match="--alpha-p"):
        ModeParams(alpha_p=0.0)


# --- 4. memory -----------------------------------------------------------------------------------------------------

def test_huge_dim_is_refused_before_allocating(area):
    line = assert_one_line_error(cli("simulate", "--model", "matrix", "--dim", "100000", "--out", str(area / "o")),
                                 2, "--dim 100000 needs about")
    largest = int(re.search(r"expected --dim <= (\d+)$", line).group(1))
    assert 1 <= largest < 100000
    with pytest.raises(ConfigError, match="--dim 100000"):
        simulate(SimulationConfig(model="sgd", dim=100000))  # the library path refuses too


def test_the_largest_accepted_dim_is_the_largest_that_fits():
    limit = 2 ** 30
    cfg = SimulationConfig(model="matrix", dim=5000)
    with pytest.raises(ConfigError) as e:
        resources.check_memory(cfg, limit=limit)
    d = int(re.search(r"expected --dim <= (\d+)$", str(e.value)).group(1))
    assert resources.estimate_memory(cfg, dim=d) <= limit < resources.estimate_memory(cfg, dim=d + 1)
    assert resources.check_memory(SimulationConfig(model="matrix", dim=d), limit=limit) <= limit


@pytest.mark.parametrize("cfg,flag", [
    (SimulationConfig(model="sgd", dim=2, batch=10 ** 10), "--batch"),
    (SimulationConfig(model="modes", integrator="rk45", samples=10 ** 10), "--samples"),
    (SimulationConfig(model="matrix", integrator="lsoda", dim=400), "--dim"),
])
def test_memory_refusal_names_the_setting_that_can_shrink(cfg, flag):
    with pytest.raises(ConfigError, match=rf"^{flag} .* expected {flag} <= \d+$"):
        resources.check_memory(cfg, limit=2 ** 30)


def test_memory_estimate_is_in_line_with_the_arrays_a_run_keeps():
    """A matrix run keeps (samples x 3 n^2) states plus (samples x n^2) predictors: at least that much is counted."""
    cfg = SimulationConfig(model="matrix", dim=300, steps=1000, samples=400)
    kept = 400 * 4 * 300 * 300 * 8
    assert kept <= resources.estimate_memory(cfg) <= 2 * kept


# --- 5. non-finite results -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--lr", "1e300"], "--lr 1e+300"),
    (["--p0", "1e308"], "--p0 1e+308"),
    (["--eta", "1e308"], "--eta 1e+308"),
    (["--sigma2", "1e308"], "--sigma2 1e+308"),
    (["--eta", "0", "--p0=-2"], "--p0 -2"),  # the Euler blow-up of the issue: now refused as p0 < 0 under EMA
    (["--lr", "3"], "lr·β = 1.2: expected lr·β <= 1"),  # 1 - gamma_a > 1 in the discrete process
    (["--no-ema", "--lr", "0.5", "--eta", "3"], "expected lr·η <= 1"),  # weight decay that flips the sign
])
def test_values_that_made_nan_tables_are_refused(args, needle, area):
    assert_one_line_error(cli("simulate", "--steps", "10", *args, "--out", str(area / "o")), 2, needle)
    assert not (area / "o").exists()


def test_discrete_process_bounds_do_not_apply_to_solve_ivp(area):
    r = cli("simulate", "--lr", "3", "--integrator", "rk45", "--steps", "10", "--samples", "3", "--out",
            str(area / "o"))
    assert r.returncode == 0, r.stderr


def test_a_diverged_mode_is_marked_and_never_reads_not_collapsed(area):
    r = cli("simulate", "--p0", "0.1,1000", "--steps", "100", "--samples", "11", "--out", str(area / "o"))
    assert r.returncode == 0, r.stderr
    assert "diverged (t ≤" in r.stdout
    s = json.loads((area / "o" / "trajectories.json").read_text())["runs"][0]["summary"]
    assert s["diverged"] == [False, True] and s["collapsed"] == [False, False]
    assert s["outcome"] == ["not collapsed", "diverged"]
    assert s["diverged_by_t"][0] is None and 0 < s["diverged_by_t"][1] <= 1.0


def test_every_trajectory_diverged_is_a_run_error(area):
    for model in ("modes", "matrix", "sgd", "reduced"):
        r = cli("simulate", "--model", model, "--no-ema", "--eta", "0", "--lr", "1", "--init-scale", "100",
                "--p0", "1000", "--steps", "50", "--dim", "2", "--batch", "8", "--out", str(area / model))
        line = assert_one_line_error(r, 1, "every trajectory diverged")
        assert "expected" in line and "--lr" in line
        assert not (area / model).exists()


@pytest.mark.parametrize("model", ["sgd", "reduced"])
def test_a_diverged_run_in_a_sweep_is_marked_diverged(model, area):
    """eta = 0 blows up at these settings, eta = 1 does not: the table and JSON say which."""
    lr = "0.3" if model == "sgd" else "0.2"
    scale = "1.5" if model == "sgd" else "1"
    r = cli("simulate", "--model", model, "--lr", lr, "--init-scale", scale, "--no-ema", "--eta", "0,1",
            "--steps", "40", "--dim", "3", "--batch", "64", "--samples", "41", "--out", str(area / "o"))
    assert r.returncode == 0, r.stderr
    assert "diverged" in r.stdout
    runs = json.loads((area / "o" / "trajectories.json").read_text())["runs"]
    assert [run["summary"]["diverged"] for run in runs] == [True, False]
    assert runs[0]["summary"]["diverged_by_t"] > 0 and runs[1]["summary"]["diverged_by_t"] is None


def test_euler_stops_once_nothing_is_finite_and_solve_ivp_reports_a_blow_up():
    calls = [0]

    def blowup(t, y):
        calls[0] += 1
        return y * y

    tr = integrate.euler(blowup, np.array([1.0]), 0.5, 100_000, samples=11)
    assert calls[0] < 2 * integrate.CHECK_EVERY  # stopped at the first check after the overflow
    assert np.isnan(tr.y[-1]).all() and np.isfinite(tr.y[0]).all()
    np.testing.assert_allclose(tr.t, np.linspace(0, 50_000, 11))
    with pytest.raises(integrate.IntegrationError, match="RK45 failed at t = 0.9"):
        integrate.ode(blowup, np.array([1.0]), 5.0)  # the step shrinks below the spacing of t near t* = 1
    with pytest.raises(integrate.IntegrationError, match="passed 1e.30 .*blows up in finite time"):
        integrate.ode(blowup, np.array([1e20]), 1.0)  # t* = 1e-20: the state passes 1e30 first


def test_a_stiff_solve_ivp_run_gives_up_instead_of_hanging():
    """An explicit method on a stiff flow (``--integrator rk45 --init-scale 1e6``) shrank its step for days; after
    integrate.MAX_EVALUATIONS evaluations it gives up with a one-line IntegrationError (a RunError: exit status 1)."""
    with pytest.raises(integrate.IntegrationError, match="gave up .* expected --integrator lsoda"):
        integrate.ode(lambda t, y: -1e12 * y, np.array([1.0]), 1.0, max_evaluations=1000)


# --- 6. p0 < 0 under EMA -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p0", ["-0.1", "-0.5", "-2", "-10"])
def test_negative_p0_under_ema_is_one_line(p0, area):
    line = assert_one_line_error(cli("simulate", f"--p0={p0}", "--out", str(area / "o")), 2, f"--p0 {p0} ")
    assert "--no-ema" in line and "--tau" in line
    assert not (area / "o").exists()


@pytest.mark.parametrize("extra", [["--no-ema"], ["--tau", "1"]])
def test_negative_p0_at_fixed_tau_is_accepted(extra, area):
    r = cli("simulate", "--p0=-0.5", *extra, "--steps", "50", "--samples", "5", "--out", str(area / "o"))
    assert r.returncode == 0, r.stderr


# --- 8. fuzz -------------------------------------------------------------------------------------------------------

NOT_A_NUMBER = ["", "abc", "nan", "inf", "-inf", "1e308", "-1e308"]
LIST_JUNK = ["0.1,", ",", "0.1,nan", "1e308,0.1", "0.1;0.2"]
NOT_AN_INT = ["", "abc", "nan", "inf", "1.5", "2.5e-1", "1e308", "1e17", "-1"]  # 1e5 is read (as --help writes it)
NEGATIVE_TAU = ["-1", "-1e-9"]  # tau = W_a/W of an EMA target is never negative (issue 22: p* = -0.667 "stable")
CHOICE_JUNK = ["", "abc", "nan", "MODES"]

FLAGS: dict[str, dict[str, list[str]]] = {
    "phase-portrait": {"--eta": NOT_A_NUMBER + LIST_JUNK + ["-1"], "--alpha-p": NOT_A_NUMBER + ["0", "-1"],
                       "--tau": NOT_A_NUMBER + NEGATIVE_TAU, "--sigma2": NOT_A_NUMBER + ["-1"], "--method": CHOICE_JUNK,
                       "--lambda": NOT_A_NUMBER + ["0"], "--f-branch": CHOICE_JUNK,
                       "--temperature": NOT_A_NUMBER + ["0"], "--beta": NOT_A_NUMBER + ["-1"]},
    "fixed-points": {"--eta": NOT_A_NUMBER + LIST_JUNK + ["-1"], "--tau": NOT_A_NUMBER + NEGATIVE_TAU,
                     "--sigma2": NOT_A_NUMBER + ["-1"], "--method": CHOICE_JUNK, "--lambda": NOT_A_NUMBER + ["0"],
                     "--f-branch": CHOICE_JUNK, "--temperature": NOT_A_NUMBER + ["0"],
                     "--beta": NOT_A_NUMBER + ["-1"]},
    "simulate": {
        "--model": CHOICE_JUNK, "--predictor": CHOICE_JUNK, "--integrator": CHOICE_JUNK,
        "--tau": NOT_A_NUMBER + NEGATIVE_TAU, "--tau0": NOT_A_NUMBER,
        "--beta": NOT_A_NUMBER + LIST_JUNK + ["0", "1.5", "-1"],
        "--eta": NOT_A_NUMBER + LIST_JUNK + ["-1"], "--eta-p": NOT_A_NUMBER + ["-1"],
        "--alpha-p": NOT_A_NUMBER + ["0", "-1"], "--sigma2": NOT_A_NUMBER + ["-1"], "--eps": NOT_A_NUMBER + ["-1"],
        "--lr": NOT_A_NUMBER + ["0", "-1"], "--init-scale": NOT_A_NUMBER + ["0", "-1"],
        "--rho": NOT_A_NUMBER + ["1", "-0.1"], "--p0": NOT_A_NUMBER + LIST_JUNK + ["-1"],
        "--s0": NOT_A_NUMBER + LIST_JUNK + ["-1", "1,2", " "],
        "--dim": NOT_AN_INT + ["0", "100000"], "--steps": NOT_AN_INT + ["0", str(2 ** 53 + 1), "1e12", "1000000000000"],
        "--batch": NOT_AN_INT + ["0"], "--seed": NOT_AN_INT, "--samples": NOT_AN_INT + ["1"],
        "--method": CHOICE_JUNK, "--lambda": NOT_A_NUMBER + ["0"], "--f-branch": CHOICE_JUNK,
        "--temperature": NOT_A_NUMBER + ["0"],
    },
}
EXTRA = {("simulate", "--batch"): ["--model", "sgd"], ("simulate", "--rho"): ["--model", "sgd"],
         ("simulate", "--dim"): ["--model", "matrix"], ("simulate", "--init-scale"): ["--model", "matrix"],
         ("simulate", "--eps"): ["--predictor", "directpred"],
         **{(cmd, flag): ["--method", "simclr" if flag == "--temperature" else "unigrad"] for cmd in ("phase-portrait",
            "fixed-points", "simulate") for flag in ("--lambda", "--f-branch", "--temperature", "--beta")}}
CASES = [(cmd, flag, value) for cmd, flags in FLAGS.items() for flag, values in flags.items() for value in values]
CASES += [(cmd, "--out", kind) for cmd in COMMANDS for kind in ("proc", "file", "under-file", "empty")]


@pytest.mark.parametrize("command,flag,value", CASES)
def test_fuzz_bad_values_are_one_line_errors_that_write_nothing(command, flag, value, area):
    if flag == "--out":
        if value == "proc" and not Path("/proc").is_dir():
            pytest.skip("no /proc here")
        args = [*COMMANDS[command], "--out", _bad_outs(area)[value]]
    else:
        args = [*COMMANDS[command], *EXTRA.get((command, flag), []), f"{flag}={value}", "--out", str(area / "o")]
    before = snapshot(area)
    r = cli(*args)
    line = assert_one_line_error(r, 2)
    assert flag in line or (flag == "--out" and "--out" in line), line
    assert snapshot(area) == before


def test_fuzz_covers_every_numeric_and_choice_flag():
    """A flag added to a command without a fuzz entry fails here."""
    from ssltheory.cli import theory_cmds

    skip = {"out", "ema", "stop_grad"}
    for command, fn in (("phase-portrait", theory_cmds.phase_portrait), ("fixed-points", theory_cmds.fixed_points_cmd),
                        ("simulate", theory_cmds.simulate)):
        names = {"--" + n.replace("_", "-") for n in fn.__code__.co_varnames[:fn.__code__.co_argcount]} - {
            "--" + s.replace("_", "-") for s in skip}
        names = {"--lambda" if n == "--lam" else n for n in names}  # the flag spelled as the paper's λ
        assert names == set(FLAGS[command]), (command, names ^ set(FLAGS[command]))


# --- 9. figures ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eta", [0.01, 0.002])
def test_phase_portrait_draws_the_saddle_and_the_origin_apart(eta):
    params = ModeParams(eta=eta, tau_fixed=1.0, ema=False)
    pm, pp = parabola_fixed_points(eta, 1.0, params.sigma2)
    window = plots.default_window(params, 1.0)
    points = [fp for fp in fixed_points(params, tau=1.0) if isinstance(fp, plots.FixedPoint)]
    marks = {m["name"]: m for m in plots.fixed_point_markers(points, params, 1.0, window)}
    origin, saddle, stable = marks["0"], marks[r"$p^*_-$"], marks[r"$p^*_+$"]
    assert saddle["kind"] == "saddle" and origin["kind"] == "stable" and saddle["p"] == pytest.approx(pm)
    # the crowded pair: a large ring underneath, a small dot on top, two labels at different offsets
    assert not origin["filled"] and origin["ms"] > 2 * saddle["ms"] and saddle["filled"]
    assert saddle["zorder"] > origin["zorder"]
    assert origin["arrow"] and saddle["arrow"] and origin["offset"] != saddle["offset"]
    assert "origin" in origin["label"] and f"{pm:.3g}" in saddle["label"] and "saddle" in saddle["label"]
    # the isolated p*_+ keeps the default marker
    assert stable["filled"] and stable["ms"] == 9.0 and not stable["arrow"] and f"{pp:.3g}" in stable["label"]

    fig = plots.phase_portrait_figure([params], 1.0)
    ax = fig.axes[0]
    drawn = {(round(float(line.get_xdata()[0]), 6), line.get_markersize(), line.get_markerfacecolor() == "none")
             for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata()) == 1}
    assert (0.0, origin["ms"], True) in drawn and (round(pm, 6), saddle["ms"], False) in drawn
    texts = [t.get_text() for t in ax.texts]
    assert origin["label"] in texts and saddle["label"] in texts
    plots.close(fig)


def test_isolated_fixed_points_keep_one_marker_size():
    params = ModeParams(eta=1.0, tau_fixed=1.0, ema=False)
    points = [fp for fp in fixed_points(params, tau=1.0) if isinstance(fp, plots.FixedPoint)]
    (only,) = plots.fixed_point_markers(points, params, 1.0, plots.default_window(params, 1.0))
    assert only["name"] == "0" and only["filled"] and not only["arrow"]


@pytest.mark.parametrize("make", [
    lambda: plots.phase_portrait_figure([ModeParams(eta=0.01, tau_fixed=1.0, ema=False)], 1.0),
    lambda: plots.phase_portrait_figure([ModeParams(eta=e, tau_fixed=1.0, ema=False) for e in (0, 0.01, 1)], 1.0),
    lambda: plots.parabola_flow_figure([0.1], 1.0, 0.5),
])
def test_figure_titles_are_inside_the_figure(make):
    fig = make()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for text in [fig._suptitle, *(ax.title for ax in fig.axes)]:
        bb = text.get_window_extent(renderer)
        assert bb.x0 >= 0 and bb.x1 <= fig.bbox.width and bb.y1 <= fig.bbox.height, text.get_text()
    plots.close(fig)


def test_matrix_figure_has_labels_a_mode_legend_and_a_signed_lambda_min():
    res = simulate(SimulationConfig(model="matrix", steps=600, lr=0.05, samples=60))
    lam = res.series["lambda_min_K"]
    assert lam.min() < 0 < lam.max()  # this run crosses zero: the sign is the information
    panels = plots.matrix_panels(res)
    assert all(p["ylabel"] for p in panels)
    last = panels[-1]
    assert last["yscale"] == "symlog" and np.array_equal(last["lines"][0]["y"], lam)
    legend = [line["label"] for line in panels[0]["lines"] if line["label"]]
    assert legend[0].startswith("mode j = 1") and len(legend) <= plots.MODE_LEGEND_MAX
    assert "Thm 1 residual (euler)" in [line["label"] for line in panels[3]["lines"]]

    fig = plots.matrix_figure([res])
    axes = fig.axes
    assert len(axes) == 5 and all(ax.get_ylabel() for ax in axes)
    assert axes[4].get_yscale() == "symlog"
    np.testing.assert_array_equal(axes[4].lines[0].get_ydata(), lam)
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == legend
    assert "euler" in axes[3].get_title()
    plots.close(fig)


def test_theorem1_residual_names_its_integrator():
    base = dict(model="matrix", dim=3, steps=200, lr=0.05, samples=20)
    euler = simulate(SimulationConfig(**base)).summary
    assert euler["theorem1_integrator"] == "euler" and "solve_ivp" in euler["theorem1_note"]
    assert euler["max_theorem1_residual"] > 1e-6  # Euler's O(alpha)
    rk = simulate(SimulationConfig(integrator="rk45", **base)).summary
    assert rk["theorem1_integrator"] == "rk45" and rk["max_theorem1_residual"] < 1e-6  # the README's bound
    sgd = simulate(SimulationConfig(**{**base, "model": "sgd", "batch": 16})).summary
    assert sgd["theorem1_integrator"] == "sgd"
