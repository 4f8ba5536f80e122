"""The fast path's pieces that run anywhere: the live measurement's two halves, the CUDA-graph and compile settings,
the captured step (on CUDA only)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.distributed import Dist
from ssltheory.practice.engine.step import build_model, optimizer_step
from ssltheory.practice.measure.live import LiveMeasurer
from ssltheory.practice.methods.objectives import Views
from ssltheory.theory.checks import ConfigError


def _model_and_probe():
    cfg = TrainConfig(dataset="digits", predictor="directpred", batch_size=32)
    model = build_model(cfg, 1, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    probe = TensorDataset(torch.rand(40, 1, 8, 8, generator=g), torch.zeros(40, dtype=torch.long))
    return cfg, model, probe


def test_background_measurements_equal_inline_ones_in_step_order():
    """The record computed in the worker thread (on one core) is the inline one, and records come back in submission
    order, with the model's state at submission (a later change of W_p does not leak into an earlier record)."""
    cfg, model, probe = _model_and_probe()
    f1 = torch.randn(32, cfg.proj_dim, generator=torch.Generator().manual_seed(1))
    loss = torch.tensor(0.5, dtype=torch.float64)
    inline = LiveMeasurer(probe, torch.device("cpu"), Dist(), background=False)
    background = LiveMeasurer(probe, torch.device("cpu"), Dist(), background=True)
    try:
        for step in (1, 2):
            for live in (inline, background):
                live.submit(model, Views.of(f1), loss, {"step": step})
            with torch.no_grad():
                model.predictor.linear.weight.mul_(0.5)
        a, b = inline.ready(), background.ready(wait=True)
    finally:
        background.close()
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b, strict=True):  # the same numbers (to the last bits: the worker's LAPACK runs on one core)
        assert ra.keys() == rb.keys()
        for key in ra:
            same = rb[key] == ra[key] if isinstance(ra[key], str) else rb[key] == pytest.approx(ra[key], rel=1e-9,
                                                                                                 abs=1e-12)
            assert same, key
    assert a[0]["p_sym"] != a[1]["p_sym"]  # each record saw W_p as it was at its step
    assert a[0]["loss"] == 0.5 and 0.5 < a[0]["probe_auc"] <= 1.0


def test_one_thread_limits_the_linear_algebra_pools_and_puts_them_back():
    """Inside ``one_thread`` torch and every BLAS library loaded (numpy's / scipy's OpenBLAS) run one thread; on
    exit the settings are the ones from before."""
    from threadpoolctl import threadpool_info

    from ssltheory.practice.measure.live import one_thread

    def blas() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before_torch, before_blas = torch.get_num_threads(), blas()
    with one_thread():
        assert torch.get_num_threads() == 1
        assert set(blas()) == ({1} if before_blas else set())
    assert torch.get_num_threads() == before_torch and blas() == before_blas


def test_cuda_graph_and_compile_settings():
    """--cuda-graph auto is on only for one CUDA process without --compile; on + compile is refused in one line;
    configs written with ``compile: true/false`` still load."""
    cfg = TrainConfig(dataset="digits")
    assert cfg.resolved_cuda_graph("cuda", 1) and not cfg.resolved_cuda_graph("cpu", 1)
    assert not cfg.resolved_cuda_graph("cuda", 2)
    assert not TrainConfig(dataset="digits", compile="default").resolved_cuda_graph("cuda", 1)
    assert not TrainConfig(dataset="digits", cuda_graph="off").resolved_cuda_graph("cuda", 1)
    with pytest.raises(ConfigError, match="--cuda-graph on with --compile default"):
        TrainConfig(dataset="digits", cuda_graph="on", compile="default")
    with pytest.raises(ConfigError, match="--compile"):
        TrainConfig(dataset="digits", compile="fast")
    assert TrainConfig.from_dict({"dataset": "digits", "compile": True}).compile == "default"  # configs of old
    assert TrainConfig.from_dict({"dataset": "digits", "compile": False}).compile == "none"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (bench/check_cuda_graph.py)")
