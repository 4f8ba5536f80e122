"""The contrastive objective (MoCo, SimCLR; unigrad.md A2.1): loss and gradient forms agree on the parameters, the
loss is InfoNCE, the MoCo queue is FIFO state outside autograd, and the measurements are what they claim."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ssltheory.practice.methods.objectives.base import Views, unit
from ssltheory.practice.methods.objectives.contrastive import (
    Contrastive,
    contrastive_F,
    contrastive_gradient,
    contrastive_weights,
    info_nce,
    second_term_cosine,
    self_masks,
)

D_IN, D = 10, 8


def _units(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return unit(torch.randn(*shape, generator=gen, dtype=torch.float64))


def _net(seed: int) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    """A Linear(10, 8) "network" in fp64 and two batches of 16 inputs."""
    torch.manual_seed(seed)
    net = torch.nn.Linear(D_IN, D).double()
    gen = torch.Generator().manual_seed(seed + 1)
    x1 = torch.randn(16, D_IN, generator=gen, dtype=torch.float64)
    x2 = torch.randn(16, D_IN, generator=gen, dtype=torch.float64)
    return net, x1, x2


def _views(net: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, online_negatives: bool = False) -> Views:
    """Stop-gradient targets z = f.detach(); negatives n = z, or the online f itself."""
    f1, f2 = net(x1), net(x2)
    z1, z2 = f1.detach(), f2.detach()
    n1, n2 = (f1, f2) if online_negatives else (z1, z2)
    return Views(p1=f1, p2=f2, f1=f1, f2=f2, z1=z1, z2=z2, n1=n1, n2=n2)


def _param_grads(obj: Contrastive, net: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> list[torch.Tensor]:
    net.zero_grad()
    obj(_views(net, x1, x2)).backward()
    return [p.grad.clone() for p in net.parameters()]


def _prefill(obj: Contrastive, rows: int, seed: int = 7) -> None:
    gen = torch.Generator().manual_seed(seed)
    obj.queue[:rows] = _units(gen, rows, D).float()
    obj.ptr.fill_(rows % obj.queue_size)
    obj.filled.fill_(rows)


def _rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(a, b, strict=True))


# 1. gradient form == loss form on the parameters (detached targets and keys) ---------------------------------------

@pytest.mark.parametrize("queue_size, mask_self, prefill", [(0, False, 0), (0, True, 0), (32, False, 32),
                                                            (32, False, 20)])
def test_gradient_form_matches_loss_form(queue_size: int, mask_self: bool, prefill: int) -> None:
    net, x1, x2 = _net(0)
    by_loss = Contrastive(D, tau=0.2, form="loss", queue_size=queue_size, mask_self=mask_self).double()
    if queue_size:
        _prefill(by_loss, prefill)
    by_grad = Contrastive(D, tau=0.2, form="gradient", queue_size=queue_size, mask_self=mask_self).double()
    by_grad.load_state_dict(copy.deepcopy(by_loss.state_dict()))  # the same queue state before either enqueues
    a, b = _param_grads(by_grad, net, x1, x2), _param_grads(by_loss, net, x1, x2)
    assert all(float(t.abs().max()) > 1e-3 for t in b)  # a real gradient, not two zeros
    assert _rel(a, b) < 1e-5
    if queue_size:  # both enqueued the same keys
        assert torch.equal(by_loss.queue, by_grad.queue) and int(by_loss.ptr) == int(by_grad.ptr)


def test_gradient_form_is_info_nce_gradient_on_u() -> None:
    gen = torch.Generator().manual_seed(3)
    u, pos, bank = _units(gen, 5, D), _units(gen, 5, D), _units(gen, 12, D)
    for add_pos in (False, True):
        uu = u.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(info_nce(uu, pos, bank, 0.3, add_pos=add_pos), uu)
        g, positive, negative = contrastive_gradient(u, pos, bank, 0.3, add_pos=add_pos)
        torch.testing.assert_close(g / u.shape[0], auto, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(positive + negative, g)
        torch.testing.assert_close(positive, -pos / 0.3)
        assert not (g.requires_grad or positive.requires_grad or negative.requires_grad)


def test_online_targets_carry_the_second_term() -> None:
    """With online keys the loss form differs from the first-term gradient form: it is SimCLR's original loss."""
    net, x1, x2 = _net(1)

    def grads(form: str) -> list[torch.Tensor]:
        net.zero_grad()
        Contrastive(D, form=form, mask_self=True)(_views(net, x1, x2, online_negatives=True)).backward()
        return [p.grad.clone() for p in net.parameters()]

    assert _rel(grads("gradient"), grads("loss")) > 1e-3


