"""No run is lost or silently overwritten: damaged files, interrupted writes, a silent download server and Ctrl-C
each end in one line, and the files a user made stay as they were."""

from __future__ import annotations

import json
import shutil
import socket
import stat

import pytest

from conftest import cli
from ssltheory.practice.engine.rundir import RunDir, read_metrics
from ssltheory.theory.checks import ConfigError

FAST = ["--batch-size", "64", "--epochs", "2", "--max-steps", "24", "--measure-every", "4", "--probe-size", "64",
        "--proj-hidden", "32", "--proj-dim", "16", "--knn-every", "1", "--predictor", "linear"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "finished"
    r = cli("train", "digits", *FAST, "--out", str(run))
    assert r.returncode == 0, r.stderr
    return run


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def one_line(r, code: int = 2) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("ssltheory: ")
    return lines[0]


def damage(path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if how == "truncate" else bytes(range(256)) * 64)


@pytest.mark.parametrize("how", ["truncate", "random"])
def test_a_damaged_checkpoint_costs_one_interval_not_the_run(finished, run, how):
    """checkpoint.pt damaged: the run continues from checkpoint.prev.pt (step 20) and ends with the metrics of the
    run that was never damaged; both damaged: one line naming the file, and nothing changed."""
    assert RunDir(run).load_checkpoint()["step"] == 24
    damage(run / "checkpoint.pt", how)
    folder = RunDir(run)
    assert folder.load_checkpoint()["step"] == 20 and "continued from checkpoint.prev.pt" in folder.note
    r = cli("train", "--resume", str(run))
    assert r.returncode == 0, r.stderr
    assert "continued from checkpoint.prev.pt (step 20)" in " ".join(r.stderr.split())
    assert read_metrics(run / "metrics.jsonl") == read_metrics(finished / "metrics.jsonl")
    assert (run / "checkpoint.damaged.pt").exists()  # set aside: the next save cannot rotate it over the good one
    assert RunDir(run).load_checkpoint()["step"] == 24 and RunDir(run).note is None
    damage(run / "checkpoint.pt", how)
    damage(run / "checkpoint.prev.pt", how)
    before = (run / "metrics.jsonl").read_bytes()
    for args in (["train", "--resume", str(run)], ["probe", str(run), "--epochs", "1"]):
        line = one_line(cli(*args))
        assert str(run / "checkpoint.pt") in line and "cannot be read" in line
    assert (run / "metrics.jsonl").read_bytes() == before


def test_a_metrics_file_cut_short_is_read_up_to_its_last_whole_line(run):
    path = run / "metrics.jsonl"
    whole = read_metrics(path)
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # a write killed half-way through the last record
    assert read_metrics(path) == whole[:-1]
    r = cli("report", str(run), "--out", str(run / "r.html"))
    assert r.returncode == 0, r.stderr
    path.write_text(text.replace("\n", "\n{garbage\n", 1))  # damage inside the file is named, not skipped
    with pytest.raises(ConfigError, match="line 2 is not a JSON record"):
        read_metrics(path)
    assert "line 2 is not a JSON record" in one_line(cli("compare", str(run), "--out", str(run / "cmp")))
    r = cli("report", str(run), "--out", str(run / "r2.html"))  # the report says so in its compare section
    assert r.returncode == 0 and "line 2 is not a JSON record" in (run / "r2.html").read_text()


def test_a_checkpoint_write_killed_half_way_leaves_nothing_behind_after_resume(run):
    stale = run / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    r = cli("train", "--resume", str(run))
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and RunDir(run).load_checkpoint()["step"] == 24


def test_a_damaged_config_or_missing_metrics_is_one_line(run):
    (run / "metrics.jsonl").unlink()
    assert "has no metrics.jsonl" in one_line(cli("compare", str(run), "--out", str(run / "cmp")))
    (run / "config.json").write_text('{"config": {"dataset": "dig')
    for args in (["train", "--resume", str(run)], ["probe", str(run)], ["compare", str(run)]):
        assert "config.json cannot be read" in one_line(cli(*args))


def test_every_run_file_has_the_same_mode(run):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.iterdir()}
    assert len(set(modes.values())) == 1, modes


