"""How one training cell of a recipe is run: read when finished, resumed when interrupted, refused when its folder
holds a run of other settings (shared by :mod:`.run` and :mod:`.phase`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.rundir import CONFIG, SUMMARY, RunDir
from ssltheory.theory.checks import ConfigError

Trainer = Callable[[TrainConfig, Path, bool, bool], dict]
"""(config, run folder, resume, force) -> summary: how a training cell is run (the library's train, or the CLI's
with a progress bar)."""


def default_trainer(cfg: TrainConfig, run_dir: Path, resume: bool, force: bool) -> dict:
    from ssltheory.practice.engine.train import train

    return train(cfg, run_dir, resume=resume, force=force)


def run_cell(cfg: TrainConfig, run_dir: Path, trainer: Trainer = default_trainer, force: bool = False) -> dict:
    """Train ``cfg`` into ``run_dir`` unless the folder holds it already: the summary of a finished run with the
    same settings is read, an unfinished one resumed from its checkpoint; a folder that holds a run with other
    settings is replaced only with ``force`` (a one-line error otherwise)."""
    folder = RunDir(run_dir)
    held = folder.holds_run()
    same = folder.file(CONFIG).exists() and folder.config() == cfg
    if same and folder.file(SUMMARY).exists() and not force:
        return json.loads(folder.file(SUMMARY).read_text())
    if held and not same and not force:
        raise ConfigError(f"cell {run_dir} holds a run with other settings: expected another --out, or --force to "
                          "replace it")
    resume = same and not force and folder.load_checkpoint() is not None
    return trainer(cfg, run_dir, resume, force or (held and not resume))
