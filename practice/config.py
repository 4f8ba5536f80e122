"""One configuration object per training run, validated, saved as ``config.json`` in the run folder.

Defaults follow the DirectPred paper's STL-10/CIFAR-10 protocol and its official code (directpred.md §4):
SGD lr 0.03, momentum 0.9, weight decay 4e-4 on trunk and predictor, batch 128, EMA gamma_a = 0.996, constant lr,
projector 512 -> 512 -> 128, DirectPred rho = 0.3, eps = 0.1 (the paper's best STL-10 setting), freq = 1.
Names map to the theory (``practice/compare.py`` has the mapping): ``weight_decay`` is torch SGD's coupled decay, so
eta = weight_decay in the ODE's time t = step * lr (the paper writes eta_bar = alpha * eta for a per-step shrink);
``alpha_p`` is the predictor's learning-rate ratio; ``ema`` is gamma_a = 1 - alpha * beta.

``synthetic`` is the theory's own setting: x0 ~ N(0, I_n1) drawn fresh for every sample, views x0 + sigma * noise,
the two-layer linear network (``--model linear``: W of shape (n2, n1), no projector, W_p of shape (n2, n2)) trained
with the L2 loss of Eq. 1 by plain SGD (momentum 0), W_p starting at ``predictor_init_scale`` * I so that it stays
aligned with F and the decoupled modes (Eqs. 11-13) hold.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssltheory.theory.io import save_json
from ssltheory.theory.params import ConfigError, check_choice, check_int, check_number

DATASETS = ("digits", "stl10", "cifar10", "imagenet", "folder", "synthetic")
METHODS = ("byol", "simsiam")
PREDICTORS = ("linear", "mlp", "symmetric", "directpred", "optimal", "none")
BACKBONES = ("auto", "resnet18", "resnet34", "resnet50", "convnet", "linear")
LOSSES = ("auto", "cosine", "l2")
PREDICTOR_INITS = ("auto", "random", "identity")
SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("sgd", "lars")
DATA_PATHS = ("auto", "loader", "device")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
CUDA_GRAPH = ("auto", "on", "off")
DIRECTPRED_SOLVERS = ("auto", "eigh", "newton-schulz")
P_FLOOR = 1e-4
"""DirectPred's floor on p_j (the official code's)."""
LR_SCALES = ("none", "linear", "sqrt")
IN_MEMORY = ("digits", "cifar10", "stl10")  # datasets the device data path holds whole (uint8) on the device
LR_REFERENCE_BATCH = 256

IMAGE_SIZE = {"digits": 8, "stl10": 96, "cifar10": 32, "imagenet": 224, "folder": 224, "synthetic": 1}


@dataclass
class TrainConfig:
    """Every setting of a run. See ``ssltheory train --help`` for the meaning of each flag."""

    dataset: str = "digits"
    data_dir: str = "data"
    download: bool = False
    image_size: int = 0  # 0: the dataset's default (IMAGE_SIZE)
    method: str = "byol"
    predictor: str = "linear"
    predictor_bias: bool = False
    rho: float = 0.3
    eps: float = 0.1
    eps_inside: bool = False  # DirectPred: p_j = sqrt(max(s_j / max s + eps, 1e-4)) (the code's dyn_eps_inside)
    freq: int = 1
    backbone: str = "auto"
    proj_hidden: int = 512
    proj_dim: int = 128
    pred_hidden: int = 512
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.03
    momentum: float | None = None  # None: 0.9 (the paper's), 0 for synthetic (the ODE is plain gradient flow)
    weight_decay: float = 4e-4
    predictor_weight_decay: float | None = None
    alpha_p: float = 1.0
    ema: float = 0.996
    ema_schedule: str = "constant"
    stop_grad: bool = True
    schedule: str = "constant"
    warmup_epochs: int = 0
    optimizer: str = "sgd"
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    measure_every: int = 50
    probe_size: int = 512
    knn_k: int = 200
    knn_t: float = 0.1
    knn_every: int = 1  # epochs between kNN evaluations; 0 = only at the start and the end
    checkpoint_every: int = 0  # steps; 0 = at the end of every epoch
    max_steps: int = 0  # stop after this many steps in total (0 = run all epochs)
    collapse_window: int = 5
    loss: str = "auto"  # cosine (the paper's nets) | l2 (Eq. 1, the linear model); auto picks by backbone
    predictor_init: str = "auto"  # random | identity (W_p = scale * I); auto: identity for the linear model
    predictor_init_scale: float = 0.5
    sigma2: float = 0.5  # synthetic: augmentation variance sigma^2 of x = x0 + sigma * noise
    input_dim: int = 0  # synthetic: n1 (0: the same as --proj-dim, n2)
    synthetic_size: int = 8192  # synthetic: samples per epoch (each drawn fresh)
    data_path: str = "auto"  # loader (DataLoader, per-image torchvision) | device (batched); auto: device on CUDA
    precision: str = "auto"  # fp32 | bf16 (autocast; F̂, eigh and the metrics stay fp32/fp64); auto: bf16 on CUDA
    compile: str = "none"  # torch.compile mode of the step and the target: none | default | reduce-overhead | ...
    cuda_graph: str = "auto"  # replay forward + backward from one CUDA graph; auto: on CUDA, one process, no compile
    lr_scale: str = "none"  # lr used = lr x (batch / 256) (linear) or its square root (sqrt); batch is global
    directpred_solver: str = "auto"  # eigh | newton-schulz (matrix products, no wait); auto: newton-schulz on CUDA

    def __post_init__(self) -> None:
        check_choice("DATASET", self.dataset, DATASETS)
        check_choice("--method", self.method, METHODS)
        check_choice("--predictor", self.predictor, PREDICTORS)
        check_choice("--backbone", self.backbone, BACKBONES)
        check_choice("--schedule", self.schedule, SCHEDULES)
        check_choice("--ema-schedule", self.ema_schedule, SCHEDULES)
        check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        check_choice("--loss", self.loss, LOSSES)
        check_choice("--predictor-init", self.predictor_init, PREDICTOR_INITS)
        check_choice("--data-path", self.data_path, DATA_PATHS)
        check_choice("--precision", self.precision, PRECISIONS)
        if isinstance(self.compile, bool):  # configs written before the modes: true / false
            object.__setattr__(self, "compile", "default" if self.compile else "none")
        check_choice("--compile", self.compile, COMPILE_MODES)
        check_choice("--cuda-graph", self.cuda_graph, CUDA_GRAPH)
        if self.cuda_graph == "on" and self.compile != "none":
            raise ConfigError(f"--cuda-graph on with --compile {self.compile} is not accepted: expected one of them "
                              "(--compile reduce-overhead makes its own CUDA graphs)")
        check_choice("--lr-scale", self.lr_scale, LR_SCALES)
        check_choice("--directpred-solver", self.directpred_solver, DIRECTPRED_SOLVERS)
        if self.directpred_solver == "newton-schulz" and self.predictor == "directpred" and self.eps < P_FLOOR:
            raise ConfigError(f"--directpred-solver newton-schulz with --eps {self.eps} is not accepted: it computes "
                              f"W_p as a matrix square root, which needs --eps >= {P_FLOOR} (below it the floor on "
                              "p_j binds); expected --directpred-solver eigh or auto")
        if self.data_path == "device" and self.dataset not in IN_MEMORY:
            raise ConfigError(f"--data-path device with DATASET {self.dataset} is not accepted: expected one of "
                              f"{', '.join(IN_MEMORY)} (held whole in device memory), or --data-path loader")
        check_number("--sigma2", self.sigma2, low=0.0)
        check_number("--predictor-init-scale", self.predictor_init_scale)
        for name, value in (("--lr", self.lr), ("--alpha-p", self.alpha_p)):
            check_number(name, value, low=0.0, low_open=True)
        check_number("--weight-decay", self.weight_decay, low=0.0)
        if self.predictor_weight_decay is not None:
            check_number("--predictor-weight-decay", self.predictor_weight_decay, low=0.0)
        if self.momentum is not None:
            check_number("--momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_number("--ema", self.ema, low=0.0, high=1.0)
        check_number("--rho", self.rho, low=0.0, high=1.0, high_open=True)
        if not self.eps_inside:
            check_number("--eps", self.eps, low=0.0)
        if self.eps_inside and self.predictor != "directpred":
            raise ConfigError(f"--eps-inside is only for --predictor directpred (got --predictor {self.predictor!r})")
        check_number("--knn-t", self.knn_t, low=0.0, low_open=True)
        for name, value, low in (("--freq", self.freq, 1), ("--epochs", self.epochs, 1),
                                 ("--batch-size", self.batch_size, 2), ("--proj-hidden", self.proj_hidden, 1),
                                 ("--proj-dim", self.proj_dim, 1), ("--pred-hidden", self.pred_hidden, 1),
                                 ("--measure-every", self.measure_every, 1), ("--probe-size", self.probe_size, 2),
                                 ("--knn-k", self.knn_k, 1), ("--workers", self.workers, 0),
                                 ("--knn-every", self.knn_every, 0),
                                 ("--warmup-epochs", self.warmup_epochs, 0), ("--image-size", self.image_size, 0),
                                 ("--checkpoint-every", self.checkpoint_every, 0), ("--max-steps", self.max_steps, 0),
                                 ("--collapse-window", self.collapse_window, 2), ("--seed", self.seed, 0),
                                 ("--input-dim", self.input_dim, 0), ("--synthetic-size", self.synthetic_size, 2)):
            check_int(name, value, low=low)
        if self.freq != 1 and self.predictor not in ("directpred", "optimal"):
            raise ConfigError(f"--freq {self.freq} is only for --predictor directpred or optimal (got --predictor "
                              f"{self.predictor!r}): expected --freq 1 or one of those")
        if not self.stop_grad and self.method != "simsiam":
            raise ConfigError("--no-stop-grad with --method byol is not accepted: expected --method simsiam, "
                              "whose target is the online network (W_a = W) that gradients can flow through")
        linear = self.resolved_backbone == "linear"
        if linear != (self.dataset == "synthetic"):
            raise ConfigError(f"--model {self.backbone} with DATASET {self.dataset} is not accepted: expected "
                              "--model linear with synthetic (the theory's two-layer linear network) and an image "
                              "backbone (resnet18|resnet34|resnet50|convnet) with image datasets")
        if self.synthetic_size < self.batch_size and self.dataset == "synthetic":
            raise ConfigError(f"--synthetic-size {self.synthetic_size} is below --batch-size {self.batch_size}: "
                              "expected at least one batch per epoch")
        if self.predictor == "optimal" and self.eps <= 0:
            raise ConfigError(f"--eps {self.eps} with --predictor optimal is not accepted: expected eps > 0, the "
                              "ridge of the least-squares predictor (lambda = eps * max s_j)")
        if self.predictor_init == "identity" and self.predictor in ("mlp", "none"):
            raise ConfigError(f"--predictor-init identity with --predictor {self.predictor} is not accepted: "
                              "expected --predictor linear, symmetric or directpred")
        if self.warmup_epochs >= self.epochs and self.schedule == "cosine":
            raise ConfigError(f"--warmup-epochs {self.warmup_epochs} is out of range: expected fewer than "
                              f"--epochs {self.epochs}")

    @property
    def resolved_image_size(self) -> int:
        """Input resolution in pixels (the dataset's default when ``image_size`` is 0)."""
        return self.image_size or IMAGE_SIZE[self.dataset]

    @property
    def resolved_backbone(self) -> str:
        """``convnet`` for digits, ``resnet18`` otherwise, unless a backbone was named."""
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

    def resolved_data_path(self, device_type: str) -> str:
        """``device`` (batched augmentation of the whole dataset held on the device) on CUDA for in-memory datasets,
        ``loader`` otherwise, unless named."""
        if self.data_path != "auto":
            return self.data_path
        return "device" if device_type == "cuda" and self.dataset in IN_MEMORY else "loader"

    def resolved_cuda_graph(self, device_type: str, world: int) -> bool:
        """Whether the step is replayed from a CUDA graph: ``auto`` on CUDA, on one process, without --compile."""
        if self.cuda_graph == "off" or device_type != "cuda" or world > 1 or self.compile != "none":
            return False
        return True

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

    @property
    def pred_weight_decay(self) -> float:
        """Weight decay of the predictor (the trunk's unless set)."""
        return self.weight_decay if self.predictor_weight_decay is None else self.predictor_weight_decay

    @property
    def uses_ema(self) -> bool:
        """BYOL keeps an EMA target network; SimSiam's target is the online network."""
        return self.method == "byol"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: Path, run: dict[str, Any] | None = None) -> None:
        """Write the config with library versions, the git commit and ``run`` (what was resolved at start: device,
        data path, precision, world size, per-rank batch, the lr used), as JSON."""
        save_json(path, {"config": self.to_dict(), "environment": environment(), "run": run or {}})

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text())["config"])


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
