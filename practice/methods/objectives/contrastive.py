"""The contrastive family (MoCo, SimCLR) of the unified-gradient view (Tao et al. 2022, unigrad.md A1, A2.1).

Features (all l2-normalised rows, d wide):

- u1 = unit(p1), u2 = unit(p2): the online outputs of the two views (B, d), ``p = f`` without a predictor; they
  always carry gradient;
- the positive target of u1 is u2^t = unit(z2) (of u2: unit(z1)), from the positive branch (``Views.z``: detached
  under stop-gradient or from the momentum encoder, online f itself under ``online``); CutMix-ed rows use
  :func:`.base.mixed_target`;
- the negatives v come from the negative branch (``Views.n``): SimCLR (``queue_size == 0``) uses the whole batch's
  both views, gathered over the ranks, ``bank = gather(cat(unit(n1), unit(n2)))`` (2 B world, d) for the queries of
  both views, which holds each query's positive and, when the negatives are the online network's (``online`` or
  ``stop-grad``), the query itself: that entry is masked (``mask_self``, SimCLR's k != i; unmasked, its logit 1 / tau
  held 6 % of the softmax for random unit features at 2,048 keys, d = 128, tau 0.2); MoCo (``queue_size > 0``)
  uses, for query u1_i, its own positive unit(z2_i) and a FIFO queue of past keys (the detached, gathered unit
  negatives of both views, enqueued after each loss).

InfoNCE, for a query u_i with positive target t_i and keys k in its bank K_i (t_i among them):

    l_i = -u_i.t_i / tau + log sum_{k in K_i} exp(u_i.k / tau) = -log softmax_{K_i}(u_i.k / tau)[t_i],

    L = 1/2 (mean_i l(u1_i; u2_i^t) + mean_i l(u2_i; u1_i^t)).

Its gradient on u1_i with the targets and keys held constant (the "first term"; unigrad.md A2.1, the official
``loss_simclr_grad_mm``):

    dl_i/du1_i = (-u2_i^t + sum_k s_ik k) / tau,   s_ik = softmax_k(u1_i.k / tau),

i.e. the unified form  -u2^t + lambda sum_v s_v v  with lambda = 1 and an overall scale 1/tau. The positive
gradient is -u2^t / tau, the negative gradient sum_k s_ik k / tau. The matrix that negative gradient sees is
F = mean_i sum_k s_ik k k^T (d, d), trace 1 for unit keys because each row of s sums to 1.

When the keys are online (SimCLR's original loss), u1_i is also a key of every other query and the positive of u2_i,
so the exact gradient has a second term, sum_q s_qi q / tau - u2_i / tau; the paper drops it (Fig. 3(a), appendix
Table 6), and ``measure`` reports how far the first term alone points from the exact gradient.

Forms: ``loss`` differentiates :func:`info_nce` (autograd flows through u, and through the targets and keys when
their branch is online: SimCLR's original loss); ``gradient`` minimises the detached surrogate <g, u> of
:func:`.base.surrogate` with g from :func:`contrastive_gradient` (targets and keys constant), whose parameter
gradients equal those of ``loss`` whenever targets and keys are detached.
"""

from __future__ import annotations

import torch

from ssltheory.practice.methods.objectives.base import (
    Objective,
    Views,
    balance_ratio,
    grad_cosine,
    mixed_target,
    surrogate,
    unit,
)

FORMS = ("loss", "gradient")


def _logits(u: torch.Tensor, pos: torch.Tensor, bank: torch.Tensor, tau: float,
            self_mask: torch.Tensor | None, add_pos: bool) -> torch.Tensor:
    """Logits u_i.k / tau (B, K), or (B, 1 + K) with column 0 the query's own positive when ``add_pos``; entries
    where ``self_mask`` (B, K) is True are -inf (weight 0 in the softmax)."""
    logits = u @ bank.transpose(0, 1) / tau
    if self_mask is not None:
        logits = logits.masked_fill(self_mask, float("-inf"))
    if add_pos:
        logits = torch.cat([(u * pos).sum(dim=-1, keepdim=True) / tau, logits], dim=1)
    return logits


