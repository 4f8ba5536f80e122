"""What the theory predicts, measured on a real network.

- F̂ itself, the running correlation of the predictor's inputs, is kept by :mod:`.running` (the one home of every
  running correlation); what is measured along it is here.
- :func:`predictor_metrics`: eigenvalues s_j of F̂, eigenvalues of sym(W_p), alignment cos(u_j, W_p u_j), p_j along
  u_j and the asymmetry of W_p (whole, and within the span of F̂'s leading modes), computed by
  :mod:`ssltheory.theory.diagnostics` (the same definitions as the theory).
- :func:`collapse_auc`: Li, Efros & Pathak's metric on centred backbone features: singular values sigma (min(N, d)
  of them, as ``torch.svd``), the cumulative curve c_k = sum_{i<=k} sigma_i / sum sigma, AUC = mean_k c_k in
  [(m+1)/(2m), 1] for m = min(N, d) values (1 = rank one), and k_eq = 1 + 2 m (1 - AUC), the effective number of
  dimensions. :func:`spectrum_auc` is the same from a spectrum sigma (the one place the curve, the AUC and k_eq are
  computed; ``collapse_auc`` calls it).
- :func:`normalized_std`: std over the batch of l2-normalised outputs, averaged over dimensions (SimSiam's collapse
  indicator: about 1/sqrt(d) when healthy, 0 when collapsed).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ssltheory.practice.settings import Setting, declare
from ssltheory.theory import diagnostics

TOP_MODES = 1e-3
"""Modes of F̂ with s_j > TOP_MODES * s_1 count as the leading ones (where alignment and symmetry are judged)."""


def leading_modes(s, rel: float = TOP_MODES) -> np.ndarray:
    """Boolean mask of the leading modes of a spectrum ``s`` (d,) sorted descending: s_j > rel * s_1 (none when
    s_1 <= 0). The one definition of "leading modes" for measurements, summaries, plots and compare."""
    s = np.asarray(s, float)
    return s > rel * s[0] if len(s) and s[0] > 0 else np.zeros(len(s), bool)


def predictor_metrics(F: torch.Tensor, W_p: torch.Tensor | None) -> dict:
    """Spectrum of F̂ and, for a linear predictor, the Fig. 2 quantities of W_p (lists, descending order of s_j)."""
    Fn = F.detach().cpu().double().numpy()
    s, U = diagnostics.eig_desc(Fn)
    out: dict = {"s": s.tolist()}
    if W_p is not None:
        Wn = W_p.detach().cpu().double().numpy()
        out.update({
            "p_sym": diagnostics.eig_desc(Wn)[0].tolist(),
            "p_along_F": diagnostics.rayleigh_p(Fn, Wn).tolist(),
            "alignment": diagnostics.alignment(Fn, Wn).tolist(),
            "asymmetry": diagnostics.asymmetry(Wn),
            "asymmetry_top": diagnostics.asymmetry(_top_block(Wn, s, U)),
            "commutator": diagnostics.commutator_norm(Fn / max(float(np.abs(s).max()), 1e-300), Wn),
        })
    return out


def _top_block(W: np.ndarray, s: np.ndarray, U: np.ndarray) -> np.ndarray:
    """W restricted to the span of F̂'s leading modes (:func:`leading_modes`): U_k^T W U_k."""
    Uk = U[:, leading_modes(s)]
    return Uk.T @ W @ Uk