# 2. the loss value is InfoNCE -------------------------------------------------------------------------------------

def test_info_nce_is_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(4)
    B, K, tau = 6, 15, 0.2
    u, bank = _units(gen, B, D), _units(gen, K, D)
    target = torch.tensor([3, 0, 14, 7, 7, 9])
    pos = bank[target]
    ce = F.cross_entropy(u @ bank.T / tau, target)
    assert abs(float(info_nce(u, pos, bank, tau)) - float(ce)) < 1e-6
    # MoCo's layout: logits [u.pos, u.queue], label 0
    queue = _units(gen, K, D)
    ce = F.cross_entropy(torch.cat([(u * pos).sum(1, keepdim=True), u @ queue.T], 1) / tau,
                         torch.zeros(B, dtype=torch.long))
    assert abs(float(info_nce(u, pos, queue, tau, add_pos=True)) - float(ce)) < 1e-6
    # a masked key is absent from the softmax
    mask = torch.zeros(B, K, dtype=torch.bool)
    mask[:, 1] = True
    ce = F.cross_entropy((u @ bank.T / tau).masked_fill(mask, float("-inf")), target)
    assert abs(float(info_nce(u, pos, bank, tau, mask)) - float(ce)) < 1e-6


def test_simclr_forward_is_nt_xent() -> None:
    """mask_self with online negatives: the forward is SimCLR's NT-Xent over the 2B views (own entry excluded)."""
    net, x1, x2 = _net(2)
    v = _views(net, x1, x2, online_negatives=True)
    B, tau = x1.shape[0], 0.2
    h = unit(torch.cat([v.f1, v.f2]))
    logits = (h @ h.T / tau).masked_fill(torch.eye(2 * B, dtype=torch.bool), float("-inf"))
    labels = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
    expected = F.cross_entropy(logits, labels).detach()
    got = Contrastive(D, tau=tau, mask_self=True)(v).detach()
    assert abs(float(got) - float(expected)) < 1e-10
    assert abs(float(Contrastive(D, tau=tau)(v).detach()) - float(expected)) > 1e-3  # unmasked: a different loss


# 3. the MoCo queue --------------------------------------------------------------------------------------------------

def test_moco_queue_fifo_and_state_dict() -> None:
    torch.manual_seed(5)
    net = torch.nn.Linear(D_IN, D)
    obj = Contrastive(D, queue_size=32)
    assert int(obj.ptr) == 0 and int(obj.filled) == 0
    B = 6
    written = []
    for step in range(3):
        x1, x2 = torch.randn(B, D_IN), torch.randn(B, D_IN)
        v = _views(net, x1, x2, online_negatives=True)  # keys that carry gradient
        obj(v).backward()  # the in-place enqueue does not break backward
        written.append(unit(torch.cat([v.n1, v.n2])).detach())
        assert int(obj.ptr) == (2 * B * (step + 1)) % 32
        assert int(obj.filled) == min(2 * B * (step + 1), 32)
        assert not obj.queue.requires_grad and obj.queue.grad_fn is None
        if step == 0:
            torch.testing.assert_close(obj.queue[:2 * B], written[0])
            assert torch.all(obj.queue[2 * B:] == 0)
    # step 3 wrote 12 rows at 24: rows 24..31 then 0..3 (overwriting step 1's oldest)
    torch.testing.assert_close(obj.queue[24:], written[2][:8])
    torch.testing.assert_close(obj.queue[:4], written[2][8:])
    torch.testing.assert_close(obj.queue[4:12], written[0][4:])
    torch.testing.assert_close(obj.queue[12:24], written[1])
    back = Contrastive(D, queue_size=32)
    back.load_state_dict(obj.state_dict())
    assert torch.equal(back.queue, obj.queue) and int(back.ptr) == 4 and int(back.filled) == 32
    assert set(Contrastive(D).state_dict()) == set()  # SimCLR keeps no state


