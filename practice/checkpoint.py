"""Atomic checkpoints: everything a run needs to continue exactly where it stopped."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from ssltheory.theory.io import write_atomic

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    """Torch (CPU and CUDA), numpy and Python random states."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, state: dict) -> Path:
    """Write ``state`` to RUN_DIR/checkpoint.pt through a temporary file and a rename."""
    buf = io.BytesIO()
    torch.save(state, buf)
    path = Path(run_dir) / CHECKPOINT
    write_atomic(path, buf.getvalue())
    return path


def load(run_dir: Path) -> dict | None:
    """The saved state, or None when the run has no checkpoint yet."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
