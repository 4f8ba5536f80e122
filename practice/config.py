"""One configuration object per training run, validated, saved as ``config.json`` in the run folder.

A run's settings are declared by the components that use them (:mod:`.settings`): the data's in
:mod:`.data.registry` and each dataset's entry, the data schedules' in :mod:`.data.schedule`, the backbones' in
:mod:`.models`, the methods' in :mod:`.methods.registry` and beside each objective, the predictors' in
:mod:`.methods.predictors`, the target branch's in :mod:`.methods.target`, the optimizer's in :mod:`.engine.optim`,
the measurements' in :mod:`.measure`, the speed knobs' in :mod:`.engine.step` and :mod:`.engine.graphed`. Each
declares its cross-field rules beside its code. :class:`TrainConfig` assembles them: one value per declared
setting, checked against its type, bounds and choices, then the ``only`` rules and every component's rules; and the
few settings that belong to the run as a whole (epochs, batch, seed, checkpoints). The ``train`` command's flags,
their ``--help`` panels, the validation of a settings file (``--config FILE``) and of the experiment recipes are all
made from these declarations, so a new knob is one declaration where it is used.

Defaults follow the DirectPred paper's STL-10/CIFAR-10 protocol and its official code (directpred.md §4):
SGD lr 0.03, momentum 0.9, weight decay 4e-4 on trunk and predictor, batch 128, EMA gamma_a = 0.996, constant lr,
projector 512 -> 512 -> 128, DirectPred rho = 0.3, eps = 0.1 (the paper's best STL-10 setting), freq = 1.
Names map to the theory (``practice/studies/compare.py`` has the mapping): ``weight_decay`` is torch SGD's coupled
decay, so eta = weight_decay in the ODE's time t = step * lr (the paper writes eta_bar = alpha * eta for a per-step
shrink); ``alpha_p`` is the predictor's learning-rate ratio; ``gamma_a`` is 1 - alpha * beta.

``synthetic`` is the theory's own setting: x0 ~ N(0, I_n1) drawn fresh for every sample, views x0 + sigma * noise,
the two-layer linear network (``--backbone linear``: W of shape (n2, n1), no projector, W_p of shape (n2, n2))
trained with the L2 loss of Eq. 1 by plain SGD (momentum 0), W_p starting at ``predictor_init_scale`` * I so that it
stays aligned with F and the decoupled modes (Eqs. 11-13) hold.
"""

from __future__ import annotations

import difflib
import importlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from ssltheory.practice.settings import RULES, SETTINGS, Setting, declare, settings
from ssltheory.theory.checks import ConfigError
from ssltheory.theory.io import save_json

COMPONENTS = ("ssltheory.practice.data.registry", "ssltheory.practice.data.datasets",
              "ssltheory.practice.data.schedule", "ssltheory.practice.data.mixing", "ssltheory.practice.models",
              "ssltheory.practice.methods.registry", "ssltheory.practice.methods.predictors",
              "ssltheory.practice.methods.target", "ssltheory.practice.engine.optim",
              "ssltheory.practice.measure.live", "ssltheory.practice.measure.evaluate",
              "ssltheory.practice.measure.quantities", "ssltheory.practice.engine.step",
              "ssltheory.practice.engine.graphed", "ssltheory.practice.report.loggers")
"""The modules that declare settings and rules (a method's own objective module is imported by its registry)."""

for _module in COMPONENTS:
    importlib.import_module(_module)

declare(
    Setting("epochs", 100, "epochs", "Optimisation", int, paper="100", low=1, high=10**6),
    Setting("batch_size", 128, "global batch size, split over torchrun ranks", "Optimisation", int, paper="128",
            low=2, high=10**7),
    Setting("max_steps", 0, "stop after this many steps [0: all epochs]", "Optimisation", int, low=0),
    Setting("seed", 0, "random seed", "Optimisation", int, low=0, high=2**31),
    Setting("checkpoint_every", 0, "steps between checkpoints [0: every epoch]", "Measurement", int, low=0),
)


