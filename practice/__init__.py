"""ssltheory.practice: real networks trained with the theory's knobs and measured like the theory.

Read top-down: :mod:`.engine.train` (the loop) calls :mod:`.engine.step` (model assembly and one optimisation
step), which assembles a run from the registries of :mod:`.methods` (method, objective, predictor, target branch)
and :mod:`.data` (dataset, augmentation, feed, data schedule); :mod:`.engine.rundir` owns the run folder;
:mod:`.config` assembles the settings every component declares (:mod:`.settings`). Measurements: :mod:`.measure`;
what reads finished runs: :mod:`.studies`; figures and pages: :mod:`.report`. ``docs/layout.md`` has the table.

The notebook API (``docs/api.md`` has an example of each; the names are stable), imported on first use so that
``import ssltheory.practice`` stays cheap:

- :class:`TrainConfig` (every setting, ``TrainConfig(dataset="digits", max_steps=20)``) and :func:`train` (``cfg``,
  ``run_dir``) -> the summary dict; :class:`Progress` is what ``on_progress`` receives;
- :func:`load_metrics` (``run_dir``) -> ``{name: array}``, :func:`load_run` (the model at its last checkpoint),
  :func:`read_metrics` (the raw records);
- :func:`compare_run` (``run_dir``) -> :class:`Comparison` (the theory beside the run), :func:`compare_figure`;
- :func:`collapse_auc` (features), :func:`spectrum_auc` (singular values), :func:`run_spectrum` (a run's backbone on
  its whole train split) -> :class:`Spectrum`: the collapse metric of Li et al. (2022);
- :func:`run_figure` (a run's ``dynamics.png`` from its records, as a matplotlib figure).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "train": "engine.train", "Progress": "engine.train", "TrainingDiverged": "engine.train",
    "load_run": "engine.rundir", "read_metrics": "engine.rundir",
    "load_metrics": "studies.records",
    "compare_run": "studies.compare", "Comparison": "studies.compare",
    "compare_figure": "report.plots", "run_figure": "report.plots",
    "collapse_auc": "measure.quantities", "spectrum_auc": "measure.quantities",
    "run_spectrum": "studies.collapse", "Spectrum": "studies.collapse",
}
"""Each exported name and the module (under ``ssltheory.practice``) it lives in."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``ssltheory.practice.train`` and the other exports of :data:`_EXPORTS`, imported when first asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssltheory.practice' has no attribute {name!r}")
    value = getattr(import_module(f"ssltheory.practice.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
