"""One recipe per result of the DirectPred paper (Tian, Chen, Ganguli 2021), as library calls with settings.

A recipe is a set of cells. A training cell is a dict of :class:`~ssltheory.practice.config.TrainConfig` settings
(without the dataset: ``smoke`` runs them on digits on the CPU in minutes, ``paper`` on the paper's dataset with its
protocol, 100 epochs, batch 128, lr 0.03, wd 4e-4, gamma_a 0.996, on a GPU); it is validated by the same code as
``ssltheory train``'s flags, so a misspelt setting is an error. A theory cell is a :class:`TheoryCell`: one of the
theory commands and its settings, run through :mod:`ssltheory.theory.outputs`. Paper numbers are Top-1 % of the
linear probe on STL-10 unless noted (directpred.md, section 4); smoke numbers are kNN top-1 on digits and are only
comparable with each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ssltheory.practice.config import TrainConfig
from ssltheory.theory import outputs
from ssltheory.theory.checks import ConfigError

SCALES = ("smoke", "cpu", "fmnist", "fmnist-gpu", "paper")
SMOKE_TRAIN = {"dataset": "digits", "batch_size": 64, "epochs": 10, "knn_every": 5, "data_path": "loader"}
"""The smoke scale (digits, 200 steps) on the DataLoader path its numbers in experiments/README.md were measured on."""
CPU_TRAIN = {"dataset": "digits", "batch_size": 128, "epochs": 300, "knn_every": 50, "data_path": "device",
             "probe_size": 1024}
"""The cpu scale (issue 16): digits on 2 cores, ~3,000 steps per run (~1.5 min), the batched augmentation path."""
PAPER_TRAIN = {"dataset": "stl10", "data_dir": "data", "device": "cuda", "workers": 8}
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Debian's dataset-fashion-mnist (``make data``); ``ssltheory experiment --data-dir`` points elsewhere."""
FMNIST_TRAIN = {"dataset": "fashion-mnist", "data_dir": FMNIST_DIR, "batch_size": 128, "epochs": 2, "knn_every": 2,
                "data_path": "device", "width": 0.5, "probe_size": 1024}
"""The fmnist scale (issue 25): Fashion-MNIST's 60,000 28 px images on 2 cores, the convnet at width 1/2 (16-32-64
channels, d = 64), 936 steps a run (~1.5 min alone, ~1 min a run at --jobs 2), kNN over the 60,000 at the start and
the end (the random-init and final numbers)."""
FMNIST_GPU = {"backbone": "resnet18", "image_size": 32, "width": None, "device": "cuda", "epochs": 20,
              "knn_every": 5}
"""The fmnist-gpu scale: the fmnist scale's recipes with ResNet-18 in place of the convnet (the CIFAR stem: 32 px,
3x3 stride-1 first conv, no max-pool) and 10x the steps, on a GPU (the collapse study: ResNet-18 and ResNet-50 as
the paper's model sizes). Not yet run: no GPU was lent to the session that wrote it."""


@dataclass(frozen=True)
class TheoryCell:
    """A theory command (``simulate``, ``phase-portrait``, ``fixed-points``) with its settings, named as the
    command's flags (``eta``, ``tau``, ``model``, ...)."""

    command: str
    settings: dict[str, Any] = field(default_factory=dict)

    def run(self, out: Path, progress=None) -> dict:
        """Write the command's outputs into ``out``; a setting the command does not take is a one-line error."""
        try:
            return outputs.COMMANDS[self.command](out, progress, **self.settings)
        except TypeError as e:  # an unexpected keyword
            raise ConfigError(f"{self.command} settings {sorted(self.settings)} are not accepted ({e}): expected "
                              f"the flags of 'ssltheory {self.command} --help'") from None

    def command_line(self) -> str:
        """The equivalent ``ssltheory`` command line."""
        def value(v) -> str:
            return ",".join(f"{x:g}" for x in v) if isinstance(v, (tuple, list)) else str(v)

        return " ".join(["ssltheory", self.command, *(f"--{k.replace('_', '-')} {value(v)}"
                                                      for k, v in self.settings.items())])


