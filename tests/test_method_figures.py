"""The UniGrad methods' quantities (UniGrad Fig. 2 and 3) in the run figure and the report: a third row of panels
when the records have them, none when they do not, drawing exactly the records' values; tested on records written
here by hand (no training)."""

from __future__ import annotations

import json

import numpy as np

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.report.html import build_report, method_table
from ssltheory.practice.report.plots import METHOD_MODES, METHOD_PANELS, method_panels, run_figure

TITLES = {"pair_similarity": "pair similarity", "decorrelation": "decorrelation",
          "s_method": "method's F spectrum", "balance": "balance", "grad_cosine": "simplified vs exact gradient"}


def old_record(k: int, d: int = 8) -> dict:
    """A measurement of a BYOL loss-form run from before the UniGrad methods: positive_cosine, no method keys."""
    return {"step": 10 * (k + 1), "epoch": k + 1.0, "s": list(np.linspace(1, 0.2, d)), "loss": 1.0 - 0.1 * k,
            "probe_auc": 0.7, "probe_k_eq": 60.0, "feature_std_x_sqrt_d": 0.7, "positive_cosine": 0.5 + 0.05 * k,
            "p_sym": list(np.linspace(1, 0.5, d)), "alignment": [1.0] * d, "asymmetry": 0.01, "asymmetry_top": 0.01}


def new_record(k: int, d: int = 12, adaptive: bool = True) -> dict:
    """A measurement with every method key (a BYOL-DirectPred gradient-form run); d > METHOD_MODES eigenvalues."""
    s_method = sorted(np.abs(np.sin(np.arange(1, d + 1) * (k + 2.0))) + 1e-3, reverse=True)
    rec = {**old_record(k), "negative_cosine": 0.02 * k - 0.01, "decorrelation": 0.3 - 0.02 * k,
           "s_method": [float(v) for v in np.array(s_method) / sum(s_method)], "balance_ratio": 0.8 + 0.1 * k,
           "grad_cosine": 0.9 - 0.3 * k}
    if adaptive:
        rec["adaptive_balance"] = 2.0 + 0.5 * k
    return rec


def titles(fig) -> list[str]:
    return [a.get_title() for a in fig.axes]


def test_a_run_from_before_gets_no_method_panels_and_its_figure_is_unchanged():
    recs = [old_record(k) for k in range(4)]
    assert method_panels(recs) == []
    fig = run_figure(recs, "t", "linear")
    assert len(fig.axes) == 8 + 1  # the 2 x 4 grid and the AUC panel's k_eq axis
    assert tuple(fig.get_size_inches()) == (21, 8.8)
    assert not set(METHOD_PANELS) & set(fig.panels)
    for t in titles(fig):
        assert not any(t.startswith(v) for v in TITLES.values() if v != "decorrelation"), t
        assert not t.startswith("decorrelation:")


def test_every_method_panel_is_drawn_in_a_third_row_with_its_title():
    recs = [new_record(k) for k in range(3)]
    assert method_panels(recs) == list(METHOD_PANELS)
    fig = run_figure(recs, "t", "directpred")
    for name, title in TITLES.items():
        assert name in fig.panels
        assert any(t.startswith(title) for t in titles(fig)), title
    top = next(a for a in fig.axes if a.get_title().startswith("loss"))  # the second row
    third = next(a for a in fig.axes if a.get_title().startswith("pair similarity"))
    fig.draw_without_rendering()  # the layout is made when the figure is drawn
    assert third.get_window_extent().y1 < top.get_window_extent().y0  # below the two rows of every run
    assert tuple(fig.get_size_inches())[1] > 8.8


