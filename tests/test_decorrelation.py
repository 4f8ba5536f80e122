"""Barlow Twins and VICReg (practice/methods/objectives/decorrelation.py): the written-out gradients against autograd of
the
losses, the unified forms against the exact ones, the online-target losses against the originals, measurements, and
the global-batch statistics over simulated ranks."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssltheory.practice.methods.objectives.base import Views, surrogate, unit
from ssltheory.practice.methods.objectives.decorrelation import (
    DEFAULT_LAMBDA,
    BarlowTwins,
    VICReg,
    default_lambda,
)

B, D_IN, D = 32, 10, 8
SCALE = torch.tensor([0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0], dtype=torch.float64)
"""Per-feature output scales, so VICReg's hinge is active on some features (std < 1) and not on others."""


class Net(nn.Module):
    """A linear map (10 -> 8) with fixed per-feature scales: f = (W x + b) * SCALE."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D_IN, D).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * SCALE.to(x.dtype)


def data(seed: int = 0, noise: float = 0.5, dtype: torch.dtype = torch.float64) -> tuple[Net, torch.Tensor,
                                                                                        torch.Tensor]:
    """A seeded net and two correlated views x1, x2 (B, 10): x2 = x1 + noise * N(0, 1)."""
    torch.manual_seed(seed)
    net = Net().to(dtype)
    x1 = torch.randn(B, D_IN, dtype=torch.float64)
    return net, x1.to(dtype), (x1 + noise * torch.randn(B, D_IN, dtype=torch.float64)).to(dtype)


def views(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor, target: str = "stopgrad", **kw) -> Views:
    """Views of f = net(x): targets and negatives f.detach() (stop-gradient), or f itself (online)."""
    f1, f2 = net(x1), net(x2)
    z1, z2 = (f1, f2) if target == "online" else (f1.detach(), f2.detach())
    return Views(f1, f2, f1, f2, z1, z2, z1.detach(), z2.detach(), **kw)


def grads(loss: torch.Tensor, net: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(net.parameters()), retain_graph=True))


def rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """|a - b| / |b| over all parameters together (the bias gradient of a batch-normalised output is zero, so a
    per-tensor ratio would compare rounding with rounding)."""
    x, y = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    return float((x - y).norm() / y.norm())


@pytest.mark.parametrize(("lam", "dtype"), [(5e-3, torch.float64), (0.5, torch.float64), (5e-3, torch.float32)])
def test_barlow_twins_gradient_form_equals_autograd_of_loss(lam, dtype):
    net, x1, x2 = data(dtype=dtype)
    loss = BarlowTwins(lam, "loss")(views(net, x1, x2))
    grad = BarlowTwins(lam, "gradient")(views(net, x1, x2))
    assert rel_diff(grads(grad, net), grads(loss, net)) < 1e-5
    # the gradient form is valued at the loss
    assert float(grad.detach()) == pytest.approx(float(loss.detach()), rel=1e-10 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize(("lam", "dtype"), [(1.0, torch.float64), (7.0, torch.float64), (1.0, torch.float32)])
def test_vicreg_gradient_form_equals_autograd_of_loss(lam, dtype):
    net, x1, x2 = data(1, dtype=dtype)
    v = views(net, x1, x2)
    std = v.f1.detach().std(dim=0)
    assert (std < 1).any() and (std > 1).any()  # the variance hinge is active on some features only
    loss = VICReg(lam, "loss")(v)
    grad = VICReg(lam, "gradient")(views(net, x1, x2))
    assert rel_diff(grads(grad, net), grads(loss, net)) < 1e-5
    assert float(grad.detach()) == pytest.approx(float(loss.detach()), rel=1e-10 if dtype == torch.float64 else 1e-5)


L2_LAM = 50.0 * D / 2048
"""Row (h)'s lambda scaled to d = 8 as lam / d is at d = 2048 (the repulsion's size for isotropic features)."""


@pytest.mark.parametrize("make", [lambda: BarlowTwins(form="unified", norm="bn"),
                                  lambda: BarlowTwins(L2_LAM, form="unified", norm="l2"),
                                  lambda: VICReg(form="unified"), lambda: VICReg(form="loss")])
def test_unified_gradients_are_correlated_with_but_not_the_exact_ones(make):
    net, x1, x2 = data(2)
    m = make().measure(views(net, x1, x2).detached())
    assert isinstance(m["grad_cosine"], float) and 0.0 < m["grad_cosine"] < 0.999


def test_bt_l2_default_lambda_overwhelms_a_small_dimension():
    """lam = 50 is tuned for d = 2048 (|lam C t| ~ lam / d): at d = 8 the repulsion dominates row (h), whose gradient
    then points away from row (f)'s (what ``measure`` of a loss form reports)."""
    net, x1, x2 = data(2)
    m = BarlowTwins(form="loss").measure(views(net, x1, x2).detached())
    assert m["balance_ratio"] > 1.0 and m["grad_cosine"] < 0.0


