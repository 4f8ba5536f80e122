"""Evaluation of frozen features: the kNN monitor and the linear probe.

- kNN (Wu et al. 2018, as in the SimSiam/solo-learn monitors): cosine similarity of l2-normalised features,
  top-k neighbours from the bank, each voting exp(sim / T) for its class; k = 200, T = 0.1.
- Linear probe (the official DirectPred protocol): standardised frozen backbone features, one nn.Linear trained
  with Adam (lr 3e-4, weight decay 1e-3, batch 128, 50 epochs). We report the **last** epoch's test accuracy (the
  official code reports the best over epochs, selected on the test set, which is optimistic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ssltheory.practice.engine.distributed import Dist, all_gather_rows, all_reduce_sum
from ssltheory.practice.settings import Setting, declare


def held_items(ds: Dataset, positions: list[int]) -> tuple[Dataset, torch.Tensor] | None:
    """(the dataset that holds them, their indices there) when items ``positions`` of ``ds`` (a dataset or a Subset
    of one) can be taken as one batch: images held whole with a deterministic transform
    (:class:`~..data.datasets.TensorImages`'s ``take``). None otherwise (files read one at a time)."""
    base, index = ds, None
    while isinstance(base, Subset):
        index = [base.indices[i] for i in (positions if index is None else index)]
        base = base.dataset
    if not getattr(base, "deterministic", False) or not hasattr(base, "take"):
        return None
    return base, torch.as_tensor(positions if index is None else index, dtype=torch.long)


@torch.no_grad()
def extract(model: nn.Module, ds: Dataset, device: torch.device, batch_size: int = 256, workers: int = 0,
            shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features (N, d) and labels (N,) of a dataset in eval mode; restores the model's mode.

    A dataset held in memory is read ``batch_size`` items at a time with no per-image step (:func:`held_items`);
    any other through a DataLoader. ``shard`` (rank, world): only items rank, rank + world, ... (a DDP rank's share;
    gather them to get all)."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    rank, world = shard
    positions = list(range(rank, len(ds), world))
    held = held_items(ds, positions)
    if held is not None:
        base, index = held
        batches = (base.take(index[i:i + batch_size]) for i in range(0, len(index), batch_size))
    else:
        # its own generator: iterating a DataLoader draws a seed from the global RNG otherwise, and a measurement
        # would then change the training run it measures
        batches = iter(DataLoader(ds if world == 1 else Subset(ds, positions), batch_size=batch_size, shuffle=False,
                                  num_workers=workers, generator=torch.Generator()))
    for x, y in batches:
        feats.append(model(x.to(device)).float().cpu())
        labels.append(torch.as_tensor(y))
    model.train(was_training)
    if not feats:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(feats), torch.cat(labels)


def knn_correct(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor,
                k: int = 200, t: float = 0.1, num_classes: int | None = None, chunk: int = 1024) -> int:
    """Number of queries the weighted kNN classifies correctly (see :func:`knn_accuracy`)."""
    num_classes = num_classes or int(max(bank_labels.max(), query_labels.max())) + 1
    bank_n = F.normalize(bank.float(), dim=1)
    k = min(k, bank_n.shape[0])
    correct = 0
    for i in range(0, query.shape[0], chunk):
        q = F.normalize(query[i:i + chunk].float(), dim=1)
        sim, idx = (q @ bank_n.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], num_classes).scatter_add_(1, bank_labels[idx], (sim / t).exp())
        correct += int((votes.argmax(1) == query_labels[i:i + chunk]).sum())
    return correct


def knn_monitor(net: nn.Module, bank_ds: Dataset, query_ds: Dataset, device: torch.device, d: Dist, k: int,
                t: float, num_classes: int) -> float:
    """kNN accuracy of backbone ``net`` (bank: ``bank_ds``, queries: ``query_ds``). Under DDP the bank is extracted
    in shards and gathered, each rank classifies its shard of the queries and the correct counts are summed."""
    on = device if device.type == "cuda" else torch.device("cpu")  # NCCL gathers device tensors, gloo CPU ones
    bank, bank_y = extract(net, bank_ds, device, shard=(d.rank, d.world))
    bank, bank_y = all_gather_rows(bank.to(on), d).cpu(), all_gather_rows(bank_y.to(on), d).cpu()
    query, query_y = extract(net, query_ds, device, shard=(d.rank, d.world))
    counts = torch.tensor([knn_correct(bank, bank_y, query, query_y, k=k, t=t, num_classes=num_classes)
                           if len(query) else 0, len(query)], dtype=torch.float64, device=on)
    counts = all_reduce_sum(counts, d)
    return float(counts[0] / counts[1])


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor,
                 k: int = 200, t: float = 0.1, num_classes: int | None = None, chunk: int = 1024) -> float:
    """Weighted kNN top-1 accuracy in [0, 1]; bank (N, d), query (M, d), labels as int64."""
    return knn_correct(bank, bank_labels, query, query_labels, k, t, num_classes, chunk) / query.shape[0]


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                 epochs: int = 50, lr: float = 3e-4, weight_decay: float = 1e-3, batch_size: int = 128,
                 seed: int = 0, on_epoch=None) -> dict:
    """Train a linear classifier on standardised features; returns {'test_acc': last epoch's, 'curve': [...]}.

    ``on_epoch(epoch, test_acc)`` is called after each epoch (for a progress bar).
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    tx, vx = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    g = torch.Generator().manual_seed(seed)
    clf = nn.Linear(tx.shape[1], num_classes)
    with torch.no_grad():
        clf.weight.normal_(0, 0.01, generator=g)
        clf.bias.zero_()
    opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    curve = []
    for epoch in range(epochs):
        perm = torch.randperm(tx.shape[0], generator=g)
        for i in range(0, tx.shape[0], batch_size):
            b = perm[i:i + batch_size]
            loss = F.cross_entropy(clf(tx[b]), train_y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = float((clf(vx).argmax(1) == test_y).float().mean())
        curve.append(acc)
        if on_epoch is not None:
            on_epoch(epoch, acc)
    return {"test_acc": curve[-1], "curve": curve, "best_test_acc_optimistic": max(curve)}


def probe_run(run_dir, device: torch.device, *, epochs: int = 50, lr: float = 3e-4, weight_decay: float = 1e-3,
              batch_size: int = 128, on_epoch=None, data_dir: str | None = None) -> dict:
    """The linear probe (:func:`linear_probe`) on a training run's last checkpoint: its online backbone's frozen
    features of the dataset's train split (eval transform) train the classifier, the test split scores it
    (``data_dir`` replaces the run's own ``--data-dir``: a run moved to another machine). Returns
    :func:`linear_probe`'s dict with the checkpoint's ``step``; a one-line :class:`ConfigError` for a folder without a
    checkpoint or a dataset without labels."""
    from ssltheory.practice.engine.rundir import load_run
    from ssltheory.theory.checks import ConfigError

    cfg, data, model, step = load_run(run_dir, device, data_dir)
    if data.num_classes < 2:
        from ssltheory.practice.data.registry import DATASETS

        labelled = [n for n, spec in DATASETS.items() if not spec.linear]
        raise ConfigError(f"RUN_DIR {run_dir} was trained on {cfg.dataset}, which has no labels: expected a run on "
                          f"{', '.join(labelled)}")
    train_x, train_y = extract(model.online.backbone, data.train_eval, device)
    test_x, test_y = extract(model.online.backbone, data.test_eval, device)
    res = linear_probe(train_x, train_y, test_x, test_y, epochs=epochs, lr=lr, weight_decay=weight_decay,
                       batch_size=batch_size, on_epoch=on_epoch)
    res.update(step=step, note="test_acc is the last probe epoch's accuracy (not the best over epochs)")
    return res


def pixel_baselines(cfg, device: torch.device | None = None, probe: bool = False) -> dict:
    """The raw-pixel baselines of ``cfg``'s dataset, measured as a run's features are: the flattened eval-transform
    images (normalised as the network sees them; ``(N, C * H * W)``) of the train split as the bank, the test split
    as queries. Returns ``{"raw_pixels_knn": top-1 in [0, 1]}`` (``cfg.knn_k``, ``cfg.knn_t``) and, with ``probe``,
    ``"raw_pixels_probe"`` (:func:`linear_probe`'s last-epoch test accuracy)."""
    from ssltheory.practice.data.datasets import build_data

    data = build_data(cfg)
    flat = nn.Flatten()
    device = device or torch.device("cpu")
    bank, bank_y = extract(flat, data.train_eval, device)
    query, query_y = extract(flat, data.test_eval, device)
    out = {"raw_pixels_knn": knn_accuracy(bank, bank_y, query, query_y, cfg.knn_k, cfg.knn_t, data.num_classes)}
    if probe:
        out["raw_pixels_probe"] = linear_probe(bank, bank_y, query, query_y)["test_acc"]
    return out


declare(
    Setting("knn_k", 200, "kNN neighbours", "Measurement", int, paper="200", low=1, high=10**6),
    Setting("knn_t", 0.1, "kNN temperature", "Measurement", float, paper="0.1", low=0.0, low_open=True, high=100.0),
    Setting("knn_every", 1, "epochs between kNN evaluations [0: only at start and end]", "Measurement", int, low=0),
)