def test_cuda_graph_step_follows_the_eager_trajectory():
    """fp32, deterministic cuDNN: 5 steps replayed from the graph give the eager losses and weights."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    x = torch.rand(6, 2, 16, 1, 8, 8, device="cuda")
    out = []
    for graph in ("off", "on"):
        cfg = TrainConfig(dataset="digits", predictor="directpred", batch_size=16, precision="fp32",
                          cuda_graph=graph, device="cuda")
        model = build_model(cfg, 1, torch.device("cuda"))
        from ssltheory.practice.engine.optim import make_optimizer

        opt = make_optimizer(cfg, model.online, model.predictor)
        losses = [float(optimizer_step(model, opt, None, (a, b), cfg, k, 6)[0].detach()) for k, (a, b) in enumerate(x)]
        out.append((losses, torch.cat([p.detach().flatten() for p in model.online.parameters()])))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-5)
    assert torch.allclose(out[0][1], out[1][1], rtol=1e-4, atol=1e-6)


def _digits_feed(predictor: str = "linear"):
    from ssltheory.practice.data.datasets import DigitsDataset
    from ssltheory.practice.data.feed import DeviceFeed
    from ssltheory.practice.data.schedule import make_schedule

    cfg = TrainConfig(dataset="digits", predictor=predictor, batch_size=200, data_path="device", device="cpu")
    ds = DigitsDataset("train")
    return cfg, DeviceFeed(cfg, ds, torch.device("cpu"), Dist(), make_schedule(cfg, len(ds)))


def test_device_feed_prefetch_keeps_the_batches_and_the_resume_point():
    """Making the next batch early (as the trainer does, inside its step) yields the same batches as making it when
    asked, and a checkpoint taken after either way resumes to the same next batch."""
    _, lazy = _digits_feed()
    _, eager = _digits_feed()
    lazy_batches, states = [], []
    for x1, _ in lazy.epoch(0, 0):
        lazy_batches.append(x1)
        states.append(lazy.state_dict())  # nothing made ahead: the generator as it is
    eager_batches, eager_states = [], []
    for x1, _ in eager.epoch(0, 0):
        eager.prefetch()
        eager.prefetch()  # a second call makes nothing more
        eager_batches.append(x1)
        eager_states.append(eager.state_dict())  # the generator before the batch made ahead
    assert len(lazy_batches) == len(eager_batches) == 1297 // 200
    for a, b in zip(lazy_batches, eager_batches, strict=True):
        assert torch.equal(a, b)
    k = 2
    for state in (states[k], eager_states[k]):
        _, resumed = _digits_feed()
        resumed.load_state_dict(state)
        x1, _ = next(iter(resumed.epoch(0, k + 1)))
        assert torch.equal(x1, lazy_batches[k + 1])


def test_the_next_batch_is_made_before_directpred_waits_for_the_device():
    """optimizer_step calls the feed's prefetch after the forward and backward are queued and before the predictor
    hook (DirectPred's eigendecomposition is the step's one wait for the device)."""
    from ssltheory.practice.data.feed import _NOT_MADE
    from ssltheory.practice.engine.optim import make_optimizer

    cfg, feed = _digits_feed("directpred")
    model = build_model(cfg, 1, torch.device("cpu"))
    opt = make_optimizer(cfg, model.online, model.predictor)
    seen = []
    hook = model.predictor.after_step
    model.predictor.after_step = lambda step, F: (seen.append(feed._ahead is not _NOT_MADE), hook(step, F))
    for step, (x1, x2) in enumerate(feed.epoch(0, 0)):
        optimizer_step(model, opt, None, (x1, x2), cfg, step, 6, feed.prefetch)
    assert seen == [True] * 6


def test_newton_schulz_directpred_trains_like_the_eigendecomposition():
    """Six DirectPred steps with W_p from Newton-Schulz follow the eigh run: the same losses and W_p to 1e-6."""
    from ssltheory.practice.engine.optim import make_optimizer

    x = torch.rand(6, 2, 32, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    out = []
    for solver in ("eigh", "newton-schulz"):
        cfg = TrainConfig(dataset="digits", predictor="directpred", batch_size=32, directpred_solver=solver)
        model = build_model(cfg, 1, torch.device("cpu"))
        assert model.predictor.solver == solver
        opt = make_optimizer(cfg, model.online, model.predictor)
        losses = [float(optimizer_step(model, opt, None, (a, b), cfg, k, 6)[0].detach()) for k, (a, b) in enumerate(x)]
        out.append((losses, model.predictor.W_p().detach().clone()))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-6)
    assert torch.allclose(out[0][1], out[1][1], atol=1e-6)
    assert not torch.allclose(out[1][1], torch.eye(out[1][1].shape[0]) * out[1][1][0, 0])  # W_p was set from F̂
