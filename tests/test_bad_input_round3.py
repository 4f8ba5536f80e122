"""Issue 22's bad inputs, each one line and exit status 2 with nothing written or changed (or the fixed behaviour):
an empty path, a read-only run folder on resume, a --config that is no settings text, a --steps that would compute
for days, --steps 1e5 as --help writes it, a negative --tau, an empty --eta / --s0, and a flag given twice."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import cli
from ssltheory.cli.main import _usage_message
from ssltheory.theory import resources
from ssltheory.theory.checks import ConfigError, check_int
from ssltheory.theory.params import SimulationConfig

FAST = ["--batch-size", "64", "--max-steps", "4", "--measure-every", "4", "--probe-size", "64", "--proj-hidden",
        "32", "--proj-dim", "16", "--knn-every", "0", "--epochs", "1"]


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` with a hash of its content (``dir`` for a folder)."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def refused(args: list[str], root: Path, *needles: str) -> str:
    """Run ``ssltheory ARGS``: exit 2, one ``ssltheory: error:`` line holding every needle, ``root`` unchanged."""
    before = tree(root)
    r = cli(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (args, r.returncode, r.stderr)
    assert lines[0].startswith("ssltheory: error:"), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert tree(root) == before, args
    return lines[0]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working folder: what ``Path("")`` means, so a run or a result written there would show."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("round3") / "run"
    r = cli("train", "digits", *FAST, "--out", str(run))
    assert r.returncode == 0, r.stderr
    return run


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


# --- 1. an empty path is not the current folder -----------------------------------------------------------------------

EMPTY_PATHS = [
    (["train", "digits", *FAST, "--out", ""], "--out ''"),
    (["train", "digits", "--out", " "], "--out ' '"),
    (["train", "--resume", ""], "--resume ''"),
    (["train", "--config", ""], "--config ''"),
    (["probe", ""], "RUN_DIR ''"),
    (["probe", "runs/x", "--out", ""], "--out ''"),
    (["compare", ""], "RUN_DIR ''"),
    (["compare", "runs/x", "--out", ""], "--out ''"),
    (["report", ""], "RUN_DIR ''"),
    (["report", "runs/x", "--out", ""], "--out ''"),
    (["collapse", ""], "RUN_DIR ''"),
    (["collapse", "runs/x", "--out", ""], "--out ''"),
    (["collapse", "--spectra", ""], "--spectra ''"),
    (["collapse", "--state-dict", "", "--arch", "resnet18", "--dataset", "digits"], "--state-dict ''"),
    (["forecast", "", "", ""], "RUN_DIR ''"),
    (["forecast", "a", "b", "c", "--out", ""], "--out ''"),
    (["experiment", "fig3", "--out", ""], "--out ''"),
    (["simulate", "--out", ""], "--out ''"),
    (["phase-portrait", "--out", ""], "--out ''"),
    (["fixed-points", "--out", ""], "--out ''"),
]


@pytest.mark.parametrize("args,needle", EMPTY_PATHS, ids=[" ".join(a[:3]) for a, _ in EMPTY_PATHS])
def test_an_empty_path_is_refused_in_one_line_and_nothing_is_written_here(args, needle, here):
    """``train digits --out ""`` trained into the current folder, ``probe ""`` read the run there."""
    line = refused(args, here, needle)
    assert "path: expected" in line


# --- 2. a read-only run folder on --resume ----------------------------------------------------------------------------

def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` refuse new entries as a read-only file system does, for root too (chmod does not stop root)."""
    make = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        if Path(kwargs.get("dir") or (args[2] if len(args) > 2 else "")).resolve() == folder.resolve():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
        return make(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)


def _nothing_loaded(monkeypatch) -> None:
    """Fail the test if the resume gets as far as building the data (it must stop before anything is trained)."""
    from ssltheory.practice.engine import train

    def build_data(*args, **kwargs):
        raise AssertionError("the resume built its data before refusing the read-only folder")

    monkeypatch.setattr(train, "build_data", build_data)


def test_resume_of_a_read_only_run_is_one_line_before_anything_is_trained(run, monkeypatch):
    """``OSError: Read-only file system`` came as a traceback from RunDir.truncate, after the data was loaded."""
    _read_only(monkeypatch, run)
    _nothing_loaded(monkeypatch)
    line = refused(["train", "--resume", str(run)], run.parent, f"--resume {run} is not writable",
                   "Read-only file system", "expected a run folder that can be written")
    assert "copy the run" in line


def test_resume_with_a_read_only_metrics_file_is_one_line(run, monkeypatch):
    """metrics.jsonl is appended to in place: a read-only one (the folder writable) is refused too."""
    metrics = run / "metrics.jsonl"
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == metrics and mode == os.W_OK
                        else access(p, mode, *a, **k))
    _nothing_loaded(monkeypatch)
    refused(["train", "--resume", str(run)], run.parent, f"--resume {run} is not writable", "metrics.jsonl")