def test_moco_queue_uses_only_filled_rows_and_overflow() -> None:
    gen = torch.Generator().manual_seed(6)
    obj = Contrastive(D, queue_size=8).double()
    _prefill(obj, 5)
    obj.queue[5:] = 123.0  # garbage in the unfilled rows must not matter
    f = _units(gen, 4, D)
    v = Views(p1=f, p2=f.flip(0), f1=f, f2=f.flip(0), z1=f, z2=f.flip(0), n1=f, n2=f.flip(0))
    loss = obj(v)
    q = _prefill_rows(5)
    expected = 0.5 * (info_nce(f, f.flip(0), q, obj.tau, add_pos=True)
                      + info_nce(f.flip(0), f, q, obj.tau, add_pos=True))
    assert abs(float(loss) - float(expected)) < 1e-6
    # 8 keys into a queue of 8 at ptr 5: rows 5, 6, 7, 0, ..., 4; more keys than rows keep the newest
    keys = unit(torch.cat([f, f.flip(0)]))
    torch.testing.assert_close(obj.queue[5:], keys[:3])
    torch.testing.assert_close(obj.queue[:5], keys[3:])
    small = Contrastive(D, queue_size=3).double()
    small(v)
    assert int(small.ptr) == 8 % 3 and int(small.filled) == 3
    torch.testing.assert_close(small.queue[[2, 0, 1]], keys[5:])


def _prefill_rows(rows: int, seed: int = 7) -> torch.Tensor:
    return _units(torch.Generator().manual_seed(seed), rows, D).float().double()


# 4. the measurements --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("queue_size", [0, 32])
def test_measure(queue_size: int) -> None:
    net, x1, x2 = _net(8)
    obj = Contrastive(D, queue_size=queue_size).double()
    if queue_size:
        _prefill(obj, 20)
    m = obj.measure(_views(net, x1, x2).detached())
    Fm = m["method_F"]
    assert Fm.shape == (D, D) and Fm.dtype == torch.float32
    assert abs(float(torch.trace(Fm)) - 1.0) < 1e-6
    torch.testing.assert_close(Fm, Fm.T)
    assert float(torch.linalg.eigvalsh(Fm.double()).min()) > -1e-7
    assert isinstance(m["balance_ratio"], float) and 0.0 < m["balance_ratio"] < float("inf")
    c = m["grad_cosine"]
    assert isinstance(c, float) and 0.0 < c < 1.0 - 1e-6


def test_contrastive_F_is_the_weighted_outer_product() -> None:
    gen = torch.Generator().manual_seed(9)
    u, pos, bank = _units(gen, 4, D), _units(gen, 4, D), _units(gen, 7, D)
    for add_pos in (False, True):
        s = contrastive_weights(u, pos, bank, 0.5, add_pos=add_pos)
        expected = torch.zeros(D, D, dtype=torch.float64)
        for i in range(4):
            keys = torch.cat([pos[i:i + 1], bank]) if add_pos else bank
            expected += (keys.T * s[i]) @ keys / 4
        torch.testing.assert_close(contrastive_F(u, pos, bank, 0.5, add_pos=add_pos), expected)


def test_second_term_cosine_is_exact_gradient_cosine() -> None:
    """Against a hand-derived exact gradient: (-2 u2_i + sum_k s_ik k + sum_q s_qi q) / (2 B tau)."""
    gen = torch.Generator().manual_seed(10)
    B, tau = 5, 0.2
    u1, u2 = _units(gen, B, D), _units(gen, B, D)
    h = torch.cat([u1, u2])
    m1, m2 = self_masks(B, 2 * B)
    s1 = contrastive_weights(u1, u2, h, tau, m1)  # (B, 2B): view 1's queries
    s2 = contrastive_weights(u2, u1, h, tau, m2)
    s_all = torch.cat([s1, s2])  # (2B, 2B): query q, key k
    exact = (-2 * u2 + s1 @ h + s_all[:, :B].T @ h) / (2 * B * tau)
    first = (-u2 + s1 @ h) / tau

    def tangent(g):  # the part the l2 normalisation passes on to the network
        return g - (g * u1).sum(-1, keepdim=True) * u1

    cos = float(F.cosine_similarity(tangent(first), tangent(exact), dim=-1).mean())
    assert abs(second_term_cosine(u1, u2, tau) - cos) < 1e-12
    assert cos < 1.0 - 1e-6


# 5. mask_self ----------------------------------------------------------------------------------------------------

