"""The collapse study's data schedules (collapse.md B2): continual streams, the compute-matched data fraction and the
hybrid, against the official code's chunk arithmetic written out here on its own (``official_epoch``), not imported
from the trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_same, cli
from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.datasets import DigitsDataset, item_labels
from ssltheory.practice.data.schedule import make_schedule
from ssltheory.practice.engine.optim import make_scheduler
from ssltheory.practice.engine.rundir import RunDir, read_metrics
from ssltheory.practice.engine.train import train
from ssltheory.theory.checks import ConfigError

N = 1297  # digits' training items


def official_epoch(perm, n, batch, epochs, n_rounds, chunk_size, strategy, seed, epoch, repeat_batch=1):
    """``get_incremental_dataloader`` of the official ``main_simsiam.py`` (collapse.md B2): the items epoch
    ``epoch`` sees, in order (``--steps_per_epoch`` unset)."""
    epochs_per_round = epochs // n_rounds
    chunk_i = (epoch % epochs_per_round) // chunk_size
    rng = np.random.RandomState(seed=epoch + seed)
    if strategy == "accumulate":
        curr_idx = perm[:n * (chunk_i + 1) * chunk_size // epochs_per_round]
    elif strategy == "current":
        curr_idx = perm[n * chunk_i * chunk_size // epochs_per_round:n * (chunk_i + 1) * chunk_size // epochs_per_round]
    else:  # last
        curr_idx = perm[-n * chunk_size // epochs_per_round:]
    num_batches = n // batch
    idx_lst, batches_so_far = [], 0
    while batches_so_far < num_batches:
        next_idxs = rng.permutation(curr_idx)[:len(curr_idx) - (len(curr_idx) % batch)]
        if repeat_batch > 1:
            for i in range(len(next_idxs) // batch):
                idx_lst.append(np.tile(next_idxs[i * batch:(i + 1) * batch], repeat_batch))
            batches_so_far += repeat_batch * len(next_idxs) // batch
        else:
            idx_lst.append(next_idxs)
            batches_so_far += len(next_idxs) // batch
    return np.concatenate(idx_lst)[:batch * num_batches]


def stream(**kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "digits", "batch_size": 64, "seed": 3, **kw})


@pytest.mark.parametrize("strategy, epochs, n_rounds, n_chunks, repeat, batch", [
    ("current", 10, 1, 0, 1, 64),      # the official default: a new 1/epochs of the stream each epoch
    ("current", 12, 2, 3, 1, 32),      # two rounds of 3 chunks of 2 epochs
    ("accumulate", 8, 1, 4, 1, 64),
    ("accumulate", 6, 3, 0, 2, 16),    # --repeat-batch 2
    ("last", 10, 1, 0, 1, 64),         # the last 1/10
    ("last", 8, 2, 2, 3, 64),
])
def test_each_strategy_sees_the_official_indices(strategy, epochs, n_rounds, n_chunks, repeat, batch):
    cfg = stream(data_schedule=strategy, epochs=epochs, n_rounds=n_rounds, n_chunks=n_chunks, repeat_batch=repeat,
                 batch_size=batch)
    schedule = make_schedule(cfg, N)
    perm = np.random.RandomState(cfg.seed).permutation(N)  # --stream-order random: the seed's permutation
    chunk_size = (epochs // n_rounds) // (n_chunks or epochs // n_rounds)
    for e in range(epochs):
        want = official_epoch(perm, N, batch, epochs, n_rounds, chunk_size, strategy, cfg.seed, e, repeat)
        assert np.array_equal(schedule.order(e).numpy(), want), (strategy, e)
        assert schedule.steps_in_epoch(e) == N // batch == len(want) // batch  # compute-matched
    if repeat > 1:  # each batch r times in a row
        b = schedule.order(0).view(-1, batch)
        assert all(torch.equal(b[i], b[i - i % repeat]) for i in range(len(b)))


def test_every_item_of_the_stream_is_seen_and_current_never_revisits_a_chunk():
    """12 epochs, 2 rounds of 3 chunks of 2 epochs (E = 6, c = 2)."""
    for strategy in ("current", "accumulate"):
        schedule = make_schedule(stream(data_schedule=strategy, epochs=12, n_rounds=2, n_chunks=3), N)
        for r in range(2):  # each round sees the whole stream
            seen = set().union(*(schedule.order(e).tolist() for e in range(6 * r, 6 * r + 6)))
            assert seen == set(range(N)), strategy
    perm = np.random.RandomState(3).permutation(N)
    current = make_schedule(stream(data_schedule="current", epochs=12, n_rounds=2, n_chunks=3), N)
    seen = [set(current.order(e).tolist()) for e in range(12)]
    for r in range(2):
        for i in range(3):  # chunk i of round r: epochs 6r + 2i, 6r + 2i + 1 see all of it and nothing else
            assert seen[6 * r + 2 * i] | seen[6 * r + 2 * i + 1] == set(perm[N * i * 2 // 6:N * (i + 1) * 2 // 6])
        for a in range(6 * r, 6 * r + 6):
            for b in range(a + 1, 6 * r + 6):
                assert (a % 6) // 2 == (b % 6) // 2 or not seen[a] & seen[b], (a, b)  # left behind, never back
    assert seen[0] | seen[1] == seen[6] | seen[7]  # round 2 replays the stream from its start


def test_data_fraction_epochs_have_full_length_and_only_the_last_part(tmp_path):
    perm = np.random.RandomState(3).permutation(N)
    for p, last in ((0.05, 65), (0.1, 130), (0.3, 390), (1.0, N)):
        schedule = make_schedule(stream(data_fraction=p, epochs=3) if p < 1 else stream(data_schedule="last",
                                                                                     epochs=1), N)
        assert schedule.name == "last" and schedule.last == last
        for e in range(3 if p < 1 else 1):
            order = schedule.order(e)
            assert len(order) == (N // 64) * 64 and schedule.steps_in_epoch(e) == N // 64  # full length
            part = set(perm[N - last:].tolist())  # the last P of the permutation: nothing else, and all of it
            assert set(order.tolist()) == part if p < 1 else set(order.tolist()) < part  # (one pass drops 17)
    assert make_schedule(stream(data_fraction=0.3, epochs=1), 1000).last == 300  # 0.3 exactly, not 300.00000000004
    # --data-fraction P is the official --strategy last with chunk_size / epochs = P (at 100 epochs: chunk_size 5)
    frac, last = make_schedule(stream(data_fraction=0.05, epochs=100), N), make_schedule(
        stream(data_schedule="last", epochs=100, n_chunks=20), N)
    for e in (0, 57):
        want = official_epoch(perm, N, 64, 100, 1, 5, "last", 3, e)
        assert np.array_equal(frac.order(e).numpy(), want) and np.array_equal(last.order(e).numpy(), want)


def test_class_incremental_and_file_orders(tmp_path):
    labels = item_labels(DigitsDataset("train"))
    schedule = make_schedule(stream(data_schedule="current", stream_order="class-incremental", epochs=10), N,
                             labels=lambda: labels)
    perm = schedule.perm
    assert sorted(perm.tolist()) == list(range(N)) and (np.diff(labels[perm]) >= 0).all()  # class by class
    within = np.random.RandomState(3).permutation(N)
    assert np.array_equal(perm[labels[perm] == 4], within[labels[within] == 4])  # each class in the seed's order
    assert np.bincount(labels[schedule.order(0).numpy()]).argmax() == 0  # the first chunk is class 0's
    path = tmp_path / "order.npy"
    np.save(path, perm[::-1].copy())
    cfg = stream(data_schedule="accumulate", stream_order=str(path), epochs=5)
    for e in range(5):
        want = official_epoch(perm[::-1], N, 64, 5, 1, 1, "accumulate", 3, e)
        assert np.array_equal(make_schedule(cfg, N).order(e).numpy(), want)


def lr_trace(cfg: TrainConfig, steps: int) -> list[list[float]]:
    """The lr of the online and predictor groups at each of ``steps`` steps of ``cfg``'s scheduler."""
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "name": "online"},
              {"params": [torch.zeros(1, requires_grad=True)], "name": "predictor"}]
    opt = torch.optim.SGD(groups, lr=cfg.lr)
    sched = make_scheduler(cfg, opt, make_schedule(cfg, N))
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return lrs