def spectrum_auc(sigma: torch.Tensor | np.ndarray | list) -> dict:
    """Collapse metric of a spectrum: {auc, k_eq, sigma (descending), cumulative}, all in float64.

    ``sigma``: (m,) singular values of the centred (N, d) features (sigma, not sigma^2; any order, sorted here), as
    ``torch.svd(X).S`` gives them: m = min(N, d) values, none added for the dimensions beyond N (the official code's
    curve; zeros to d would raise the AUC: 0.885 against 0.632 on a 20 x 64 matrix). c_k = sum_{i<=k} sigma_i /
    sum_j sigma_j for k = 1..m, AUC = mean_k c_k in [(m+1)/(2m), 1], k_eq = 1 + 2 m (1 - AUC). A spectrum of zeros
    (every sample the same) counts as rank one: AUC 1, k_eq 1; a NaN (features that diverged) gives NaN. Raises
    ValueError for an empty, negative or multi-dimensional ``sigma``."""
    s = (sigma.detach() if torch.is_tensor(sigma) else torch.from_numpy(np.array(sigma, np.float64))).to(
        "cpu", torch.float64)
    if s.ndim != 1 or s.numel() == 0:
        raise ValueError(f"a spectrum is a non-empty 1-D array of singular values, got shape {tuple(s.shape)}")
    if bool((s < 0).any()):
        raise ValueError(f"a spectrum holds non-negative singular values, got {float(s.min()):g}")
    m = s.numel()
    s = torch.sort(s, descending=True).values
    total = float(s.sum())
    if total <= 0:
        return {"auc": 1.0, "k_eq": 1.0, "sigma": s.tolist(), "cumulative": [1.0] * m}
    cum = torch.cumsum(s, 0) / total
    auc = float(cum.mean())
    return {"auc": auc, "k_eq": 1.0 + 2.0 * m * (1.0 - auc), "sigma": s.tolist(), "cumulative": cum.tolist()}


def collapse_auc(features: torch.Tensor | np.ndarray) -> dict:
    """Collapse metric of (N, d) features: {auc, k_eq, sigma (descending, min(N, d) values), cumulative}. Centred,
    sigma not sigma^2 (:func:`spectrum_auc` of the centred features' singular values, as the official
    ``torch.svd(X).S``: min(N, d) of them, not padded to d when N < d).

    The SVD runs where the features are: float64 on the CPU, float32 on a GPU (a 512 x 512 float64 SVD on the CPU
    cost a GPU step's time)."""
    X = torch.as_tensor(features).detach()
    X = X.float() if X.is_cuda else X.double()
    X = X - X.mean(0, keepdim=True)
    return spectrum_auc(torch.linalg.svdvals(X))


AUC_NORMALISATION = "centred features, singular values (not squared), no l2 normalisation"
"""How :func:`collapse_auc` normalises (Li et al.'s protocol, collapse.md B1); written into every record."""


def probe_note(n: int, d: int) -> dict:
    """What config.json records about the collapse metric's probe set: N images, d backbone dimensions, the
    normalisation, and a warning when N < 4 d (the spectrum of N points in d > N/4 dimensions is cut off by N, not
    by the features: the paper's metric assumes N >> d; collapse.md B3)."""
    note = {"n": n, "d": d, "normalisation": AUC_NORMALISATION}
    if n < 4 * d:
        note["warning"] = (f"the collapse metric's probe set has N = {n} images for d = {d} backbone dimensions "
                           f"(N < 4d): its AUC is bounded by N, not only by the features; raise --probe-size to at "
                           f"least {4 * d} where the data allows")
    return {"probe": note}