@dataclass(frozen=True)
class Recipe:
    """A paper result: what it shows, the paper's numbers, and the cells that reproduce it."""

    name: str
    result: str
    paper_numbers: str
    cells: dict[str, dict | TheoryCell] = field(default_factory=dict)
    paper_base: dict | None = None  # training at paper scale on another dataset (ImageNet)
    paper: dict[str, float] = field(default_factory=dict)  # the paper's number per cell (results.csv's "paper")
    smoke_base: dict | None = None  # settings every smoke cell shares besides SMOKE_TRAIN
    smoke: dict[str, dict] = field(default_factory=dict)  # per-cell settings that differ at smoke scale
    cpu_base: dict | None = None  # settings every cpu-scale cell shares besides CPU_TRAIN
    cpu: dict[str, dict] = field(default_factory=dict)  # per-cell settings that differ at cpu scale
    reference: str | None = None  # the cell every other is read against (experiments/fidelity.py)
    paper_cells: dict[str, dict] = field(default_factory=dict)  # per-cell settings that differ at paper scale
    skip: dict[str, tuple[str, ...]] = field(default_factory=dict)  # cells not run at a scale (too small a dataset)
    forecast: bool = False  # also measure each run's offline AUC and linear probe, and correlate them (forecast.*)
    fmnist_base: dict | None = None  # settings every fmnist / fmnist-gpu cell shares besides FMNIST(_GPU)_TRAIN
    fmnist: dict[str, dict] = field(default_factory=dict)  # per-cell settings that differ at the fmnist scale
    fmnist_gpu: dict[str, dict] | None = None  # ... at fmnist-gpu (None: fmnist's, without a convnet's width)

    @property
    def training(self) -> bool:
        return any(isinstance(c, dict) for c in self.cells.values())

    def configs(self, scale: str, max_steps: int = 0, seed: int | None = None,
                settings: dict[str, Any] | None = None) -> dict[str, TrainConfig]:
        """``{cell: TrainConfig}`` of a training recipe at ``scale`` (one of :data:`SCALES`), capped at
        ``max_steps``, with ``seed`` when given and ``settings`` (e.g. ``{"data_dir": ...}``) over every cell."""
        base, per_cell = {"smoke": ({**SMOKE_TRAIN, **(self.smoke_base or {})}, self.smoke),
                          "cpu": ({**CPU_TRAIN, **(self.cpu_base or {})}, self.cpu),
                          "fmnist": ({**FMNIST_TRAIN, **(self.fmnist_base or {})}, self.fmnist),
                          "fmnist-gpu": ({**FMNIST_TRAIN, **(self.fmnist_base or {}), **FMNIST_GPU},
                                         self.fmnist_gpu if self.fmnist_gpu is not None else
                                         {c: {k: v for k, v in s.items() if k != "width"}
                                          for c, s in self.fmnist.items()}),
                          "paper": (self.paper_base or PAPER_TRAIN, self.paper_cells)}[scale]
        extra = ({"max_steps": max_steps} if max_steps else {}) | ({"seed": seed} if seed is not None else {}) \
            | dict(settings or {})
        return {k: TrainConfig.from_settings({**base, **v, **per_cell.get(k, {}), **extra})
                for k, v in self.cells.items() if isinstance(v, dict) and k not in self.skip.get(scale, ())}


