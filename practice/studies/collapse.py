"""Li, Efros & Pathak's collapse metric, offline: the paper's protocol (collapse.md B1) on a trained model.

What is measured: the pooled backbone features (N, d) of the **whole train split** of the model's dataset (the
kNN bank / probe split of :mod:`..data.datasets`), passed through the eval transform (no augmentation, model in eval
mode), optionally l2-normalised per sample (``l2_normalise``; off, as in the paper), then centred; their singular values
sigma give the cumulative curve c_k, the AUC and k_eq through :func:`..measure.quantities.collapse_auc` /
:func:`..measure.quantities.spectrum_auc`, the one home of the formula. Inputs, each giving one or more spectra:

- a run folder of ``ssltheory train`` (``config.json`` + ``checkpoint.pt``): the model is rebuilt from its settings
  and the online backbone loaded, as ``ssltheory probe`` does (:func:`run_spectrum`);
- a torchvision ResNet state dict (``resnet18|34|50``; the official code's SimSiam checkpoints and prefixed keys such
  as ``module.encoder.`` are unwrapped, the ``fc`` head dropped), read on a named dataset (:func:`state_dict_spectrum`);
- singular values already computed (:func:`read_spectra`): JSON as ``tests/fixtures/collapse_resnet18_spectra.json``
  (``{"spectra": {name: {"sigma": [...], ...}}}``; ``collapse.json`` written here has the same form), the official
  code's ``*_svd.pt`` (``{"stds": S}``), or a plain ``.npy`` / ``.txt`` of one spectrum.

:func:`write_results` writes the notebook's four plots (singular values, sigma_i / sigma_1, the cumulative curve, AUC
against a sweep variable) and ``collapse.json`` / ``collapse.csv`` / ``config.json``. Bad input is a one-line
:class:`~ssltheory.theory.checks.ConfigError`; nothing here prints.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ssltheory.practice.measure.quantities import collapse_auc, spectrum_auc
from ssltheory.theory.checks import ConfigError, RunError
from ssltheory.theory.io import make_out_dir, save_figure, save_json, write_atomic

ARCHS = ("resnet18", "resnet34", "resnet50")
"""Architectures a state dict may be read as (torchvision's, with ``fc`` dropped: 512, 512, 2048 features)."""


def state_dict_datasets() -> tuple[str, ...]:
    """Datasets a state dict can be read on: every image dataset of the registry (:mod:`..data.registry`)."""
    from ssltheory.practice.data.registry import DATASETS

    return tuple(n for n, spec in DATASETS.items() if not spec.linear)

SPECTRA_SUFFIXES = (".json", ".npy", ".txt", ".csv", ".pt", ".pth")
"""Files :func:`read_spectra` reads."""
FIGURES = ("singular_values.png", "normalised_singular_values.png", "cumulative.png", "auc_sweep.png")
"""The notebook's four plots (B1.7); the last only for two or more inputs."""
PASS_THROUGH = re.compile(r"auc_\w+")
"""Numbers of a spectra file's entry that are carried into collapse.json as given (``auc_official``)."""

Progress = Callable[[float], None]
"""``update(fraction)``, called as feature extraction goes (a progress bar's)."""


@dataclass
class Spectrum:
    """One input's singular values and where they came from.

    ``sigma``: (m,) singular values of the centred (n, d) features, descending, m = min(n, d) (``torch.svd(X).S``);
    ``n``: the number of samples (None when a spectra file does not say); ``dim``: the feature width d (None when a
    spectra file does not say: m is taken for it); ``label``: its position on the sweep's x axis as the input gives
    it (a spectra entry's ``label``, else None); ``given``: numbers carried through as given (``auc_official``);
    ``info``: what was read (kind, step, dataset, arch, l2 normalisation)."""

    name: str
    source: str
    sigma: np.ndarray
    n: int | None = None
    dim: int | None = None
    label: Any = None
    given: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        """{auc, k_eq, sigma, cumulative} of :func:`..measure.quantities.spectrum_auc`."""
        return spectrum_auc(self.sigma)


# ---------------------------------------------------------------------------------------------------------------
# spectra files


def read_spectra(path: Path | str) -> list[Spectrum]:
    """The spectra in ``path`` (see the module docstring for the formats); a one-line ConfigError naming the file,
    the entry and what is accepted when it cannot be read or a spectrum is not a 1-D array of finite, non-negative
    numbers."""
    path = Path(path)
    flag = f"--spectra {path}"
    if not path.exists():
        raise ConfigError(f"{flag} does not exist: expected a file of singular values ({', '.join(SPECTRA_SUFFIXES)})")
    if path.is_dir():
        raise ConfigError(f"{flag} is a folder: expected a file of singular values ({', '.join(SPECTRA_SUFFIXES)}); "
                          "a run folder goes as RUN_DIR")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return _json_spectra(path, json.loads(path.read_text()))
        if suffix == ".npy":
            values: Any = np.load(path, allow_pickle=False)
        elif suffix in (".txt", ".csv"):
            values = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=1)
        elif suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            values = obj.get("stds", obj.get("sigma")) if isinstance(obj, dict) else obj
            if values is None:
                raise ConfigError(f"{flag} holds a dict without 'stds' or 'sigma' (keys {', '.join(map(str, obj))}): "
                                  "expected the official code's {stds: S} or a tensor of singular values")
        else:
            raise ConfigError(f"{flag}: {path.suffix or 'no suffix'} is not read: expected one of "
                              f"{', '.join(SPECTRA_SUFFIXES)}")
    except ConfigError:
        raise
    except Exception as e:  # not JSON, not an array, truncated, a pickle
        raise ConfigError(f"{flag} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:100]}): expected "
                          "JSON {spectra: {name: {sigma: [...]}}}, a .npy / .txt of one spectrum or {stds: S} (.pt)"
                          ) from None
    return [Spectrum(path.stem, str(path), _sigma(values, flag), info={"kind": "spectrum file"})]