def test_a_set_up_error_leaves_no_folder_and_prints_one_line(tmp_path):
    line = one_line(cli("train", "stl10", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")))
    assert "STL-10 not found" in line and not (tmp_path / "r").exists()
    line = one_line(cli("train", "digits", "--batch-size", "5000", "--out", str(tmp_path / "r")))
    assert "--batch-size 5000" in line and not (tmp_path / "r").exists()


def test_a_download_from_a_server_that_never_answers_times_out_in_one_line(tmp_path, monkeypatch):
    """A loopback server that accepts connections and never sends a byte (as a stuck proxy does)."""
    import torchvision.datasets as tvd

    from ssltheory.practice.data import datasets as data

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(tvd.CIFAR10, "url", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT", 0.5)
    try:
        line = one_line(cli("train", "cifar10", "--download", "--data-dir", str(tmp_path / "d"),
                            "--out", str(tmp_path / "r")))
    finally:
        server.close()
    assert "CIFAR-10 could not be downloaded" in line and "timed out" in line
    assert not (tmp_path / "r").exists() and socket.getdefaulttimeout() is None


def test_ctrl_c_says_interrupted_and_exits_130(monkeypatch, tmp_path):
    from ssltheory.cli import practice_cmds

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(practice_cmds, "run", interrupted)
    line = one_line(cli("train", "digits", "--out", str(tmp_path / "r")), code=130)
    assert "interrupted" in line and "--resume" in line


def test_report_reads_the_run_and_never_redraws_it(run):
    (run / "dynamics.png").unlink()
    r = cli("report", str(run), "--out", str(run / "r.html"))
    assert r.returncode == 0, r.stderr
    assert "no dynamics.png" in (run / "r.html").read_text() and not (run / "dynamics.png").exists()


# metrics.jsonl cut inside the records a checkpoint covers (issue 22): never glued, dropped or summarised from a part.
# The finished run: checkpoint.pt at step 24 covers 9 lines, checkpoint.prev.pt at step 20 covers 7 (line 8 is the
# step-24 measurement, line 9 its kNN).

def cut_inside(path, line: int) -> bytes:
    """Cut ``path`` half-way through its line ``line`` (1-based), as a full disk or a copy stopped short does;
    returns the piece that is left of that line."""
    lines = path.read_bytes().splitlines(keepends=True)
    piece = lines[line - 1][: len(lines[line - 1]) // 2]
    path.write_bytes(b"".join(lines[: line - 1]) + piece)
    return piece


def overwrite(path, line: int) -> None:
    """Replace line ``line`` of ``path`` (1-based) with bytes that are no record, keeping the lines around it."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = b"\x00" * 20 + b"\n"
    path.write_bytes(b"".join(lines))


def files(run) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


def steps(run) -> list[int]:
    return [r["step"] for r in read_metrics(run / "metrics.jsonl", whole=True)]


def said(r) -> str:
    return " ".join(r.stderr.split())  # (the progress bar's console wraps long warnings)


def test_a_finished_run_cut_inside_its_last_interval_goes_back_one_checkpoint_and_redoes_it(finished, run):
    """Cut inside line 8: checkpoint.prev.pt (7 lines) is before the cut, so steps 20-24 are trained again; the
    records and the summary are the uninterrupted run's, the cut line is in metrics.damaged.jsonl, nothing glued."""
    piece = cut_inside(run / "metrics.jsonl", 8)
    r = cli("train", "--resume", str(run))
    assert r.returncode == 0, r.stderr
    assert (f"{run / 'metrics.jsonl'} line 8 is cut short, inside the 9 lines that checkpoint.pt (step 24) covers: "
            "set aside in metrics.damaged.jsonl; checkpoint.pt kept as checkpoint.cut.pt, and continued from "
            "checkpoint.prev.pt (step 20)") in said(r)
    assert read_metrics(run / "metrics.jsonl", whole=True) == read_metrics(finished / "metrics.jsonl")
    assert steps(run) == steps(finished) == [0, 4, 8, 12, 16, 20, 20, 24, 24]
    assert (run / "summary.json").read_text() == (finished / "summary.json").read_text()
    assert (run / "metrics.damaged.jsonl").read_bytes() == piece + b"\n"
    assert RunDir(run).load_checkpoint()["step"] == 24 and (run / "checkpoint.cut.pt").exists()
    assert RunDir(run).load_checkpoint()["metrics_lines"] == 9
    before = files(run)
    r = cli("train", "--resume", str(run))  # whole again: an ordinary resume of a finished run, nothing set aside
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert {k: v for k, v in files(run).items() if k not in ("summary.json", "dynamics.png", "config.json")} == \
        {k: v for k, v in before.items() if k not in ("summary.json", "dynamics.png", "config.json")}


@pytest.mark.parametrize("damage,needle", [
    (lambda p: cut_inside(p, 5), "line 5 is cut short, inside the 9 lines"),  # the case (summary 24 -> 4)
    (lambda p: cut_inside(p, 7), "line 7 is cut short, inside the 9 lines"),  # the last line prev covers
    (lambda p: p.write_bytes(b"".join(p.read_bytes().splitlines(keepends=True)[:6])), "ends after line 6, where"),
    (lambda p: overwrite(p, 3), "line 3 is not a JSON record, inside the 9 lines"),  # lines after it whole
    (lambda p: p.unlink(), "metrics.jsonl is missing, where checkpoint.pt (step 24) covers 9 lines of it"),
], ids=["cut-in-line-5", "cut-in-line-7", "ends-after-line-6", "line-3-overwritten", "missing"])
def test_a_finished_run_cut_before_every_kept_checkpoint_is_one_line_and_nothing_changes(run, damage, needle):
    """No checkpoint is at or before the cut: the records it lost cannot be summarised and no checkpoint can redo
    them, so --resume refuses in one line (what, where, what to do) and changes nothing: summary.json keeps 24
    steps, not the cut's."""
    damage(run / "metrics.jsonl")
    before = files(run)
    line = one_line(cli("train", "--resume", str(run)))
    assert needle in line and "checkpoint.prev.pt (step 20) covers 7 lines, past it too" in line, line
    assert "nothing was changed" in line and f"--config {run / 'config.json'} --out {run} --force" in line
    assert files(run) == before
    assert '"steps": 24' in (run / "summary.json").read_text()


def test_the_advice_of_the_refusal_works(finished, run):
    """Cut inside line 5 and refused: restoring metrics.jsonl from a copy resumes; training anew with --force
    gives the uninterrupted run again."""
    cut_inside(run / "metrics.jsonl", 5)
    assert "line 5 is cut short" in one_line(cli("train", "--resume", str(run)))
    shutil.copy(finished / "metrics.jsonl", run / "metrics.jsonl")
    assert cli("train", "--resume", str(run)).returncode == 0
    assert (run / "summary.json").read_text() == (finished / "summary.json").read_text()
    cut_inside(run / "metrics.jsonl", 5)
    r = cli("train", "--config", str(run / "config.json"), "--out", str(run), "--force")
    assert r.returncode == 0, r.stderr
    assert read_metrics(run / "metrics.jsonl", whole=True) == read_metrics(finished / "metrics.jsonl")
    assert (run / "summary.json").read_text() == (finished / "summary.json").read_text()


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory):
    """(the run uninterrupted, the same run killed at step 18): checkpoints every 8 steps, so the killed one has
    checkpoint.pt at step 16 covering 5 lines (kNN at 0, measurements at 4, 8, 12, 16) and checkpoint.prev.pt at
    step 8 covering 3."""
    from ssltheory.practice.config import TrainConfig
    from ssltheory.practice.engine.train import train

    root = tmp_path_factory.mktemp("runs")
    r = cli("train", "digits", *FAST, "--checkpoint-every", "8", "--out", str(root / "whole"))
    assert r.returncode == 0, r.stderr

    def kill(p):
        if p.step == 18:
            raise KeyboardInterrupt  # nothing after the last atomic checkpoint survives, as with SIGKILL

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.load(root / "whole" / "config.json"), root / "killed", on_progress=kill)
    folder = RunDir(root / "killed")
    assert folder.load_checkpoint()["step"] == 16 and folder.load_checkpoint()["metrics_lines"] == 5
    assert folder.count() == 5 and not (root / "killed" / "summary.json").exists()
    return root / "whole", root / "killed"


@pytest.mark.parametrize("damage", ["cut", "glued"])
def test_an_unfinished_run_cut_inside_its_checkpoints_records_resumes_to_the_uninterrupted_records(
        unfinished, tmp_path, damage):
    """Cut inside line 5 (the step-16 record the checkpoint covers), or what the old resume made of a cut line 4:
    the next record glued onto it. The resume goes back to checkpoint.prev.pt (step 8, 3 lines) and ends with the
    uninterrupted run's records and summary; before the fix it trained on and failed at its end with "line 8 is not
    a JSON record", then every later resume too."""
    whole, killed = unfinished
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    path = run / "metrics.jsonl"
    if damage == "cut":
        piece = cut_inside(path, 5)
        needle = "line 5 is cut short, inside the 5 lines that checkpoint.pt (step 16) covers"
    else:
        lines = path.read_bytes().splitlines(keepends=True)
        piece = lines[3][:40] + lines[4]  # line 4 cut, line 5 written onto it: 4 lines, the 4th no record
        path.write_bytes(b"".join(lines[:3]) + piece)
        needle = "line 4 is not a JSON record, inside the 5 lines"
    r = cli("train", "--resume", str(run))
    assert r.returncode == 0, r.stderr
    assert needle in said(r) and "continued from checkpoint.prev.pt (step 8)" in said(r), said(r)
    assert steps(run) == steps(whole) == [0, 4, 8, 12, 16, 20, 20, 24, 24]
    assert read_metrics(path, whole=True) == read_metrics(whole / "metrics.jsonl")
    assert json.loads((run / "summary.json").read_text()) == json.loads((whole / "summary.json").read_text())
    assert json.loads((run / "summary.json").read_text())["steps"] == 24
    assert (run / "metrics.damaged.jsonl").read_bytes() == (piece if piece.endswith(b"\n") else piece + b"\n")


def test_an_unfinished_run_cut_before_every_kept_checkpoint_is_one_line_and_nothing_changes(unfinished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(unfinished[1], run)
    cut_inside(run / "metrics.jsonl", 3)
    before = files(run)
    line = one_line(cli("train", "--resume", str(run)))
    assert "line 3 is cut short, inside the 5 lines that checkpoint.pt (step 16) covers" in line
    assert "checkpoint.prev.pt (step 8) covers 3 lines, past it too" in line and "lines 3 to 5" in line
    assert files(run) == before


def test_append_and_truncate_never_glue_a_record_onto_a_cut_line(tmp_path):
    folder = RunDir(tmp_path)
    path, aside = tmp_path / "metrics.jsonl", tmp_path / "metrics.damaged.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2, "lo')  # cut inside its last record
    folder.append({"step": 3})
    assert read_metrics(path, whole=True) == [{"step": 1}, {"step": 3}]
    assert aside.read_bytes() == b'{"step": 2, "lo\n'
    path.write_bytes(b'{"step": 1}\n{"step": 2}')  # a whole record, only its newline missing: kept
    folder.append({"step": 3})
    assert read_metrics(path, whole=True) == [{"step": 1}, {"step": 2}, {"step": 3}] and folder.count() == 3
    path.write_bytes(b'{"step": 1}\n{"st\n{"step": 3}\n{"step": 4}\n')  # line 2 no record
    folder.truncate(3)  # would keep line 2: it and all after it are set aside, never kept
    assert path.read_bytes() == b'{"step": 1}\n'
    assert aside.read_bytes() == b'{"step": 2, "lo\n{"st\n{"step": 3}\n{"step": 4}\n'  # the earlier piece stays
    path.write_bytes(b'{"step": 1}\n{"step": 2}\n{"st')
    folder.truncate(2)  # a line cut after the kept ones: trained again, as after any kill
    assert path.read_bytes() == b'{"step": 1}\n{"step": 2}\n'
    path.write_bytes(b'{"step": 1}')
    folder.truncate(1)
    assert path.read_bytes() == b'{"step": 1}\n'


def test_the_summary_is_written_from_whole_records_only(run):
    """A cut last line is left out by readers, but never summarised: finish is a one-line error, nothing written."""

    before = files(run)
    cut_inside(run / "metrics.jsonl", 9)
    folder = RunDir(run)
    with pytest.raises(ConfigError, match=r"line 9 is cut short: summary.json is written from whole records only"):
        folder.finish()
    assert files(run)["summary.json"] == before["summary.json"]
    assert len(read_metrics(run / "metrics.jsonl")) == 8