def test_bt_bn_unified_is_exact_when_the_views_agree():
    """Row (g) differs from row (f) only by (1 - lam) (D - I) b: with identical views (D = var / (var + eps) ~ I) and
    n = z = f.detach(), the two gradients coincide up to eps / var (here ~1e-7: the inputs are scaled up)."""
    net, x1, _ = data(3)
    x1 = 100.0 * x1
    m = BarlowTwins(form="unified", norm="bn").measure(views(net, x1, x1).detached())
    assert m["grad_cosine"] > 1.0 - 1e-9
    m = BarlowTwins(form="unified", norm="bn").measure(views(net, x1, x1 + 10.0 * torch.randn_like(x1)).detached())
    assert m["grad_cosine"] < 0.999


def test_bt_unified_l2_is_the_released_gradient():
    """Row (h) with stop-gradient targets and negatives = the released g1 = 2 (-z2m + lam (z2m z2m_bank^T) z1_bank
    / N) with the bank of online view-1 features, through the mean surrogate."""
    net, x1, x2 = data(4)
    lam = 50.0
    ours = BarlowTwins(form="unified", norm="l2")(views(net, x1, x2))
    f1, f2 = net(x1), net(x2)
    u1, u2 = unit(f1), unit(f2)
    z1, z2 = u1.detach(), u2.detach()
    g1 = 2 * (-z2 + lam * (z2 @ z2.T) @ z1 / B)
    g2 = 2 * (-z1 + lam * (z1 @ z1.T) @ z2 / B)
    ref = 0.5 * (surrogate(g1, u1) + surrogate(g2, u2))
    assert rel_diff(grads(ours, net), grads(ref, net)) < 1e-10


def original_barlow_twins(f1: torch.Tensor, f2: torch.Tensor, lam: float) -> torch.Tensor:
    """Zbontar et al.'s loss from BatchNorm1d(affine=False) in training mode."""
    a = F.batch_norm(f1, None, None, training=True, eps=1e-5)
    b = F.batch_norm(f2, None, None, training=True, eps=1e-5)
    C = a.T @ b / f1.shape[0]
    on = (torch.diagonal(C) - 1).pow(2).sum()
    off = C.pow(2).sum() - torch.diagonal(C).pow(2).sum()
    return on + lam * off


def original_vicreg(x: torch.Tensor, y: torch.Tensor, sim=25.0, std=25.0, cov=1.0) -> torch.Tensor:
    """Bardes et al.'s loss: sim mse + std (hinge(x) + hinge(y)) / 2 + cov (offdiag(Kx)^2 + offdiag(Ky)^2) / d."""
    n, d = x.shape
    inv = F.mse_loss(x, y)
    xc, yc = x - x.mean(0), y - y.mean(0)
    hinge = (F.relu(1 - torch.sqrt(xc.var(0) + 1e-4)).mean() + F.relu(1 - torch.sqrt(yc.var(0) + 1e-4)).mean()) / 2
    off = ~torch.eye(d, dtype=torch.bool)
    covl = ((xc.T @ xc / (n - 1))[off].pow(2).sum() + (yc.T @ yc / (n - 1))[off].pow(2).sum()) / d
    return sim * inv + std * hinge + cov * covl