def test_resume_of_a_folder_chmod_read_only_is_one_line(run):
    """The real thing where chmod stops writes (not for root, whom the tests above cover)."""
    run.chmod(0o555)
    try:
        probe = run / ".probe"
        try:
            probe.mkdir()
        except OSError:
            pass
        else:
            probe.rmdir()
            pytest.skip("this user writes into a 0555 folder (root): covered by the monkeypatched tests")
        refused(["train", "--resume", str(run)], run.parent, "is not writable")
    finally:
        run.chmod(0o755)


def test_resume_of_a_writable_run_still_works(run):
    r = cli("train", "--resume", str(run))
    assert r.returncode == 0, r.stderr
    assert not list(run.glob(".ssltheory-probe-*"))  # the probe leaves nothing behind


# --- 3. --config that is no settings text -----------------------------------------------------------------------------

CONFIG_FILES = {
    "binary.json": (bytes(range(128, 256)) * 4, "is not text (byte 0x80 at offset 0 is not UTF-8)"),
    "binary.yaml": (b"\xff\xfe\x00garbage", "is not text"),
    "empty.json": (b"", "is empty"),
    "blank.yaml": (b"  \n\n", "is empty"),
    "comments.yaml": (b"# nothing but a comment\n", "holds no settings"),
    "list.json": (b"[1, 2]", "holds a list"),
    "bad.json": (b"{\"epochs\": ", "cannot be parsed"),
    "string-epochs.json": (b'{"dataset": "digits", "epochs": "three"}', "--epochs 'three' is not a whole number"),
    "float-epochs.json": (b'{"dataset": "digits", "epochs": 1.5}', "--epochs 1.5 is not a whole number"),
    "number-dataset.json": (b'{"dataset": 3}', "DATASET 3 is not known"),
    "bool-lr.json": (b'{"dataset": "digits", "lr": true}', "--lr True is a boolean"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_a_config_file_that_is_no_settings_text_is_one_line_naming_it(name, here):
    data, needle = CONFIG_FILES[name]
    (here / name).write_bytes(data)
    line = refused(["train", "--config", name], here, needle, name)
    assert "expected" in line


def test_a_config_that_is_a_folder_or_too_large_is_one_line(here):
    (here / "folder").mkdir()
    refused(["train", "--config", "folder"], here, "--config folder is not a file")
    big = here / "big.json"
    with open(big, "wb") as f:
        f.truncate(17 * 2**20)  # sparse: nothing is read
    refused(["train", "--config", "big.json"], here, "--config big.json holds 17 MiB", "at most 16 MiB")


def test_a_flag_overrides_the_bad_value_of_its_file(here):
    """The file's value is named only when it is the one used; a bad flag is named as the flag."""
    (here / "c.json").write_text('{"dataset": "digits", "epochs": "three"}')
    line = refused(["train", "--config", "c.json", "--epochs", "0"], here, "--epochs 0 is out of range")
    assert "c.json" not in line


# --- 4. --steps: a cap with an estimate, and 1e5 as --help writes it --------------------------------------------------

def test_steps_that_would_compute_for_days_are_refused_naming_the_largest_accepted(here):
    line = refused(["simulate", "--steps", "1000000000000"], here, "--steps 1000000000000 needs about",
                   "days of computing", "more than the limit of 1 h", "expected --steps <= ")
    largest = int(line.split("expected --steps <= ")[1].split()[0].rstrip(","))
    config = SimulationConfig(steps=largest)
    assert resources.estimate_seconds(config) <= resources.TIME_LIMIT
    assert resources.estimate_seconds(SimulationConfig(steps=largest + 1)) > resources.TIME_LIMIT
    assert largest >= 10 ** 8  # a thousand times the paper's 1e5 still runs


def test_the_step_cap_counts_every_run_of_the_sweep(here):
    line = refused(["simulate", "--steps", "1e8", "--eta", "0,0.01,0.02", "--beta", "0.2,0.4"], here,
                   "6 runs of the --eta × --beta sweep", "fewer --eta × --beta runs")
    largest = int(line.split("expected --steps <= ")[1].split()[0])
    configs = [SimulationConfig(steps=largest)] * 6
    resources.check_time(configs)
    with pytest.raises(ConfigError):
        resources.check_time([SimulationConfig(steps=largest + 1)] * 6)


@pytest.mark.parametrize("args,needles", [
    (["--model", "matrix", "--dim", "900"], ["--steps 100000 needs about", "--dim <= "]),
    (["--model", "sgd", "--dim", "64", "--batch", "100000"], ["--batch <= ", "--dim <= "]),
])
def test_the_step_cap_names_the_size_that_would_fit(args, needles, here):
    refused(["simulate", *args], here, *needles)


def test_solve_ivp_runs_are_not_capped_by_steps():
    """Their work is bounded by integrate.MAX_EVALUATIONS, not by the number of steps."""
    config = SimulationConfig(steps=10 ** 15, integrator="rk45", samples=10)
    assert resources.check_time([config]) < 1.0


@pytest.mark.parametrize("text,value", [("1e5", 100_000), ("2.5e3", 2_500), ("100000.0", 100_000), ("1E3", 1000),
                                        ("7", 7), (" 12 ", 12)])
def test_whole_numbers_in_float_notation_are_read(text, value):
    assert check_int("--steps", text) == value


@pytest.mark.parametrize("text,needle", [("1.5", "is not a whole number"), ("2.5e-1", "is not a whole number"),
                                         ("nan", "is not a whole number"), ("1e17", "float notation"),
                                         ("1e999", "float notation"), ("-1e3", "is out of range")])
def test_other_numbers_are_refused(text, needle):
    with pytest.raises(ConfigError, match=needle):
        check_int("--steps", text)


def test_simulate_reads_steps_as_help_writes_them(here):
    r = cli("simulate", "--steps", "2.5e3", "--samples", "3", "--seed", "0e0", "--out", "o")
    assert r.returncode == 0, r.stderr
    run = json.loads((here / "o" / "config.json").read_text())["runs"][0]
    assert run["steps"] == 2500 and isinstance(run["steps"], int) and run["seed"] == 0
    refused(["simulate", "--steps", "1.5", "--out", "p"], here, "--steps '1.5' is not a whole number")
    refused(["simulate", "--model", "matrix", "--dim", "8.5", "--out", "p"], here, "--dim '8.5'")


def test_help_still_shows_the_paper_value_that_is_now_accepted():
    r = cli("simulate", "--help")
    assert "1e5" in " ".join(r.stdout.split())


# --- 5. tau < 0 -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["phase-portrait"], ["fixed-points"], ["fixed-points", "--method", "all"],
                                     ["simulate"], ["simulate", "--model", "reduced"]])
