"""One configuration object per training run, validated, saved as ``config.json`` in the run folder.

Every setting is declared once, as a field of :class:`TrainConfig` with its metadata (:func:`setting`): the section
it belongs to, its help text, the paper's default and the range or choices it accepts. The ``train`` command's
flags, their ``--help``, the validation of a settings file (``--config FILE``) and of the experiment recipes are all
made from these fields, so a new knob is one edit here (and, if it does something new, the code that reads it).

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

import dataclasses
import difflib
import functools
import json
import platform
import re
import subprocess
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssltheory.practice.data.schedule import SCHEDULES, STREAMS
from ssltheory.practice.methods.predictors import PREDICTORS
from ssltheory.practice.methods.registry import METHODS
from ssltheory.theory.checks import ConfigError, check_choice, check_int, check_number
from ssltheory.theory.io import save_json
from ssltheory.theory.modes import P_FLOOR

DATASETS = ("digits", "stl10", "cifar10", "imagenet", "folder", "synthetic")
IN_MEMORY = ("digits", "cifar10", "stl10")  # datasets the device data path holds whole (uint8) on the device
IMAGE_SIZE = {"digits": 8, "stl10": 96, "cifar10": 32, "imagenet": 224, "folder": 224, "synthetic": 1}
LR_REFERENCE_BATCH = 256
SECTIONS = ("Data", "Model", "Method", "Optimisation", "Measurement", "Speed")


def setting(default: Any, help: str, section: str, *, paper: str | None = None, choices: Any = None,
            low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
            flag: str | None = None) -> Any:
    """A config field with what the CLI and the validation need: ``help`` (the flag's text), ``section`` (its
    panel in ``--help``), ``paper`` (the paper's value, shown as "[paper: ...]"), ``choices`` (a tuple, or a dict
    / callable whose keys are the choices: a registry), numeric bounds, and ``flag`` (the spelling, if not
    ``--field-name``)."""
    assert section in SECTIONS, section
    meta = {"help": help, "section": section, "paper": paper, "choices": choices, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open, "flag": flag}
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a run. ``ssltheory train --help`` lists them by section with the paper's defaults."""

    # Data
    dataset: str = setting("digits", "digits | stl10 | cifar10 | imagenet | folder | synthetic (the theory's "
                           "Gaussian data, for --backbone linear)", "Data", choices=DATASETS, flag="DATASET")
    data_dir: str = setting("data", "where the dataset's files are", "Data")
    download: bool = setting(False, "download STL-10 / CIFAR-10 into --data-dir if missing", "Data")
    image_size: int = setting(0, "input size in px [0: 8 digits, 96 stl10, 32 cifar10, 224 otherwise]", "Data",
                              low=0, high=4096)
    data_schedule: str = setting("iid", "which items each epoch sees (iid: every item once per epoch, reshuffled; "
                                 "the continual streams of the collapse paper's code, each epoch N // batch steps "
                                 "cycling through its chunk: current (chunk i of the stream), accumulate (chunks 0 to "
                                 "i), last (the stream's last 1 / --n-chunks, or --data-fraction))", "Data",
                                 choices=lambda: SCHEDULES)
    data_fraction: float = setting(1.0, "train on the LAST P of the stream's fixed order (--stream-order), each epoch "
                                   "still N // batch steps: the paper's compute-matched dataset size (the official "
                                   "--strategy last; below 1 the data schedule is last, and config.json says so) "
                                   "[1: all]", "Data", low=0.0, low_open=True, high=1.0)
    stream_order: str = setting("random", "the stream's fixed order of the items: random (a permutation fixed by "
                                "--seed) | class-incremental (class by class) | PATH.npy (a permutation of the "
                                "training items)", "Data")
    n_chunks: int = setting(0, "chunks a round of the stream is cut into; must divide --epochs / --n-rounds [0: one "
                            "per epoch, the official default]", "Data", low=0, high=10**6)
    n_rounds: int = setting(1, "passes over the stream; must divide --epochs", "Data", low=1, high=10**6)
    repeat_batch: int = setting(1, "streams: each batch this many times in a row (the official --repeat_batch)",
                                "Data", low=1, high=10**4)
    hybrid_epoch: int = setting(0, "the stream until this epoch, then iid under the same lr schedule (the paper's "
                                "hybrid; 0 < E < --epochs) [0: off]", "Data", low=0, high=10**6)
    sigma2: float = setting(0.5, "synthetic: augmentation variance σ² of x = x0 + σ·noise", "Data", low=0.0, high=1e6)
    input_dim: int = setting(0, "synthetic: input width n1 [0: --proj-dim]", "Data", low=0, high=65536)
    synthetic_size: int = setting(8192, "synthetic: samples per epoch, each drawn fresh", "Data", low=2, high=10**8)
    workers: int = setting(0, "DataLoader worker processes (--data-path loader)", "Data", low=0, high=256)
    data_path: str = setting("auto", "loader (DataLoader, per-image torchvision) | device (dataset held on the "
                             "device, batched augmentation; digits, cifar10, stl10; synthetic: drawn a batch at a "
                             "time) [auto: device on CUDA, and on the CPU for digits and synthetic, 1.9x faster "
                             "there]", "Data",
                             choices=("auto", "loader", "device"))
    # Model
    backbone: str = setting("auto", "resnet18 | resnet34 | resnet50 | convnet | linear | the collapse study's "
                            "sizes: resnet18-bottleneck (ResNet-18's depth, Bottleneck blocks, --width 64|96|128) | "
                            "resnet50-basic (50 layers of BasicBlocks) [auto: convnet for digits, linear for "
                            "synthetic, resnet18 otherwise]", "Model",
                            choices=("auto", "resnet18", "resnet34", "resnet50", "convnet", "linear",
                                     "resnet18-bottleneck", "resnet50-basic"))
    width: float | None = setting(None, "backbone width: convnet channel multiplier (1: 32-64-128 channels) | "
                                  "resnet18-bottleneck width_per_group [default: 1 / 64]", "Model", low=0.0,
                                  low_open=True, high=4096.0)
    zero_init_residual: bool = setting(False, "ResNets: the last BN of each residual block starts at 0 "
                                       "(torchvision's zero_init_residual; the SimSiam code's)", "Model")
    proj_hidden: int = setting(512, "projector hidden width (--projector simsiam: the backbone's feature width)",
                               "Model", paper="512", low=1, high=65536)
    proj_dim: int = setting(128, "projector output width d of F̂ and W_p", "Model", paper="128", low=1, high=16384)
    pred_hidden: int = setting(512, "hidden width of the mlp predictor", "Model", paper="512", low=1, high=65536)
    pred_layout: str = setting("directpred", "mlp predictor layout: directpred (Linear+bias -> BN without affine "
                               "-> ReLU -> Linear) | simsiam (Linear without bias -> BN -> ReLU -> Linear; the "
                               "official SimSiam's 2048-512-2048)", "Model", paper="directpred",
                               choices=("directpred", "simsiam"))
    projector: str = setting("directpred", "projector layout: directpred (Linear+bias -> BN without affine -> ReLU, "
                             "..., Linear; the DirectPred code's) | unigrad (Linear without bias -> BN -> ReLU, ..., "
                             "Linear with bias; UniGrad's 2048-2048-2048) | simsiam (hidden blocks as unigrad's, "
                             "as wide as the backbone's features, then Linear -> BN without affine; the official "
                             "SimSiam's prev_dim-prev_dim-2048 at --proj-layers 3)", "Model", paper="directpred",
                             choices=("directpred", "unigrad", "simsiam"))
    proj_layers: int = setting(2, "projector depth: linear layers (Table 9 of UniGrad: 3)", "Model", paper="2",
                               low=1, high=16)
    # Method
    method: str = setting("byol", "the self-supervised method (byol: EMA target; simsiam: target = online net; the "
                          "UniGrad family: moco, simclr, barlowtwins, vicreg, unigrad; see --form)", "Method",
                          choices=lambda: METHODS)
    predictor: str = setting("linear", "the predictor W_p (optimal: least squares plugged in every --freq steps, "
                             "Table 1; none: W_p = I)", "Method", paper="linear", choices=lambda: PREDICTORS)
    predictor_bias: bool = setting(False, "bias in the linear predictor", "Method", paper="no bias")
    predictor_init: str = setting("auto", "random | identity (W_p = scale × I) [auto: identity for --backbone "
                                  "linear]", "Method", choices=("auto", "random", "identity"))
    predictor_init_scale: float = setting(0.5, "p_j(0) of the identity predictor init", "Method", low=-1e3, high=1e3)
    rho: float = setting(0.3, "DirectPred / optimal: moving-average rate ρ of F̂", "Method", paper="0.3",
                         low=0.0, high=1.0, high_open=True)
    eps: float = setting(0.1, "DirectPred: ε in p_j = sqrt(s_j / max s) + ε", "Method", paper="best 0.1")
    eps_inside: bool = setting(False, "DirectPred: p_j = sqrt(max(s_j / max s + ε, 1e-4)) instead; ε may be "
                               "negative (Table 7: ε = -c_j)", "Method")
    ridge: float = setting(0.1, "optimal predictor: ridge λ = ridge × max s_j of the least-squares W_p", "Method",
                           low=0.0, low_open=True, high=1e6)
    freq: int = setting(1, "DirectPred / optimal: set W_p every N steps, SGD in between", "Method", paper="1",
                        low=1)
    directpred_solver: str = setting("auto", "DirectPred: eigh (eigendecomposition of F̂) | newton-schulz (the "
                                     "same W_p to ~1e-8 from matrix products, nothing waits for the GPU; needs "
                                     "ε >= 1e-4) [auto: newton-schulz on CUDA, eigh otherwise]", "Method",
                                     choices=("auto", "eigh", "newton-schulz"))
    loss: str = setting("auto", "cosine (the paper's nets) | l2 (Eq. 1) [auto: l2 for --backbone linear]",
                        "Method", choices=("auto", "cosine", "l2"))
    stop_grad: bool = setting(True, "stop-gradient on the target branch (--no-stop-grad needs simsiam)", "Method",
                              paper="on")
    gamma_a: float = setting(0.996, "EMA rate γ_a of the target network (byol): θ_a ← γ_a θ_a + (1 − γ_a) θ",
                             "Method", paper="0.996", low=0.0, high=1.0)
    ema_schedule: str = setting("constant", "schedule of γ_a: constant (the paper) | cosine (γ_a → 1, BYOL)",
                                "Method", paper="constant", choices=("constant", "cosine"))
    form: str = setting("auto", "loss (autograd through the method's own loss) | gradient (its exact gradient form, "
                        "UniGrad Table 2 (a),(b),(d),(f),(i)) | unified (the simplified unified form: (e) for byol, "
                        "(g)/(h) barlowtwins, (j) vicreg) [auto: gradient for unigrad, loss otherwise]", "Method",
                        choices=("auto", "loss", "gradient", "unified"))
    lam: float | None = setting(None, "balance factor λ of the negative gradient [default: the paper's per method "
                                "and form: unigrad 100; barlowtwins 5e-3 (off-diagonal weight; bn) / 50 (unified "
                                "l2); vicreg 1 (the covariance weight of its loss and gradient) / 25 (unified)]",
                                "Method", low=0.0, low_open=True, high=1e6, flag="--lambda")
    tau: float = setting(0.2, "temperature τ of InfoNCE (moco, simclr)", "Method", paper="0.2", low=0.0,
                         low_open=True, high=100.0)
    queue_size: int = setting(65536, "moco: momentum keys kept in the queue of negatives", "Method", paper="65536",
                              low=1, high=10**7)
    positive_target: str = setting("auto", "branch of the positive target u2ᵗ: online (with gradient) | stop-grad "
                                   "(the online net, detached) | ema (momentum encoder, --gamma-a) [auto: the "
                                   "method's own]", "Method", choices=("auto", "online", "stop-grad", "ema"))
    negative_target: str = setting("auto", "branch of the negatives / F (moco, simclr, unigrad, byol --form gradient, "
                                   "barlowtwins / vicreg --form unified): online | stop-grad | ema [auto: the "
                                   "positive target's]", "Method",
                                   choices=("auto", "online", "stop-grad", "ema"))
    f_rho: float = setting(0.99, "unigrad / byol --form gradient: moving-average rate ρ of the method's F",
                           "Method", paper="0.99", low=0.0, high=1.0, high_open=True)
    gradient_eps: float = setting(0.3, "byol --form gradient: ε of W_p = U diag(sqrt(s/s_max) + ε) Uᵀ and "
                                  "M = F/s_max + ε² I", "Method", paper="0.3", low=0.0, high=10.0)
    norm: str = setting("auto", "normalisation of the outputs (unigrad, barlowtwins, vicreg --form unified): l2 | bn "
                        "(standardised over the batch; barlowtwins) | none (raw outputs: the linear model's unified "
                        "flow) [auto: none for --backbone linear; barlowtwins bn, l2 for --form unified; l2]",
                        "Method", choices=("auto", "bn", "l2", "none"))
    cutmix: float = setting(0.0, "CutMix on the online views, Beta(α, α) mixing ratio [0: off; unigrad only]",
                            "Method", low=0.0, high=100.0)
    multi_crop: str = setting("", "local crops NxSIZE besides the two global views, e.g. 6x96 (global scale "
                              "(0.14, 1), local (0.05, 0.14)) ['': off; unigrad only]", "Method")
    # Optimisation
    epochs: int = setting(100, "epochs", "Optimisation", paper="100", low=1, high=10**6)
    batch_size: int = setting(128, "global batch size, split over torchrun ranks", "Optimisation", paper="128",
                              low=2, high=10**7)
    lr: float = setting(0.03, "learning rate α of the online net", "Optimisation", paper="0.03", low=0.0,
                        low_open=True, high=100.0)
    momentum: float | None = setting(None, "SGD momentum [default: 0.9 (the paper's); 0 for synthetic]",
                                     "Optimisation", low=0.0, high=1.0, high_open=True)
    weight_decay: float = setting(4e-4, "weight decay of the trunk (torch SGD's; η = this in the ODE's time "
                                  "t = step × lr)", "Optimisation", paper="4e-4", low=0.0, high=1.0)
    predictor_weight_decay: float | None = setting(None, "weight decay of the predictor [default: as trunk]",
                                                   "Optimisation", low=0.0, high=1.0)
    alpha_p: float = setting(1.0, "predictor learning-rate ratio α_p (lr of W_p = α_p × lr)", "Optimisation",
                             paper="1", low=0.0, low_open=True, high=1e4)
    lr_schedule: str = setting("constant", "lr schedule: constant | cosine (with warm-up)", "Optimisation",
                               paper="constant", choices=("constant", "cosine"))
    lr_schedule_unit: str = setting("step", "when the cosine lr and its warm-up move: step (every iteration, as "
                                    "UniGrad's code) | epoch (once, at each epoch's start, as the SimSiam / collapse "
                                    "code's adjust_learning_rate; the collapse recipes' paper scale)", "Optimisation",
                                    choices=("step", "epoch"))
    fix_pred_lr: bool = setting(False, "the predictor's lr follows the warm-up, then stays at its peak (no cosine "
                                "decay; the SimSiam code's --fix-pred-lr)", "Optimisation")
    min_lr: float = setting(0.0, "floor of the cosine lr schedule and start of its warm-up, as a fraction of the "
                            "peak lr (UniGrad: 1e-3)", "Optimisation", paper="0", low=0.0, high=1.0)
    warmup_epochs: int = setting(0, "linear warm-up epochs of the cosine lr schedule", "Optimisation", low=0,
                                 high=10**6)
    chunk_warmup_steps: int = setting(0, "streams: the encoder's lr is 0 for the first N steps of every epoch but "
                                      "the first, while the predictor trains (the official --n_warmup_steps, per "
                                      "epoch: a chunk of several epochs is frozen at each epoch's start)",
                                      "Optimisation", low=0, high=10**9)
    optimizer: str = setting("sgd", "sgd | lars", "Optimisation", paper="sgd", choices=("sgd", "lars"))
    lr_scale: str = setting("none", "none | linear (lr × batch/256) | sqrt; the batch is the global batch over all "
                            "torchrun ranks", "Optimisation", paper="none", choices=("none", "linear", "sqrt"))
    max_steps: int = setting(0, "stop after this many steps [0: all epochs]", "Optimisation", low=0)
    seed: int = setting(0, "random seed", "Optimisation", low=0, high=2**31)
    # Measurement
    measure_every: int = setting(50, "steps between measurements of F̂, W_p and the collapse metric",
                                 "Measurement", low=1)
    probe_size: int = setting(512, "images N of the fixed probe set of the collapse metric (warned when N < 4d)",
                              "Measurement", low=2, high=10**6)
    knn_k: int = setting(200, "kNN neighbours", "Measurement", paper="200", low=1, high=10**6)
    knn_t: float = setting(0.1, "kNN temperature", "Measurement", paper="0.1", low=0.0, low_open=True, high=100.0)
    knn_every: int = setting(1, "epochs between kNN evaluations [0: only at start and end]", "Measurement", low=0)
    checkpoint_every: int = setting(0, "steps between checkpoints [0: every epoch]", "Measurement", low=0)
    collapse_window: int = setting(5, "measurements in a row in which feature std and s2/s1 of F̂ stay far below "
                                   "their best that raise the collapse warning", "Measurement", low=1)
    # Speed
    device: str = setting("auto", "cpu | cuda | cuda:N [auto: cuda when available]", "Speed")
    precision: str = setting("auto", "fp32 | bf16 (autocast; F̂, eigendecompositions and metrics stay fp32) "
                             "[auto: bf16 on CUDA]", "Speed", choices=("auto", "fp32", "bf16"))
    cuda_graph: str = setting("auto", "auto | on | off: replay forward + backward from one CUDA graph (auto: on "
                              "CUDA with one process and no --compile)", "Speed", choices=("auto", "on", "off"))
    compile: str = setting("none", "torch.compile the step and the target's forward: none | default | "
                           "reduce-overhead (CUDA graphs) | max-autotune", "Speed",
                           choices=("none", "default", "reduce-overhead", "max-autotune"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _checked(f, getattr(self, f.name)))
        if self.data_fraction < 1 and self.data_schedule == "iid":  # what runs: the stream's last part
            object.__setattr__(self, "data_schedule", "last")
        check_device(self.device)
        if self.cuda_graph == "on" and (METHODS[self.method].negatives(self) or self.cutmix or self.multi_crop):
            raise ConfigError(f"--cuda-graph on with --method {self.method} (--form {self.resolved_form}) or CutMix / "
                              "multi-crop is not accepted: the step keeps state or changes shape between steps; "
                              "expected --cuda-graph auto or off")
        if self.cuda_graph == "on" and self.compile != "none":
            raise ConfigError(f"--cuda-graph on with --compile {self.compile} is not accepted: expected one of them "
                              "(--compile reduce-overhead makes its own CUDA graphs)")
        if self.directpred_solver == "newton-schulz" and self.predictor == "directpred" and self.eps < P_FLOOR:
            raise ConfigError(f"--directpred-solver newton-schulz with --eps {self.eps} is not accepted: it computes "
                              f"W_p as a matrix square root, which needs --eps >= {P_FLOOR} (below it the floor on "
                              "p_j binds); expected --directpred-solver eigh or auto")
        if self.data_path == "device" and self.dataset not in (*IN_MEMORY, "synthetic"):
            raise ConfigError(f"--data-path device with DATASET {self.dataset} is not accepted: expected one of "
                              f"{', '.join(IN_MEMORY)} (held whole in device memory) or synthetic (drawn a batch at "
                              "a time), or --data-path loader")
        check_number("--eps", self.eps, low=-1.0 if self.eps_inside else 0.0, high=10.0)
        if self.eps_inside and self.predictor != "directpred":
            raise ConfigError(f"--eps-inside is only for --predictor directpred (got --predictor {self.predictor!r})")
        if self.freq != 1 and self.predictor not in ("directpred", "optimal"):
            raise ConfigError(f"--freq {self.freq} is only for --predictor directpred or optimal (got --predictor "
                              f"{self.predictor!r}): expected --freq 1 or one of those")
        self._check_method()
        self._check_schedule()
        if not self.stop_grad and self.target_mode != "online":
            online = [m for m, spec in METHODS.items() if spec.target(self) == "online"]
            raise ConfigError(f"--no-stop-grad with --method {self.method} is not accepted: expected --method "
                              f"{' or '.join(online)}, whose target is the online network (W_a = W) that gradients "
                              "can flow through")
        if not METHODS[self.method].predictor(self) and self.predictor != "linear":
            raise ConfigError(f"--predictor {self.predictor} with --method {self.method} --form {self.resolved_form} "
                              "is not accepted: that method and form have no trained predictor (byol --form gradient "
                              "sets W_p from F); expected no --predictor")
        linear = self.resolved_backbone == "linear"
        if linear != (self.dataset == "synthetic"):
            raise ConfigError(f"--backbone {self.backbone} with DATASET {self.dataset} is not accepted: expected "
                              "--backbone linear with synthetic (the theory's two-layer linear network) and an image "
                              "backbone (resnet18|resnet34|resnet50|convnet|resnet18-bottleneck|resnet50-basic) with "
                              "image datasets")
        if self.synthetic_size < self.batch_size and self.dataset == "synthetic":
            raise ConfigError(f"--synthetic-size {self.synthetic_size} is below --batch-size {self.batch_size}: "
                              "expected at least one batch per epoch")
        if self.predictor_init == "identity" and self.predictor in ("mlp", "none"):
            raise ConfigError(f"--predictor-init identity with --predictor {self.predictor} is not accepted: "
                              "expected --predictor linear, symmetric or directpred")
        self._check_model()
        if self.warmup_epochs >= self.epochs and self.lr_schedule == "cosine":
            raise ConfigError(f"--warmup-epochs {self.warmup_epochs} is out of range: expected fewer than "
                              f"--epochs {self.epochs}")

    def _check_schedule(self) -> None:
        """The data stream's settings: the fraction against the strategy, the chunk arithmetic, the order, the
        hybrid's switch."""
        name = self.resolved_data_schedule
        if self.data_fraction < 1 and self.data_schedule not in ("iid", "last"):
            raise ConfigError(f"--data-fraction {self.data_fraction} with --data-schedule {self.data_schedule} is not "
                              "accepted: the fraction is the stream's last part (strategy last), while "
                              f"{self.data_schedule} moves through the stream; expected --data-schedule iid or last")
        if self.data_fraction < 1 and self.n_chunks:
            raise ConfigError(f"--data-fraction {self.data_fraction} with --n-chunks {self.n_chunks} is not "
                              "accepted: both set the size of the last part (1 / --n-chunks); expected one of them")
        if name not in STREAMS:
            given = [f"{flag} {v}" for flag, v, off in (
                ("--n-chunks", self.n_chunks, 0), ("--n-rounds", self.n_rounds, 1),
                ("--repeat-batch", self.repeat_batch, 1), ("--chunk-warmup-steps", self.chunk_warmup_steps, 0),
                ("--stream-order", self.stream_order, "random"), ("--hybrid-epoch", self.hybrid_epoch, 0)) if v != off]
            if given:
                raise ConfigError(f"{', '.join(given)} with --data-schedule {name} is not accepted: only a stream "
                                  f"has chunks; expected --data-schedule {' | '.join(STREAMS)} or --data-fraction")
            return
        if self.dataset == "synthetic":
            raise ConfigError(f"--data-schedule {name} with DATASET synthetic is not accepted: every synthetic item is "
                              "a fresh draw, so there is no stream to order; expected an image dataset")
        if self.epochs % self.n_rounds:
            raise ConfigError(f"--n-rounds {self.n_rounds} does not divide --epochs {self.epochs}: expected a divisor "
                              "(each round has --epochs / --n-rounds epochs)")
        per_round = self.epochs // self.n_rounds
        if self.n_chunks and per_round % self.n_chunks:
            raise ConfigError(f"--n-chunks {self.n_chunks} does not divide the {per_round} epochs of a round "
                              f"(--epochs {self.epochs} / --n-rounds {self.n_rounds}): expected a divisor of "
                              f"{per_round}, so every chunk has the same whole number of epochs")
        if self.stream_order not in ("random", "class-incremental") and not Path(self.stream_order).is_file():
            raise ConfigError(f"--stream-order {self.stream_order} is not a file: expected random, class-incremental "
                              "or a .npy file of a permutation of the training items")
        if self.hybrid_epoch and self.hybrid_epoch >= self.epochs:
            raise ConfigError(f"--hybrid-epoch {self.hybrid_epoch} is out of range: expected 0 < E < --epochs "
                              f"{self.epochs} (the epoch at which the stream gives way to iid)")

    def _check_model(self) -> None:
        """The backbone's width and init, the projector and predictor layouts, --fix-pred-lr."""
        from ssltheory.practice.models import WIDTHS, convnet_channels

        backbone = self.resolved_backbone
        if self.width is not None:
            if backbone not in WIDTHS:
                raise ConfigError(f"--width {self.width:g} with --backbone {backbone} is not accepted: it has no "
                                  f"width setting; expected no --width, or --backbone {' or '.join(WIDTHS)}")
            if backbone == "convnet" and not 1 <= convnet_channels(self.width) <= 2048:
                raise ConfigError(f"--width {self.width:g} with --backbone convnet is out of range: expected a "
                                  "channel multiplier from 1/64 to 64 (32 x width channels in the first block)")
            if backbone == "resnet18-bottleneck" and not float(self.width).is_integer():
                raise ConfigError(f"--width {self.width:g} with --backbone {backbone} is not accepted: expected a "
                                  "whole width_per_group (the collapse study's 64, 96, 128)")
        if self.zero_init_residual and not backbone.startswith("resnet"):
            raise ConfigError(f"--zero-init-residual with --backbone {backbone} is not accepted: it has no residual "
                              "blocks; expected a resnet backbone")
        if self.projector == "simsiam" and backbone == "linear":
            raise ConfigError("--projector simsiam with --backbone linear is not accepted: the linear model has no "
                              "projector; expected an image backbone")
        if self.projector == "simsiam" and self.proj_hidden != 512:
            raise ConfigError(f"--proj-hidden {self.proj_hidden} with --projector simsiam is not accepted: its hidden "
                              "width is the backbone's feature width (prev_dim); expected no --proj-hidden")
        if self.pred_layout != "directpred" and self.predictor != "mlp":
            raise ConfigError(f"--pred-layout {self.pred_layout} with --predictor {self.predictor} is not accepted: "
                              "expected --predictor mlp")
        trained = METHODS[self.method].predictor(self) and self.predictor != "none" and not (
            self.predictor in ("directpred", "optimal") and self.freq == 1)
        if self.fix_pred_lr and not trained:
            raise ConfigError(f"--fix-pred-lr with --method {self.method} --predictor {self.predictor} (--freq "
                              f"{self.freq}) is not accepted: no predictor is trained by SGD; expected a trained "
                              "predictor (linear, mlp, symmetric; directpred or optimal with --freq > 1)")

    def _check_method(self) -> None:
        """The method's settings: its forms, its branches, its balance factor, CutMix and multi-crop."""
        method, form = METHODS[self.method], self.resolved_form
        if form not in method.forms:
            raise ConfigError(f"--form {self.form} with --method {self.method} is not accepted: expected one of "
                              f"{', '.join(method.forms)}")
        if not self.stop_grad and self.positive_target not in ("auto", "online"):
            raise ConfigError(f"--no-stop-grad with --positive-target {self.positive_target} is not accepted: "
                              "expected --positive-target online (the same thing) or no --no-stop-grad")
        if not method.negatives(self) and self.negative_target != "auto":
            raise ConfigError(f"--negative-target {self.negative_target} with --method {self.method} (--form {form}) "
                              "is not accepted: it uses no negatives; expected no --negative-target")
        if (form != "loss" or not method.trains_target) and "online" in (self.target_mode, self.negative_mode):
            which = "--positive-target" if self.target_mode == "online" else "--negative-target"
            raise ConfigError(f"{which} online with --method {self.method} --form {form} is not accepted: this form "
                              "treats its targets and negatives as constants; expected stop-grad or ema")
        if self.lam is not None and method.lam(self) is None:
            raise ConfigError(f"--lambda {self.lam} with --method {self.method} (--form {form}) is not accepted: it "
                              "has no balance factor; expected no --lambda, or --method unigrad, barlowtwins, vicreg")
        norms = method.norms(self)
        if self.norm != "auto" and self.norm not in norms:
            able = [f"{m} ({'|'.join(spec.norms(self))})" for m, spec in METHODS.items() if spec.norms(self)]
            raise ConfigError(f"--norm {self.norm} with --method {self.method} --form {form} is not accepted: expected "
                              + (f"--norm {' or '.join(norms)}" if norms else "no --norm (it l2-normalises; --loss "
                                 "chooses for byol/simsiam)") + f"; at this form: {', '.join(able)}")
        from ssltheory.practice.data.mixing import parse_multi_crop

        parse_multi_crop(self.multi_crop)
        if (self.cutmix or self.multi_crop) and self.dataset == "synthetic":
            raise ConfigError(f"--cutmix / --multi-crop with DATASET synthetic is not accepted: they cut images; "
                              f"expected an image dataset ({', '.join(d for d in DATASETS if d != 'synthetic')})")
        if self.cutmix or self.multi_crop:
            objective = method.objective(self)
            for flag, value, can in (("--cutmix", self.cutmix, objective.cutmix),
                                     ("--multi-crop", self.multi_crop, objective.multi_crop)):
                if value and not can:
                    able = [m for m in ("unigrad",) if m in METHODS]
                    raise ConfigError(f"{flag} {value} with --method {self.method} (--form {form}) is not accepted: "
                                      f"its objective does not support it; expected --method {' or '.join(able)}")
            if self.cutmix and (self.target_mode, self.negative_mode) != ("ema", "ema"):
                raise ConfigError(f"--cutmix with --positive-target {self.target_mode} --negative-target "
                                  f"{self.negative_mode} is not accepted: the online views are mixed, so only a "
                                  "momentum encoder sees the clean images that the targets and F come from; expected "
                                  "ema for both")

    @property
    def resolved_data_schedule(self) -> str:
        """The data schedule: ``--data-schedule`` (``last`` for a ``--data-fraction`` below 1, its strategy: set so
        when the config is made, and saved so in config.json)."""
        return "last" if self.data_fraction < 1 and self.data_schedule == "iid" else self.data_schedule

    @property
    def resolved_form(self) -> str:
        """The method's form: ``loss``, ``gradient`` or ``unified`` (its first when ``auto``)."""
        return self.form if self.form != "auto" else METHODS[self.method].forms[0]

    @property
    def target_mode(self) -> str:
        """Where the positive targets come from with these settings: ``ema``, ``stop-grad`` or ``online``."""
        if self.positive_target != "auto":
            return self.positive_target
        return METHODS[self.method].target(self)

    @property
    def negative_mode(self) -> str | None:
        """Where the negatives (and F) come from: ``ema``, ``stop-grad``, ``online``; None if the method has none."""
        if not METHODS[self.method].negatives(self):
            return None
        return self.negative_target if self.negative_target != "auto" else self.target_mode

    @property
    def resolved_lam(self) -> float | None:
        """The balance factor λ: ``--lambda`` or the paper's for the method and form (None: the method has none)."""
        return self.lam if self.lam is not None else METHODS[self.method].lam(self)

    @property
    def resolved_norm(self) -> str:
        """The outputs' normalisation: ``--norm``, else ``none`` for the linear model where the method's form takes
        it, else its default (Barlow Twins: ``bn``, ``l2`` for the unified form; ``l2`` for the rest)."""
        if self.norm != "auto":
            return self.norm
        norms = METHODS[self.method].norms(self)
        if self.resolved_backbone == "linear" and "none" in norms:
            return "none"
        if self.method == "barlowtwins" and self.resolved_form == "unified":
            return "l2"
        return norms[0] if norms else "l2"

    @property
    def resolved_image_size(self) -> int:
        """Input resolution in pixels (the dataset's default when ``image_size`` is 0)."""
        return self.image_size or IMAGE_SIZE[self.dataset]

    @property
    def resolved_backbone(self) -> str:
        """``convnet`` for digits, ``linear`` for synthetic, ``resnet18`` otherwise, unless a backbone was named."""
        if self.backbone != "auto":
            return self.backbone
        return {"digits": "convnet", "synthetic": "linear"}.get(self.dataset, "resnet18")

    @property
    def resolved_loss(self) -> str:
        """``l2`` (Eq. 1) for the linear model, the paper's negative cosine otherwise, unless named."""
        if self.loss != "auto":
            return self.loss
        return "l2" if self.resolved_backbone == "linear" else "cosine"

    @property
    def resolved_predictor_init(self) -> str:
        """``identity`` (W_p = scale * I, aligned with any F) for the linear model, ``random`` otherwise."""
        if self.predictor_init != "auto":
            return self.predictor_init
        return "identity" if self.resolved_backbone == "linear" else "random"

    @property
    def resolved_momentum(self) -> float:
        """SGD momentum: 0.9 (the paper's) unless set; 0 for synthetic runs, whose ODE is plain gradient flow."""
        if self.momentum is not None:
            return self.momentum
        return 0.0 if self.dataset == "synthetic" else 0.9

    @property
    def resolved_input_dim(self) -> int:
        """n1 of the synthetic data (``proj_dim`` unless set)."""
        return self.input_dim or self.proj_dim

    @property
    def effective_lr(self) -> float:
        """The lr the optimizer uses: ``lr`` scaled by the global batch over 256 (``lr_scale``); the same on any
        number of ranks, since ``batch_size`` is the global batch."""
        ratio = self.batch_size / LR_REFERENCE_BATCH
        return self.lr * {"none": 1.0, "linear": ratio, "sqrt": ratio ** 0.5}[self.lr_scale]

    @property
    def pred_weight_decay(self) -> float:
        """Weight decay of the predictor (the trunk's unless set)."""
        return self.weight_decay if self.predictor_weight_decay is None else self.predictor_weight_decay

    def resolved_data_path(self, device_type: str) -> str:
        """``device`` (batched augmentation of the whole dataset held on the device) on CUDA for in-memory datasets
        and on any device for the small ones (digits, synthetic: measured 1.9x faster than the DataLoader on 2
        cores), ``loader`` otherwise, unless named."""
        if self.data_path != "auto":
            return self.data_path
        small = self.dataset in ("digits", "synthetic")
        return "device" if small or (device_type == "cuda" and self.dataset in IN_MEMORY) else "loader"

    def resolved_cuda_graph(self, device_type: str, world: int) -> bool:
        """Whether the step is replayed from a CUDA graph: ``auto`` on CUDA, on one process, without --compile, for a
        method without negatives (whose objectives keep state across steps: a running F, a queue) and without CutMix
        or multi-crop (the graph captures two views of fixed shapes)."""
        stateful = METHODS[self.method].negatives(self) or self.cutmix > 0 or bool(self.multi_crop)
        return not (self.cuda_graph == "off" or device_type != "cuda" or world > 1 or self.compile != "none"
                    or stateful)

    def resolved_directpred_solver(self, device_type: str) -> str:
        """How DirectPred computes W_p: ``newton-schulz`` (matrix products only) on CUDA, where the eigendecomposition
        makes every step wait for the device, when --eps >= the floor; ``eigh`` otherwise, unless named."""
        if self.directpred_solver != "auto":
            return self.directpred_solver
        return "newton-schulz" if device_type == "cuda" and self.eps >= P_FLOOR else "eigh"

    def resolved_precision(self, device_type: str) -> str:
        """``bf16`` autocast on CUDA, ``fp32`` elsewhere, unless named."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if device_type == "cuda" else "fp32"

    def resolved(self, device, world: int) -> dict[str, Any]:
        """What a run of these settings resolves to on ``device`` with ``world`` ranks (config.json's ``run``)."""
        t = device.type
        return {"device": str(device), "data_path": self.resolved_data_path(t), "precision": self.resolved_precision(t),
                "world_size": world, "cuda_graph": self.resolved_cuda_graph(t, world), "form": self.resolved_form,
                "positive_target": self.target_mode, "negative_target": self.negative_mode,
                "lambda": self.resolved_lam,
                "directpred_solver": self.resolved_directpred_solver(t), "per_rank_batch": self.batch_size // world,
                "global_batch": self.batch_size, "lr_used": self.effective_lr,
                "lr_rule": f"lr x {self.lr_scale} scaling of batch {self.batch_size} / 256" if self.lr_scale != "none"
                else "lr as given (batch size is global, so it does not depend on ranks)"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> TrainConfig:
        """A config from ``{name: value}`` (names as fields, ``predictor_bias``, or as flags, ``predictor-bias``);
        an unknown name is a one-line :class:`ConfigError` naming it and the nearest known ones. The same
        validation as the command line's: settings files and experiment recipes come through here."""
        return cls(**field_names(settings))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config saved in a run's ``config.json`` (of this or an earlier version, see :func:`migrate`)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in migrate(d).items() if k in known})

    def changes(self) -> dict[str, Any]:
        """The settings that differ from the defaults, ``{name: value}``."""
        base = {f.name: f.default for f in dataclasses.fields(self)}
        return {k: v for k, v in self.to_dict().items() if v != base[k] or k == "dataset"}

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


def field_names(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` keyed by field name (``alpha-p`` and ``--alpha-p`` become ``alpha_p``); a one-line error for a
    name that is no setting, with the nearest flags."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    spelled = {flag_of(n).lstrip("-").replace("-", "_"): n for n in known}  # --lambda is field lam
    out = {}
    for key, value in settings.items():
        name = str(key).lstrip("-").replace("-", "_")
        name = spelled.get(name, name)
        if name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" (did you mean {', '.join(flag_of(n) for n in near)}?)" if near else ""
            raise ConfigError(f"setting {key!r} is not known{hint}: expected one of the flags of "
                              "'ssltheory train --help'")
        out[name] = value
    return out


def check_device(name: str, flag: str = "--device") -> str:
    """``name`` if it names a kind of device (auto, cpu, cuda, cuda:N, mps), else a one-line error."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ConfigError(f"{flag} {name!r} is not known: expected auto, cpu, cuda, cuda:N or mps")
    return name


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
    """How the command line spells field ``name`` (``--alpha-p``; ``DATASET`` for the argument)."""
    meta = TrainConfig.__dataclass_fields__[name].metadata
    return meta.get("flag") or "--" + name.replace("_", "-")


def choices_of(meta: Any) -> tuple[str, ...] | None:
    """The accepted values of a field (its registry's names, for a registry), or None."""
    c = meta.get("choices")
    c = c() if callable(c) else c
    return tuple(c) if c is not None else None


@functools.lru_cache(maxsize=1)
def field_types() -> dict[str, Any]:
    """The resolved type of each field (``float | None`` for optional numbers)."""
    return typing.get_type_hints(TrainConfig)


def _checked(f: dataclasses.Field, value: Any) -> Any:
    """``value`` of field ``f`` checked against its type, choices and bounds (numbers coerced), or ConfigError."""
    if value is None and f.default is None:
        return None
    meta, kind, flag = f.metadata, field_types()[f.name], flag_of(f.name)
    choices = choices_of(meta)
    if choices is not None:
        return check_choice(flag, value, choices)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} {value!r} is not a boolean: expected true or false")
        return value
    bounds = {k: meta[k] for k in ("low", "high", "low_open", "high_open")}
    if isinstance(value, bool):
        raise ConfigError(f"{flag} {value!r} is a boolean: expected a number")
    if isinstance(value, int) and abs(value) > 2**63:
        raise ConfigError(f"{flag} {value} is out of range: expected a number of at most 19 digits")
    if kind is int:
        x = check_int(flag, value, low=int(meta["low"] or 0))
        if meta["high"] is not None and x > meta["high"]:
            raise ConfigError(f"{flag} {x} is out of range: expected an integer from {int(meta['low'] or 0)} to "
                              f"{int(meta['high'])}")
        return x
    if kind is float or float in typing.get_args(kind):
        return check_number(flag, value, **bounds)
    if not isinstance(value, str):
        raise ConfigError(f"{flag} {value!r} is not text: expected a string")
    return value


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
