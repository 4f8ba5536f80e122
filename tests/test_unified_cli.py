"""The unified gradient forms on the command line: ``fixed-points`` and ``simulate`` with ``--method``, the byol
default unchanged, one-line errors, and ``experiment theory-unified``."""

from __future__ import annotations

import json

import pytest

from conftest import cli


def _json(path) -> dict:
    return json.loads(path.read_text())


def test_fixed_points_of_unigrad_are_the_closed_form_with_their_kinds(tmp_path):
    r = cli("fixed-points", "--method", "unigrad", "--lambda", "2", "--eta", "0.1", "--out", str(tmp_path / "ema"))
    assert r.returncode == 0, r.stderr
    data = _json(tmp_path / "ema" / "fixed_points.json")
    (reg,) = data["regimes"]
    assert reg["s_star"] == pytest.approx(0.9 / (2 * 2.25), rel=1e-12) and data["collapse_condition"] == "eta >= 1"
    assert [(fp["s"], fp["kind"]) for fp in reg["fixed_points"]] == [(0.0, "saddle"), (pytest.approx(0.2), "stable")]
    assert (tmp_path / "ema" / "unified_flow.png").stat().st_size > 20_000
    r = cli("fixed-points", "--method", "unigrad", "--lambda", "2", "--eta", "0.1,1.5", "--no-ema",
            "--out", str(tmp_path / "sg"))
    assert r.returncode == 0, r.stderr
    regimes = _json(tmp_path / "sg" / "fixed_points.json")["regimes"]
    assert [fp["kind"] for fp in regimes[0]["fixed_points"]] == ["unstable", "stable"]
    assert [fp["kind"] for fp in regimes[1]["fixed_points"]] == ["stable"] and regimes[1]["collapsed"]


def test_simulate_sgd_of_a_unified_form_settles_near_the_matrix_flows_whitened_point(tmp_path):
    """Each batch's own F, batch 1024, d = 8: every mode within 3% of s* = (1 - eta) / (1 + sigma^2)^2 = 0.4 (measured
    2.1%; the full-matrix flow from the same W(0) is within 0.13%)."""
    args = ("simulate", "--method", "unigrad", "--eta", "0.1", "--lr", "0.01", "--steps", "2000", "--dim", "8",
            "--samples", "50")
    for model in ("sgd", "matrix"):
        r = cli(*args, "--model", model, "--batch", "1024", "--out", str(tmp_path / model))
        assert r.returncode == 0, r.stderr
    sgd, flow = (_json(tmp_path / m / "trajectories.json")["runs"][0]["summary"] for m in ("sgd", "matrix"))
    assert sgd["s_star"] == pytest.approx(0.4)
    assert sgd["max_rel_error_s_star"] < 0.03 and flow["max_rel_error_s_star"] < 0.005
    assert sgd["collapsed_modes"] == 0


def test_phase_portrait_of_a_unified_form_draws_one_mode_with_its_fixed_points(tmp_path):
    r = cli("phase-portrait", "--method", "barlowtwins", "--lambda", "2", "--eta", "0,0.5,1.2", "--out",
            str(tmp_path / "bt"))
    assert r.returncode == 0, r.stderr
    data = _json(tmp_path / "bt" / "fixed_points.json")
    assert [p["s_star"] for p in data["panels"]] == pytest.approx([0.5, 0.25, 0.0])  # (1 - eta) / lam, kappa = 1
    assert [fp["kind"] for fp in data["panels"][1]["fixed_points"]] == ["saddle", "stable"]
    assert (tmp_path / "bt" / "phase_portrait.png").stat().st_size > 50_000
    assert _json(tmp_path / "bt" / "config.json")["command"] == "phase-portrait"


@pytest.mark.parametrize("args", [["fixed-points"], ["fixed-points", "--eta", "0.01,0.3", "--tau", "0.8"],
                                  ["simulate", "--steps", "300", "--lr", "0.05", "--samples", "20"],
                                  ["simulate", "--model", "matrix", "--no-ema", "--dim", "3", "--steps", "100",
                                   "--samples", "10"]])