def test_chunk_warmup_freezes_the_encoder_lr_at_every_epoch_but_the_first_as_the_official_code():
    """The official ``train``: ``if n_warmup_steps > 0 and epoch != 0`` the encoder's lr is 0 for the epoch's first
    n_warmup_steps steps, per epoch, whatever the chunk; chunks of 2 epochs (20 steps each) are frozen at the start
    of each of their epochs (it was each chunk's start only: 40-42)."""
    cfg = stream(data_schedule="current", epochs=4, n_chunks=2, chunk_warmup_steps=3, lr_schedule="cosine")
    lrs = lr_trace(cfg, 4 * 20)
    frozen = [s for s, (enc, _) in enumerate(lrs) if enc == 0]
    assert frozen == [20, 21, 22, 40, 41, 42, 60, 61, 62]  # epochs 1, 2, 3; not epoch 0
    assert all(pred > 0 for _, pred in lrs) and lrs[23][0] == lrs[23][1] > 0


def test_the_lr_moves_every_step_or_every_epoch():
    """``--lr-schedule-unit epoch``: the official adjust_learning_rate, set at each epoch's start, lr(e) = lr (1 +
    cos(pi e / E)) / 2, written out here; with --fix-pred-lr the predictor keeps the peak. ``step`` (the default,
    UniGrad's): the cosine of the global step."""
    base = dict(data_schedule="current", epochs=4, lr_schedule="cosine", lr=0.05, fix_pred_lr=True,
                predictor="mlp")
    epoch = lr_trace(stream(**base, lr_schedule_unit="epoch"), 4 * 20)
    official = [0.05 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(4)]
    assert [enc for enc, _ in epoch] == pytest.approx([official[s // 20] for s in range(80)], abs=1e-15)
    assert all(pred == pytest.approx(0.05) for _, pred in epoch)
    step = lr_trace(stream(**base), 4 * 20)
    assert [enc for enc, _ in step] == pytest.approx([0.05 * 0.5 * (1 + np.cos(np.pi * s / 80)) for s in range(80)])
    assert step[0] == epoch[0] and step[1][0] < epoch[1][0]  # the same start; step decays within the epoch
    assert TrainConfig(dataset="digits").lr_schedule_unit == "step"  # default unchanged: recordings stay the same


TINY = dict(dataset="digits", batch_size=128, measure_every=5, probe_size=64, proj_hidden=32, proj_dim=16, seed=1,
            epochs=4, checkpoint_every=7, data_path="device", lr_schedule="cosine")


class Killed(Exception):
    pass


def killed_at(step):
    def kill(p):
        if p.step == step:
            raise Killed
    return kill


def test_a_hybrid_killed_across_the_switch_and_a_stream_resumed_as_iid_write_the_same_metrics(tmp_path):
    """Continual (current, a chunk an epoch, encoder frozen 2 steps a chunk) until epoch 2, then IID: 10 steps an
    epoch, switch at step 20. A hybrid killed at step 19 (checkpoint 14) resumes across the switch; a continual run
    killed at its step-20 checkpoint resumed with --data-schedule iid is the hybrid too; starts record the switch."""
    hybrid = TrainConfig(**TINY, data_schedule="current", chunk_warmup_steps=2, hybrid_epoch=2)
    train(hybrid, tmp_path / "whole")
    whole = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    lr = {r["step"]: r["lr"] for r in whole if "lr" in r}
    assert sorted(lr) == list(range(5, 41, 5)) and lr[40] == pytest.approx(0.0, abs=1e-12)  # the cosine's end
    assert lr[10] == 0 and lr[20] > 0 and lr[30] > 0  # frozen at chunk 1's start (step 10); iid has no chunks
    starts = json.loads((tmp_path / "whole" / "config.json").read_text())["run"]["starts"]
    assert starts == [{"step": 0, "world_size": 1, "data_schedule": "current"},
                      {"step": 20, "data_schedule": "iid", "switch": "--hybrid-epoch 2"}]

    with pytest.raises(Killed):
        train(hybrid, tmp_path / "cut", on_progress=killed_at(19))
    assert RunDir(tmp_path / "cut").load_checkpoint()["step"] == 14
    train(hybrid, tmp_path / "cut", resume=True)
    assert_same(read_metrics(tmp_path / "cut" / "metrics.jsonl"), whole, "hybrid resumed")
    starts = json.loads((tmp_path / "cut" / "config.json").read_text())["run"]["starts"]
    assert starts[1:] == [{"step": 14, "world_size": 1, "data_schedule": "current"},
                          {"step": 20, "data_schedule": "iid", "switch": "--hybrid-epoch 2"}]

    continual = hybrid.replace(hybrid_epoch=0)
    with pytest.raises(Killed):
        train(continual, tmp_path / "stream", on_progress=killed_at(20))
    iid = continual.replace(data_schedule="iid", chunk_warmup_steps=0)
    train(iid, tmp_path / "stream", resume=True)
    resumed = read_metrics(tmp_path / "stream" / "metrics.jsonl")
    at_switch = next(r for r in resumed if r["step"] == 20 and "lr" in r)
    assert at_switch["lr"] == 0  # written before the change: the continual run's lr for step 20 (chunk 2, frozen) ...
    at_switch["lr"] = lr[20]  # ... and the only difference: the resumed run trains step 20 unfrozen, as the hybrid
    assert_same(resumed, whole, "stream resumed as iid")
    doc = json.loads((tmp_path / "stream" / "config.json").read_text())
    assert doc["config"]["data_schedule"] == "iid" and doc["run"]["starts"][1] == {
        "step": 20, "world_size": 1, "changed": {"data_schedule": ["current", "iid"], "chunk_warmup_steps": [2, 0]}}


def one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.parametrize("flags, needle", [
    (["--data-fraction", "0"], "--data-fraction"),
    (["--data-fraction", "1.5"], "--data-fraction"),
    (["--data-schedule", "current", "--epochs", "10", "--n-rounds", "3"], "--n-rounds 3 does not divide --epochs 10"),
    (["--data-schedule", "current", "--epochs", "10", "--n-chunks", "4"], "--n-chunks 4 does not divide the 10"),
    (["--data-schedule", "accumulate", "--epochs", "12", "--n-rounds", "2", "--n-chunks", "4"],
     "--n-chunks 4 does not divide the 6 epochs of a round"),
    (["--data-schedule", "current", "--stream-order", "nowhere.npy"], "--stream-order nowhere.npy is not a file"),
    (["--data-schedule", "current", "--data-fraction", "0.5"], "--data-fraction 0.5 with --data-schedule current"),
    (["--data-schedule", "accumulate", "--data-fraction", "0.5"], "--data-fraction 0.5 with --data-schedule accum"),
    (["--data-schedule", "last", "--data-fraction", "0.5", "--n-chunks", "2"], "--data-fraction 0.5 with --n-chunks"),
    (["--data-schedule", "current", "--epochs", "10", "--hybrid-epoch", "10"], "--hybrid-epoch 10 is out of range"),
    (["--epochs", "10", "--hybrid-epoch", "4"], "--hybrid-epoch 4 with --data-schedule iid is not accepted"),
    (["--n-chunks", "2"], "--n-chunks 2 with --data-schedule iid"),
])
def test_bad_stream_settings_are_one_line(flags, needle, tmp_path):
    line = one_line(cli("train", "digits", *flags, "--out", str(tmp_path / "run")))
    assert needle in line, line
    assert not (tmp_path / "run").exists()


def test_a_bad_permutation_file_or_chunk_is_one_line_before_the_run_starts(tmp_path):
    cases = {"short.npy": np.arange(N - 1), "repeats.npy": np.r_[np.arange(N - 1), 0],
             "floats.npy": np.arange(N, dtype=float)}
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
        line = one_line(cli("train", "digits", "--data-schedule", "current", "--stream-order", str(tmp_path / name),
                            "--out", str(tmp_path / "run")))
        assert f"--stream-order {tmp_path / name}" in line and "expected a permutation of range(1297)" in line
    (tmp_path / "junk.npy").write_text("not numpy")
    line = one_line(cli("train", "digits", "--data-schedule", "current", "--stream-order", str(tmp_path / "junk.npy"),
                        "--out", str(tmp_path / "run")))
    assert "cannot be read" in line
    line = one_line(cli("train", "digits", "--data-fraction", "0.01", "--out", str(tmp_path / "run")))
    assert line.endswith("--data-fraction 0.01 leaves 13 of the 1297 training items, fewer than --batch-size 128: "
                         "expected --data-fraction 0.099 or more, or --batch-size 13 or less"), line
    assert "--n-chunks" not in line and "--data-schedule" not in line  # only what was given (issue 22)
    line = one_line(cli("train", "digits", "--data-schedule", "current", "--epochs", "20", "--out",
                        str(tmp_path / "run")))
    assert "--data-schedule current cut into one chunk per epoch of the 20 epochs of a round (--epochs 20) has " \
           "chunks of 64 items, fewer than --batch-size 128" in line
    line = one_line(cli("train", "digits", "--data-schedule", "last", "--n-chunks", "20", "--epochs", "20", "--out",
                        str(tmp_path / "run")))
    assert "cut into --n-chunks 20 has chunks of 65 items" in line and "expected fewer --n-chunks" in line
    line = one_line(cli("train", "digits", "--data-schedule", "current", "--epochs", "4", "--n-chunks", "2",
                        "--chunk-warmup-steps", "10", "--out", str(tmp_path / "run")))
    assert "freezes the encoder for a whole epoch of 10 steps" in line
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="needs the items' labels"):
        make_schedule(stream(data_schedule="current", stream_order="class-incremental", epochs=4), N)
    with pytest.raises(ConfigError, match="2 are unlabelled"):
        make_schedule(stream(data_schedule="current", stream_order="class-incremental", epochs=4), 4,
                      labels=lambda: np.array([0, -1, 1, -1]))
    with pytest.raises(ConfigError, match="DATASET synthetic is not accepted"):
        TrainConfig(dataset="synthetic", data_fraction=0.5)


def test_a_data_fraction_run_records_the_schedule_it_runs(tmp_path):
    """``--data-fraction P`` trains the stream's last part (strategy last): config.json says "last" (it said
    "iid"), and a config.json of an earlier version that says "iid" loads as the same settings."""
    from ssltheory.experiments.run import command_line

    cfg = TrainConfig(dataset="digits", data_fraction=0.2)
    assert cfg.data_schedule == cfg.resolved_data_schedule == "last"
    cfg.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())["config"]
    assert saved["data_schedule"] == "last" and saved["data_fraction"] == 0.2
    assert TrainConfig.from_dict({**saved, "data_schedule": "iid"}) == cfg == TrainConfig.load(tmp_path / "config.json")
    assert "--data-schedule last --data-fraction 0.2" in command_line(cfg, tmp_path)
    assert TrainConfig(dataset="digits").data_schedule == "iid"  # the whole set stays iid