def info_nce(u: torch.Tensor, pos: torch.Tensor, bank: torch.Tensor, tau: float,
             self_mask: torch.Tensor | None = None, add_pos: bool = False) -> torch.Tensor:
    """InfoNCE, mean_i [-u_i.pos_i / tau + logsumexp_k(u_i.bank_k / tau)] (0-d).

    u: (B, d) unit queries; pos: (B, d) unit positive targets; bank: (K, d) unit keys shared by all queries;
    self_mask: optional bool (B, K), True where a query must not see a key (its own feature in SimCLR, an unfilled
    queue row in MoCo); add_pos: prepend each query's own positive to its keys (MoCo: logits [u.pos, u.bank]).
    With pos_i in the bank (or ``add_pos``) this is exactly -log softmax of the positive. Gradients flow through
    whatever of u, pos and bank require them: detach pos and bank for a stop-gradient / momentum target.
    """
    logits = _logits(u, pos, bank, tau, self_mask, add_pos)
    return (torch.logsumexp(logits, dim=1) - (u * pos).sum(dim=-1) / tau).mean()


def contrastive_weights(u: torch.Tensor, pos: torch.Tensor, bank: torch.Tensor, tau: float,
                        self_mask: torch.Tensor | None = None, add_pos: bool = False) -> torch.Tensor:
    """The softmax weights s_ik = softmax_k(u_i.k / tau) (B, K), or (B, 1 + K) with column 0 the positive when
    ``add_pos``; masked entries are exactly 0. Arguments as in :func:`info_nce`; computed without gradient."""
    with torch.no_grad():
        return torch.softmax(_logits(u.detach(), pos.detach(), bank.detach(), tau, self_mask, add_pos), dim=1)


