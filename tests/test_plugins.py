"""The plug-in points: a method and a data schedule are added in a few lines each, without touching the loop."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import assert_same
from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.schedule import SCHEDULES, Schedule, epoch_order
from ssltheory.practice.engine.rundir import RunDir, read_metrics
from ssltheory.practice.engine.train import train
from ssltheory.practice.methods.registry import METHODS, Method
from ssltheory.theory.checks import ConfigError

TINY = dict(dataset="digits", batch_size=64, measure_every=4, probe_size=64, proj_hidden=64, proj_dim=32, seed=1)


class SquaredDistance(nn.Module):
    """A toy objective with state: mean squared distance of each prediction to the other view's target, and a
    count of the batches it has seen (a buffer, so it is checkpointed with the run)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def forward(self, v):
        self.seen += 1
        return (v.p1 - v.z2).pow(2).sum(1).mean() + (v.p2 - v.z1).pow(2).sum(1).mean()


class FirstHalf(Schedule):
    """A toy schedule: every epoch sees only the first half of the items, reshuffled."""

    def order(self, epoch):
        return epoch_order(self.n // 2, self.seed, epoch)


class Growing(Schedule):
    """A toy schedule of epochs of different lengths: epoch e sees the first (e + 1) / 4 of the items."""

    def order(self, epoch):
        return epoch_order(min(self.n, (epoch + 1) * self.n // 4), self.seed, epoch)


@pytest.fixture
def toy_method(monkeypatch):
    monkeypatch.setitem(METHODS, "toy", Method("toy", "stop-gradient target, no predictor, squared distance",
                                               target=lambda cfg: "stop-grad", objective=lambda cfg: SquaredDistance(),
                                               predictor=False))


@pytest.fixture
def toy_schedules(monkeypatch):
    monkeypatch.setitem(SCHEDULES, "first-half", lambda cfg, n: FirstHalf(n, cfg.batch_size, cfg.seed))
    monkeypatch.setitem(SCHEDULES, "growing", lambda cfg, n: Growing(n, cfg.batch_size, cfg.seed))


def test_a_method_is_one_registry_entry(toy_method, tmp_path):
    train(TrainConfig(**TINY, method="toy", epochs=1), tmp_path)
    state = RunDir(tmp_path).load_checkpoint()
    assert "target" not in state["modules"]  # stop-gradient: no network of its own
    assert int(state["modules"]["objective"]["seen"]) == 1297 // 64  # its state is checkpointed
    assert [g["name"] for g in state["optimizer"]["param_groups"]] == ["online"]  # no predictor to train
    meas = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "probe_auc" in r]
    assert meas and not any("p_sym" in r or "asymmetry" in r for r in meas)  # W_p = I: nothing measured
    assert json.loads((tmp_path / "config.json").read_text())["config"]["method"] == "toy"
    assert (tmp_path / "dynamics.png").exists() and (tmp_path / "summary.json").exists()  # the library's train()
    # writes the same folder as the command
    with pytest.raises(ConfigError, match="--no-stop-grad with --method toy"):
        TrainConfig(**TINY, method="toy", stop_grad=False)
    with pytest.raises(ConfigError, match="--predictor directpred with --method toy --form loss is not accepted"):
        TrainConfig(**TINY, method="toy", predictor="directpred")


def test_a_schedule_is_one_registry_entry(toy_schedules, tmp_path, monkeypatch):
    seen: list[int] = []
    real = FirstHalf.order
    monkeypatch.setattr(FirstHalf, "order", lambda self, e: (seen.extend(real(self, e).tolist()), real(self, e))[1])
    train(TrainConfig(**TINY, data_schedule="first-half", epochs=2), tmp_path)
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert recs[-1]["step"] == 2 * (1297 // 2 // 64)  # 10 steps an epoch, not 20
    assert [r["epoch"] for r in recs if "knn_acc" in r] == [0, 1.0, 2.0]
    assert seen and max(seen) < 1297 // 2


def test_epochs_of_different_lengths_drive_the_lr_schedule_and_resume(toy_schedules, tmp_path):
    """Epoch lengths 5, 10, 15 steps: the cosine lr reaches 0 at the last step, kNN runs at each epoch's end, and a
    run killed mid-epoch resumes to the same metrics."""
    cfg = TrainConfig(**TINY, data_schedule="growing", epochs=3, lr_schedule="cosine", checkpoint_every=7,
                      data_path="device")
    train(cfg, tmp_path / "whole")
    whole = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    sched = SCHEDULES["growing"](cfg, 1297)
    assert [sched.steps_in_epoch(e) for e in range(3)] == [5, 10, 15] and sched.locate(17) == (2, 2)
    assert [r["step"] for r in whole if "knn_acc" in r] == [0, 5, 15, 30]
    lrs = [r["lr"] for r in whole if "lr" in r]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and lrs[0] > 0.9 * cfg.lr

    class Killed(Exception):
        pass

    def kill(p):
        if p.step == 12:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tmp_path / "cut", on_progress=kill)
    assert RunDir(tmp_path / "cut").load_checkpoint()["step"] == 7
    train(cfg, tmp_path / "cut", resume=True)
    cut = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    assert_same(cut, whole, "resumed")


def test_an_unknown_schedule_or_method_is_one_line():
    with pytest.raises(ConfigError, match="--data-schedule 'weekly' is not known: expected one of iid"):
        TrainConfig(dataset="digits", data_schedule="weekly")
    with pytest.raises(ConfigError, match="--method 'toy' is not known"):
        TrainConfig(dataset="digits", method="toy")


class ScaledDistance(SquaredDistance):
    """The toy objective with a weight of its own and a state it keeps outside the graph (not capturable)."""

    graph_safe = False

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, v):
        return self.weight * super().forward(v)


@pytest.fixture
def method_with_settings():
    """A method with two settings of its own (help, default, bounds), a cross-check and its own graph-safety flag,
    registered the way a user would: no edit of config.py, step.py or any CLI module."""
    from ssltheory.practice.methods.registry import register
    from ssltheory.practice.settings import SETTINGS, Setting, forget

    def check(cfg):
        if cfg.toy_weight > 1 and cfg.toy_warmup == 0:
            raise ConfigError(f"--toy-weight {cfg.toy_weight:g} needs --toy-warmup > 0: expected a warm-up for a "
                              "weight above 1")

    before = dict(METHODS)
    register(Method("toy2", "squared distance, weighted", target=lambda cfg: "stop-grad",
                    objective=lambda cfg: ScaledDistance(cfg.toy_weight), predictor=False, check=check, settings=(
                        Setting("toy_weight", 0.5, "weight of the squared distance", "Method", float, paper="0.5",
                                low=0.0, low_open=True, high=10.0, only=lambda cfg: cfg.method == "toy2",
                                only_for="--method toy2"),
                        Setting("toy_warmup", 0, "warm-up steps of the weight", "Method", int, low=0, high=1000))))
    yield
    METHODS.clear()
    METHODS.update(before)
    forget("toy_weight", "toy_warmup")
    assert "toy_weight" not in SETTINGS


def test_a_method_with_settings_of_its_own_is_one_registry_entry(method_with_settings, tmp_path):
    """Its settings are flags with help in its own --help panel, checked by their bounds and by its own rule, refused
    with another method, saved in config.json; its graph-safety flag decides --cuda-graph; it trains."""
    from conftest import cli

    cfg = TrainConfig(**TINY, method="toy2", toy_weight=2.0, toy_warmup=5, epochs=1)
    assert cfg.toy_weight == 2.0 and not cfg.resolved_cuda_graph("cuda", 1)  # its objective: not capturable
    with pytest.raises(ConfigError, match="--toy-weight 2 needs --toy-warmup > 0"):
        TrainConfig(**TINY, method="toy2", toy_weight=2.0)
    with pytest.raises(ConfigError, match=r"--toy-weight 20 is out of range: expected a number in \(0, 10\]"):
        TrainConfig(**TINY, method="toy2", toy_weight=20.0)
    with pytest.raises(ConfigError, match="--toy-weight 0.7 is only for --method toy2"):
        TrainConfig(**TINY, method="byol", toy_weight=0.7)
    with pytest.raises(ConfigError, match="--cuda-graph on with --method toy2"):
        TrainConfig(**TINY, method="toy2", cuda_graph="on")
    help_text = cli("train", "--help").stdout
    assert "Method: toy2" in help_text and "--toy-weight" in help_text and "weight of the squared distance" in help_text
    assert "[paper: 0.5]" in help_text
    r = cli("train", "digits", "--method", "toy2", "--toy-weight", "0.25", "--batch-size", "64", "--max-steps", "3",
            "--measure-every", "3", "--probe-size", "64", "--proj-hidden", "32", "--proj-dim", "16", "--knn-every",
            "0", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["method"] == "toy2" and saved["toy_weight"] == 0.25 and saved["toy_warmup"] == 0
    bad = cli("train", "digits", "--method", "toy2", "--toy-weight", "abc", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--toy-weight" in bad.stderr and "abc" in bad.stderr
