"""``experiment --launcher``: the cluster path (submitit), run here through submitit's local executor (real
subprocesses, real pickling): every cell of table8 as its own job gives the results.json of ``--jobs 1``; a job
signalled as Slurm signals a preemption (SIGUSR2) is requeued and resumes from its checkpoint to the numbers of an
uninterrupted run; a failing cell is reported (cell, error line, log) while the others are gathered; a later call
without --launcher reads what has finished; bad cluster input is one line."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import assert_same, cli
from ssltheory.experiments.launch import Launcher, SlurmSettings, make_launcher, read_config, report, slurm_settings
from ssltheory.experiments.recipes import RECIPES, Recipe
from ssltheory.experiments.run import run_recipe
from ssltheory.theory.checks import ConfigError

pytest.importorskip("submitit")

STEPS = "20"
"""Every run's length here (the smoke scale's digits runs are 200 steps)."""
REL, ABS = 1e-9, 1e-12
"""The same run in another process with the same thread count (one torch thread, as each job gets with
``--slurm-cpus-per-task 1``) computes the same numbers: equal to conftest's default tolerance (the numbers differ
at ~1e-8 relative only between thread counts; tests/fixtures/baseline_spread.json measures up to ~1e-4 across
machines)."""
TIMEOUT = 600.0


def _one_thread(fn):
    """``fn()`` with one torch thread in this process (the jobs' arithmetic), the count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def _results(out: Path) -> dict:
    """results.json with the folder's own path written as OUT and without the jobs' list (only the launcher's)."""
    doc = json.loads((out / "results.json").read_text().replace(str(out), "OUT"))
    doc.pop("jobs", None)
    return doc


def _wait_for(predicate, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """table8 at the smoke scale, 20 steps a run, trained here one cell after another (``--jobs 1``, one thread)."""
    out = tmp_path_factory.mktemp("reference") / "table8"
    r = _one_thread(lambda: cli("experiment", "table8", "--scale", "smoke", "--max-steps", STEPS, "--jobs", "1",
                                "--out", str(out)))
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_table8_as_one_job_per_cell_gives_the_results_of_jobs_1_and_a_later_call_gathers_them(tmp_path, reference):
    out = tmp_path / "table8"
    args = ("experiment", "table8", "--scale", "smoke", "--max-steps", STEPS, "--out", str(out))
    r = cli(*args, "--launcher", "submitit-local", "--slurm-cpus-per-task", "1", "--no-wait")
    assert r.returncode == 0, r.stderr
    jobs = json.loads((out / "jobs.json").read_text())["jobs"]
    cells = list(RECIPES["table8"].cells)
    assert sorted(jobs) == sorted(cells) and len({j["job_id"] for j in jobs.values()}) == len(cells)
    assert all(j["job_id"] in r.stdout for j in jobs.values())  # the job ids are printed
    assert not (out / "results.json").exists()  # --no-wait: nothing gathered yet
    # a later call at once: the jobs are reported, nothing is trained here (not even with --jobs)
    soon = cli(*args, "--jobs", "2")
    assert soon.returncode == 0, soon.stderr
    pending = [row for row in json.loads((out / "results.json").read_text())["cells"] if "state" in row]
    assert pending and all(row["state"] in ("pending", "running") for row in pending), pending
    assert all(f"{row['cell']}: {row['state']}" in " ".join(soon.stdout.split()) for row in pending)
    folder = Path(next(iter(jobs.values()))["folder"])
    _wait_for(lambda: len(list(folder.glob("*_result.pkl"))) == len(cells), "the jobs to end")
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    # each cell ran in its own job process, which logged it
    for cell, job in jobs.items():
        assert f"run {out.absolute() / cell}" in (folder / f"{job['job_id']}_0_log.out").read_text()
    assert all(j["state"] == "finished" for j in json.loads((out / "jobs.json").read_text())["jobs"].values())
    assert_same(_results(out), _results(reference), "results", rel=REL, abs_=ABS)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_signalled_job_is_requeued_and_resumes_and_a_failed_cell_is_reported_while_the_others_are_gathered(
        tmp_path, reference):
    """sgd-linear of table8, checkpointed every 2 steps, gets SIGUSR2 (Slurm's preemption / time-limit signal to the
    job's task) once it has a checkpoint: submitit requeues it, and the run resumes there to the reference's numbers. A
    second cell fails (no such dataset folder): its row names its state, error line and log, the first is gathered."""
    out = tmp_path / "two"
    cells = {"sgd-linear": {"predictor": "linear", "checkpoint_every": 2},
             "bad": {"dataset": "cifar10", "data_dir": str(tmp_path / "nowhere")}}
    recipe = Recipe("two", "a killed job and a failing one", "", cells)
    launcher = Launcher("submitit-local", SlurmSettings(cpus_per_task=1), wait=True, poll_s=0.5)
    run_dir = out / "sgd-linear"
    signalled: list[int] = []

    def preempt() -> None:  # as Slurm does: the signal goes to the job's task, not to submitit's local controller
        deadline = time.time() + TIMEOUT
        while time.time() < deadline and not (run_dir / "checkpoint.pt").exists():
            time.sleep(0.05)
        job = json.loads((out / "jobs.json").read_text())["jobs"]["sgd-linear"]["job_id"]
        for pid in _children(int(job)):
            os.kill(pid, signal.SIGUSR2)
            signalled.append(pid)

    watcher = threading.Thread(target=preempt, daemon=True)
    watcher.start()
    lines: list[str] = []
    res = run_recipe(recipe, "smoke", out, max_steps=int(STEPS), launcher=launcher, announce=lines.append)
    watcher.join(timeout=10)
    assert signalled, "the job's task was not found"
    # requeued, then resumed from its checkpoint: config.json's run block records the second start at its step
    starts = json.loads((run_dir / "config.json").read_text())["run"]["starts"]
    assert len(starts) == 2 and starts[0]["step"] == 0 and 0 < starts[1]["step"] < int(STEPS), starts
    job = json.loads((out / "jobs.json").read_text())["jobs"]["sgd-linear"]
    log = (Path(job["folder"]) / f"{job['job_id']}_0_log.out").read_text()
    assert "signalled (preempted or timed out): requeued" in log and log.count("ssltheory: run ") == 2
    # the resumed run's numbers are the uninterrupted run's
    summary = json.loads((run_dir / "summary.json").read_text())
    whole = json.loads((reference / "sgd-linear" / "summary.json").read_text())
    assert summary["steps"] == int(STEPS)
    assert_same(summary, whole, "resumed", rel=REL, abs_=ABS)
    ref_rows = json.loads((reference / "results.json").read_text())["cells"]
    ref_row = next(r for r in ref_rows if r["cell"] == "sgd-linear")
    row = next(r for r in res["cells"] if r["cell"] == "sgd-linear")
    assert row["knn_acc_final"] == ref_row["knn_acc_final"] and "state" not in row
    # the failed cell: reported with its error line and its log, and gathered into results.json as such
    bad = next(r for r in res["cells"] if r["cell"] == "bad")
    assert bad["state"] == "failed" and "stats" not in bad
    error, log_path = bad["jobs"][0]["error"], bad["jobs"][0]["log"]
    assert "nowhere" in error and "Traceback" in Path(log_path).read_text()
    saved = json.loads((out / "results.json").read_text())
    assert [r["cell"] for r in saved["cells"]] == ["sgd-linear", "bad"] and saved["cells"][1]["state"] == "failed"
    assert any("bad: job" in line and "failed" in line for line in lines)  # told as it ended
    from ssltheory.experiments.launch import JobState

    text = report({j["run"]: JobState(**j) for j in res["jobs"]})
    assert len(text) == 1 and text[0].startswith("bad: failed (job ") and error in text[0] and log_path in text[0]


def test_cluster_settings_from_a_file_and_flags(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("partition: gpu\ntime: 240\nslurm-gpus: 4\ncpus_per_task: 8\naccount: lab\n"
                    "submitit: {slurm_qos: high}\n")
    s = slurm_settings(read_config(path), {"time": "30", "partition": None})
    assert s == SlurmSettings("gpu", 30, 4, 8, "lab", None, {"slurm_qos": "high"})
    launcher = make_launcher("slurm", tmp_path, {"account": "other"}, path, wait=False)
    assert launcher.slurm.account == "other" and launcher.slurm.time == 240 and not launcher.gathers
    assert make_launcher(None, tmp_path).kind == "local"
    (tmp_path / "jobs.json").write_text('{"jobs": {}}')
    assert make_launcher(None, tmp_path).kind == "report"  # a later call on a folder of jobs


@pytest.mark.parametrize("args,needle", [
    (("--slurm-partition", "gpu"), "--slurm-partition is for a cluster launcher"),
    (("--launcher", "local", "--no-wait"), "--no-wait is for a cluster launcher"),
    (("--launcher", "slurm", "--slurm-time", "2h"), "--slurm-time '2h' is out of range: expected whole minutes"),
    (("--launcher", "slurm", "--slurm-gpus", "-1"), "--slurm-gpus '-1' is out of range"),
    (("--launcher", "slurm", "--slurm-partition", " "), "--slurm-partition ' ' is not accepted"),
    (("--launcher", "pbs"), "--launcher 'pbs'"),
    (("--launcher", "slurm", "--jobs", "2"), "--jobs 2 with --launcher slurm is not accepted"),
    (("--launcher", "slurm"), "--launcher slurm cannot submit from this machine"),
])
def test_bad_cluster_input_is_one_line(tmp_path, args, needle):
    if "cannot submit" in needle and __import__("shutil").which("srun"):
        pytest.skip("this machine has Slurm")
    r = cli("experiment", "table3", "--scale", "smoke", "--max-steps", "2", "--out", str(tmp_path / "x"), *args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_bad_config_file_and_a_missing_submitit_are_one_line(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    path.write_text('{"partition": "gpu", "qos": "high"}')
    r = cli("experiment", "table3", "--launcher", "slurm", "--config", str(path), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown cluster setting 'qos'" in r.stderr
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    r = cli("experiment", "table3", "--launcher", "submitit-local", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "pip install 'ssltheory[slurm]'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="pip install"):
        make_launcher("slurm", tmp_path)


def test_a_later_local_run_refuses_runs_a_job_still_holds(tmp_path):
    """--launcher local on a folder whose jobs.json names a live job for a run: one line, nothing trained."""
    from ssltheory.experiments import launch

    recipe = Recipe("one", "", "", {"reg": {"predictor": "linear"}})
    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": {"reg": {"run": "reg", "state": "running",
                                                                     "job_id": "42", "launcher": "slurm",
                                                                     "folder": str(tmp_path)}}}))

    def running(*args):
        return "running", None, "log"

    with pytest.raises(ConfigError, match="reg is held by job 42"):
        launch.dispatch(Launcher("local"), tmp_path, [(recipe.configs("smoke", 2)["reg"], tmp_path / "reg")],
                        poll=running)


def test_the_slurm_job_asks_for_the_settings(tmp_path, monkeypatch):
    """On a machine with ``srun`` (a stand-in here), the settings become the job's #SBATCH lines, with submitit's
    USR2 signal 90 s before the time limit (what requeues and resumes a run)."""
    from ssltheory.experiments.launch import _executor

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    settings = SlurmSettings("gpu", 720, 2, 8, "lab", None, {"slurm_qos": "normal", "mem_gb": 64})
    executor = _executor(Launcher("slurm", settings, label="ssltheory-table3"), tmp_path / "sub")
    text = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("--partition=gpu", "--time=720", "--gpus-per-node=2", "--ntasks-per-node=2", "--cpus-per-task=8",
                 "--account=lab", "--qos=normal", "--mem=64GB", "--signal=USR2@90", "--job-name=ssltheory-table3",
                 f"--output={tmp_path / 'sub'}/%j_0_log.out"):
        assert f"#SBATCH {line}\n" in text, line
    with pytest.raises(ConfigError, match="not accepted by submitit"):
        _executor(Launcher("slurm", SlurmSettings(submitit={"slurm_colour": "blue"})), tmp_path / "sub")


def test_slurm_states_read_as_pending_running_failed_or_unknown(tmp_path):
    from ssltheory.experiments.launch import slurm_state

    log = tmp_path / "1_0_log.err"
    log.write_text("srun: error: node12: task 0: Out Of Memory\n")
    assert slurm_state("PENDING", str(log)) == ("pending", None)
    assert slurm_state("REQUEUED", str(log)) == ("pending", None)
    assert slurm_state("RUNNING", str(log)) == ("running", None)
    assert slurm_state("UNKNOWN", str(log)) == ("unknown", None)
    assert slurm_state("CANCELLED by 1234", str(log)) == ("failed", "Slurm state CANCELLED: srun: error: node12: "
                                                                    "task 0: Out Of Memory")
    assert slurm_state("TIMEOUT", str(tmp_path / "none")) == ("failed", "Slurm state TIMEOUT: no log line")
