"""ssltheory.practice: real networks trained with the theory's knobs and measured like the theory.

Read top-down: :mod:`.engine.train` (the loop) calls :mod:`.engine.step` (model assembly and one optimisation
step), which assembles a run from the registries of :mod:`.methods` (method, objective, predictor, target branch)
and :mod:`.data` (dataset, augmentation, feed, data schedule); :mod:`.engine.rundir` owns the run folder;
:mod:`.config` assembles the settings every component declares (:mod:`.settings`). Measurements: :mod:`.measure`;
what reads finished runs: :mod:`.studies`; figures and pages: :mod:`.report`. README's "Layout" has the table.
"""
