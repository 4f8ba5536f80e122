"""The asymmetric family's objectives (practice/methods/objectives/asymmetric.py): UniGrad and BYOL's gradient with a
DirectPred predictor, their running F, and their gradient forms against autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssltheory.practice.methods.objectives.asymmetric import (
    DirectPredGradient,
    RunningF,
    UniGrad,
    batch_correlation,
    directpred_gradient,
    directpred_matrices,
)
from ssltheory.practice.methods.objectives.base import Views, unit

B, D_IN, D = 16, 10, 8


def batch(seed: int, dtype: torch.dtype = torch.float32, b: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, D_IN, generator=g, dtype=dtype), torch.randn(b, D_IN, generator=g, dtype=dtype)


def network(dtype: torch.dtype = torch.float32) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(D_IN, D).to(dtype)


def views(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor, **kw) -> Views:
    """f = net(x), stop-gradient targets z = f.detach(), negatives n = z, p = f (no predictor)."""
    f1, f2 = net(x1), net(x2)
    z1, z2 = f1.detach(), f2.detach()
    return Views(f1, f2, f1, f2, z1, z2, z1, z2, **kw)


def param_grads(obj: nn.Module, net: nn.Module, x1: torch.Tensor, x2: torch.Tensor, **kw) -> torch.Tensor:
    net.zero_grad()
    obj(views(net, x1, x2, **kw)).backward()
    return torch.cat([net.weight.grad.flatten(), net.bias.grad.flatten()]).clone()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_unigrad_gradient_form_equals_explicit_loss():
    net = network()
    grad, loss = UniGrad(D, form="gradient"), UniGrad(D, form="loss")
    for seed in (1, 2, 3):  # the first step (F = tmp) and two EMA steps
        x1, x2 = batch(seed)
        a, b = param_grads(grad, net, x1, x2), param_grads(loss, net, x1, x2)
        assert rel(a, b) < 1e-5
        assert b.abs().max() > 1e-3
    assert torch.equal(grad.F, loss.F)


def test_directpred_gradient_form_exact_at_eps_zero_and_not_at_eps_03():
    net = network()
    x1, x2 = batch(1)
    exact = rel(param_grads(DirectPredGradient(D, eps=0.0, form="gradient"), net, x1, x2),
                param_grads(DirectPredGradient(D, eps=0.0, form="loss"), net, x1, x2))
    assert exact < 1e-5
    form = DirectPredGradient(D, eps=0.3, form="gradient")
    approx = rel(param_grads(form, net, x1, x2), param_grads(DirectPredGradient(D, eps=0.3, form="loss"), net, x1, x2))
    assert approx > 1e-3
    m = form.measure(views(net, x1, x2).detached())
    assert 0.5 < m["grad_cosine"] < 1.0 - 1e-4
    assert m["adaptive_balance"] > 0 and m["balance_ratio"] > 0
    assert isinstance(m["grad_cosine"], float) and m["method_F"].shape == (D, D)


def test_directpred_gradient_is_autograd_of_cosine_with_exact_square():
    """directpred_gradient with M = W_p^2 is d/du of -cos(W_p u, t) (in u itself, before the normalisation)."""
    g = torch.Generator().manual_seed(5)
    u = unit(torch.randn(B, D, generator=g, dtype=torch.float64)).requires_grad_()
    t = unit(torch.randn(B, D, generator=g, dtype=torch.float64))
    F = batch_correlation(torch.randn(64, D, generator=g), torch.randn(64, D, generator=g))
    W, M, W2 = directpred_matrices(F, 0.3)
    assert torch.allclose(W @ W, W2, atol=1e-12)
    s = torch.linalg.eigvalsh(F.double())
    assert torch.allclose(M, F.double() / s.max() + 0.09 * torch.eye(D, dtype=torch.float64), atol=1e-7)
    torch.nn.functional.cosine_similarity(u @ W, t, dim=-1).neg().sum().backward()
    assert torch.allclose(directpred_gradient(u.detach(), t, W, W2)[0], u.grad, atol=1e-10)
    g, lam = directpred_gradient(u.detach(), t, W, M)
    assert torch.allclose((g * u.detach()).sum(-1), torch.zeros(B, dtype=g.dtype), atol=1e-12)  # no radial part
    assert not torch.allclose(g, u.grad, atol=1e-3)  # M is not W_p^2 at eps = 0.3


def test_running_f_first_batch_then_ema_trace_one():
    net = network()
    obj = UniGrad(D, lam=100.0, rho=0.9)
    x1, x2 = batch(1)
    v = views(net, x1, x2)
    tmp1 = batch_correlation(v.z1, v.z2)
    loss = obj(v)
    assert torch.equal(obj.F, tmp1) and bool(obj.running.initialised)
    # the gradient used this F: the surrogate built by hand from tmp1 has the same value and parameter gradient
    u1, u2, t1, t2 = unit(v.p1), unit(v.p2), unit(v.z1), unit(v.z2)
    g1, g2 = -t2 + 100.0 * u1 @ tmp1, -t1 + 100.0 * u2 @ tmp1
    hand = 0.5 * ((g1 * u1).sum(-1).mean() + (g2 * u2).sum(-1).mean())
    assert torch.allclose(loss, hand, rtol=1e-6)
    wrong = 0.5 * ((-t2 * u1).sum(-1).mean() + (-t1 * u2).sum(-1).mean())  # F = 0 would give this
    assert not torch.allclose(loss, wrong, rtol=1e-3)
    x1, x2 = batch(2)
    v2 = views(net, x1, x2)
    obj(v2)
    assert torch.allclose(obj.F, 0.9 * tmp1 + 0.1 * batch_correlation(v2.z1, v2.z2), rtol=0, atol=1e-7)
    for seed in range(3, 9):
        obj(views(net, *batch(seed)))
    assert abs(float(obj.F.double().trace()) - 1.0) < 1e-6


def test_running_f_reduce_over_ranks_is_the_global_mean():
    """Two identical ranks: reduce sums (2 tmp), divided by world = 2, gives the same F as one rank."""
    net = network()
    v = views(net, *batch(1))
    one, two = RunningF(D), RunningF(D)
    one.update(v.n1, v.n2)
    two.update(v.n1, v.n2, lambda t: 2.0 * t, 2)
    assert torch.equal(one.F, two.F)


@pytest.mark.parametrize("cls", [UniGrad, DirectPredGradient])
def test_state_dict_round_trip(cls):
    net = network()
    obj = cls(D)
    for seed in (1, 2):
        obj(views(net, *batch(seed)))
    state = obj.state_dict()
    assert set(state) == {"running.F", "running.initialised"}
    fresh, blank = cls(D), cls(D)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.F, obj.F) and bool(fresh.running.initialised)
    # the parameter gradients, not the loss values: DirectPred's surrogate is 0 by construction (u_i^T g_i = 0)
    a, b, c = (param_grads(o, net, *batch(3)) for o in (obj, fresh, blank))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, rtol=1e-4)  # the restored F matters


@pytest.mark.parametrize("cls", [UniGrad, DirectPredGradient])
def test_f_stays_float32(cls):
    net = network(torch.float64)
    obj = cls(D)
    loss = obj(views(net, *batch(1, torch.float64)))
    assert obj.F.dtype == torch.float32 and loss.dtype == torch.float64
    obj.to(torch.float64)
    assert obj.F.dtype == torch.float32
    obj.half()
    assert obj.F.dtype == torch.float32
    net = network()
    obj = cls(D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = views(net, *batch(2))
        assert v.p1.dtype == torch.bfloat16
        loss = obj(v)
    assert obj.F.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.equal(obj.F, batch_correlation(v.z1.float(), v.z2.float()))  # computed from fp32 copies
    loss.backward()
    assert torch.isfinite(net.weight.grad).all()


def test_cutmix_targets():
    net = network()
    x1, x2 = batch(1)
    perm = torch.roll(torch.arange(B), 1)
    ones, zeros = torch.ones(B), torch.zeros(B)
    plain = UniGrad(D)(views(net, x1, x2))
    assert torch.allclose(UniGrad(D)(views(net, x1, x2, mix=(perm, ones))), plain, rtol=1e-6)
    # lam = 0: the positive of row i is row perm[i]'s target, F still from the unmixed negatives
    obj = UniGrad(D)
    mixed = obj(views(net, x1, x2, mix=(perm, zeros)))
    v = views(net, x1, x2)
    swapped = UniGrad(D)(Views(v.p1, v.p2, v.f1, v.f2, v.z1[perm], v.z2[perm], v.n1, v.n2))
    assert torch.allclose(mixed, swapped, rtol=1e-6) and not torch.allclose(mixed, plain, rtol=1e-3)
    assert torch.equal(obj.F, batch_correlation(v.n1, v.n2))
    # lam = 0.3: the positive is 0.3 t_i + 0.7 t_perm(i), not re-normalised (explicit loss form)
    lam = torch.full((B,), 0.3)
    got = UniGrad(D, form="loss")(views(net, x1, x2, mix=(perm, lam)))
    u1, u2, t1, t2 = unit(v.p1), unit(v.p2), unit(v.z1), unit(v.z2)
    F = batch_correlation(v.z1, v.z2)

    def term(u, t):
        pos = 0.3 * t + 0.7 * t[perm]
        return (-(u * pos).sum(-1) + 50.0 * ((u @ F) * u).sum(-1)).mean()

    assert torch.allclose(got, 0.5 * (term(u1, t2) + term(u2, t1)), rtol=1e-6)


def test_multi_crop_locals():
    net = network()
    x1, x2 = batch(1)
    x_loc = batch(7)[0].requires_grad_()
    v = views(net, x1, x2)
    loc = net(x_loc)
    obj = UniGrad(D)
    loss = obj(Views(v.p1, v.p2, v.f1, v.f2, v.z1, v.z2, v.n1, v.n2, locals=[loc]))
    assert torch.isfinite(loss)
    loss.backward()
    assert x_loc.grad is not None and x_loc.grad.abs().max() > 0
    F = batch_correlation(v.z1, v.z2)
    assert torch.equal(obj.F, F)  # F from the global views only
    u1, u2, ul, t1, t2 = unit(v.p1), unit(v.p2), unit(loc), unit(v.z1), unit(v.z2)

    def s(u, t):
        return ((-t + 100.0 * u @ F) * u).sum(-1).mean()

    hand = (s(u1, t2) + s(u2, t1) + s(ul, 0.5 * (t1 + t2))) / 3  # each crop weighted equally
    assert torch.allclose(loss, hand, rtol=1e-6)
    # a local crop equal to view 1 still counts once: not the two-view loss
    assert not torch.allclose(hand, 0.5 * (s(u1, t2) + s(u2, t1)), rtol=1e-4)
    # the two forms agree with locals too
    net_a = network()
    lv = [net_a(batch(7)[0])]
    ga = torch.autograd.grad(UniGrad(D)(views(net_a, x1, x2, locals=lv)), net_a.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(UniGrad(D, form="loss")(views(net_a, x1, x2, locals=lv)), net_a.weight)[0]
    assert rel(ga, gb) < 1e-5


def test_balance_ratio_isotropic_vs_collapsed():
    d, b = 64, 512
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    p1, p2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    iso = UniGrad(d).measure(Views(p1, p2, p1, p2, z1, z2, z1, z2))
    row = torch.randn(1, d, generator=g).expand(b, d)
    col = UniGrad(d).measure(Views(row, row, row, row, row, row, row, row))
    assert 0.5 * 100 / d < iso["balance_ratio"] < 2.0 * 100 / d  # ~ lam / d
    assert col["balance_ratio"] == pytest.approx(100.0, rel=1e-5)  # F = v v^T, F u = v
    assert col["balance_ratio"] > 10 * iso["balance_ratio"]
    assert -1.0 <= iso["grad_cosine"] <= 1.0 and isinstance(iso["balance_ratio"], float)


def test_measure_does_not_update_f():
    net = network()
    obj = UniGrad(D)
    obj(views(net, *batch(1)))
    before = obj.F.clone()
    m = obj.measure(views(net, *batch(2)).detached())
    assert torch.equal(obj.F, before) and torch.equal(m["method_F"], before)


def test_bad_form_refused():
    with pytest.raises(ValueError, match="form"):
        UniGrad(D, form="unified")
    with pytest.raises(ValueError, match="form"):
        DirectPredGradient(D, form="unified")