def _json_spectra(path: Path, doc: Any) -> list[Spectrum]:
    """Spectra of a JSON document: {spectra: {name: {sigma, label?, n?, auc_*?}}} (or {name: [...]}), or one list."""
    flag = f"--spectra {path}"
    if isinstance(doc, list):
        return [Spectrum(path.stem, str(path), _sigma(doc, flag), info={"kind": "spectrum file"})]
    entries = doc.get("spectra") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{flag} has no 'spectra' mapping: expected {{\"spectra\": {{NAME: {{\"sigma\": [...]}}}}}} "
                          "(as tests/fixtures/collapse_resnet18_spectra.json) or a list of singular values")
    out = []
    for name, entry in entries.items():
        values = entry.get("sigma") if isinstance(entry, dict) else entry
        if values is None:
            raise ConfigError(f"{flag}: entry {name!r} has no 'sigma': expected {{\"sigma\": [singular values]}}")
        sigma = _sigma(values, f"{flag}: entry {name!r}")
        meta = entry if isinstance(entry, dict) else {}
        n, dim = meta.get("n"), meta.get("d")
        given = {k: v for k, v in meta.items() if PASS_THROUGH.fullmatch(k) and isinstance(v, (int, float))}
        out.append(Spectrum(str(name), str(path), sigma, n=int(n) if isinstance(n, int) else None,
                            dim=int(dim) if isinstance(dim, int) and dim >= len(sigma) else None,
                            label=meta.get("label"), given=given, info={"kind": "spectrum file"}))
    return out


def _sigma(values: Any, where: str) -> np.ndarray:
    """``values`` as a (d,) float64 array of finite, non-negative numbers, descending; a one-line error otherwise."""
    try:
        a = np.asarray(torch.as_tensor(values).detach().cpu() if torch.is_tensor(values) else values, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} is not an array of numbers: expected a 1-D list of singular values") from None
    a = np.squeeze(a) if a.ndim > 1 else a
    if a.ndim != 1 or a.size == 0:
        raise ConfigError(f"{where} has shape {tuple(np.shape(values))}: expected one spectrum, a 1-D array of d "
                          "singular values (d >= 1)")
    if not np.isfinite(a).all() or (a < 0).any():
        bad = a[~np.isfinite(a) | (a < 0)][0]
        raise ConfigError(f"{where} holds {bad:g}: expected finite, non-negative singular values")
    return np.sort(a)[::-1].copy()


# ---------------------------------------------------------------------------------------------------------------
# models


@torch.no_grad()
def features(net: nn.Module, ds, device: torch.device, batch_size: int = 256, workers: int = 0,
             on_progress: Progress | None = None) -> torch.Tensor:
    """Pooled backbone features (N, d), float32 on the CPU, of every item of ``ds`` (in order, eval mode), through
    :func:`..measure.evaluate.extract`; ``on_progress(fraction)`` after each batch."""
    from ssltheory.practice.measure.evaluate import extract

    total, done = max(len(ds), 1), [0]

    def hook(_module, inputs, _output) -> None:
        done[0] += inputs[0].shape[0]
        if on_progress is not None:
            on_progress(done[0] / total)

    handle = net.register_forward_hook(hook)
    try:
        x, _ = extract(net, ds, device, batch_size=batch_size, workers=workers)
    finally:
        handle.remove()
    return x


def measure(x: torch.Tensor, l2_normalise: bool = False) -> np.ndarray:
    """Singular values (min(N, d),) of (N, d) features after optional per-sample l2 normalisation, centred
    (:func:`..measure.quantities.collapse_auc`)."""
    if l2_normalise:
        x = nn.functional.normalize(x.double(), dim=1)
    return np.asarray(collapse_auc(x)["sigma"])


def run_spectrum(run_dir: Path | str, device: torch.device, *, l2_normalise: bool = False, batch_size: int = 256,
                 workers: int = 0, data_dir: str | None = None, on_progress: Progress | None = None) -> Spectrum:
    """The spectrum of a training run's online backbone (its last checkpoint) on its dataset's whole train split.

    ``data_dir`` replaces the run's ``--data-dir`` (a run moved to another machine)."""
    from ssltheory.practice.engine.rundir import load_run

    run_dir = Path(run_dir)
    cfg, data, model, step = load_run(run_dir, device, data_dir)
    x = features(model.online.backbone, data.train_eval, device, batch_size, workers, on_progress)
    info = {"kind": "run", "step": step, "dataset": cfg.dataset, "backbone": cfg.resolved_backbone,
            "image_size": cfg.resolved_image_size, "l2_normalised": l2_normalise}
    name = run_dir.name or run_dir.resolve().name
    return Spectrum(name, str(run_dir), measure(x, l2_normalise), n=x.shape[0], dim=x.shape[1], info=info)


def check_state_dict_args(arch: str | None, dataset: str | None) -> None:
    """A one-line error unless ``arch`` is in :data:`ARCHS` and ``dataset`` in :func:`state_dict_datasets`."""
    if arch not in ARCHS:
        raise ConfigError(f"--arch {arch!r} is not known: expected one of {', '.join(ARCHS)} with --state-dict"
                          if arch is not None else f"--state-dict needs --arch: expected one of {', '.join(ARCHS)}")
    known = state_dict_datasets()
    if dataset not in known:
        raise ConfigError(f"--dataset {dataset!r} is not known: expected one of {', '.join(known)} with --state-dict"
                          if dataset is not None else
                          f"--state-dict needs --dataset: expected one of {', '.join(known)}")


def load_resnet(path: Path | str, arch: str) -> nn.Module:
    """A torchvision ResNet backbone (``fc`` = Identity) with the weights of state dict ``path``, in eval mode.

    The file may be a plain state dict, or hold one under ``state_dict`` / ``model`` (the official code's
    checkpoints) or ``modules.online`` (a ``checkpoint.pt`` of ``ssltheory train``); keys are taken below the prefix of
    the shortest ``...conv1.weight`` (``module.encoder.`` and the like) and ``fc.*`` is dropped. The stem follows
    the weights: a 3x3 ``conv1`` is the CIFAR stem (no max-pool), and its input channels those of ``conv1``."""
    from ssltheory.practice.models import resnet

    path = Path(path)
    flag = f"--state-dict {path}"
    if not path.is_file():
        raise ConfigError(f"{flag} {'is a folder' if path.is_dir() else 'does not exist'}: expected a file holding a "
                          f"torchvision {arch} state dict (a run folder goes as RUN_DIR)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{flag} cannot be read as weights ({type(e).__name__}: {' '.join(str(e).split())[:100]}): "
                          f"expected a torchvision {arch} state dict (tensors only)") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if isinstance(obj, dict) and isinstance(obj.get("modules"), dict) and isinstance(obj["modules"].get("online"),
                                                                                     dict):
        obj = obj["modules"]["online"]
    stems = sorted((k[: -len("conv1.weight")] for k in obj if isinstance(k, str) and k.endswith("conv1.weight")),
                   key=len) if isinstance(obj, dict) else []
    if not stems:
        raise ConfigError(f"{flag} holds no ResNet weights (no conv1.weight): expected a torchvision {arch} state "
                          "dict")
    prefix = stems[0]
    weights = {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix) and torch.is_tensor(v)}
    weights = {k: v for k, v in weights.items() if not k.startswith("fc.")}
    conv1 = weights["conv1.weight"]
    if conv1.ndim != 4:
        raise ConfigError(f"{flag}: conv1.weight has shape {tuple(conv1.shape)}: expected a ResNet's (64, C, k, k)")
    channels, small = int(conv1.shape[1]), int(conv1.shape[-1]) == 3
    net = resnet(arch, channels, small_input=small)
    try:
        missing, unexpected = net.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shapes differ
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))[:160]
        raise ConfigError(f"{flag} does not fit --arch {arch} ({first}): expected a {arch} state dict, or the --arch "
                          f"it was trained as ({', '.join(ARCHS)})") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        keys = [f"{len(ks)} {what} ({', '.join(ks[:2])}{', ...' if len(ks) > 2 else ''})"
                for ks, what in ((missing, "missing keys"), (unexpected, "unexpected keys")) if ks]
        raise ConfigError(f"{flag} does not fit --arch {arch}: {', '.join(keys)}: expected a {arch} state dict, or "
                          f"the --arch it was trained as ({', '.join(ARCHS)})")
    return net.eval()