def _grid(**cells: str) -> dict[str, dict]:
    """Cells written as flags, ``"--predictor symmetric --method simsiam"`` -> their settings."""
    out = {}
    for name, text in cells.items():
        words, settings = text.split(), {}
        while words:
            key = words.pop(0).lstrip("-").replace("-", "_")
            settings[key] = words.pop(0) if words and not words[0].startswith("--") else True
        out[name] = settings
    return out


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("fig2", "eigenvalues of F and W_p and their alignment during real training (linear predictor)",
           "alignment -> 1 and W_p nearly symmetric within 10 epochs (figure only)",
           {"linear": {"predictor": "linear", "measure_every": 25}}),
    Recipe("fig3", "phase portraits of (p_j, s_j) at tau = 1 for eta in {0, 0.01, 1}",
           "figure only; fixed points p*_+- on the parabola",
           {"phase-portrait": TheoryCell("phase-portrait", {"eta": (0.0, 0.01, 1.0)})}),
    Recipe("fig4", "p' on the invariant parabola in the three weight-decay regimes",
           "sketch: 0 | p*_- < p*_+ | collapse above eta = tau^2 / (4 (1 + sigma^2))",
           {"fixed-points": TheoryCell("fixed-points")}),
    Recipe("fig5", "decoupled modes with EMA: alpha 0.01, beta 0.4, sigma^2 0.5, tau(0) = 0",
           "eta 0 -> p = 0.667; eta 0.04 -> p*_+ = 0.624 from p0 >= 0.05, collapse from 0.01; eta 0.1 collapses "
           "from p0 <= 0.1",
           {"modes": TheoryCell("simulate", {"model": "modes", "eta": (0.0, 0.04, 0.1)})}),
    Recipe("fig7", "Assumption 1 (W_a = tau W) on the full-matrix dynamics, W_a(0) = 0",
           "normalised correlation of W_a and W stays around 0.9 or higher",
           {"matrix": TheoryCell("simulate", {"model": "matrix", "tau0": 0.0, "eta": (0.0, 0.01, 0.1), "dim": 16})}),
    Recipe("fig8", "unsymmetrised W_p flow (Eq. 62) with F = W_p^T W_p: the antisymmetric part vanishes",
           "||B||_F -> 0 always; ||A||_F collapses for large eta or small tau",
           {f"tau{tau:g}": TheoryCell("simulate", {"model": "reduced", "predictor": "linear", "tau": tau,
                                                   "eta": (0.001, 0.01, 0.05), "steps": 20000})
            for tau in (1.0, 0.3)}),
    Recipe("fig9", "||[F, W_p]||_F under the symmetrised flow (Eq. 67)", "blows up when eta is small and/or tau large",
           {"tau1": TheoryCell("simulate", {"model": "reduced", "predictor": "symmetric", "tau": 1.0,
                                            "eta": (0.001, 0.01, 0.05), "steps": 20000}),
            "tau5": TheoryCell("simulate", {"model": "reduced", "predictor": "symmetric", "tau": 5.0,
                                            "eta": (0.0, 0.001), "init_scale": 0.05, "steps": 20000})}),
    Recipe("table1", "plugging the least-squares linear predictor in every N minibatches (SGD in between)",
           "EMA: 40.67 (N=1), 35.29, 34.60, 35.63 (N=5); no EMA: 39.45, 34.01, 34.58, 32.22; an SGD predictor "
           "reaches 74-75",
           {"sgd": {"predictor": "linear"},
            **{f"{m}-N{n}": {"predictor": "optimal", "freq": n, "ridge": 0.01,
                             **({} if m == "ema" else {"method": "simsiam"})}
               for m in ("ema", "no-ema") for n in (1, 2, 3, 5)}},
           paper={"sgd": 74.51, "ema-N1": 40.67, "ema-N2": 35.29, "ema-N3": 34.60, "ema-N5": 35.63,
                  "no-ema-N1": 39.45, "no-ema-N2": 34.01, "no-ema-N3": 34.58, "no-ema-N5": 32.22}, reference="sgd",
           skip={"fmnist": ("ema-N2", "ema-N3", "no-ema-N2", "no-ema-N3")}),
    Recipe("table2", "no weight decay: EMA and bias on or off",
           "EMA no-bias 70.62, EMA bias 70.99, no-EMA no-bias 71.36, no-EMA bias 71.37 (wd 4e-4: 74.51)",
           _grid(**{"ema": "--weight-decay 0", "ema-bias": "--weight-decay 0 --predictor-bias",
                    "no-ema": "--weight-decay 0 --method simsiam",
                    "no-ema-bias": "--weight-decay 0 --method simsiam --predictor-bias"}),
           paper={"ema": 70.62, "ema-bias": 70.99, "no-ema": 71.36, "no-ema-bias": 71.37}, reference="ema"),
    Recipe("table3", "symmetric vs regular W_p, EMA vs none, 1-layer linear vs 2-layer predictor",
           "linear EMA: sym 75.09, regular 74.51; linear no EMA: sym 36.62 (fails), regular 72.85; "
           "2-layer EMA: sym 71.58, regular 78.85; 2-layer no EMA: sym 35.59, regular 65.98",
           _grid(**{"sym-ema": "--predictor symmetric", "reg-ema": "--predictor linear",
                    "sym-no-ema": "--predictor symmetric --method simsiam",
                    "reg-no-ema": "--predictor linear --method simsiam",
                    "mlp-ema": "--predictor mlp", "mlp-no-ema": "--predictor mlp --method simsiam"}),
           paper={"sym-ema": 75.09, "reg-ema": 74.51, "sym-no-ema": 36.62, "reg-no-ema": 72.85, "mlp-ema": 78.85,
                  "mlp-no-ema": 65.98}, reference="reg-ema"),
    Recipe("table3-long", "not in the paper: Table 3's linear cells with 10x the steps (cpu scale: 30,000 steps, "
           "alpha eta steps 0.36 against the paper's ~0.94): does the symmetric W_p without EMA fail given time?",
           "Table 3: linear EMA regular 74.51; no EMA sym 36.62 (fails), regular 72.85",
           _grid(**{"reg-ema": "--predictor linear", "sym-no-ema": "--predictor symmetric --method simsiam",
                    "reg-no-ema": "--predictor linear --method simsiam"}),
           paper={"reg-ema": 74.51, "sym-no-ema": 36.62, "reg-no-ema": 72.85}, reference="reg-ema",
           smoke_base={"epochs": 100, "knn_every": 50}, cpu_base={"epochs": 3000, "knn_every": 500},
           paper_cells={cell: {"epochs": 1000} for cell in ("reg-ema", "sym-no-ema", "reg-no-ema")}),
    Recipe("table3-sweep", "not in the paper: Table 3's failing cell (symmetric W_p, no EMA) against the regular "
           "W_p with EMA along the theory's axes, one at a time: weight decay x steps (eta t = lr x wd x steps; the "
           "paper's 100 STL-10 epochs: ~0.94, the fmnist scale's 936 steps: 0.011) and the predictor's lr ratio "
           "alpha_p; each pair read against itself (issue 25)",
           "Table 3: linear EMA regular 74.51; no EMA sym 36.62 (fails)",
           _grid(**{"reg-ema-wd10": "--predictor linear --weight-decay 4e-3",
                    "sym-no-ema-wd10": "--predictor symmetric --method simsiam --weight-decay 4e-3",
                    "reg-ema-wd80": "--predictor linear --weight-decay 3.2e-2",
                    "sym-no-ema-wd80": "--predictor symmetric --method simsiam --weight-decay 3.2e-2",
                    "sym-no-ema-ap0.1": "--predictor symmetric --method simsiam --alpha-p 0.1",
                    "sym-no-ema-ap10": "--predictor symmetric --method simsiam --alpha-p 10"})),
    Recipe("table7-sweep", "not in the paper: Table 7's cut (c_j = 0.1 at freq 1) against its reference at 80x the "
           "weight decay (eta t = lr x wd x steps 0.9 at the fmnist scale, the paper's ~0.94): a mode DirectPred "
           "gives p_j = 0 only decays through weight decay, so the cut needs eta t of order 1 to show (issue 25)",
           "Table 7 freq 1: c_j 0.1 46.57, -0.05 77.11",
           {f"c{c:g}-freq1-wd80": {"predictor": "directpred", "eps_inside": True, "eps": -c, "freq": 1,
                                   "weight_decay": 3.2e-2} for c in (0.1, -0.05)},
           paper={"c0.1-freq1-wd80": 46.57, "c-0.05-freq1-wd80": 77.11}, reference="c-0.05-freq1-wd80"),
    Recipe("table5", "weight decay on the predictor only (eta_p = 4e-4, eta_s = 0) rescues no-EMA symmetric W_p",
           "no EMA: sym 71.12, regular 71.34; EMA: sym 71.91, regular 70.54",
           _grid(**{"sym-no-ema": "--predictor symmetric --method simsiam --weight-decay 0 "
                                  "--predictor-weight-decay 4e-4",
                    "reg-no-ema": "--predictor linear --method simsiam --weight-decay 0 --predictor-weight-decay 4e-4",
                    "sym-ema": "--predictor symmetric --weight-decay 0 --predictor-weight-decay 4e-4",
                    "reg-ema": "--predictor linear --weight-decay 0 --predictor-weight-decay 4e-4"}),
           paper={"sym-no-ema": 71.12, "reg-no-ema": 71.34, "sym-ema": 71.91, "reg-ema": 70.54}, reference="reg-ema"),
    Recipe("table6", "DirectPred over rho and eps (EMA, no bias)",
           "rho 0.3: eps 0 76.77, 0.01 77.11, 0.1 77.86, 0.5 75.06; rho 0.5: 76.65, 76.76, 77.56, 75.22; "
           "SGD linear 74.51",
           {f"rho{rho:g}-eps{eps:g}": {"predictor": "directpred", "rho": rho, "eps": eps}
            for rho in (0.3, 0.5) for eps in (0.0, 0.01, 0.1, 0.5)},
           paper={f"rho{rho:g}-eps{eps:g}": v for rho, row in ((0.3, (76.77, 77.11, 77.86, 75.06)),
                                                              (0.5, (76.65, 76.76, 77.56, 75.22)))
                  for eps, v in zip((0.0, 0.01, 0.1, 0.5), row, strict=True)}, reference="rho0.3-eps0"),
    Recipe("table7", "DirectPred with p_j = sqrt(max(s_j - c_j, 0)), freq 1 and 2 (eps = -c_j inside the root)",
           "freq 1: c_j 0.1 46.57, 0.05 65.31, -0.05 77.11, -0.1 76.46; freq 2: 75.01, 75.10, 76.83, 76.31",
           {f"c{c:g}-freq{f}": {"predictor": "directpred", "eps_inside": True, "eps": -c, "freq": f}
            for f in (1, 2) for c in (0.1, 0.05, -0.05, -0.1)},
           paper={f"c{c:g}-freq{f}": v
                  for f, row in ((1, (46.57, 65.31, 77.11, 76.46)), (2, (75.01, 75.10, 76.83, 76.31)))
                  for c, v in zip((0.1, 0.05, -0.05, -0.1), row, strict=True)}, reference="c-0.05-freq1",
           skip={"fmnist": ("c0.05-freq2", "c-0.05-freq2", "c-0.1-freq2")}),
    Recipe("table8", "DirectPred vs DirectPred every 5 steps vs an SGD-trained linear predictor",
           "STL-10 100 ep: 77.86, 77.54, 75.06; CIFAR-10 100 ep: 85.21, 84.93, 84.49",
           _grid(**{"directpred": "--predictor directpred", "directpred-freq5": "--predictor directpred --freq 5",
                    "sgd-linear": "--predictor linear"}),
           paper={"directpred": 77.86, "directpred-freq5": 77.54, "sgd-linear": 75.06}, reference="sgd-linear"),
    Recipe("table9", "ImageNet ResNet-50: 2-layer predictor vs linear vs DirectPred",
           "60 ep Top-1: 64.7, 59.4, 64.4; 300 ep: 72.5, 69.9, 72.4",
           _grid(**{"mlp": "--predictor mlp", "linear": "--predictor linear", "directpred": "--predictor directpred"}),
           paper_base={"dataset": "imagenet", "data_dir": "data/imagenet", "backbone": "resnet50", "epochs": 60,
                       "device": "cuda", "workers": 16},
           paper={"mlp": 64.7, "linear": 59.4, "directpred": 64.4}, reference="linear"),
]}


