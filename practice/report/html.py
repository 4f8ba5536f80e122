"""One self-contained HTML page per run: settings, every figure (embedded), the method's quantities (UniGrad's
Fig. 2 and 3), the theory beside it, final numbers."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from ssltheory.practice.engine.rundir import FIGURE, RunDir
from ssltheory.practice.measure.quantities import is_measurement, upgrade
from ssltheory.theory.checks import ConfigError, RunError


def _png(data: bytes, alt: str) -> str:
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">' \
           f"<figcaption>{html.escape(alt)}</figcaption></figure>"


def _fig_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _table(rows: dict, title: str) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
    return f"<h2>{html.escape(title)}</h2><table>{body}</table>"


def _fmt(v) -> str:
    if v is None:  # not measured (a W_p's numbers without a linear predictor; kNN without labels)
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


METHOD_ROWS = {
    "positive_cosine": "pair similarity: mean cos of the two views' outputs",
    "negative_cosine": "pair similarity: mean cos between different images' outputs",
    "decorrelation": "mean |off-diagonal| of the correlation matrix of the l2-normalised outputs",
    "s_method": "method's F spectrum: its top eigenvalues (trace 1 under l2 normalisation)",
    "balance_ratio": "balance: mean ||lambda G_neg|| / ||u2||",
    "adaptive_balance": "balance: mean per-sample lambda_i of BYOL-DirectPred's gradient form",
    "grad_cosine": "simplified vs exact gradient: mean cosine",
}
"""The rows of the report's table of the method's quantities (UniGrad's Fig. 2 and 3), by record key."""


def method_table(records: list[dict]) -> str:
    """The HTML table of the last measurement's method quantities (:data:`METHOD_ROWS`: key, value, what it is),
    or "" when the run has none of the UniGrad methods' keys (:data:`.plots.METHOD_KEYS`; a run from before them)."""
    from ssltheory.practice.report.plots import METHOD_KEYS, METHOD_MODES

    meas = [upgrade(r) for r in records if is_measurement(r)]
    if not meas or not any(r.get(k) is not None for r in meas for k in METHOD_KEYS):
        return ""
    last = meas[-1]
    rows = []
    for key, what in METHOD_ROWS.items():
        v = last.get(key)
        if v is None:
            continue
        if key == "s_method":
            what = f"{what}, top {min(METHOD_MODES, len(v))} of {len(v)}"
            v = "[" + ", ".join(f"{float(x):.4g}" for x in v[:METHOD_MODES]) + "]"
        rows.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(_fmt(v))}</td>"
                    f"<td>{html.escape(what)}</td></tr>")
    where = f"step {last.get('step')}, epoch {_fmt(last.get('epoch'))}"
    return (f"<h2>the method's quantities (last measurement: {html.escape(where)})</h2>"
            f"<p>over the run: the third row of {FIGURE}</p><table>{''.join(rows)}</table>")


def collapse_section(records: list[dict], run_dir: Path) -> str:
    """The live collapse watch's verdict (every warning with its step, the alarm at the end, the last live AUC) and,
    when ``ssltheory forecast`` measured the run, its offline AUC and probe accuracy."""
    meas = [upgrade(r) for r in records if is_measurement(r)]
    if not meas:
        return ""
    warned = [r for r in meas if r.get("warning")]
    items = [f"<li>step {r['step']}: {html.escape(str(r['warning']))}</li>" for r in warned] or [
        "<li>no collapse warning during the run</li>"]
    last = meas[-1]
    alarm = "on" if last.get("collapse_alarm") else "off"
    text = (f"<h2>collapse watch</h2><p>alarm at the end: <b>{alarm}</b>; live AUC of the last measurement "
            f"on {last.get('probe_n', 'the')} probe images {_fmt(last.get('probe_auc'))} (step {last.get('step')}; "
            f"higher = more collapsed)</p><ul>{''.join(items)}</ul>")
    from ssltheory.practice.studies.forecast import POINT, read_point

    p = read_point(run_dir / POINT)
    if p is not None:
        text += _table({k: p.get(k) for k in ("step", "auc", "k_eq", "probe_acc", "knn_acc")},
                       "offline collapse AUC (paper protocol) and linear probe (ssltheory forecast)")
    return text


def build_report(run_dir: Path, n_modes: int = 8) -> str:
    """The HTML text of ``run_dir``'s report. The compare section says why when the theory cannot be applied."""
    from ssltheory.practice.report.plots import compare_figure
    from ssltheory.practice.studies.compare import compare_run, to_json

    run_dir = Path(run_dir)
    cfg = RunDir(run_dir).config()
    parts = [f"<h1>ssltheory run {html.escape(run_dir.name)}</h1>",
             f"<p>{html.escape(cfg.dataset)}, {html.escape(cfg.method)}, predictor {html.escape(cfg.predictor)}</p>"]
    summary = run_dir / "summary.json"
    if summary.exists():
        parts.append(_table(upgrade(json.loads(summary.read_text())), "final numbers"))
    probe = run_dir / "probe.json"
    if probe.exists():
        parts.append(_table(json.loads(probe.read_text()), "linear probe (last epoch)"))
    try:
        parts.append(method_table(RunDir(run_dir).records()))
        parts.append(collapse_section(RunDir(run_dir).records(), run_dir))
    except ConfigError as e:  # no metrics.jsonl, or a damaged line in it: the compare section says so too
        parts.append(f"<p>no table of the method's quantities: {html.escape(str(e))}</p>")
    pngs = sorted(run_dir.glob("*.png"))
    if not (run_dir / FIGURE).exists():
        parts.append(f"<p>no {FIGURE}: the run has not finished (training writes it at its end)</p>")
    for png in pngs:
        parts.append(_png(png.read_bytes(), png.name))
    parts.append("<h2>theory beside the run</h2>")
    try:
        c = compare_run(run_dir, n_modes)
        parts.append(_png(_fig_bytes(compare_figure([c])), "compare: measured (solid) vs ODE (dashed)"))
        j = to_json(c)
        parts.append(_table({k: v for k, v in j["agreement"].items() if not isinstance(v, dict)}, "agreement"))
        parts.append(_table({a["assumption"]: ("holds: " if a["holds"] else "does not hold: ") + a["why"]
                             for a in j["assumptions"]}, "assumptions of the theory"))
        parts.append(_table(j["ode_constants"], "ODE constants"))
        parts.append(_table(j["qualitative"], "qualitative"))
    except (ConfigError, RunError) as e:
        parts.append(f"<p>not compared: {html.escape(str(e))}</p>")
    parts.append(_table(cfg.to_dict(), "settings (config.json)"))
    style = ("body{font-family:sans-serif;max-width:1400px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ssltheory {html.escape(run_dir.name)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