def test_byol_is_the_default_and_its_outputs_are_unchanged(args, tmp_path):
    a, b = tmp_path / "plain", tmp_path / "byol"
    assert cli(*args, "--out", str(a)).returncode == 0
    assert cli(*args, "--method", "byol", "--out", str(b)).returncode == 0
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and "config.json" in names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_simulate_modes_of_unigrad_ends_at_s_star(tmp_path):
    r = cli("simulate", "--method", "unigrad", "--lambda", "2", "--eta", "0.1", "--steps", "20000", "--lr", "0.05",
            "--samples", "20", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    (run,) = _json(tmp_path / "trajectories.json")["runs"]
    s_star = 0.9 / (2 * 2.25)
    assert run["method"] == "unigrad" and run["summary"]["s_star"] == pytest.approx(s_star)
    assert run["summary"]["final_s"] == pytest.approx([s_star] * 5, abs=1e-4)  # from s0 = 0.01 ... 2
    assert run["summary"]["final_tau"] == pytest.approx([1.0] * 5, abs=1e-4)
    assert _json(tmp_path / "config.json")["runs"][0]["params"]["lam"] == 2.0
    assert (tmp_path / "trajectories.png").stat().st_size > 20_000


@pytest.mark.parametrize("ema", ["--ema", "--no-ema"])
def test_simulate_matrix_of_barlow_twins_whitens(ema, tmp_path):
    r = cli("simulate", "--method", "barlowtwins", "--model", "matrix", ema, "--eta", "0.2", "--dim", "3",
            "--steps", "4000", "--lr", "0.05", "--samples", "10", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    summary = _json(tmp_path / "trajectories.json")["runs"][0]["summary"]
    assert summary["final_s"] == pytest.approx([0.8] * 3, rel=1e-6)  # kappa = 1: s* = 1 - eta
    assert summary["final_corr_Wa_W"] == pytest.approx(1.0)


@pytest.mark.parametrize("args,needle", [
    (["simulate", "--method", "unigrad", "--lambda", "0"], "--lambda 0"),
    (["fixed-points", "--method", "unigrad", "--lambda", "0"], "--lambda 0"),
    (["simulate", "--method", "unigrad", "--lambda", "x"], "--lambda"),
    (["simulate", "--model", "sgd", "--method", "unigrad", "--batch", "0"], "--batch 0"),
    (["simulate", "--model", "reduced", "--method", "vicreg"], "'reduced'"),
    (["simulate", "--method", "unigrad", "--p0", "0.1"], "--p0 0.1"),
    (["simulate", "--lambda", "2"], "--lambda 2"),
    (["fixed-points", "--method", "barlowtwins", "--f-branch", "online"], "--f-branch 'online'"),
    (["fixed-points", "--method", "nope"], "'nope'"),
    (["phase-portrait", "--method", "unigrad", "--alpha-p", "2"], "--alpha-p 2"),
    (["phase-portrait", "--lambda", "2"], "--lambda 2"),
    (["phase-portrait", "--method", "simclr", "--lambda", "3"], "--lambda 3"),
])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    r = cli(*args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ssltheory: error:") and needle in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_experiment_theory_unified_writes_the_comparison(tmp_path):
    r = cli("experiment", "theory-unified", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "forms" / "unified_forms.png").stat().st_size > 50_000
    assert _json(tmp_path / "results.json")["cells"][0]["command"].startswith("ssltheory fixed-points --method all")
    data = _json(tmp_path / "forms" / "unified_forms.json")
    assert data["etas"] == [0.04, 0.5, 1.1] and data["eta"][-1] == pytest.approx(1.2)
    s_star = {f["label"]: [r["s_star"] for r in f["fixed_points_at_beta"]] for f in data["forms"]}
    for label in ("unigrad, F momentum", "unigrad, F online", "vicreg"):
        assert s_star[label] == pytest.approx([0.96 / 2.25, 0.5 / 2.25, 0.0])
    assert s_star["barlowtwins"] == pytest.approx([0.96, 0.5, 0.0])
    assert s_star["simclr (approx.)"] == pytest.approx([0.96 / 11.25, 0.5 / 11.25, 0.0])
    for f in data["forms"]:  # the collapsed point: a saddle below eta = 1 at every beta, stable beyond
        assert [set(rec["kind"]) for rec in f["collapsed_vs_beta"]] == [{"saddle"}, {"saddle"}, {"stable"}]
    assert data["byol"]["collapse_threshold_eta"] == pytest.approx(1 / 6)