def test_mask_self_gives_own_entry_zero_weight() -> None:
    net, x1, x2 = _net(11)
    v = _views(net, x1, x2, online_negatives=True).detached()
    B = x1.shape[0]
    obj = Contrastive(D, mask_self=True)
    u1, u2, t1, t2 = obj._queries(v)
    bank, m1, m2, add_pos = obj._bank(v, u1, obj._keys(v))
    assert not add_pos and bank.shape == (2 * B, D)
    i = torch.arange(B)
    torch.testing.assert_close(bank[i], u1)  # the bank holds u1_i itself at i ...
    torch.testing.assert_close(bank[B + i], u2)  # ... and u2_i at B + i
    s1 = contrastive_weights(u1, t1, bank, obj.tau, m1)
    s2 = contrastive_weights(u2, t2, bank, obj.tau, m2)
    assert torch.all(s1[i, i] == 0) and torch.all(s2[i, B + i] == 0)
    s1[i, i] = 1.0
    s2[i, B + i] = 1.0
    assert torch.all(s1 > 0) and torch.all(s2 > 0)  # nothing else is masked
    unmasked = contrastive_weights(u1, t1, bank, obj.tau)
    assert float(unmasked[i, i].min()) > 0.05  # without the mask the own entry dominates at tau 0.2
    # under a gather, this rank's rows sit at 2 B rank
    r1, r2 = self_masks(B, 6 * B, rank=1)
    assert torch.equal(r1.nonzero()[:, 1], 2 * B + i) and torch.equal(r2.nonzero()[:, 1], 3 * B + i)


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        Contrastive(D, form="nope")
    with pytest.raises(ValueError):
        Contrastive(D, tau=0.0)
    with pytest.raises(ValueError):
        Contrastive(D, queue_size=8, mask_self=True)
    with pytest.raises(ValueError):
        Contrastive(D)(Views(p1=torch.ones(2, D), p2=torch.ones(2, D), f1=torch.ones(2, D), f2=torch.ones(2, D),
                             z1=torch.ones(2, D), z2=torch.ones(2, D)))


def test_simclr_masks_the_querys_own_copy_under_stop_gradient_negatives_too() -> None:
    """Issue 22: with stop-gradient negatives the bank held each query's own detached copy (logit 1 / tau, about 6 %
    of the softmax at 2,048 keys, d = 128, tau 0.2); SimCLR's definition leaves it out (k != i), as it already did
    for online negatives. A momentum copy is another network's feature and stays (the released code's)."""
    from ssltheory.practice.config import TrainConfig
    from ssltheory.practice.methods.registry import METHODS

    def masked(**kw) -> bool:
        return METHODS["simclr"].objective(TrainConfig(dataset="digits", method="simclr", **kw)).mask_self

    assert masked() and masked(form="gradient", positive_target="stop-grad", negative_target="stop-grad")
    assert masked(form="gradient", positive_target="ema", negative_target="stop-grad")
    assert not masked(form="gradient") and not masked(form="gradient", positive_target="ema", negative_target="ema")
    gen = torch.Generator().manual_seed(3)
    B, d, tau = 1024, 128, 0.2
    u1, u2 = (torch.nn.functional.normalize(torch.randn(B, d, generator=gen, dtype=torch.float64), dim=1)
              for _ in range(2))
    bank = torch.cat([u1, u2])  # stop-gradient negatives: the online features, detached
    m1, _ = self_masks(B, 2 * B)
    i = torch.arange(B)
    own = contrastive_weights(u1, u2, bank, tau)[i, i]
    assert 0.05 < float(own.mean()) < 0.08, float(own.mean())  # what the unmasked bank gave the query itself
    assert float(contrastive_weights(u1, u2, bank, tau, m1)[i, i].abs().max()) == 0.0
    # the own entry lies along u1_i, which the normalisation's Jacobian removes: masking it rescales the rest by
    # 1 / (1 - s_ii), i.e. the negative gradient's tangent part grows by that factor
    _, _, neg = contrastive_gradient(u1, u2, bank, tau)
    _, _, neg_masked = contrastive_gradient(u1, u2, bank, tau, m1)

    def tangent(g: torch.Tensor) -> torch.Tensor:
        return g - (g * u1).sum(1, keepdim=True) * u1

    torch.testing.assert_close(tangent(neg_masked), tangent(neg) / (1 - own)[:, None])