def test_a_negative_tau_is_refused(command, here):
    """It drew p* = -0.667 labelled stable: a state of no EMA target (tau = W_a / W starts at 0 and rises to 1)."""
    line = refused([*command, "--tau", "-1", "--out", "o"], here, "--tau -1 is out of range",
                   "expected a number in [0, 1e+06]")
    assert "τ < 0 is no state of the model" in line


def test_tau_zero_is_accepted(here):
    r = cli("fixed-points", "--tau", "0", "--eta", "0.1", "--out", "o")
    assert r.returncode == 0, r.stderr
    points = json.loads((here / "o" / "fixed_points.json").read_text())["regimes"][0]["fixed_points"]
    assert [p["p"] for p in points] == [0.0]  # at tau = 0 only the collapsed point is left


# --- 6. an empty list is refused alike --------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["fixed-points"], ["fixed-points", "--method", "unigrad"], ["phase-portrait"],
                                     ["simulate"]])
def test_an_empty_eta_is_refused_by_every_command(command, here):
    refused([*command, "--eta", "", "--out", "o"], here, "--eta '' has an empty item")


def test_an_empty_s0_is_refused_and_a_missing_one_is_the_default(here):
    refused(["simulate", "--s0", "", "--out", "o"], here, "--s0 '' is empty")
    r = cli("fixed-points", "--out", "o")  # no --eta: the three regimes of Fig. 4
    assert r.returncode == 0, r.stderr
    assert len(json.loads((here / "o" / "fixed_points.json").read_text())["regimes"]) == 3


# --- 7. a flag given twice --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,quoted,not_quoted", [
    (["train", "digits", "--epochs", "3", "--epochs", "abc"], "(got 'abc')", "'3'"),
    (["train", "digits", "--epochs=3", "--epochs="], "(got '')", "'3'"),
    (["collapse", "--batch-size", "5", "--batch-size", "x"], "(got 'x')", "'5'"),
    (["simulate", "--steps", "3", "--steps", "1.5"], "'1.5'", "'3'"),
])
def test_a_flag_given_twice_quotes_the_value_that_was_used(args, quoted, not_quoted, here):
    line = refused(args, here, quoted)
    assert not_quoted not in line


def test_a_repeatable_option_quotes_every_value():
    class Param:
        opts, secondary_opts, multiple = ["--spectra"], [], True

    class Error(Exception):
        param = Param()

        def format_message(self) -> str:
            return "Invalid value for '--spectra': bad"

    assert _usage_message(Error(), ["collapse", "--spectra", "a", "--spectra=b"]).endswith("(got 'a', 'b')")
    Param.multiple = False
    assert _usage_message(Error(), ["collapse", "--spectra", "a", "--", "--spectra", "c"]).endswith("(got 'a')")