def contrastive_gradient(u: torch.Tensor, pos: torch.Tensor, bank: torch.Tensor, tau: float,
                         self_mask: torch.Tensor | None = None,
                         add_pos: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradient form (unigrad.md A2.1): g_i = (-pos_i + sum_k s_ik k) / tau, s from :func:`contrastive_weights`.

    Shapes as in :func:`info_nce`. Returns (g, positive, negative), each detached (B, d), with positive = -pos / tau,
    negative = sum_k s_ik k / tau and g = positive + negative. g_i is B times the gradient of :func:`info_nce` on
    u_i with pos and bank held constant.
    """
    u, pos, bank = u.detach(), pos.detach(), bank.detach()
    s = contrastive_weights(u, pos, bank, tau, self_mask, add_pos)
    if add_pos:
        negative = (s[:, :1] * pos + s[:, 1:] @ bank) / tau
    else:
        negative = s @ bank / tau
    positive = -pos / tau
    return positive + negative, positive, negative


def contrastive_F(u: torch.Tensor, pos: torch.Tensor, bank: torch.Tensor, tau: float,
                  self_mask: torch.Tensor | None = None, add_pos: bool = False) -> torch.Tensor:
    """The matrix the negative gradient sees, F = mean_i sum_k s_ik k k^T (d, d), detached, symmetric PSD, trace 1
    for unit keys (each row of s sums to 1). With ``add_pos`` query i's keys are its positive pos_i and the bank.
    Arguments as in :func:`info_nce`."""
    pos, bank = pos.detach(), bank.detach()
    s = contrastive_weights(u, pos, bank, tau, self_mask, add_pos)
    if add_pos:
        w0, s = s[:, 0], s[:, 1:]
        extra = (pos * w0[:, None]).transpose(0, 1) @ pos / u.shape[0]
    else:
        extra = 0.0
    w = s.mean(dim=0)  # (K,): mean_i s_ik
    return (bank * w[:, None]).transpose(0, 1) @ bank + extra


def self_masks(batch: int, keys: int, rank: int = 0,
               device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's masks of a query's own entry in the bank gather(cat(n1, n2)) (``keys`` = 2 B world rows), bool
    (B, keys) each: view 1's query i is key 2 B rank + i, view 2's is 2 B rank + B + i (rank order of the gather,
    every rank holding B rows)."""
    off = 2 * batch * rank
    if off + 2 * batch > keys:
        raise ValueError(f"a bank of {keys} keys cannot hold rank {rank}'s {2 * batch} rows")
    i = torch.arange(batch, device=device)
    m1 = torch.zeros(batch, keys, dtype=torch.bool, device=device)
    m2 = torch.zeros(batch, keys, dtype=torch.bool, device=device)
    m1[i, off + i] = True
    m2[i, off + batch + i] = True
    return m1, m2


def second_term_cosine(u1: torch.Tensor, u2: torch.Tensor, tau: float) -> float:
    """How well the first term alone follows SimCLR's exact gradient (unigrad.md's SimCLR simplification).

    u1, u2: (B, d) unit online outputs of this rank. The exact gradient is autograd's, on u1, of SimCLR's original
    symmetric loss with everything online (positives u2 / u1, bank cat(u1, u2) of this rank, each query's own entry
    masked), so it includes u1_i's roles as a key of the other queries and as the positive of u2_i. The first term is
    :func:`contrastive_gradient` of the same features held constant. Returns :func:`.base.grad_cosine` of the two
    (mean over rows of the cosine of their parts tangent to u1, what the normalisation passes on), in fp64.
    """
    with torch.enable_grad():
        a1 = u1.detach().double().requires_grad_(True)
        a2 = u2.detach().double().requires_grad_(True)
        bank = torch.cat([a1, a2])
        m1, m2 = self_masks(a1.shape[0], bank.shape[0], 0, a1.device)
        loss = 0.5 * (info_nce(a1, a2, bank, tau, m1) + info_nce(a2, a1, bank, tau, m2))
        (exact,) = torch.autograd.grad(loss, a1)
    a1, a2 = a1.detach(), a2.detach()
    first, _, _ = contrastive_gradient(a1, a2, torch.cat([a1, a2]), tau, m1)
    return grad_cosine(first, exact, a1)


class Contrastive(Objective):
    """MoCo (``queue_size > 0``) and SimCLR (``queue_size == 0``): symmetric InfoNCE, loss or gradient form.

    dim: the width d of the features (the queue's row width); tau: the temperature; form: ``loss`` or
    ``gradient`` (see the module docstring); queue_size: 0 for SimCLR's batch negatives, K > 0 for MoCo's queue of
    K keys; mask_self: SimCLR only, masks each query's own entry in the bank (set when the negative branch is the
    online network, with gradient or under stop-gradient, so that the bank holds u1_i itself; a momentum copy is
    another network's feature and stays, as in the released ``loss_simclr_grad_mm``).

    State (MoCo only, buffers so they are checkpointed): ``queue`` (K, d) keys, ``ptr`` the next row to write,
    ``filled`` how many rows hold keys (the rest are masked out). Every forward enqueues the detached, gathered
    cat(unit(n1), unit(n2)) FIFO after the loss is computed (in training and evaluation alike); the queue update
    is index arithmetic on device tensors, with no host synchronisation.

    ``rank`` (plain attribute, default 0): this process's rank, which places its rows in SimCLR's gathered bank for
    ``mask_self``; the caller sets it under several processes (the gather must put rank r's 2B rows at 2 B r).
    """

    cutmix = False
    multi_crop = False
    graph_safe = False  # the negatives' branch, and MoCo's queue of keys kept across steps

    def __init__(self, dim: int, tau: float = 0.2, form: str = "loss", queue_size: int = 0,
                 mask_self: bool = False) -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form {form!r}: expected one of {', '.join(FORMS)}")
        if not tau > 0:
            raise ValueError(f"tau {tau}: expected > 0")
        if dim < 1 or queue_size < 0:
            raise ValueError(f"dim {dim} must be >= 1 and queue_size {queue_size} >= 0")
        if mask_self and queue_size > 0:
            raise ValueError("mask_self applies to SimCLR's batch bank only (queue_size 0)")
        self.dim, self.tau, self.form = dim, float(tau), form
        self.queue_size, self.mask_self = queue_size, mask_self
        self.rank = 0
        if queue_size > 0:
            self.register_buffer("queue", torch.zeros(queue_size, dim))
            self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
            self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, tau={self.tau}, form={self.form}, queue_size={self.queue_size}, " \
               f"mask_self={self.mask_self}"

    # -- the pieces -------------------------------------------------------------------------------------------------

    @staticmethod
    def _queries(v: Views) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u1, u2, t1, t2), each (B, d): the online outputs and their positive targets unit(z2), unit(z1)."""
        return unit(v.p1), unit(v.p2), unit(mixed_target(v.z2, v.mix)), unit(mixed_target(v.z1, v.mix))

    @staticmethod
    def _keys(v: Views) -> torch.Tensor:
        """This rank's negatives cat(unit(n1), unit(n2)) (2B, d)."""
        if v.n1 is None or v.n2 is None:
            raise ValueError("the contrastive objective needs negatives (views n1, n2)")
        return torch.cat([unit(v.n1), unit(v.n2)])

    def _bank(self, v: Views, u: torch.Tensor,
              keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, bool]:
        """(bank (K, d), mask of view 1's queries, of view 2's, add_pos) for queries u (B, d)."""
        B = u.shape[0]
        if self.queue_size == 0:
            if v.world == 1:
                bank = keys
            elif keys.requires_grad:  # online negatives: a gather whose backward returns each rank its keys' grads
                from torch.distributed.nn.functional import all_gather

                bank = torch.cat(all_gather(keys))  # (equal batches per rank: the trainer splits evenly)
            else:
                bank = v.gather(keys)
            if not self.mask_self:
                return bank, None, None, False
            m1, m2 = self_masks(B, bank.shape[0], self.rank, bank.device)
            return bank, m1, m2, False
        # a copy: the enqueue below writes the buffer in place, and autograd may have saved the bank
        bank = self.queue.detach().clone().to(u.dtype)
        empty = (torch.arange(self.queue_size, device=bank.device) >= self.filled).expand(B, -1)
        return bank, empty, empty, True

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Write keys (n, d) FIFO at ``ptr`` (only the last queue_size of them when n exceeds it)."""
        Q, n = self.queue_size, keys.shape[0]
        idx = (self.ptr + torch.arange(n, device=self.queue.device)) % Q
        if n > Q:
            idx, keys = idx[n - Q:], keys[n - Q:]
        self.queue[idx] = keys.detach().to(self.queue.dtype)
        self.ptr.copy_((self.ptr + n) % Q)
        self.filled.copy_(torch.clamp(self.filled + n, max=Q))

    # -- what the step calls ----------------------------------------------------------------------------------------

    def forward(self, v: Views) -> torch.Tensor:
        """The symmetric loss (0-d) of this rank's batch; MoCo then enqueues this step's keys."""
        u1, u2, t1, t2 = self._queries(v)
        keys = self._keys(v)
        bank, m1, m2, add_pos = self._bank(v, u1, keys)
        if self.form == "loss":
            loss = 0.5 * (info_nce(u1, t1, bank, self.tau, m1, add_pos) + info_nce(u2, t2, bank, self.tau, m2, add_pos))
        else:
            g1, _, _ = contrastive_gradient(u1, t1, bank, self.tau, m1, add_pos)
            g2, _, _ = contrastive_gradient(u2, t2, bank, self.tau, m2, add_pos)
            loss = 0.5 * (surrogate(g1, u1) + surrogate(g2, u2))
        if self.queue_size > 0:
            self._enqueue(v.gather(keys.detach()))
        return loss

    @torch.no_grad()
    def measure(self, v: Views) -> dict:
        """What the theory reads off a step (v detached; the queue is read as it is now, i.e. after the step's
        enqueue when measured after forward):

        - ``method_F``: (d, d) fp32, the mean over both views of :func:`contrastive_F` (trace 1);
        - ``balance_ratio``: :func:`.base.balance_ratio` of the negative against the positive gradient, mean over
          both views;
        - ``grad_cosine``: :func:`second_term_cosine` of this rank's online u1, u2, i.e. the first term against
          SimCLR's exact all-online gradient on the batch; MoCo reports the same SimCLR batch quantity (its
          queue keys are constants, so its own loss has no second term to drop).
        """
        u1, u2, t1, t2 = self._queries(v)
        bank, m1, m2, add_pos = self._bank(v, u1, self._keys(v))
        F = 0.5 * (contrastive_F(u1, t1, bank, self.tau, m1, add_pos)
                   + contrastive_F(u2, t2, bank, self.tau, m2, add_pos))
        _, pos1, neg1 = contrastive_gradient(u1, t1, bank, self.tau, m1, add_pos)
        _, pos2, neg2 = contrastive_gradient(u2, t2, bank, self.tau, m2, add_pos)
        return {"method_F": F.float(),
                "balance_ratio": 0.5 * (balance_ratio(pos1, neg1) + balance_ratio(pos2, neg2)),
                "grad_cosine": second_term_cosine(u1, u2, self.tau)}
