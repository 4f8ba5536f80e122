"""The trainer's small pieces: collapse metric, predictors, target, running F̂, kNN and probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.step import build_model
from ssltheory.practice.measure.evaluate import knn_accuracy, linear_probe
from ssltheory.practice.measure.quantities import collapse_auc, normalized_std
from ssltheory.practice.measure.running import RunningCorrelation
from ssltheory.practice.methods.objectives import negative_cosine
from ssltheory.practice.methods.predictors import DirectPredictor, SymmetricPredictor, directpred_weight
from ssltheory.practice.methods.target import ema_gamma, ema_update

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "collapse_resnet18_spectra.json"
"""The collapse paper's ResNet-18 spectra with the AUC its own code computes (copied from the team's shared
fixtures, so that the tests need nothing outside the repository)."""


def features_with_singular_values(sigma: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """U diag(sigma) V^T with columns of U orthogonal to the ones vector, so centring keeps sigma."""
    rng = np.random.default_rng(seed)
    d = len(sigma)
    A = rng.standard_normal((n, d))
    U, _ = np.linalg.qr(A - A.mean(0))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (U * sigma) @ V.T


def test_collapse_auc_reproduces_the_papers_own_numbers():
    spectra = json.loads(FIXTURE.read_text())["spectra"]
    assert len(spectra) >= 5
    for name, entry in spectra.items():
        sigma = np.asarray(entry["sigma"], float)
        got = collapse_auc(features_with_singular_values(sigma, 700, seed=len(name)))
        assert got["auc"] == pytest.approx(entry["auc_official"], abs=1e-6), name
        assert got["k_eq"] == pytest.approx(1 + 2 * len(sigma) * (1 - entry["auc_official"]), abs=1e-3)


def test_collapse_auc_extremes():
    rng = np.random.default_rng(0)
    assert collapse_auc(np.outer(rng.standard_normal(300), rng.standard_normal(64)))["auc"] == pytest.approx(1.0)
    flat = collapse_auc(features_with_singular_values(np.ones(64), 300))
    assert flat["auc"] == pytest.approx(65 / 128) and flat["k_eq"] == pytest.approx(64)


def test_normalized_std():
    z = torch.randn(4096, 64)
    assert normalized_std(z) == pytest.approx(1 / 8, rel=0.05)
    assert normalized_std(torch.ones(32, 64) + 1e-6 * torch.randn(32, 64)) < 1e-5


def test_target_starts_as_an_exact_copy_of_the_online_network():
    model = build_model(TrainConfig(dataset="digits"), in_channels=1, device=torch.device("cpu"))
    online, target = model.online.state_dict(), model.target.network.state_dict()
    assert online.keys() == target.keys()
    assert all(torch.equal(online[k], target[k]) for k in online)
    assert not any(p.requires_grad for p in model.target.network.parameters())
    simsiam = build_model(TrainConfig(dataset="digits", method="simsiam"), 1, torch.device("cpu")).target
    assert simsiam.mode == "stop-grad" and simsiam.network is None


def test_ema_update_and_schedule():
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    wa, wb = a.weight.clone(), b.weight.clone()
    ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * wa + 0.1 * wb)
    assert ema_gamma(0.996, 50, 100) == 0.996
    assert ema_gamma(0.996, 0, 100, "cosine") == pytest.approx(0.996)
    assert ema_gamma(0.996, 100, 100, "cosine") == pytest.approx(1.0)


def test_running_correlation_is_the_first_batch_then_an_ema():
    rc = RunningCorrelation(4, rho=0.3)
    f1, f2 = torch.randn(10, 4), torch.randn(10, 4)
    rc.update(f1)
    assert torch.allclose(rc.F, (f1.T @ f1 / 10).double())
    rc.update(f2)
    assert torch.allclose(rc.F, (0.3 * f1.T @ f1 / 10 + 0.7 * f2.T @ f2 / 10).double(), atol=1e-6)


def test_one_running_correlation_serves_F_hat_unigrad_and_the_optimal_predictor():
    """F̂, UniGrad's F and the optimal predictor's C_af are the same moving average (one class), and checkpoints
    written before it (F̂ as {F, count, rho}; C_af with a step count) load into it."""
    from ssltheory.practice.methods.objectives.asymmetric import RunningF
    from ssltheory.practice.methods.predictors import OptimalPredictor

    assert issubclass(RunningF, RunningCorrelation)
    assert isinstance(OptimalPredictor(4).cross, RunningCorrelation)
    f = torch.randn(10, 4)
    old = {"F": (f.T @ f / 10).double(), "count": 3, "rho": 0.3}
    rc = RunningCorrelation(4, rho=0.3)
    rc.load_state_dict(old)
    assert torch.equal(rc.F, old["F"]) and bool(rc.initialised)
    pred = OptimalPredictor(4)
    pred.load_state_dict({"linear.weight": torch.eye(4), "C_af": old["F"], "seen": torch.tensor(2)})
    assert torch.equal(pred.C_af, old["F"]) and bool(pred.cross.initialised)


def test_directpred_sets_W_p_from_F_every_freq_steps():
    A = torch.randn(6, 6, dtype=torch.float64)
    F = A @ A.T
    W = directpred_weight(F, eps=0.1)
    s = torch.linalg.eigvalsh(F)
    assert torch.allclose(torch.linalg.eigvalsh(W), (s / s.max()).sqrt() + 0.1, atol=1e-10)
    assert torch.linalg.norm(F @ W - W @ F) < 1e-8 * torch.linalg.norm(F)
    pred = DirectPredictor(6, eps=0.1, freq=3)
    before = pred.linear.weight.clone()
    pred.after_step(0, F)
    assert torch.equal(pred.linear.weight, before) and pred.trainable
    pred.after_step(2, F)
    assert torch.allclose(pred.linear.weight.double(), W, atol=1e-6)
    assert not DirectPredictor(6, freq=1).trainable


def test_symmetric_predictor_is_symmetric_after_steps():
    pred = SymmetricPredictor(5)
    w = pred.linear.weight
    assert torch.equal(w, w.T)
    with torch.no_grad():
        w.add_(torch.randn(5, 5))
    pred.after_step(0, torch.eye(5))
    assert torch.equal(w, w.T)


def test_negative_cosine_range():
    x = torch.randn(8, 5)
    assert float(negative_cosine(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(negative_cosine(x, -x)) == pytest.approx(4.0, abs=1e-6)


def test_knn_and_probe_separate_clusters_and_not_noise():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 16, generator=g) * 3
    y = torch.arange(500) % 5
    x = centers[y] + torch.randn(500, 16, generator=g)
    assert knn_accuracy(x[:400], y[:400], x[400:], y[400:], k=20) > 0.95
    noise = torch.randn(500, 16, generator=g)
    assert knn_accuracy(noise[:400], y[:400], noise[400:], y[400:], k=20) < 0.4
    res = linear_probe(x[:400], y[:400], x[400:], y[400:], epochs=20)
    assert res["test_acc"] > 0.95 and res["test_acc"] == res["curve"][-1]


def test_directpred_eps_inside_the_root_is_tables_7_form():
    from ssltheory.practice.methods.predictors import directpred_weight

    U, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    s = torch.tensor([4.0, 1.0, 0.16, 0.0], dtype=torch.float64)
    F = (U * s) @ U.T
    p_in = torch.linalg.eigvalsh(directpred_weight(F, -0.05, inside=True)).flip(0)
    expected = torch.sqrt(torch.clamp(s / 4.0 - 0.05, min=1e-4))  # sqrt(max(s_j - c_j, 0)) with c_j = 0.05
    assert torch.allclose(p_in, expected, atol=1e-12)
    p_out = torch.linalg.eigvalsh(directpred_weight(F, 0.1)).flip(0)
    assert torch.allclose(p_out, torch.sqrt(s / 4.0) + 0.1, atol=1e-12)


def _psd(spectrum: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(spectrum), len(spectrum), dtype=torch.float64, generator=g))
    return (Q * spectrum.double()) @ Q.T


@pytest.mark.parametrize("name,F", [
    ("spectrum 1 .. 1e-12", _psd(torch.logspace(0, -12, 128))),
    ("top 5 eigenvalues within 4e-9", _psd(torch.cat([1 - 1e-9 * torch.arange(5.0), 0.5 * torch.rand(123)]))),
    ("rank 40 of f f^T, scale 1e3", (lambda f: 1e3 * f.T @ f / 40)(torch.randn(40, 128, dtype=torch.float64))),
    ("scale 1e-10", _psd(1e-10 * torch.rand(128))),
    ("zero", torch.zeros(16, 16, dtype=torch.float64)),
])
@pytest.mark.parametrize("eps,inside", [(0.1, False), (1e-4, False), (0.1, True), (2.0, True)])
def test_newton_schulz_directpred_is_the_eigendecomposition_one(name, F, eps, inside):
    """Matrix products alone (no eigendecomposition, nothing that waits for a GPU) give DirectPred's W_p to ~1e-8
    on spectra spanning 12 decades, nearly equal top eigenvalues, rank-deficient F̂ and any scale."""
    from ssltheory.practice.methods.predictors import directpred_weight_ns

    W = directpred_weight(F, eps, inside=inside)
    W_ns = directpred_weight_ns(F, eps, inside=inside)
    assert float((W_ns - W).abs().max()) < 3e-8, name
    assert torch.equal(W_ns, W_ns.T)


def test_directpred_solver_settings():
    """auto: newton-schulz on CUDA when eps >= the floor, eigh otherwise; newton-schulz with eps below the floor is
    refused in one line; the predictor built for a CUDA run uses it."""
    from ssltheory.practice.config import TrainConfig
    from ssltheory.practice.methods.predictors import build_predictor
    from ssltheory.theory.checks import ConfigError

    cfg = TrainConfig(dataset="digits", predictor="directpred")
    assert cfg.resolved_directpred_solver("cuda") == "newton-schulz"
    assert cfg.resolved_directpred_solver("cpu") == "eigh"
    neg = TrainConfig(dataset="digits", predictor="directpred", eps=-0.05, eps_inside=True)
    assert neg.resolved_directpred_solver("cuda") == "eigh"
    with pytest.raises(ConfigError, match="--directpred-solver newton-schulz with --eps -0.05"):
        TrainConfig(dataset="digits", predictor="directpred", eps=-0.05, eps_inside=True,
                    directpred_solver="newton-schulz")
    with pytest.raises(ConfigError, match="--directpred-solver"):
        TrainConfig(dataset="digits", directpred_solver="jacobi")
    assert build_predictor(cfg, 8, "cuda").solver == "newton-schulz"
    assert build_predictor(cfg, 8, "cpu").solver == "eigh"


def test_optimal_predictor_solves_the_least_squares_equation():
    from ssltheory.practice.methods.predictors import OptimalPredictor

    torch.manual_seed(0)
    d = 6
    pred = OptimalPredictor(d, ridge=0.01, freq=1, rho=0.0)
    f1, f2 = torch.randn(256, d), torch.randn(256, d)
    A = torch.randn(d, d)
    z1, z2 = f1 @ A.T, f2 @ A.T  # targets a linear map of the inputs: W_p should recover sym-ish A
    pred.observe(f1, f2, z1, z2)
    F = (torch.cat([f1, f2]).T @ torch.cat([f1, f2]) / 512).double()
    pred.after_step(0, F)
    W = pred.W_p().double()
    lam = 0.01 * torch.linalg.eigvalsh(F).max()
    rhs = 0.5 * (pred.C_af + pred.C_af.T)
    assert torch.allclose(W @ (F + lam * torch.eye(d, dtype=torch.float64)), rhs, atol=1e-5)
    assert "cross.F" in pred.state_dict()  # resumable
