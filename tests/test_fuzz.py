"""Every training-side command refuses bad input in one line: generated bad values for every setting of ``train``
(from the config's own declarations) and for the flags of ``probe``, ``compare``, ``report`` and ``experiment``.
Each must exit 2 with one ``ssltheory: error:`` line, no traceback, and leave every file as it was."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import cli
from ssltheory.practice.config import TrainConfig, flag_of
from ssltheory.practice.settings import Setting

FAST = ["--batch-size", "64", "--max-steps", "4", "--measure-every", "4", "--probe-size", "64", "--proj-hidden",
        "32", "--proj-dim", "16", "--knn-every", "0", "--epochs", "1"]


def bad_values(f: Setting) -> list[str]:
    """Values that must be refused for setting ``f``: by its type, its bounds and its choices."""
    kind = f.type
    if f.accepted() is not None:
        return ["bogus", ""]
    if kind is bool:
        return []
    if f.name == "device":
        return ["gpu", "", "cuda:x"]
    if kind is str:
        return []
    low, high = f.low, f.high
    if kind is int:
        out = ["abc", "", "1.5", "1e999"]
        out += [str(int(low) - 1)] if low is not None else []
        out += [str(int(high) + 1)] if high is not None else []
        return out
    out = ["nan", "inf", "-inf", "abc", "", "1e999"]
    if low is not None:
        out.append(f"{low:g}" if f.low_open else f"{low - 1:g}")
    if high is not None:
        out.append(f"{high:g}" if f.high_open else f"{high * 10 + 1:g}")
    return out


TRAIN_CASES = [(flag_of(f.name), v) for f in TrainConfig.settings() if f.name != "dataset"
               for v in bad_values(f)]


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def refused(args: list[str], root: Path) -> str:
    before = tree(root)
    r = cli(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (args, r.returncode, r.stderr)
    assert lines[0].startswith("ssltheory: error:"), lines
    assert tree(root) == before, args
    return lines[0]


def test_every_setting_gets_bad_values():
    assert len(TRAIN_CASES) > 150 and {"--lr", "--gamma-a", "--proj-dim", "--method", "--device"} <= {
        c[0] for c in TRAIN_CASES}


@pytest.mark.parametrize("batch", range(4))
def test_train_refuses_bad_values_of_every_setting(batch, tmp_path):
    for flag, value in TRAIN_CASES[batch::4]:
        line = refused(["train", "digits", flag, value, "--out", str(tmp_path / "run")], tmp_path)
        assert flag in line, (flag, value, line)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("fuzz") / "run"
    assert cli("train", "digits", *FAST, "--out", str(run)).returncode == 0
    return run


def test_bad_paths_and_files_everywhere(finished, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path is the current folder: a run or a result written there shows
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    binary, empty, typed = tmp_path / "binary.json", tmp_path / "empty.yaml", tmp_path / "typed.json"
    binary.write_bytes(bytes(range(256)))
    empty.write_bytes(b"")
    typed.write_text('{"dataset": "digits", "epochs": "three", "lr": [0.1]}')
    cases = [
        # issue 22: "" is no path (Path("") is the current folder), --config that is no settings text
        ["train", "digits", *FAST, "--out", ""], ["train", "--resume", ""], ["train", "--config", ""],
        ["train", "--config", str(binary)], ["train", "--config", str(empty)], ["train", "--config", str(typed)],
        ["train", "digits", "--epochs", "3", "--epochs", "abc"], ["probe", ""], ["probe", str(run), "--out", ""],
        ["compare", ""], ["compare", str(run), "--out", ""], ["report", ""], ["report", str(run), "--out", ""],
        ["experiment", "fig3", "--out", ""], ["collapse", ""], ["collapse", str(run), "--out", ""],
        ["collapse", "--spectra", ""], ["forecast", "", "", ""],
        ["forecast", str(run), str(run), str(run), "--out", ""],
        ["train", "digits", "--out", str(afile)], ["train", "digits", "--out", str(afile / "sub")],
        ["train", "digits", "--out", "/proc/ssltheory-x"], ["train", "digits", "--out", str(run)],
        ["train", "--config", str(tmp_path / "missing.yaml")], ["train", "--config", str(tmp_path)],
        ["train", "--resume", str(tmp_path / "missing")], ["train", "--resume", str(afile)],
        ["train", "--resume", str(run), "--lr", "0.1"], ["train", "--resume", str(run), "--out", str(tmp_path / "x")],
        ["probe", str(tmp_path / "missing")], ["probe", str(run), "--epochs", "0"], ["probe", str(run), "--lr", "nan"],
        ["probe", str(run), "--lr", "-1"], ["probe", str(run), "--weight-decay", "inf"],
        ["probe", str(run), "--batch-size", "0"], ["probe", str(run), "--device", "gpu"],
        ["probe", str(run), "--out", str(afile)], ["probe", str(run), "--epochs", "abc"],
        ["compare", str(tmp_path / "missing")], ["compare", str(run), "--modes", "0"],
        ["compare", str(run), "--sigma2", "nan"], ["compare", str(run), "--sigma2", "-1"],
        ["compare", str(run), "--out", str(afile)], ["compare", str(run), "--out", "/proc/ssltheory-x"],
        ["report", str(tmp_path / "missing")], ["report", str(run), "--modes", "0"],
        ["report", str(run), "--out", str(afile / "r.html")], ["report", str(run), "--out", str(tmp_path)],
        ["experiment", "bogus"], ["experiment", "fig3", "--scale", "huge"], ["experiment", "table8", "--max-steps",
                                                                              "-1"],
        ["experiment", "fig3", "--out", str(afile)], ["experiment"],
        ["experiment", "table8", "--max-steps", "2", "--out", str(tmp_path / "exp")],  # cells hold other runs
        ["experiment", "table8", "--max-steps", "2", "--jobs", "2", "--out", str(tmp_path / "exp")],  # same, checked
        ["experiment", "table8", "--jobs", "0"], ["experiment", "table8", "--jobs", "x"],  # before any process starts
    ]
    for cell in ("directpred", "directpred-freq5", "sgd-linear"):
        shutil.copytree(run, tmp_path / "exp" / cell)
    for args in cases:
        refused(args, tmp_path)