class _GreyToRGB(nn.Module):
    """(B, 1, H, W) -> the wrapped net on (B, 3, H, W), the grey channel repeated."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1))


def state_dict_spectrum(path: Path | str, arch: str, dataset: str, device: torch.device, *,
                        data_dir: str = "data", image_size: int = 0, l2_normalise: bool = False,
                        batch_size: int = 256, workers: int = 0, on_progress: Progress | None = None) -> Spectrum:
    """The spectrum of a torchvision ResNet state dict's backbone on ``dataset``'s whole train split, through its
    eval transform at ``image_size`` (0: the dataset's default; ImageNet: Resize 256, CenterCrop 224 as the paper)."""
    from ssltheory.practice.config import TrainConfig
    from ssltheory.practice.data.datasets import build_data

    check_state_dict_args(arch, dataset)
    cfg = TrainConfig.from_settings({"dataset": dataset, "data_dir": data_dir, "image_size": image_size})
    net = load_resnet(path, arch)
    data = build_data(cfg)
    channels = net.conv1.in_channels
    if channels == 3 and data.in_channels == 1:
        net = _GreyToRGB(net)
    elif channels != data.in_channels:
        raise ConfigError(f"--state-dict {path}: conv1 takes {channels} channels and {dataset} images have "
                          f"{data.in_channels}: expected a {data.in_channels}- or 3-channel model")
    net = net.to(device)
    x = features(net, data.train_eval, device, batch_size, workers, on_progress)
    info = {"kind": "state dict", "arch": arch, "dataset": dataset, "image_size": cfg.resolved_image_size,
            "l2_normalised": l2_normalise}
    return Spectrum(Path(path).stem, str(path), measure(x, l2_normalise), n=x.shape[0], dim=x.shape[1], info=info)


# ---------------------------------------------------------------------------------------------------------------
# results


def unique_names(spectra: list[Spectrum]) -> list[Spectrum]:
    """The same spectra, a name that repeats getting ``#2``, ``#3``, ... (names key collapse.json)."""
    seen: dict[str, int] = {}
    out = []
    for s in spectra:
        k = seen[s.name] = seen.get(s.name, 0) + 1
        out.append(s if k == 1 else replace(s, name=f"{s.name}#{k}"))
    return out


def check_labels(labels: list[str] | None, n: int) -> None:
    """A one-line error unless ``labels`` (when given) has one value per input."""
    if labels is not None and len(labels) != n:
        raise ConfigError(f"--labels {','.join(labels)} has {len(labels)} values for {n} inputs: expected one label "
                          "per input, in the order RUN_DIRs, --spectra entries, --state-dict files")


def sweep(spectra: list[Spectrum], labels: list[str] | None = None, x_label: str | None = None) -> dict:
    """The x axis of the AUC-vs-sweep plot: ``{x, labels, ticks, x_label, log}``.

    x is ``labels`` when given (one per spectrum), else every spectrum's own label, else the leading number of every
    name ("1percent" -> 1, with ``x_label`` "percent" when all names share the unit), else the order given. When the
    labels are all numbers they are x (a log axis when all positive and spanning a factor of 10 or more, as the
    notebook's dataset fraction); otherwise x is 1, 2, ... and ``ticks`` names the points."""
    check_labels(labels, len(spectra))
    raw: list[Any] = list(labels) if labels is not None else [s.label for s in spectra]
    default_label = "label"
    if labels is None and any(v is None for v in raw):
        matches = [re.match(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(.*)", s.name) for s in spectra]
        if all(matches):
            raw = [m.group(1) for m in matches]
            units = {m.group(2).strip(" _-") for m in matches}
            default_label = units.pop() if len(units) == 1 and "" not in units else "number in the name"
        else:
            raw, default_label = [s.name for s in spectra], "input (order given)"
    try:
        x = [float(v) for v in raw]
        numeric = bool(np.isfinite(x).all()) and not any(isinstance(v, bool) for v in raw)
    except (TypeError, ValueError):
        numeric = False
    if not numeric:
        x = [float(i) for i in range(1, len(spectra) + 1)]
    log = numeric and min(x) > 0 and max(x) >= 10 * min(x)
    return {"x": x, "labels": x if numeric else [str(v) for v in raw], "ticks": None if numeric else
            [str(v) for v in raw], "x_label": x_label or default_label, "log": log}


def summarise(spectra: list[Spectrum], labels: list[str] | None = None, x_label: str | None = None,
              settings: dict | None = None) -> dict:
    """collapse.json: ``{description, normalisation, settings, spectra: {name: {sigma, cumulative, auc, k_eq, d, n,
    label, source, ...}}, sweep}`` (a spectra file :func:`read_spectra` reads back)."""
    from ssltheory.practice.measure.quantities import AUC_NORMALISATION

    axis = sweep(spectra, labels, x_label)
    entries = {}
    for s, label in zip(spectra, axis["labels"], strict=True):
        m = s.metrics()
        d = s.dim or len(m["sigma"])
        entry = {"auc": m["auc"], "k_eq": m["k_eq"], "d": d, "values": len(m["sigma"]), "n": s.n, "label": label,
                 "source": s.source, **s.given, **s.info}
        if s.n is not None and s.n < 4 * d:
            entry["warning"] = (f"N = {s.n} samples for d = {d} dimensions (N < 4d): the spectrum is cut off by N, "
                                "not only by the features (the paper's metric assumes N >> d)")
        entries[s.name] = {**entry, "sigma": m["sigma"], "cumulative": m["cumulative"]}
    l2 = {bool(s.info.get("l2_normalised")) for s in spectra if "l2_normalised" in s.info}
    return {"description": "Li, Efros & Pathak's collapse metric (collapse.md B1): c_k = sum_{i<=k} sigma_i / "
                           "sum sigma of the centred features' singular values (m = min(N, d) of them, "
                           "as torch.svd(X).S), AUC = mean_k c_k in [(m+1)/(2m), 1] (1 = rank one), k_eq = 1 "
                           "+ 2 m (1 - AUC)",
            "normalisation": AUC_NORMALISATION if l2 != {True} else AUC_NORMALISATION.replace(
                "no l2 normalisation", "l2-normalised per sample before centring"),
            "settings": settings or {}, "spectra": entries,
            "sweep": {**{k: axis[k] for k in ("x", "ticks", "x_label", "log")}, "names": [s.name for s in spectra],
                      "auc": [entries[s.name]["auc"] for s in spectra]}}


def figures(doc: dict) -> dict[str, Figure]:
    """The notebook's plots (B1.7) from :func:`summarise`'s document: singular values (log y), sigma_i / sigma_1
    (log y), the cumulative curve c_k (with the flat spectrum's k / d), and, for two or more inputs, AUC against the
    sweep."""
    entries = doc["spectra"]
    figs = {}
    for name, ylabel, norm in (("singular_values.png", "σ_i", False),
                               ("normalised_singular_values.png", "σ_i / σ_1", True)):
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.subplots()
        for key, e in entries.items():
            s = np.asarray(e["sigma"], float)
            s = s / s[0] if norm and s[0] > 0 else s
            k = np.arange(1, len(s) + 1)
            pos = s > 0  # zeros have no place on a log axis
            ax.plot(k[pos], s[pos], lw=1.2, label=f"{key} (AUC {e['auc']:.3f})")
        ax.set(yscale="log", xlabel="index i (descending)", ylabel=ylabel,
               title=("normalised " if norm else "") + "singular values of centred backbone features")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        figs[name] = fig
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for key, e in entries.items():
        c = np.asarray(e["cumulative"], float)
        ax.plot(np.arange(1, len(c) + 1), c, lw=1.2, label=f"{key} (AUC {e['auc']:.3f}, k_eq {e['k_eq']:.0f})")
    d = max(len(e["cumulative"]) for e in entries.values())
    ax.plot([0, d], [0, 1], ls=":", color="0.5", lw=1, label="flat spectrum (AUC (m+1)/2m)")
    ax.set(xlabel="k", ylabel="c_k = (Σ of σ_i, i ≤ k) / Σ σ", ylim=(0, 1.02),
           title="cumulative curve (AUC = its mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    figs["cumulative.png"] = fig
    if len(entries) >= 2:
        sw = doc["sweep"]
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.subplots()
        ax.plot(sw["x"], sw["auc"], marker="o")
        if sw["log"]:
            ax.set_xscale("log")
        if sw["ticks"] is not None:
            ax.set_xticks(sw["x"], sw["ticks"], rotation=30, ha="right", fontsize=7)
        ms = {e.get("values", e["d"]) for e in entries.values()}  # the floor (m + 1) / 2m of m singular values
        if len(ms) == 1:
            (m,) = ms
            ax.axhline((m + 1) / (2 * m), ls=":", color="0.5", lw=1, label=f"flat spectrum, m = {m} values")
            ax.axhline(1.0, ls="--", color="0.5", lw=1, label="rank one")
            ax.legend(fontsize=7)
        ax.set(xlabel=sw["x_label"], ylabel="AUC (higher = more collapsed)", title="collapse AUC across inputs")
        ax.grid(alpha=0.3)
        figs["auc_sweep.png"] = fig
    return figs


def csv_text(doc: dict) -> str:
    """collapse.csv: one row per input: name, auc, k_eq, d, n, label, source."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "auc", "k_eq", "d", "n", "label", "source"])
    for name, e in doc["spectra"].items():
        w.writerow([name, f"{e['auc']:.9g}", f"{e['k_eq']:.9g}", e["d"], "" if e["n"] is None else e["n"],
                    e["label"], e["source"]])
    return buf.getvalue()


def write_results(out: Path | str, doc: dict) -> list[Path]:
    """Write the plots of :func:`figures`, ``collapse.json``, ``collapse.csv`` and ``config.json`` (the settings)
    into ``out`` (created); a failed write is a RunError. Returns the paths written."""
    folder = make_out_dir(out)
    try:
        paths = [save_figure(fig, folder / name) for name, fig in figures(doc).items()]
        paths.append(save_json(folder / "collapse.json", doc))
        write_atomic(folder / "collapse.csv", csv_text(doc).encode())
        paths.append(folder / "collapse.csv")
        paths.append(save_json(folder / "config.json", {"command": "collapse", **doc["settings"]}))
    except OSError as e:
        raise RunError(f"writing into --out {out} failed: {e.strerror or e}") from None
    return paths