def test_the_panels_draw_the_records_values():
    recs = [new_record(k) for k in range(4)]
    fig = run_figure(recs, "t", "directpred")
    x = [r["epoch"] for r in recs]
    col = {k: [r[k] for r in recs] for k in ("positive_cosine", "negative_cosine", "decorrelation", "balance_ratio",
                                             "adaptive_balance", "grad_cosine")}
    p = fig.panels
    for key in ("positive_cosine", "negative_cosine"):
        np.testing.assert_allclose(p["pair_similarity"]["x"][key], x)
        np.testing.assert_allclose(p["pair_similarity"]["y"][key], col[key])
    np.testing.assert_allclose(p["decorrelation"]["y"], col["decorrelation"])
    np.testing.assert_allclose(p["grad_cosine"]["y"], col["grad_cosine"])
    for key in ("balance_ratio", "adaptive_balance"):
        np.testing.assert_allclose(p["balance"]["y"][key], col[key])
    s = p["s_method"]["y"]
    assert s.shape == (4, METHOD_MODES)
    np.testing.assert_allclose(s, [r["s_method"][:METHOD_MODES] for r in recs])
    np.testing.assert_allclose(p["s_method"]["reference"]["y"], [r["s"][0] / sum(r["s"]) for r in recs])

    def drawn(title):  # the y data of every line of the panel (and its twin axis), by legend label
        a = next(a for a in fig.axes if a.get_title().startswith(title))
        axes = [b for b in fig.axes if b is a or (b.get_position().bounds == a.get_position().bounds)]
        return [(ln.get_label(), np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float))
                for b in axes for ln in b.lines if len(ln.get_xdata()) == len(recs)]

    for title, keys in (("pair similarity", ("positive_cosine", "negative_cosine")),
                        ("decorrelation", ("decorrelation",)), ("simplified vs exact", ("grad_cosine",)),
                        ("balance", ("balance_ratio", "adaptive_balance"))):
        lines = drawn(title)
        assert len(lines) == len(keys), title
        for (_, xs, ys), key in zip(lines, keys, strict=True):
            np.testing.assert_allclose(xs, x)
            np.testing.assert_allclose(ys, col[key], err_msg=key)
    spec = drawn("method's F spectrum")
    assert len(spec) == METHOD_MODES + 1  # the top eigenvalues and F̂'s s_1 / tr F̂
    for j in range(METHOD_MODES):
        np.testing.assert_allclose(spec[j][2], s[:, j])
    gc = next(a for a in fig.axes if a.get_title().startswith("simplified vs exact"))
    assert gc.get_ylim() == (-1.05, 1.05)
    assert next(a for a in fig.axes if a.get_title().startswith("method's F")).get_yscale() == "log"


def test_only_the_panels_a_method_has_keys_for_are_added():
    recs = [new_record(k, adaptive=False) for k in range(3)]
    for r in recs:  # e.g. a method whose objective measures nothing: the output quantities only
        for key in ("s_method", "balance_ratio", "grad_cosine"):
            del r[key]
    fig = run_figure(recs, "t", "linear")
    assert method_panels(recs) == ["pair_similarity", "decorrelation"]
    assert {"pair_similarity", "decorrelation"} <= set(fig.panels)
    assert not {"s_method", "balance", "grad_cosine"} & set(fig.panels)
    assert not any(t.startswith(("balance", "method's F", "simplified")) for t in titles(fig))
    recs = [new_record(k, adaptive=False) for k in range(3)]  # a balance ratio, no adaptive lambda: no twin axis
    fig = run_figure(recs, "t", "linear")
    assert list(fig.panels["balance"]["y"]) == ["balance_ratio"]


def test_a_measurement_without_a_key_is_left_out_of_that_curve_and_non_positive_eigenvalues_are_noted():
    recs = [new_record(k) for k in range(4)]
    del recs[1]["grad_cosine"]
    recs[2]["s_method"] = [0.9, 0.2, -0.1] + [0.0] * 9
    fig = run_figure(recs, "t", "directpred")
    assert fig.panels["grad_cosine"]["x"].tolist() == [recs[k]["epoch"] for k in (0, 2, 3)]
    assert "not drawn" in fig.panels["s_method"]["note"]
    assert fig.panels["s_method"]["y"][2, 2] == -0.1


def test_one_measurement_is_drawn_with_markers():
    fig = run_figure([new_record(0)], "t", "directpred")
    for name, title in TITLES.items():
        a = next(a for a in fig.axes if a.get_title().startswith(title))
        assert any(ln.get_marker() == "o" for ln in a.lines), name


def make_run(path, records: list[dict]) -> None:
    path.mkdir()
    TrainConfig(dataset="digits").save(path / "config.json")
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_the_report_has_a_table_of_the_last_measurements_method_quantities(tmp_path):
    recs = [new_record(k) for k in range(3)] + [{"step": 40, "epoch": 4.0, "knn_acc": 0.8}]
    make_run(tmp_path / "run", recs)
    page = build_report(tmp_path / "run")
    last = recs[2]
    assert "the method's quantities (last measurement: step 30, epoch 3)" in page
    for key in ("positive_cosine", "negative_cosine", "decorrelation", "balance_ratio", "adaptive_balance",
                "grad_cosine"):
        assert f"<tr><th>{key}</th><td>{last[key]:.4g}</td>" in page, key
    top = ", ".join(f"{v:.4g}" for v in last["s_method"][:METHOD_MODES])
    assert f"<tr><th>s_method</th><td>[{top}]</td>" in page and "top 8 of 12" in page


def test_the_report_of_a_run_from_before_has_no_method_table(tmp_path):
    make_run(tmp_path / "run", [old_record(k) for k in range(3)])
    assert method_table([old_record(k) for k in range(3)]) == ""
    assert "quantities (last measurement" not in build_report(tmp_path / "run")
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\n{garbage\n{"step": 2}\n')
    assert "no table of the method" in build_report(tmp_path / "run")  # a damaged file: said, not a crash
