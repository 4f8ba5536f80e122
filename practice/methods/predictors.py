"""Predictors, one small class each, on one base class (:class:`Predictor`) with the hooks a step calls.

All map the projector output f (B, d) to a prediction (B, d). The step calls, in order:
``observe(f1, f2, z1, z2, reduce)`` with the step's features (the optimal predictor tracks E[f_a f^T]);
``after_step(step, F)`` after each optimizer step with the running correlation F̂ (d, d) of the predictor's inputs
(DirectPred sets W_p from it); ``trainable_parameters()`` is what the optimizer's predictor group trains.
``W_p()`` gives the linear predictor's matrix (None for the MLP and for no predictor, whose W_p = I is nothing
measured), so that the same measurements apply to all.

:data:`PREDICTORS` maps each ``--predictor`` name to its builder; adding one is a class and a registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ssltheory.practice.measure.running import RunningCorrelation
from ssltheory.practice.settings import SETTINGS, Setting, declare, rule
from ssltheory.theory.checks import ConfigError
from ssltheory.theory.modes import P_FLOOR, directpred_p

NS_ITERS = 40
"""Newton-Schulz iterations of :func:`directpred_weight_ns` (converges eigenvalues down to ~1e-13 of the largest)."""
NS_SQUARINGS = 20
"""Repeated squarings that find max s in :func:`directpred_weight_ns` (F̂^(2^20))."""


class Predictor(nn.Module):
    """The hooks of a predictor, as no-ops. ``trainable``: whether SGD trains its parameters."""

    trainable = True

    def W_p(self) -> torch.Tensor | None:
        """The (d, d) matrix of a linear predictor (None for a nonlinear one)."""
        return None

    def observe(self, f1: torch.Tensor, f2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """See a step's detached features f1, f2 and targets z1, z2, each (B, d); ``reduce`` sums over ranks."""

    def after_step(self, step: int, F: torch.Tensor) -> None:
        """After the optimizer's step ``step`` (0-based), with the running correlation F̂ (d, d)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer's predictor group trains (none when ``trainable`` is False)."""
        return [p for p in self.parameters() if p.requires_grad] if self.trainable else []


