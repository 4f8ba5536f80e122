"""The notebooks of experiments/notebooks/ (one per paper) run top to bottom in a fresh python3 kernel of this
environment (nbclient), all three in about a minute on 2 cores; the committed files are what build.py makes, with no
outputs stored."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "experiments" / "notebooks"
NAMES = ("directpred.ipynb", "unigrad.ipynb", "collapse.ipynb")


def _build_module():
    spec = importlib.util.spec_from_file_location("notebooks_build", FOLDER / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_notebook_per_paper_as_build_py_makes_them_without_outputs():
    build = _build_module()
    assert set(build.NOTEBOOKS) == set(NAMES) == {p.name for p in FOLDER.glob("*.ipynb")}
    for name in NAMES:
        text = (FOLDER / name).read_text()
        assert text == build.text(name), f"{name} differs from build.py's: run python experiments/notebooks/build.py"
        doc = json.loads(text)
        assert doc["metadata"]["kernelspec"]["name"] == "python3"
        for cell in doc["cells"]:
            assert "outputs" not in cell or cell["outputs"] == [], f"{name}: a cell holds outputs"
            assert cell.get("execution_count") is None, f"{name}: a cell holds an execution count"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The three notebooks executed at once (each in its own python3 kernel of the interpreter running the tests:
    jupyter_client puts sys.executable for the kernelspec's 'python'), in a scratch folder each; their runs go into
    runs/notebooks/ under it. Together, so that one kernel's start overlaps another's work on a 2-core machine.
    name -> (notebook with outputs, its folder, the error it raised or None); "seconds" -> the wall time."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    async def run(name: str):
        nb = nbformat.read(FOLDER / name, as_version=4)
        folder = tmp_path_factory.mktemp(name.removesuffix(".ipynb"))
        client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                         resources={"metadata": {"path": str(folder)}})
        try:
            await client.async_execute()
        except Exception as e:  # CellExecutionError: reported by the notebook's own test
            return name, (nb, folder, e)
        return name, (nb, folder, None)

    async def run_all():
        return dict(await asyncio.gather(*(run(name) for name in NAMES)))

    start = time.perf_counter()
    results = asyncio.run(run_all())
    results["seconds"] = time.perf_counter() - start
    return results


@pytest.mark.parametrize("name", NAMES)
def test_the_notebook_runs_top_to_bottom(name, executed, record_property):
    nb, folder, error = executed[name]
    record_property("seconds_all_three", round(executed["seconds"], 1))
    assert error is None, f"{name}: {error}"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert figures >= 3, f"{name} drew {figures} figures"
    assert any((folder / "runs" / "notebooks").iterdir())