class TrainConfig:
    """Every setting of a run, one attribute each (``cfg.alpha_p``), made from keywords named as the settings
    (``TrainConfig(dataset="digits", epochs=3)``; what is not given keeps its default). ``ssltheory train --help``
    lists them by panel with the paper's defaults. ``cfg.resolved_NAME`` is what an ``auto`` setting resolves to
    (its owner's rule; with ``(device_type, world)`` for the device-dependent ones). Equal when every value is."""

    def __init__(self, **values: Any) -> None:
        unknown = [k for k in values if k not in SETTINGS]
        if unknown:
            raise ConfigError(_unknown(unknown[0]))
        for s in settings():
            object.__setattr__(self, s.name, s.check(values.get(s.name, s.default)))
        for s in settings():
            if s.only is not None and getattr(self, s.name) != s.default and not s.only(self):
                given = s.spelling if getattr(self, s.name) is True else f"{s.spelling} {_shown(getattr(self, s.name))}"
                raise ConfigError(f"{given} is only for {s.only_for}: expected no {s.spelling} here")
        for check in RULES:
            check(self)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a TrainConfig is not changed in place: use cfg.replace({name}=...)")

    def __getattr__(self, name: str) -> Any:
        """``resolved_NAME``: the value setting NAME resolves to (a function of the device for ``device`` ones)."""
        if name.startswith("resolved_"):
            s = SETTINGS.get(name.removeprefix("resolved_"))
            if s is not None and s.resolve is not None:
                if s.device:
                    return lambda device_type, world=1: s.resolve(self, device_type, world)
                return s.resolve(self)
            if s is not None:
                return getattr(self, s.name)
        raise AttributeError(f"TrainConfig has no setting {name!r}")

    def adjust(self, name: str, value: Any) -> None:
        """For a component's rule only: store the value a setting means (``--data-fraction 0.5`` under ``iid`` is
        the stream's ``last`` part), checked as any value."""
        object.__setattr__(self, name, SETTINGS[name].check(value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TrainConfig({', '.join(f'{k}={v!r}' for k, v in self.changes().items())})"

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (names as settings), validated as a new config."""
        return TrainConfig(**{**self.to_dict(), **changes})

    @staticmethod
    def settings() -> list[Setting]:
        """Every declared setting, panel by panel (the command line's flags, in order)."""
        return settings()

    def resolved(self, device, world: int) -> dict[str, Any]:
        """What a run of these settings resolves to on ``device`` with ``world`` ranks (config.json's ``run``)."""
        t = device.type
        return {"device": str(device), "data_path": self.resolved_data_path(t), "precision": self.resolved_precision(t),
                "world_size": world, "cuda_graph": self.resolved_cuda_graph(t, world), "form": self.resolved_form,
                "positive_target": self.resolved_positive_target, "negative_target": self.resolved_negative_target,
                "lambda": self.resolved_lam, "directpred_solver": self.resolved_directpred_solver(t),
                "per_rank_batch": self.batch_size // world, "global_batch": self.batch_size,
                "lr_used": self.resolved_lr,
                "lr_rule": f"lr x {self.lr_scale} scaling of batch {self.batch_size} / 256" if self.lr_scale != "none"
                else "lr as given (batch size is global, so it does not depend on ranks)"}

    def to_dict(self) -> dict[str, Any]:
        """``{name: value}`` of every setting (config.json's ``config``)."""
        return {s.name: getattr(self, s.name) for s in settings()}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> TrainConfig:
        """A config from ``{name: value}`` (names as settings, ``predictor_bias``, or as flags, ``predictor-bias``);
        an unknown name is a one-line :class:`ConfigError` naming it and the nearest known ones. The same
        validation as the command line's: settings files and experiment recipes come through here."""
        return cls(**field_names(settings))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config saved in a run's ``config.json`` (of this or an earlier version, see :func:`migrate`; a
        setting no longer known is left out)."""
        return cls(**{k: v for k, v in migrate(d).items() if k in SETTINGS})

    def changes(self) -> dict[str, Any]:
        """The settings that differ from the defaults, ``{name: value}`` (and the dataset)."""
        return {k: v for k, v in self.to_dict().items() if v != SETTINGS[k].default or k == "dataset"}

    def save(self, path: Path, run: dict[str, Any] | None = None) -> None:
        """Write the config with library versions, the git commit and ``run`` (what was resolved at start: device,
        data path, precision, world size, per-rank batch, the lr used), as JSON."""
        save_json(path, {"config": self.to_dict(), "environment": environment(), "run": run or {}})

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """The config saved in ``path`` (a run's config.json); a one-line error when it is damaged."""
        try:
            doc = json.loads(Path(path).read_text())
            settings = doc["config"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} cannot be read ({type(e).__name__}): expected the config.json that ssltheory "
                              "train writes") from None
        return cls.from_dict(settings)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unknown(name: str) -> str:
    near = difflib.get_close_matches(str(name), sorted(SETTINGS), n=3)
    hint = f" (did you mean {', '.join(flag_of(n) for n in near)}?)" if near else ""
    return f"setting {name!r} is not known{hint}: expected one of the flags of 'ssltheory train --help'"


def field_names(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` keyed by setting name (``alpha-p`` and ``--alpha-p`` become ``alpha_p``); a one-line error for a
    name that is no setting, with the nearest flags."""
    spelled = {flag_of(n).lstrip("-").replace("-", "_"): n for n in SETTINGS}  # --lambda is setting lam
    out = {}
    for key, value in settings.items():
        name = str(key).lstrip("-").replace("-", "_")
        name = spelled.get(name, name)
        if name not in SETTINGS:
            raise ConfigError(_unknown(key))
        out[name] = value
    return out


def migrate(d: dict[str, Any]) -> dict[str, Any]:
    """Settings saved by earlier versions under today's names: ``ema`` is now ``gamma_a``, ``schedule``
    ``lr_schedule``; the optimal predictor's ridge was ``eps``; ``compile`` was true / false."""
    d = dict(d)
    for old, new in (("ema", "gamma_a"), ("schedule", "lr_schedule")):
        if old in d and new not in d:
            d[new] = d.pop(old)
    if d.get("predictor") == "optimal" and "ridge" not in d and "eps" in d:
        d["ridge"] = d["eps"]
    if isinstance(d.get("compile"), bool):
        d["compile"] = "default" if d["compile"] else "none"
    return d


MAX_SETTINGS_BYTES = 16 * 2**20
"""Largest ``--config`` file read: settings are a few hundred bytes, so a larger file is another file given by
mistake (a checkpoint, a data set), refused before it is read into memory."""


def load_settings(path: Path) -> dict[str, Any]:
    """The settings in a file, ``{name: value}``: a run's saved ``config.json`` (its ``config`` block), or a JSON
    or YAML file a person wrote (names as fields or flags: ``alpha_p`` or ``alpha-p``). Checked when a config is made
    from them (:meth:`TrainConfig.from_settings`); a file that cannot be read is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path} is not a file: expected a JSON or YAML file of settings")
    try:
        size = path.stat().st_size
        if size > MAX_SETTINGS_BYTES:
            raise ConfigError(f"--config {path} holds {size / 2**20:.3g} MiB: expected a JSON or YAML file of settings "
                              f"(at most {MAX_SETTINGS_BYTES // 2**20} MiB)")
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"--config {path} cannot be read ({e.strerror or e}): expected a readable JSON or YAML "
                          "file of settings") from None
    try:
        text = data.decode("utf-8-sig")  # (a byte-order mark, as some editors write, is not part of the text)
    except UnicodeDecodeError as e:
        raise ConfigError(f"--config {path} is not text (byte {data[e.start]:#04x} at offset {e.start} is not "
                          "UTF-8): expected a JSON or YAML text file of settings") from None
    if not text.strip():
        raise ConfigError(f"--config {path} is empty: expected a JSON or YAML mapping of settings, such as "
                          '{"dataset": "digits", "epochs": 3}')
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as e:  # a parse error of either format
        raise ConfigError(f"--config {path} cannot be parsed ({' '.join(str(e).split())[:160]}): expected JSON, or "
                          "YAML for .yaml / .yml") from None
    if not isinstance(doc, dict):
        what = "no settings" if doc is None else f"a {type(doc).__name__}"  # YAML of comments only reads as None
        raise ConfigError(f"--config {path} holds {what}: expected a mapping of settings")
    if isinstance(doc.get("config"), dict):  # a saved config.json
        doc = migrate(doc["config"])
    return doc


def flag_of(name: str) -> str:
    """How the command line spells setting ``name`` (``--alpha-p``; ``DATASET`` for the argument)."""
    return SETTINGS[name].spelling


def choices_of(name: str) -> tuple[str, ...] | None:
    """The accepted values of setting ``name`` (its registry's names, for a registry), or None."""
    return SETTINGS[name].accepted()


def environment() -> dict[str, str]:
    """Versions of Python and the libraries that shape a run, and the git commit of this checkout."""
    import numpy
    import torch
    import torchvision

    env = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
           "numpy": numpy.__version__, "platform": platform.platform()}
    try:
        root = Path(__file__).resolve().parent
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                           timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = "unknown"
    return env

