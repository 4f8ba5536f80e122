"""ssltheory.practice: real networks trained with the theory's knobs and measured like the theory.

Read top-down: :mod:`.train` (the loop, one screen) calls :mod:`.step` (model assembly and one optimisation step),
which assembles a run from the registries of :mod:`.methods` (target mode, objective, predictor), :mod:`.predictors`
and :mod:`.target`; :mod:`.schedule` says which items each epoch sees; :mod:`.rundir` owns the run folder;
:mod:`.config` declares every setting once. Measurements: :mod:`.measure`, :mod:`.live`, :mod:`.evaluate`; the theory
beside a run: :mod:`.compare`, :mod:`.report`, :mod:`.plots`.
"""