# UniGrad (Tao et al. 2022; unigrad.md). Paper scale is A4's 100-epoch ImageNet ResNet-50 recipe: global batch 1024,
# SGD lr 0.05 x 1024/256, wd 1e-4, 5 warm-up epochs then cosine to min-lr 1e-3, momentum encoder 0.996 -> 1 per
# iteration (cosine), the 3-layer 2048 projector. Smoke scale: digits as the DirectPred recipes (batch 64, 10 epochs,
# 200 steps), the same 3-layer projector at width 256, gamma_a 0.99 (0.996 hardly moves the target in 200 steps) and
# every balance factor scaled by d / 2048 = 1/8, which keeps lambda / d, the size of lambda F u for spread features
# (trace F = 1), at the paper's value.
UNIGRAD_PAPER = {"dataset": "imagenet", "data_dir": "data/imagenet", "backbone": "resnet50", "epochs": 100,
                 "batch_size": 1024, "lr": 0.05, "lr_scale": "linear", "weight_decay": 1e-4, "lr_schedule": "cosine",
                 "warmup_epochs": 5, "min_lr": 1e-3, "ema_schedule": "cosine", "projector": "unigrad",
                 "proj_layers": 3, "proj_hidden": 2048, "proj_dim": 2048, "device": "cuda", "workers": 16}
UNIGRAD_SMOKE = {"projector": "unigrad", "proj_layers": 3, "proj_hidden": 256, "proj_dim": 256, "gamma_a": 0.99,
                 "lr_schedule": "cosine", "warmup_epochs": 1, "min_lr": 1e-3, "lr": 0.05, "queue_size": 1024,
                 "probe_size": 1024}
SMOKE_LAMBDA = 256 / 2048
"""The smoke projector's width over the paper's: balance factors are scaled by it."""


