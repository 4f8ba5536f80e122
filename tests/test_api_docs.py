"""The documented Python API runs as written: every ```python block of docs/api.md (and of README.md, where there are
any) is executed top to bottom in one namespace, in a scratch folder, as a reader would paste them into a notebook.
Small settings there (a digits run of 20 steps, short integrations) keep this under a minute on 2 cores. Also: the
names docs/api.md shows are the packages' exports, and the theory's API does not pull in torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "api.md", ROOT / "README.md")
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text()) if path.exists() else []


def test_the_api_page_has_an_example_of_every_bullet():
    blocks = "\n".join(python_blocks(ROOT / "docs" / "api.md"))
    for call in ("integrate_modes(", "integrate_matrices(", "find_fixed_points(", "draw_phase_portrait(",
                 "integrate_unified(", "TrainConfig(", "train(", "load_metrics(", "compare_run(", "collapse_auc("):
        assert call in blocks, call


def test_every_documented_python_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for path in DOCS:
        for i, block in enumerate(python_blocks(path)):
            code = compile(block, f"{path.name} python block {i + 1}", "exec")
            try:
                exec(code, namespace)
            except Exception as e:  # name the block, so a failure points at the page
                pytest.fail(f"{path.name}, python block {i + 1} failed: {type(e).__name__}: {e}\n{block}")
            ran += 1
    assert ran >= 8
    assert (tmp_path / "runs" / "api" / "digits" / "metrics.jsonl").exists()
    assert (tmp_path / "phase_portrait.png").exists() and (tmp_path / "compare.png").exists()


def test_the_exports_are_the_documented_names():
    import ssltheory.practice as practice
    import ssltheory.theory as theory

    text = (ROOT / "docs" / "api.md").read_text()
    for pkg, name in re.findall(r"`(theory|practice)\.(\w+)\(", text):
        module = theory if pkg == "theory" else practice
        assert name in module.__all__ and callable(getattr(module, name)), f"{pkg}.{name}"
    for name in practice.__all__:
        assert getattr(practice, name) is not None
    with pytest.raises(AttributeError):
        practice.no_such_name  # noqa: B018


def test_importing_the_theory_api_leaves_torch_out():
    code = ("import sys, ssltheory.theory as t; t.integrate_modes(p0=[0.1], steps=10); "
            "import ssltheory.practice; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "False"