class LinearPredictor(Predictor):
    """W_p trained by gradient (the paper's 'regular W_p')."""

    def __init__(self, d: int, bias: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(d, d, bias=bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f)

    def W_p(self) -> torch.Tensor | None:
        return self.linear.weight


class SymmetricPredictor(LinearPredictor):
    """Linear W_p made symmetric, (W_p + W_p^T) / 2, at the start and after every step (Table 3's 'sym')."""

    def __init__(self, d: int, bias: bool = False) -> None:
        super().__init__(d, bias)
        self.symmetrise()

    @torch.no_grad()
    def symmetrise(self) -> None:
        w = self.linear.weight
        w.copy_(0.5 * (w + w.T))

    @torch.no_grad()
    def after_step(self, step: int, F: torch.Tensor) -> None:
        self.symmetrise()


class DirectPredictor(LinearPredictor):
    """DirectPred: W_p = U diag(p) U^T from F̂ = U diag(s) U^T, p_j by :func:`~ssltheory.theory.modes.directpred_p`
    (max(sqrt(s_j / max s) + eps, floor), or with ``inside`` sqrt(max(s_j / max s + eps, floor))).

    Set at the end of every ``freq``-th step (the official code's order: the first forward uses the initial W_p).
    With freq > 1 W_p is trained by SGD in between (the paper's hybrid); with freq = 1 it is not trained.
    ``solver``: ``eigh`` (:func:`directpred_weight`) or ``newton-schulz`` (:func:`directpred_weight_ns`, the same
    W_p from matrix products alone, for eps >= the floor).
    """

    def __init__(self, d: int, eps: float = 0.1, freq: int = 1, bias: bool = False, inside: bool = False,
                 solver: str = "eigh") -> None:
        super().__init__(d, bias)
        self.eps, self.freq, self.inside, self.solver = eps, freq, inside, solver
        self.trainable = freq > 1

    @torch.no_grad()
    def after_step(self, step: int, F: torch.Tensor) -> None:
        if (step + 1) % self.freq == 0:
            weight = directpred_weight_ns if self.solver == "newton-schulz" else directpred_weight
            W = weight(F, self.eps, inside=self.inside)
            self.linear.weight.copy_(W.to(self.linear.weight.dtype))


def directpred_eigh(F: torch.Tensor, eps: float, floor: float = P_FLOOR, inside: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """DirectPred's eigen-decomposition of F (d, d), the one home of W_p from F̂ (the predictor's, UniGrad's gradient
    form's and the measurements'): (F_sym, U, s_max, p), float64, with F_sym = (F + F^T) / 2 = U diag(s) U^T (s
    clamped at 0), s_max = max s (at least the smallest float) and p_j by :func:`~ssltheory.theory.modes.directpred_p`
    of s_j / s_max (F = 0: ratio 0, p = max(eps, floor)). W_p = U diag(p) U^T. On CUDA the eigendecomposition checks
    its result on the host, so the calling thread waits for the device here."""
    Fs = 0.5 * (F + F.T).double()
    s, U = torch.linalg.eigh(Fs)
    s = s.clamp(min=0)
    s_max = s.max().clamp(min=torch.finfo(s.dtype).tiny)
    return Fs, U, s_max, directpred_p(s / s_max, eps, inside, floor)


def directpred_weight(F: torch.Tensor, eps: float, floor: float = P_FLOOR, inside: bool = False) -> torch.Tensor:
    """W_p = U diag(p) U^T (d, d) float64 from F (:func:`directpred_eigh`)."""
    _, U, _, p = directpred_eigh(F, eps, floor, inside)
    return (U * p) @ U.T


def directpred_weight_ns(F: torch.Tensor, eps: float, inside: bool = False, iters: int = NS_ITERS,
                         squarings: int = NS_SQUARINGS) -> torch.Tensor:
    """The W_p of :func:`directpred_weight` for eps >= its floor, where the floor never binds and W_p is a matrix
    function of F̂: sqrt(F̂ / max s) + eps I, or with ``inside`` sqrt(F̂ / max s + eps I), from matrix products
    alone (float64: :func:`top_eigenvalue`, :func:`sqrt_psd`), so that nothing waits for the device.

    F: (d, d); returns (d, d) float64 on F's device. Agrees with the eigendecomposition to ~1e-8 (tests)."""
    F = 0.5 * (F + F.T).double()
    eye = torch.eye(F.shape[0], dtype=F.dtype, device=F.device)
    smax = top_eigenvalue(F, squarings)
    A = torch.where(smax > 0, F / smax.clamp(min=torch.finfo(F.dtype).tiny), torch.zeros_like(F))
    if not inside:
        return sqrt_psd(A, iters) + eps * eye
    scale = 1.0 + max(eps, 0.0)  # the eigenvalues of A + eps I lie in [eps, 1 + eps]
    return sqrt_psd((A + eps * eye) / scale, iters) * scale ** 0.5


def top_eigenvalue(S: torch.Tensor, squarings: int = NS_SQUARINGS) -> torch.Tensor:
    """Largest eigenvalue (0-d tensor) of a symmetric PSD S (d, d), from matrix products: tr(S B) with
    B = S^(2^squarings) / its trace, by repeated squaring. Relative error at most about 2^-squarings when the top
    eigenvalues are nearly equal, and far less otherwise; 0 for S = 0."""
    tiny = torch.finfo(S.dtype).tiny
    B = S / S.diagonal().sum().clamp(min=tiny)
    for _ in range(squarings):
        B = B @ B
        B = B / B.diagonal().sum().clamp(min=tiny)
    return (S * B.T).sum()


def sqrt_psd(A: torch.Tensor, iters: int = NS_ITERS) -> torch.Tensor:
    """A^(1/2) of a symmetric PSD A (d, d) with eigenvalues in [0, 1], by the coupled Newton-Schulz iteration
    Y <- Y T, Z <- T Z, T = (3 I - Z Y) / 2 from Y = A, Z = I (converges for eigenvalues in (0, 2); Y -> A^(1/2),
    Z -> A^(-1/2)). For a small eigenvalue z y grows 2.25-fold per iteration until it nears 1, so ``iters`` = 40
    converges every eigenvalue above about 1e-13; a smaller one's root is off by at most its own size (< 4e-7)."""
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    Y, Z = A, eye
    for _ in range(iters):
        T = 1.5 * eye - 0.5 * (Z @ Y)
        Y, Z = Y @ T, T @ Z
    return 0.5 * (Y + Y.T)


class OptimalPredictor(LinearPredictor):
    """The least-squares predictor plugged in every ``freq`` steps (Table 1): W_p F = 1/2 (C_af + C_fa), solved as
    W_p = 1/2 (C_af + C_fa) (F + lambda I)^{-1} with lambda = ``ridge`` * max s_j, where F is the running correlation
    of the predictor input f and C_af the running cross-correlation E[f_a f^T] of the targets f_a with f (both
    moving averages at rate rho; C_af is kept here, in the state dict). SGD trains W_p in between when freq > 1.
    """

    def __init__(self, d: int, ridge: float = 0.1, freq: int = 1, bias: bool = False, rho: float = 0.3) -> None:
        super().__init__(d, bias)
        self.ridge, self.freq, self.rho = ridge, freq, rho
        self.trainable = freq > 1
        self.cross = RunningCorrelation(d, rho)  # C_af, float64

    @property
    def C_af(self) -> torch.Tensor:
        """The running cross-correlation E[f_a f^T] (d, d) float64."""
        return self.cross.F

    @torch.no_grad()
    def observe(self, f1: torch.Tensor, f2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Fold in a batch: targets z2 for f1 and z1 for f2, each (B, d); ``reduce`` sums over DDP ranks."""
        self.cross.update(torch.cat([z2, z1]), torch.cat([f1, f2]), reduce)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints from before the one running correlation kept ``C_af`` and a step count ``seen``."""
        if prefix + "C_af" in state_dict:
            state_dict[prefix + "cross.F"] = state_dict.pop(prefix + "C_af")
            state_dict[prefix + "cross.initialised"] = state_dict.pop(prefix + "seen", torch.tensor(1)) > 0
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def after_step(self, step: int, F: torch.Tensor) -> None:
        if (step + 1) % self.freq == 0:
            Fs = 0.5 * (F + F.T).double()
            lam = self.ridge * top_eigenvalue(Fs).clamp(min=1e-12)
            rhs = 0.5 * (self.C_af + self.C_af.T)
            # W_p (F + lam I) = rhs  <=>  (F + lam I) W_p^T = rhs^T (F symmetric; F + lam I positive definite).
            # solve_ex leaves its info unchecked, so nothing here waits for the device.
            A = Fs + lam * torch.eye(Fs.shape[0], dtype=Fs.dtype, device=Fs.device)
            W = torch.linalg.solve_ex(A, rhs.T)[0].T
            self.linear.weight.copy_(W.to(self.linear.weight.dtype))


MLP_LAYOUTS = ("directpred", "simsiam")


class MLPPredictor(Predictor):
    """Two layers, d -> h -> d. ``layout`` ``directpred`` (the DirectPred paper's 2-layer predictor): Linear(d, h)
    -> BN(affine=False) -> ReLU -> Linear(h, d); ``simsiam`` (the official SimSiam builder's, 2048-512-2048):
    Linear(d, h, no bias) -> BN (affine) -> ReLU -> Linear(h, d)."""

    def __init__(self, d: int, hidden: int = 512, layout: str = "directpred") -> None:
        super().__init__()
        if layout not in MLP_LAYOUTS:
            raise ValueError(f"mlp predictor layout {layout!r}: expected one of {', '.join(MLP_LAYOUTS)}")
        simsiam = layout == "simsiam"
        self.net = nn.Sequential(nn.Linear(d, hidden, bias=not simsiam), nn.BatchNorm1d(hidden, affine=simsiam),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, d))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class IdentityPredictor(Predictor):
    """No predictor, W_p = I (the collapse ablation of Theorem 2, and every method without a predictor).

    :meth:`W_p` is None: the identity is no learned matrix, so its eigenvalues, alignment and asymmetry (1, 1, 0 by
    construction) are not measurements and are not recorded (:func:`..measure.quantities.linear_modes` reads None as
    I)."""

    trainable = False

    def __init__(self, d: int) -> None:
        super().__init__()
        self.register_buffer("eye", torch.eye(d))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def W_p(self) -> torch.Tensor | None:
        return None


PREDICTORS: dict[str, Callable[[Any, int, str], Predictor]] = {
    "linear": lambda cfg, d, dev: LinearPredictor(d, cfg.predictor_bias),
    "mlp": lambda cfg, d, dev: MLPPredictor(d, cfg.pred_hidden, cfg.pred_layout),
    "symmetric": lambda cfg, d, dev: SymmetricPredictor(d, cfg.predictor_bias),
    "directpred": lambda cfg, d, dev: DirectPredictor(d, cfg.eps, cfg.freq, cfg.predictor_bias, cfg.eps_inside,
                                                      cfg.resolved_directpred_solver(dev)),
    "optimal": lambda cfg, d, dev: OptimalPredictor(d, cfg.ridge, cfg.freq, cfg.predictor_bias, cfg.rho),
    "none": lambda cfg, d, dev: IdentityPredictor(d),
}
"""Every predictor by name (``--predictor``): a builder (cfg, d, device type) -> :class:`Predictor`."""


def build_predictor(cfg, d: int, device_type: str = "cpu") -> Predictor:
    """The predictor named by ``cfg.predictor`` for inputs of width ``d`` (W_p = scale * I with identity init), for
    a run on ``device_type`` (DirectPred's solver depends on it)."""
    pred = PREDICTORS[cfg.predictor](cfg, d, device_type)
    if cfg.resolved_predictor_init == "identity" and isinstance(pred, LinearPredictor):
        with torch.no_grad():
            pred.linear.weight.copy_(cfg.predictor_init_scale * torch.eye(d))
            if pred.linear.bias is not None:
                pred.linear.bias.zero_()
    return pred


def trained_by_sgd(cfg: Any) -> bool:
    """Whether the run's predictor has parameters SGD trains: not ``none``, and a predictor set from F̂ every
    ``--freq`` steps (DirectPred, optimal) only with ``--freq`` > 1, which trains W_p in between."""
    plugged_in = SETTINGS["freq"].only(cfg)
    return cfg.predictor != "none" and not (plugged_in and cfg.freq == 1)


def _directpred_solver(cfg: Any, device_type: str, world: int = 1) -> str:
    """``newton-schulz`` (matrix products only) on CUDA, where the eigendecomposition makes every step wait for the
    device, when --eps >= the floor; ``eigh`` otherwise, unless named."""
    if cfg.directpred_solver != "auto":
        return cfg.directpred_solver
    return "newton-schulz" if device_type == "cuda" and cfg.eps >= P_FLOOR else "eigh"


def _is(*names: str) -> Callable[[Any], bool]:
    return lambda cfg: cfg.predictor in names


declare(
    Setting("predictor", "linear", "the predictor W_p (optimal: least squares plugged in every --freq steps, Table 1; "
            "none: W_p = I)", "Method", str, paper="linear", choices=lambda: PREDICTORS),
    Setting("predictor_bias", False, "bias in the linear predictor", "Method", bool, paper="no bias"),
    Setting("predictor_init", "auto", "random | identity (W_p = scale × I) [auto: identity for --backbone linear]",
            "Method", str, choices=("auto", "random", "identity"),
            resolve=lambda cfg: cfg.predictor_init if cfg.predictor_init != "auto" else
            "identity" if cfg.resolved_backbone == "linear" else "random"),
    Setting("predictor_init_scale", 0.5, "p_j(0) of the identity predictor init", "Method", float, low=-1e3,
            high=1e3),
    Setting("rho", 0.3, "DirectPred / optimal: moving-average rate ρ of F̂", "Method", float, paper="0.3", low=0.0,
            high=1.0, high_open=True),
    Setting("eps", 0.1, "DirectPred: ε in p_j = sqrt(s_j / max s) + ε (ε < 0 with --eps-inside only)", "Method",
            float, paper="best 0.1", low=-1.0, high=10.0),
    Setting("eps_inside", False, "DirectPred: p_j = sqrt(max(s_j / max s + ε, 1e-4)) instead; ε may be negative "
            "(Table 7: ε = -c_j)", "Method", bool, only=_is("directpred"), only_for="--predictor directpred"),
    Setting("ridge", 0.1, "optimal predictor: ridge λ = ridge × max s_j of the least-squares W_p", "Method", float,
            low=0.0, low_open=True, high=1e6),
    Setting("freq", 1, "DirectPred / optimal: set W_p every N steps, SGD in between", "Method", int, paper="1", low=1,
            only=_is("directpred", "optimal"), only_for="--predictor directpred or optimal"),
    Setting("directpred_solver", "auto", "DirectPred: eigh (eigendecomposition of F̂) | newton-schulz (the same W_p "
            "to ~1e-8 from matrix products, nothing waits for the GPU; needs ε >= 1e-4) [auto: newton-schulz on CUDA, "
            "eigh otherwise]", "Method", str, choices=("auto", "eigh", "newton-schulz"), resolve=_directpred_solver,
            device=True),
    Setting("pred_hidden", 512, "hidden width of the mlp predictor", "Model", int, paper="512", low=1, high=65536),
    Setting("pred_layout", "directpred", "mlp predictor layout: directpred (Linear+bias -> BN without affine -> ReLU "
            "-> Linear) | simsiam (Linear without bias -> BN -> ReLU -> Linear; the official SimSiam's 2048-512-2048)",
            "Model", str, paper="directpred", choices=MLP_LAYOUTS, only=_is("mlp"), only_for="--predictor mlp"),
)


@rule
def _check_predictor(cfg: Any) -> None:
    """ε's sign, DirectPred's matrix-square-root solver, the identity init."""
    if cfg.eps < 0 and not cfg.eps_inside:
        raise ConfigError(f"--eps {cfg.eps:g} is out of range: expected a number in [0, 10] (ε < 0 only with "
                          "--eps-inside, Table 7)")
    if cfg.directpred_solver == "newton-schulz" and cfg.predictor == "directpred" and cfg.eps < P_FLOOR:
        raise ConfigError(f"--directpred-solver newton-schulz with --eps {cfg.eps} is not accepted: it computes W_p "
                          f"as a matrix square root, which needs --eps >= {P_FLOOR} (below it the floor on p_j binds); "
                          "expected --directpred-solver eigh or auto")
    if cfg.predictor_init == "identity" and not isinstance(PREDICTORS[cfg.predictor](cfg, 1, "cpu"), LinearPredictor):
        raise ConfigError(f"--predictor-init identity with --predictor {cfg.predictor} is not accepted: expected a "
                          f"linear predictor ({', '.join(n for n in PREDICTORS if n not in ('mlp', 'none'))})")