def _scaled(**lams: float) -> dict[str, dict]:
    """Smoke overrides ``{cell: {"lam": paper lambda x SMOKE_LAMBDA}}``."""
    return {cell: {"lam": lam * SMOKE_LAMBDA} for cell, lam in lams.items()}


TABLE2 = _grid(a="--method moco --form gradient", b="--method simclr --form gradient",
               c="--method byol --predictor mlp", d="--method byol --form gradient", e="--method unigrad",
               f="--method barlowtwins --form gradient", g="--method barlowtwins --form unified --norm bn",
               h="--method barlowtwins --form unified --norm l2", i="--method vicreg --form gradient",
               j="--method vicreg --form unified")
TARGETS = {"sg-sg": "--positive-target stop-grad --negative-target stop-grad",
           "m-m": "--positive-target ema --negative-target ema",
           "m-sg": "--positive-target ema --negative-target stop-grad"}
TABLE3_PAPER = {"b": (67.6, 70.0, 70.1), "e": (67.9, 70.2, 70.3), "j": (67.6, 69.8, 69.8)}
ALL_METHODS = {"moco": "--form gradient", "simclr": "--form gradient", "byol": "--form gradient",
               "simsiam": "--predictor mlp", "barlowtwins": "--form unified", "vicreg": "--form unified", "unigrad": ""}
"""Each method as UniGrad's README re-implements it: its gradient form (b, d, h, j of Table 2; SimSiam has none
released: its own loss with the 2-layer predictor)."""
ORIGINAL = {"moco": 67.4, "simclr": 62.7, "byol": 66.5, "simsiam": 68.1, "barlowtwins": 68.7, "vicreg": 68.6}
BRANCH = {"stop-grad": "--positive-target stop-grad", "ema": "--positive-target ema"}
"""Both targets from one branch: the negatives follow the positive target (--negative-target auto)."""