def positive_cosine(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """Mean cosine similarity of the two views' outputs, f1, f2: (B, d) (1 when every image maps to one point
    whatever the augmentation; a collapse signal with feature std)."""
    return float(torch.nn.functional.cosine_similarity(f1.double(), f2.double(), dim=1).mean())


def negative_cosine(f: torch.Tensor) -> float:
    """Mean cosine similarity of different images' outputs, f: (B, d) of one view (UniGrad Fig. 2: near 0 for spread
    features, 1 under complete collapse)."""
    u = torch.nn.functional.normalize(f.double(), dim=1)
    n = u.shape[0]
    if n < 2:
        return float("nan")
    total = u.sum(0)
    return float((total @ total - (u * u).sum()) / (n * (n - 1)))


def decorrelation(f: torch.Tensor) -> float:
    """Mean |off-diagonal| of the correlation matrix of the l2-normalised outputs' dimensions, f: (B, d): 0 when the
    dimensions are decorrelated (what Barlow Twins and VICReg enforce), 1 when they all move together."""
    u = torch.nn.functional.normalize(f.double(), dim=1)
    u = u - u.mean(0, keepdim=True)
    std = u.norm(dim=0).clamp_min(1e-12)
    c = (u.T @ u) / (std[:, None] * std[None, :])
    d = c.shape[0]
    if d < 2:
        return 0.0
    return float((c.abs().sum() - c.diagonal().abs().sum()) / (d * (d - 1)))


def method_metrics(measured: dict) -> dict:
    """A record's entries from an objective's ``measure`` (:class:`..methods.objectives.Objective`): the spectrum of the
    method's F (``s_method``, descending; trace 1 under l2 normalisation) and its scalars as they are."""
    out = {k: float(v) for k, v in measured.items() if k != "method_F" and v is not None}
    if measured.get("method_F") is not None:
        F = torch.as_tensor(measured["method_F"]).detach().cpu().double()
        out["s_method"] = torch.linalg.eigvalsh(0.5 * (F + F.T)).flip(0).tolist()
    return out


def normalized_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the batch std of z / ||z||; z: (B, d)."""
    zn = torch.nn.functional.normalize(z.detach().float(), dim=1)
    return float(zn.std(dim=0).mean())


COLLAPSE_STD_DROP = 0.6
"""The collapse alarm's first condition: feature std x sqrt(d) below this fraction of its reference (its best since
the first epoch; digits measured every 5 steps: healthy runs never below 0.81 of it, stalled ones 0.78, collapsing
ones down to 0.22-0.33, or 0 under weight decay)."""
COLLAPSE_RANK_DROP = 0.25
"""Its second: s_2 / s_1 of F̂ below this fraction of its reference (the predictor input turning rank one; healthy
runs measured: >= 0.33 of it, stalled ones >= 0.57, collapsing ones down to <= 0.03)."""
COLLAPSE_WARMUP_EPOCHS = 1.0
"""Measurements before this many epochs set no reference: in its first epoch a run contracts the spread of its random
init (on digits, with a linear or DirectPred predictor, std x sqrt(d) falls 1.6-2.8x and s2/s1 of F̂ 1.7-6x within
10-40 steps in healthy runs), so a reference from there called that contraction a collapse (issue 22: 7 of 22
healthy runs measured every 5 steps warned)."""
COLLAPSE_POINT = 0.01
"""std x sqrt(d) below this fraction of its reference: the features are one point (complete collapse); s2/s1 of F̂,
then a ratio of rounding noise that jumps up to 0.26, is not asked."""


class CollapseWatch:
    """The live collapse alarm, relative to the run's own history.

    The reference is the best feature std x sqrt(d) and the best s_2 / s_1 of F̂ the run has had since the end of its
    first epoch (:data:`COLLAPSE_WARMUP_EPOCHS`). A measurement is *collapsing* when its std x sqrt(d) is below
    :data:`COLLAPSE_STD_DROP` of the reference and its s_2 / s_1 below :data:`COLLAPSE_RANK_DROP` of its reference
    (or the std is below :data:`COLLAPSE_POINT` of it: one point). The alarm turns on when the last ``window``
    measurements all are, and :meth:`update` then returns a warning; once on, it stays on while std x sqrt(d) stays
    below :data:`COLLAPSE_STD_DROP` of its reference (s_2 / s_1 of a nearly collapsed F̂ jumps about: one collapse,
    one warning). Both signals must fall: on digits the backbone's collapse AUC rises in healthy runs as well (it rose
    in every run we measured, while kNN improved), and a single spread measure dips in healthy runs by up to ~25%. The
    false-alarm rate on healthy runs and the delay on collapsing ones are in docs/collapse.md
    (``experiments/collapse_watch_study.py``). ``history`` (checkpointed): one (std, rank, epoch) triple per
    measurement; a (std, rank) pair of a checkpoint from before the warm-up existed counts as past it."""

    def __init__(self, window: int, history: list | None = None) -> None:
        self.window = window
        self.history: list[tuple[float, float, float]] = []
        self._refs: list[tuple[float, float] | None] = []  # reference after each measurement
        self._on: list[bool] = []  # alarm state after each measurement
        for h in history or []:
            self._add(*map(float, h), *((math.inf,) if len(h) == 2 else ()))

    def _add(self, std: float, rank: float, epoch: float) -> None:
        """Append one measurement and the reference and alarm state after it."""
        ref = self._refs[-1] if self._refs else None
        if epoch >= COLLAPSE_WARMUP_EPOCHS:
            ref = (std, rank) if ref is None else (max(ref[0], std), max(ref[1], rank))
        self.history.append((std, rank, epoch))
        self._refs.append(ref)
        n = len(self.history)
        turns_on = n >= self.window and all(self.collapsing(k) for k in range(n - self.window, n))
        stays_on = bool(self._on) and self._on[-1] and ref is not None and std < COLLAPSE_STD_DROP * ref[0]
        self._on.append(turns_on or stays_on)

    def reference(self, upto: int) -> tuple[float, float] | None:
        """The best (std x sqrt(d), s2/s1) among measurements 0..``upto`` past the warm-up; None before any is."""
        return self._refs[upto]

    def collapsing(self, upto: int) -> bool:
        """Whether measurement ``upto`` is collapsing (never before the reference exists)."""
        ref = self.reference(upto)
        if ref is None:
            return False
        std, rank, _ = self.history[upto]
        one_point = std < COLLAPSE_POINT * ref[0]
        return std < COLLAPSE_STD_DROP * ref[0] and (rank < COLLAPSE_RANK_DROP * ref[1] or one_point)

    def alarm(self, end: int | None = None) -> bool:
        """Whether the alarm is on after the first ``end`` measurements (all by default)."""
        end = len(self.history) if end is None else end
        return end > 0 and self._on[end - 1]

    def update(self, rec: dict) -> str | None:
        """Add a measurement record (its ``epoch`` places it against the warm-up; a record without one counts as
        past it); sets ``rec["collapse_alarm"]`` and returns a warning when the alarm turns on."""
        s = rec["s"]
        self._add(float(rec["feature_std_x_sqrt_d"]), float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else 0.0,
                  float(rec.get("epoch", math.inf)))
        rec["collapse_alarm"] = on = self.alarm()
        if not on or self.alarm(len(self.history) - 1):
            return None
        std, rank, _ = self.history[-1]
        best_std, best_rank = self.reference(len(self.history) - 1)
        return (f"collapse at step {rec['step']}: for {self.window} measurements feature std x sqrt(d) has been "
                f"below {COLLAPSE_STD_DROP:.0%} of its best since epoch {COLLAPSE_WARMUP_EPOCHS:g} ({std:.3g} vs "
                f"{best_std:.3g}) and s2/s1 of F̂ below {COLLAPSE_RANK_DROP:.0%} of its best ({rank:.2g} vs "
                f"{best_rank:.2g})")


@torch.no_grad()
def linear_modes(W: torch.Tensor, W_p: torch.Tensor | None, W_a: torch.Tensor | None = None) -> dict:
    """The decoupled modes of the two-layer linear model, read exactly off its weights (data covariance X = I).

    W: (n2, n1); W_p: (n2, n2) or None (identity); W_a: the target's (n2, n1), None for SimSiam (tau = 1).
    F = W W^T = U diag(s) U^T (descending); p_j = u_j^T W_p u_j; tau_j = u_j^T W_a W^T u_j / s_j (W_a = tau W per
    mode). Returns lists ``s_model``, ``p_model``, ``tau_model`` of length n2.
    """
    W = W.detach().double().cpu()
    s, U = torch.linalg.eigh(W @ W.T)
    s, U = s.flip(0).clamp(min=0.0), U.flip(1)
    p = torch.ones_like(s) if W_p is None else torch.einsum("ij,ik,kj->j", U, W_p.detach().double().cpu(), U)
    if W_a is None:
        tau = torch.ones_like(s)
    else:
        num = torch.einsum("ij,ik,kj->j", U, W_a.detach().double().cpu() @ W.T, U)
        tau = torch.where(s > 0, num / s.clamp(min=1e-300), torch.ones_like(s))
    return {"s_model": s.tolist(), "p_model": p.tolist(), "tau_model": tau.tolist()}


PROBE_KEYS = ("probe_auc", "probe_k_eq", "probe_auc_projector")
"""A live measurement's collapse metric, on the run's fixed probe subset (``--probe-size`` images, ``probe_n`` in the
record): the backbone's AUC and k_eq, the projector's AUC. ``ssltheory collapse`` and ``forecast`` measure the whole
train split offline and call theirs ``auc`` / ``k_eq``; the two differ (e.g. 0.7379 on 512 probe images against
0.7281 on the split, one checkpoint)."""
LEGACY_KEYS = {"auc": "probe_auc", "k_eq": "probe_k_eq", "auc_projector": "probe_auc_projector"}
"""What runs from before the probe metric was named apart wrote (metrics.jsonl records and summary.json)."""


def upgrade(record: dict) -> dict:
    """``record`` (a metrics.jsonl record or a summary.json) with the keys of older runs under today's names
    (:data:`LEGACY_KEYS`: their ``auc`` was the probe subset's); a record of today's is returned as it is."""
    if not any(k in record for k in LEGACY_KEYS):
        return record
    return {(LEGACY_KEYS[k] if k in LEGACY_KEYS and LEGACY_KEYS[k] not in record else k): v
            for k, v in record.items()}


def is_measurement(record: dict) -> bool:
    """Whether a metrics.jsonl record is a live measurement (it has the probe AUC; kNN and notes do not)."""
    return "probe_auc" in record or "auc" in record


SUMMARY_KEYS = ("loss", "probe_auc", "probe_k_eq", "probe_auc_projector", "probe_n", "feature_std",
                "feature_std_x_sqrt_d", "positive_cosine", "negative_cosine", "decorrelation", "balance_ratio",
                "adaptive_balance", "grad_cosine")
"""What the summary takes from a run's last measurement."""
PREDICTOR_KEYS = ("asymmetry", "asymmetry_top", "mean_alignment_top_modes")
"""The summary's numbers of a linear W_p: null when the run has none (no predictor, W_p = I by construction; an MLP
predictor), since nothing was measured."""


def summarize(records: list[dict]) -> dict:
    """Final numbers of a run from its metrics records: kNN at init and at the end, the last measurement (the
    collapse metric on the probe subset as ``probe_auc``, ``probe_k_eq``; with a linear W_p its asymmetry and the
    mean alignment over F̂'s leading modes, null without one), and the collapse alarm (the steps it turned on, and its
    state at the end). Records of older runs are read under today's names (:func:`upgrade`)."""
    records = [upgrade(r) for r in records]
    knn = [r for r in records if "knn_acc" in r]
    meas = [r for r in records if is_measurement(r)]
    out = {"knn_acc_init": knn[0]["knn_acc"] if knn else None, "knn_acc_final": knn[-1]["knn_acc"] if knn else None,
           "steps": records[-1]["step"] if records else 0,
           "collapse_warnings_at": [r["step"] for r in meas if r.get("warning")],
           "collapse_alarm_final": bool(meas[-1].get("collapse_alarm")) if meas else None}
    if meas:
        last = meas[-1]
        out.update({k: last[k] for k in SUMMARY_KEYS if k in last})
        out.update(dict.fromkeys(PREDICTOR_KEYS))
        out.update({k: last[k] for k in PREDICTOR_KEYS if k in last})
        top = leading_modes(last["s"]) if "s" in last else None
        if top is not None:
            out["top_modes"] = int(top.sum())
        if "alignment" in last and top is not None and top.any():
            out["mean_alignment_top_modes"] = float(np.mean(np.asarray(last["alignment"])[top]))
    return out


declare(
    Setting("collapse_window", 5, "measurements in a row in which feature std and s2/s1 of F̂ stay far below their "
            "best that raise the collapse warning", "Measurement", int, low=1),
)