def test_online_target_losses_are_the_originals():
    net, x1, x2 = data(5)
    v = views(net, x1, x2, "online")
    bt = BarlowTwins(form="loss")(v)
    ref = original_barlow_twins(v.f1, v.f2, 5e-3)
    assert float(bt.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert rel_diff(grads(bt, net), grads(ref, net)) < 1e-10
    vic = VICReg(form="loss")(v)
    ref = original_vicreg(v.f1, v.f2)
    assert float(vic.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert rel_diff(grads(vic, net), grads(ref, net)) < 1e-10


@pytest.mark.parametrize("form", ["loss", "gradient"])
def test_vicreg_under_a_constant_target_has_the_papers_balance(form):
    """Issue 22: with a stop-gradient (or momentum) target, VICReg's gradient on each view is half Bardes et al.'s
    loss gradient with the other branch held constant, invariance and regularisers alike (row (i)'s definition);
    the regulariser at full weight against a halved invariance term (its balance twice theirs) fails this. The
    invariance term alone and the regulariser alone are each checked, so neither can hide the other."""
    net, x1, x2 = data(7)
    v = views(net, x1, x2)
    std = v.f1.detach().std(dim=0)
    assert (std < 1).any()  # the variance hinge is active
    ours = grads(VICReg(form=form)(v), net)
    ref = 0.5 * (original_vicreg(v.f1, v.f2.detach()) + original_vicreg(v.f2, v.f1.detach()))
    assert rel_diff(ours, grads(ref, net)) < 1e-10
    for sim, sd, cov in ((25.0, 0.0, 0.0), (0.0, 25.0, 1.0)):  # each part on its own
        part = VICReg(cov if cov else 1e-300, form, sim=sim, std=sd)(views(net, x1, x2))
        want = 0.5 * (original_vicreg(v.f1, v.f2.detach(), sim, sd, cov)
                      + original_vicreg(v.f2, v.f1.detach(), sim, sd, cov))
        assert rel_diff(grads(part, net), grads(want, net)) < 1e-8, (sim, sd, cov)


def test_vicreg_gradient_form_under_an_online_target_is_half_the_loss_gradient():
    net, x1, x2 = data(8)
    loss = VICReg(form="loss")(views(net, x1, x2, "online"))
    grad = VICReg(form="gradient")(views(net, x1, x2, "online"))
    assert rel_diff(grads(grad, net), [0.5 * g for g in grads(loss, net)]) < 1e-10


def test_bt_gradient_form_under_an_online_target_is_half_the_loss_gradient():
    net, x1, x2 = data(6)
    loss = BarlowTwins(form="loss")(views(net, x1, x2, "online"))
    grad = BarlowTwins(form="gradient")(views(net, x1, x2, "online"))
    half = [0.5 * g for g in grads(loss, net)]
    assert rel_diff(grads(grad, net), half) < 1e-10


def test_measure():
    net, x1, x2 = data(7)
    v = views(net, x1, x2).detached()
    vic = VICReg(form="unified").measure(v)
    assert vic["method_F"].shape == (D, D)
    assert float(torch.trace(vic["method_F"])) == pytest.approx(1.0, abs=1e-6)
    bt = BarlowTwins(form="unified", norm="l2").measure(v)
    mean_cos = float(F.cosine_similarity(v.n1, v.n2).mean())
    assert float(torch.trace(bt["method_F"])) == pytest.approx(mean_cos, abs=1e-6)  # 1 only when the views agree
    assert torch.allclose(bt["method_F"], bt["method_F"].T)
    same = Views(v.p1, v.p2, v.f1, v.f2, v.z1, v.z2, v.n1, v.n1)
    assert float(torch.trace(BarlowTwins(form="unified", norm="l2").measure(same)["method_F"])) == pytest.approx(1.0)
    for m in (vic, bt, BarlowTwins().measure(v), VICReg().measure(v)):
        assert isinstance(m["balance_ratio"], float) and 0.0 < m["balance_ratio"] < float("inf")
    # the l2 balance ratio is lam |C t2| / |t2| with C the negatives' cross-correlation
    u1, u2 = unit(v.n1), unit(v.n2)
    C = u1.T @ u2 / B
    t2 = unit(v.z2)
    expected = float((50.0 * (t2 @ C.T)).norm(dim=-1).div(t2.norm(dim=-1)).mean())
    assert bt["balance_ratio"] == pytest.approx(expected, rel=1e-9)


def test_measure_calls_no_collective():
    """measure reads this rank's batch: it may run on one rank alone without hanging the others."""
    net, x1, x2 = data(9)

    def refuse(t: torch.Tensor) -> torch.Tensor:
        raise AssertionError("measure called a collective")

    v = replace(views(net, x1, x2).detached(), reduce=refuse, world=2)
    for obj in (BarlowTwins(), BarlowTwins(form="unified", norm="l2"), VICReg(), VICReg(form="unified")):
        assert set(obj.measure(v)) == {"method_F", "balance_ratio", "grad_cosine"}


class FakeRanks:
    """``world`` threads as ranks: reduce sums a tensor over them (every rank calls reduce in the same order)."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.barrier = threading.Barrier(world, timeout=20)
        self.slots: list[torch.Tensor | None] = [None] * world

    def reduce_for(self, rank: int):
        def reduce(t: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = t.detach().clone()
            self.barrier.wait()
            total = sum(self.slots[1:], self.slots[0].clone())
            self.barrier.wait()
            return total
        return reduce


@pytest.mark.parametrize("make", [lambda: BarlowTwins(form="gradient"),
                                  lambda: BarlowTwins(form="unified", norm="bn"),
                                  lambda: BarlowTwins(form="unified", norm="l2"),
                                  lambda: VICReg(form="gradient"), lambda: VICReg(form="unified")])
def test_global_batch_over_ranks(make):
    """The detached forms on 2 ranks of 16 rows, gradients averaged over ranks (data-parallel), equal the same form
    on one process with the 32 rows: the statistics are the global batch's."""
    net, x1, x2 = data(8)
    obj = make()
    whole = grads(obj(views(net, x1, x2)), net)
    world, per = 2, B // 2
    ranks = FakeRanks(world)
    out: list[list[torch.Tensor] | BaseException | None] = [None] * world

    def run(r: int) -> None:
        try:
            rows = slice(r * per, (r + 1) * per)
            v = views(net, x1[rows], x2[rows], reduce=ranks.reduce_for(r), world=world)
            out[r] = grads(obj(v), net)
        except BaseException as e:  # re-raised in the main thread below
            ranks.barrier.abort()
            out[r] = e

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in out:
        if isinstance(o, BaseException):
            raise o
    mean = [sum(gs) / world for gs in zip(*out, strict=True)]
    assert rel_diff(mean, whole) < 1e-10


def test_defaults_and_refusals():
    assert BarlowTwins().lam == 5e-3 and BarlowTwins(form="unified", norm="l2").lam == 50.0
    assert VICReg().lam == 1.0 and VICReg(form="unified").lam == 25.0
    assert default_lambda("barlowtwins", "unified") == DEFAULT_LAMBDA[("barlowtwins", "unified", "bn")] == 5e-3
    assert default_lambda("vicreg", "unified") == 25.0
    assert not BarlowTwins.cutmix and not BarlowTwins.multi_crop and not VICReg.cutmix and not VICReg.multi_crop
    with pytest.raises(ValueError, match="form"):
        BarlowTwins(form="grad")
    with pytest.raises(ValueError, match="norm"):
        BarlowTwins(form="loss", norm="l2")
    with pytest.raises(ValueError, match="lam"):
        VICReg(-1.0)
    with pytest.raises(ValueError, match="lam"):
        BarlowTwins(float("nan"))