RECIPES.update({r.name: r for r in [
    Recipe("unigrad-table2", "every gradient form of Table 2 with a momentum encoder: (a) MoCo, (b) SimCLR, (c) BYOL, "
           "(d) BYOL with DirectPred's W_p (adaptive balance), (e) UniGrad, (f)-(h) Barlow Twins, (i)-(j) VICReg",
           "a 70.0, b 70.0, c 70.3, d 70.2, e 70.3, f 69.0, g 69.7, h 70.0, i 70.0, j 69.8 (ImageNet R50 100 ep)",
           TABLE2, paper_base=UNIGRAD_PAPER, smoke_base=UNIGRAD_SMOKE,
           paper={"a": 70.0, "b": 70.0, "c": 70.3, "d": 70.2, "e": 70.3, "f": 69.0, "g": 69.7, "h": 70.0, "i": 70.0,
                  "j": 69.8},
           smoke=_scaled(e=100, h=50, j=25)),
    Recipe("unigrad-table3", "where the positive and the negative gradients come from (stop-gradient or momentum "
           "encoder), for the unified forms (b) contrastive, (e) asymmetric, (j) decorrelation",
           "sg/sg 67.6 67.9 67.6; m/m 70.0 70.2 69.8; m/sg 70.1 70.3 69.8: the momentum positive is the whole gain",
           {f"{row}-{t}": {**TABLE2[row], **_grid(x=TARGETS[t])["x"]} for row in ("b", "e", "j") for t in TARGETS},
           paper_base=UNIGRAD_PAPER, smoke_base=UNIGRAD_SMOKE,
           paper={f"{row}-{t}": TABLE3_PAPER[row][k] for row in TABLE3_PAPER for k, t in enumerate(TARGETS)},
           smoke={**{f"e-{t}": {"lam": 100 * SMOKE_LAMBDA} for t in TARGETS},
                  **{f"j-{t}": {"lam": 25 * SMOKE_LAMBDA} for t in TARGETS}}),
    Recipe("unigrad-table4", "UniGrad with CutMix and multi-crop (2 global views at scale (0.14, 1), 6 local 96 px "
           "views at (0.05, 0.14); smoke: 2 local 6 px views of the 8 px digits)",
           "UniGrad 70.3, + CutMix 71.2, + multi-crop 71.7, + both 72.3 (100 ep)",
           _grid(unigrad="--method unigrad", cutmix="--method unigrad --cutmix 1",
                 multicrop="--method unigrad --multi-crop 6x96", both="--method unigrad --cutmix 1 --multi-crop 6x96"),
           paper_base=UNIGRAD_PAPER, smoke_base=UNIGRAD_SMOKE,
           paper={"unigrad": 70.3, "cutmix": 71.2, "multicrop": 71.7, "both": 72.3},
           smoke={cell: {"lam": 100 * SMOKE_LAMBDA, **({"multi_crop": "2x6"} if "crop" in cell or cell == "both"
                                                       else {})}
                  for cell in ("unigrad", "cutmix", "multicrop", "both")}),
    Recipe("unigrad-table9-10", "UniGrad's projector: depth 1-5 at width 2048 (Table 9) and width 1024-16384 at depth "
           "3 (Table 10; hidden = output); smoke: widths / 8",
           "depth 1 60.7, 2 65.2, 3 70.3, 4 70.0, 5 69.8; width 1024 68.3, 2048 70.3, 4096 70.5, 8192 70.9, "
           "16384 71.2",
           {**{f"depth{k}": {"method": "unigrad", "proj_layers": k} for k in (1, 2, 3, 4, 5)},
            **{f"width{w}": {"method": "unigrad", "proj_hidden": w, "proj_dim": w}
               for w in (1024, 4096, 8192, 16384)}},
           paper_base=UNIGRAD_PAPER, smoke_base=UNIGRAD_SMOKE,
           paper={"depth1": 60.7, "depth2": 65.2, "depth3": 70.3, "depth4": 70.0, "depth5": 69.8, "width1024": 68.3,
                  "width4096": 70.5, "width8192": 70.9, "width16384": 71.2},
           smoke={**{f"depth{k}": {"lam": 100 * SMOKE_LAMBDA} for k in (1, 2, 3, 4, 5)},
                  **{f"width{w}": {"proj_hidden": w // 8, "proj_dim": w // 8, "lam": 100 * w / 2048 / 8}
                     for w in (1024, 4096, 8192, 16384)}}),
    Recipe("unigrad-methods", "every method in its gradient form, its targets from the online network under "
           "stop-gradient or from a momentum encoder (UniGrad's README table: w/o and w/ momentum encoder)",
           "w/o momentum 67.6-67.9 for every method, w/ momentum 69.8-70.3 (gradient re-implementations); "
           "original papers: MoCo 67.4, SimCLR 62.7, BYOL 66.5, SimSiam 68.1, Barlow Twins 68.7, VICReg 68.6",
           {f"{m}-{b}": _grid(x=f"--method {m} {extra} {BRANCH[b]}")["x"] for m, extra in ALL_METHODS.items()
            for b in BRANCH},
           paper_base=UNIGRAD_PAPER, smoke_base=UNIGRAD_SMOKE,
           paper={"moco-stop-grad": 67.6, "moco-ema": 70.0, "simclr-stop-grad": 67.6, "simclr-ema": 70.0,
                  "byol-stop-grad": 67.9, "byol-ema": 70.2, "simsiam-stop-grad": 67.9, "simsiam-ema": 70.2,
                  "barlowtwins-stop-grad": 67.6, "barlowtwins-ema": 70.0, "vicreg-stop-grad": 67.6,
                  "vicreg-ema": 69.8, "unigrad-ema": 70.3},
           smoke={f"{m}-{b}": {"lam": lam * SMOKE_LAMBDA} for m, lam in (("unigrad", 100), ("barlowtwins", 50),
                                                                          ("vicreg", 25)) for b in BRANCH},
           fmnist_base={**UNIGRAD_SMOKE, "warmup_epochs": 0},
           fmnist={f"{m}-{b}": {"lam": lam * SMOKE_LAMBDA} for m, lam in (("unigrad", 100), ("barlowtwins", 50),
                                                                           ("vicreg", 25)) for b in BRANCH}),
    Recipe("theory-unified", "fixed points of UniGrad's unified gradient forms in the linear model (theory/unified.py) "
           "against weight decay, with BYOL/DirectPred's p*_+- on the same axis, and the collapsed point under EMA "
           "against beta (no paper has this figure)",
           "none; derived: s* = (1 - eta) / (lam kappa), collapse at eta >= 1 for every form (BYOL above "
           "tau^2 / (4 (1 + sigma^2)) = 1/6)",
           {"forms": TheoryCell("fixed-points", {"method": "all", "sigma2": 0.5})}),
]})


# The collapse paper's SimSiam recipe (Li, Efros & Pathak 2022; collapse.md B2, its main_simsiam.py and README
# commands): -b 256, lr 0.05 x batch / 256 with per-epoch cosine decay to 0 and no warm-up, SGD momentum 0.9, weight
# decay 1e-4, --fix-pred-lr, the prev_dim-prev_dim-2048 projector ending in a non-affine BN, the 2048-512-2048
# predictor, ResNets built with zero_init_residual. The trainer's SimSiam loss, (2 - 2 cos(p1, z2)) + (2 - 2 cos(p2,
# z1)), has 4x the gradient of the official -(cos(p1, z2) + cos(p2, z1)) / 2, so the recipe's lr is the official's / 4
# and its weight decay the official's x 4: torch's SGD then makes the official's updates exactly (d_p = g + wd p,
# the momentum buffer and lr x buffer all scale together; test_simsiam_recipe checks it). The cosine moves once per
# epoch, at its start (--lr-schedule-unit epoch), as the official adjust_learning_rate; the collapse recipes' cpu and
# smoke scales keep the trainer's default, every step.
SIMSIAM_LOSS_SCALE = 4
"""The trainer's SimSiam gradient over the official code's (the recipe divides lr by it, multiplies wd by it)."""
SIMSIAM_RECIPE = {"method": "simsiam", "batch_size": 256, "lr": 0.05 / SIMSIAM_LOSS_SCALE, "lr_scale": "linear",
                  "lr_schedule": "cosine", "weight_decay": 1e-4 * SIMSIAM_LOSS_SCALE, "momentum": 0.9,
                  "projector": "simsiam", "proj_layers": 3, "proj_dim": 2048, "predictor": "mlp", "pred_hidden": 512,
                  "pred_layout": "simsiam", "fix_pred_lr": True, "lr_schedule_unit": "epoch"}


def simsiam_recipe(**settings: Any) -> dict[str, Any]:
    """The collapse paper's SimSiam recipe (:data:`SIMSIAM_RECIPE`) with ``settings`` on top (``dataset``,
    ``backbone``, ``width``, ``data_dir``, ..., named as fields or flags), plus ``zero_init_residual`` for a ResNet
    backbone unless given: ``{field: value}``, checked as a :class:`TrainConfig` (a bad setting is a one-line
    :class:`ConfigError`); ``TrainConfig.from_settings(simsiam_recipe(...))`` is the run's config."""
    from ssltheory.practice.config import field_names

    out = {**SIMSIAM_RECIPE, **field_names(settings)}
    if "zero_init_residual" not in out and TrainConfig.from_settings(out).resolved_backbone.startswith("resnet"):
        out["zero_init_residual"] = True
    TrainConfig.from_settings(out)
    return out


def simsiam_argv(**settings: Any) -> list[str]:
    """:func:`simsiam_recipe` as ``ssltheory train``'s arguments: DATASET, then ``--flag value`` per setting (a
    boolean as ``--flag`` / ``--no-flag``)."""
    from ssltheory.practice.config import flag_of

    out = simsiam_recipe(**settings)
    argv = [str(out.pop("dataset", "digits"))]
    for name, value in out.items():
        flag = flag_of(name)
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


# The collapse study (Li, Efros & Pathak 2022; collapse.md B2): a small and a large model, each trained with SimSiam
# on the last P % of a fixed permutation of the train split (compute-matched: every epoch len(train) // batch steps),
# on the continual stream (strategy current) and on the hybrid (continual until 40 % of the epochs, then IID under the
# same lr schedule). Paper scale: the paper's SimSiam recipe, ResNet-18 (small) and ResNet-50 (large), 100 epochs on
# ImageNet (collapse-imagenet) or Places365 as an ImageFolder (collapse-places), the stream one chunk per epoch (1 %
# of the data, the official default) in a random order (the paper's ordering files are not released), hybrid at
# epoch 40. CPU scale (make experiments-cpu): digits, 150 epochs of 20 steps at batch 64, the same recipe's pieces
# (projector 512-512-512 ending in a non-affine BN, predictor 512-128-512, fixed predictor lr, cosine lr 0.05 / 4
# without batch scaling, wd 4e-4), the small convnet at width 1/8 (4-8-16 channels, d = 16) and 1 (d = 128); 1 % of
# 1,297 digits is below one batch, so the cpu and smoke scales skip it, and the stream has 10 chunks of 130 digits.
COLLAPSE_FRACTIONS = (1, 5, 10, 20, 50, 100)
"""Train fractions in % (the shipped spectra's: resnet18_{1,5,10,20,50,100}percent)."""
COLLAPSE_MODELS = {"paper": {"small": {"backbone": "resnet18"}, "large": {"backbone": "resnet50"}},
                   "cpu": {"small": {"backbone": "convnet", "width": 0.125},
                           "large": {"backbone": "convnet", "width": 1.0}},
                   "fmnist": {"small": {"width": 0.125}, "large": {"width": 0.5}},
                   "fmnist-gpu": {"small": {"backbone": "resnet18", "zero_init_residual": True},
                                  "large": {"backbone": "resnet50", "zero_init_residual": True}}}
"""The model sizes per scale (the smoke scale's are the cpu scale's; fmnist: the convnet at d = 16 and d = 64,
fmnist-gpu: the paper's)."""
COLLAPSE_CPU = {**SIMSIAM_RECIPE, "batch_size": 64, "lr_scale": "none", "proj_dim": 512, "pred_hidden": 128,
                "epochs": 150, "knn_every": 50, "lr_schedule_unit": "step"}
COLLAPSE_SMOKE = {**SIMSIAM_RECIPE, "batch_size": 64, "lr_scale": "none", "proj_dim": 128, "pred_hidden": 32,
                  "probe_size": 1024, "lr_schedule_unit": "step"}
"""The cpu and smoke scales move the cosine lr every step (as measured in experiments/results/collapse-cpu); the
paper scale (:data:`COLLAPSE_PAPER`, from :data:`SIMSIAM_RECIPE`) every epoch, as the official code."""
COLLAPSE_FMNIST = {**SIMSIAM_RECIPE, "batch_size": 128, "lr_scale": "none", "proj_dim": 512, "pred_hidden": 128,
                   "epochs": 3, "knn_every": 3, "lr_schedule_unit": "step"}
"""The fmnist scale: 3 epochs of 468 steps (compute-matched: 1,404 steps whatever the fraction; 45 runs of 3 seeds
fit ~1 h on 2 cores), the stream in 3 chunks of 20,000 images (one per epoch), the hybrid switch after the first
(33 %: the nearest epoch to the paper's 40 %)."""


def _collapse_cells() -> dict[str, dict]:
    """``{MODEL-fP: {data_fraction}, MODEL-continual: {stream}, MODEL-accumulate: {stream}, MODEL-hybrid: {stream,
    switch}}`` (the switch in per-scale settings). The stream's third strategy, ``last``, is the IID cell of
    fraction 1 / n_chunks."""
    cells = {}
    for model in ("small", "large"):
        cells.update({f"{model}-f{p}": {"data_fraction": p / 100} for p in COLLAPSE_FRACTIONS})
        cells[f"{model}-continual"] = {"data_schedule": "current"}
        cells[f"{model}-accumulate"] = {"data_schedule": "accumulate"}
        cells[f"{model}-hybrid"] = {"data_schedule": "current"}
    return cells


def _per_cell(scale: str, hybrid_epoch: int, n_chunks: int = 0) -> dict[str, dict]:
    """Each cell's model, and the streams' chunks and the hybrid's switch, at ``scale``."""
    models = COLLAPSE_MODELS[scale if scale in COLLAPSE_MODELS else "cpu"]
    out = {cell: dict(models[cell.split("-")[0]]) for cell in _collapse_cells()}
    for cell, settings in out.items():
        if cell.endswith(("continual", "accumulate", "hybrid")):
            settings["n_chunks"] = n_chunks
        if cell.endswith("hybrid"):
            settings["hybrid_epoch"] = hybrid_epoch
    return out


def _collapse_recipe(name: str, where: str, paper_base: dict) -> Recipe:
    # digits: 1 % is below one batch; the accumulate stream came after the cpu scale's recorded study
    small_data = tuple(f"{m}-{c}" for m in ("small", "large") for c in ("f1", "accumulate"))
    return Recipe(
        name, f"SimSiam's partial dimensional collapse against train fraction and model size, the continual and the "
        f"hybrid schedule, and the label-free forecast of probe accuracy by the collapse AUC ({where})",
        "shipped ResNet-18 ImageNet spectra: AUC 0.610, 0.748, 0.845, 0.879, 0.871, 0.858 at 1, 5, 10, 20, 50, 100 % "
        "(more data, more collapse; collapse.md B1.8); probe accuracies, the AUC-accuracy correlation and the hybrid's "
        "+18 points for ResNet-18 on ImageNet are not verified (B2)",
        _collapse_cells(), paper_base=paper_base, cpu_base=COLLAPSE_CPU, smoke_base=COLLAPSE_SMOKE,
        cpu=_per_cell("cpu", 60, 10), smoke=_per_cell("smoke", 4, 10), paper_cells=_per_cell("paper", 40),
        fmnist_base=COLLAPSE_FMNIST, fmnist=_per_cell("fmnist", 1, 3), fmnist_gpu=_per_cell("fmnist-gpu", 8, 20),
        skip={"cpu": small_data, "smoke": small_data,
              "fmnist": ("large-continual", "large-accumulate", "large-hybrid")},  # the claim is the small model's
        forecast=True)


COLLAPSE_PAPER = {**SIMSIAM_RECIPE, "epochs": 100, "zero_init_residual": True, "device": "cuda", "workers": 16}
RECIPES.update({r.name: r for r in [
    _collapse_recipe("collapse-imagenet", "ImageNet", {**COLLAPSE_PAPER, "dataset": "imagenet",
                                                      "data_dir": "data/imagenet"}),
    _collapse_recipe("collapse-places", "Places365 as an ImageFolder", {**COLLAPSE_PAPER, "dataset": "folder",
                                                                       "data_dir": "data/places365"}),
]})


# The theory's phase diagram against real runs (issue 16; experiments/phase.py): the two-layer linear model on the
# synthetic data over weight decay x EMA rate (BYOL) and weight decay x predictor lr ratio (SimSiam, tau = 1), and
# the first grid again on digits, where the theory's assumptions do not hold (a convnet, sigma^2 assumed).
PHASE_ETAS = (0.02, 0.05, 0.08, 0.11, 0.14, 0.17, 0.2, 0.25, 0.3)
PHASE_BETAS = (0.03, 0.1, 0.3, 1.0)
PHASE_ALPHA_PS = (0.25, 0.5, 1.0, 2.0)


def _phase_cells(dataset: str) -> dict:
    from .phase import DIGITS_BASE, PhaseDiagram, digits

    grids = {"beta": PhaseDiagram("beta", PHASE_ETAS, PHASE_BETAS),
             "alpha_p": PhaseDiagram("alpha_p", PHASE_ETAS, PHASE_ALPHA_PS)}
    coarse = PhaseDiagram("beta", (0.02, 0.08, 0.14, 0.2, 0.3), (0.03, 1.0))  # a real-data run is ~10x a synthetic one
    if dataset == "digits":
        return {"digits-beta": digits(coarse)}
    if dataset == "fashion-mnist":  # the fmnist scale's data and convnet (d = 64), digits' linear predictor and lr,
        # 2 epochs = 936 steps (T = 281)
        base = {**DIGITS_BASE, "epochs": 2, **{k: FMNIST_TRAIN[k] for k in ("dataset", "data_dir", "width")}}
        return {"fashion-mnist-beta": replace(coarse, base=base)}
    return {f"synthetic-{axis}": grid for axis, grid in grids.items()}


RECIPES.update({r.name: r for r in [
    Recipe("phase-diagram", "the theory's collapse boundary and p contours over weight decay x EMA rate and weight "
           "decay x alpha_p against a grid of real runs of the linear model on synthetic data (no paper has it)",
           "fixed tau = 1: collapse above eta = tau^2 / (4 (1 + sigma^2)) = 1/6 (Eq. 16); with EMA the ODE decides",
           _phase_cells("synthetic")),
    Recipe("phase-diagram-digits", "the eta x EMA-rate phase diagram on digits (convnet, linear predictor): where the "
           "linear theory's outcome holds for a network it does not describe", "none; sigma^2 = 0.5 assumed",
           _phase_cells("digits")),
    Recipe("phase-diagram-fmnist", "the same eta x EMA-rate phase diagram on Fashion-MNIST's 60,000 images (convnet at "
           "width 1/2, linear predictor, 936 steps): does real data move the share of cells where theory and run "
           "agree (digits: 3/10)?", "none; sigma^2 = 0.5 assumed", _phase_cells("fashion-mnist")),
]})
