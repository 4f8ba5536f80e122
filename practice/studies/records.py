"""A run's ``metrics.jsonl`` as numpy arrays, for notebooks and scripts: :func:`load_metrics`.

The file is the run's record (:mod:`..engine.rundir` writes and reads it; a last line cut short is left out, damage
elsewhere is a one-line error); this module only reshapes its records into one array per quantity. A run folder
whose ``metrics.jsonl`` was compressed (``metrics.jsonl.gz``, as under ``experiments/results/``) is read too.
"""

from __future__ import annotations

import gzip
import math
import tempfile
from pathlib import Path

import numpy as np

from ssltheory.practice.engine.rundir import METRICS, read_metrics
from ssltheory.practice.measure.quantities import is_measurement, upgrade
from ssltheory.theory.checks import ConfigError


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS
    if path.exists():
        return read_metrics(path)
    packed = run_dir / (METRICS + ".gz")
    if packed.exists():
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / METRICS
            plain.write_bytes(gzip.decompress(packed.read_bytes()))
            return read_metrics(plain)
    raise ConfigError(f"RUN_DIR {run_dir} has no {METRICS}: expected the folder of a run of ssltheory train")


def _column(records: list[dict], key: str) -> np.ndarray:
    """One quantity over ``records``: (K,) for numbers (NaN where a record lacks it; bool for flags), (K, d) for
    lists (NaN-padded to the longest)."""
    values = [r.get(key) for r in records]
    if any(isinstance(v, list) for v in values):
        width = max(len(v) for v in values if isinstance(v, list))
        out = np.full((len(values), width), np.nan)
        for i, v in enumerate(values):
            if isinstance(v, list):
                out[i, :len(v)] = [math.nan if x is None else x for x in v]
        return out
    if all(isinstance(v, bool) for v in values):
        return np.array(values, bool)
    if key in ("step", "probe_n", "feature_dim") and all(isinstance(v, int) for v in values):
        return np.array(values, np.int64)
    return np.array([math.nan if v is None or isinstance(v, bool) else v for v in values], np.float64)


def load_metrics(run_dir: Path | str) -> dict[str, np.ndarray]:
    """The records of ``run_dir/metrics.jsonl`` as arrays, one per quantity (the keys the run wrote).

    Live measurements (every ``--measure-every`` steps), K of them: ``step`` (K,) int (optimisation steps since the
    start), ``epoch`` (K,) float (fractional epochs), each scalar quantity (K,) float64, NaN where a record lacks it
    (``loss``, ``lr``, ``probe_auc``, ``probe_k_eq``, ``feature_std_x_sqrt_d``, ``asymmetry``, ``positive_cosine``,
    ...; ``collapse_alarm`` (K,) bool), and each spectrum (K, d) float64, NaN-padded: ``s`` the eigenvalues of the
    running correlation F̂ of the predictor input, descending (units of the projector output squared); ``p_sym``
    the eigenvalues of sym(W_p), descending; ``p_along_F`` u_jᵀ W_p u_j and ``alignment`` cos(u_j, W_p u_j) for F̂'s
    eigenvectors u_j in the order of ``s``; with a linear backbone also ``s_model``, ``p_model``, ``tau_model``
    (s_j, p_j, tau_j read off the weights). kNN evaluations (step 0 and every ``--knn-every`` epochs), J of them:
    ``knn_step`` (J,) int, ``knn_epoch`` (J,) float, ``knn_acc`` (J,) top-1 accuracy in [0, 1].

    The ODE's time of a measurement is ``step * lr / (1 - momentum)`` (``docs/compare.md``). Records of runs from
    before a quantity was renamed are read under today's names. A folder without metrics is a one-line
    :class:`ConfigError`.
    """
    run_dir = Path(run_dir)
    records = [upgrade(r) for r in _records(run_dir)]
    meas = [r for r in records if is_measurement(r)]
    knn = [r for r in records if "knn_acc" in r and not is_measurement(r)]
    keys = [k for k in dict.fromkeys(k for r in meas for k in r) if not any(isinstance(r.get(k), str) for r in meas)]
    out = {k: _column(meas, k) for k in keys}
    out.setdefault("step", np.zeros(0, np.int64))
    out["knn_step"] = np.array([r["step"] for r in knn], np.int64)
    out["knn_epoch"] = np.array([r.get("epoch", math.nan) for r in knn], np.float64)
    out["knn_acc"] = np.array([r["knn_acc"] for r in knn], np.float64)
    return out
