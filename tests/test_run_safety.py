"""No run is lost or silently overwritten: damaged files, interrupted writes, a silent download server and Ctrl-C
each end in one line, and the files a user made stay as they were."""

from __future__ import annotations

import shutil
import socket
import stat

import pytest

from conftest import cli
from ssltheory.practice.rundir import RunDir, read_metrics
from ssltheory.theory.params import ConfigError

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

    from ssltheory.practice import data

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
