"""No orphaned runs: a job killed outright (SIGKILL) cannot end its own run, so its sweep does. Under joblib the
killed job takes down nothing else (it runs in a child of its pool's worker), its siblings finish and the sweep
is summarized; ``nmf-lab-summary`` ends such runs too."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from nmf_lab.harness.processes import HOST_TAG, PID_START_TAG, PID_TAG, SLURM_JOB_TAG, process_gone, process_tags
from nmf_lab.tracking.lifecycle import FAILED, FINISHED, KILLED, PROCESS_DIED_TAG, RUNNING, tracked_run

from helpers import load_text, runs_of

KILLER_STUDY = '''
"""A study whose job with seed 1 kills its own process with SIGKILL once its run exists; the others answer."""
import os
import signal


def run(settings, run):
    if settings.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    run.log_metrics({"answer": float(settings.data.load().sum()) * (settings.seed + 1)})


def summarize(children, parent):
    parent.log_metrics({"n_summarized": len(children)})
'''

KILLER_EXPERIMENT = """
# @package _global_
defaults:
  - override /data: toy
experiment:
  study: killer_study
"""


@pytest.fixture
def killer_folder(tmp_path) -> Path:
    """A user's folder with the killer study and its experiment config (``experiment=killer``)."""
    (tmp_path / "killer_study.py").write_text(KILLER_STUDY)
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "killer.yaml").write_text(KILLER_EXPERIMENT)
    return tmp_path


@pytest.mark.slow
def test_a_job_killed_under_joblib_ends_failed_and_its_siblings_finish(
    killer_folder, tracking_uri, client, experiment_name, tmp_path
):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmf_lab",
            "-m",
            "experiment=killer",
            f"hydra.searchpath=[file://{killer_folder / 'conf'}]",
            "seed=0,1,2,3,4",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"tracking.experiment={experiment_name}",
        ],
        cwd=killer_folder,  # the study is imported from the current folder
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "1 of 5 jobs failed" in result.stderr, output
    assert "TerminatedWorkerError" not in output and "died (signal SIGKILL)" in output

    (parent,), children = runs_of(client, experiment_name)
    status = {child.data.params["seed"]: child.info.status for child in children}
    assert status == {"0": FINISHED, "1": FAILED, "2": FINISHED, "3": FINISHED, "4": FINISHED}
    (killed,) = [child for child in children if child.info.status == FAILED]
    pid, host = killed.data.tags[PID_TAG], killed.data.tags[HOST_TAG]
    note = killed.data.tags[PROCESS_DIED_TAG]
    assert f"The job's process died before it could end this run: process {pid} on {host} has exited" in note
    assert note in killed.data.tags[MLFLOW_RUN_NOTE]  # the run's description says so too
    # Each job ran in a process of its own, none of them the sweep's.
    assert len({child.data.tags[PID_TAG] for child in children}) == 5
    assert all(child.data.metrics["answer"] > 0 for child in children if child.info.status == FINISHED)

    assert parent.info.status == FAILED
    assert parent.data.metrics["n_children"] == 5 and parent.data.metrics["n_failed"] == 1
    assert parent.data.metrics["n_summarized"] == 4  # the study's summary of the finished jobs
    rows = list(csv.DictReader(io.StringIO(load_text(client, parent.info.run_id, "summary/children.csv", tmp_path))))
    assert sorted(row["status"] for row in rows) == [FAILED] + [FINISHED] * 4
    assert not client.search_runs([parent.info.experiment_id], "attributes.status = 'RUNNING'")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c to the group", "sigterm to the command", "a worker killed"])
def test_an_interrupted_joblib_sweep_leaves_no_run_running_and_no_process(
    how, tracking_uri, client, experiment_name, tmp_path
):
    """Ctrl-C (SIGINT to the command's process group), SIGTERM to the command alone, or SIGKILL to one of joblib's
    workers while two long jobs run on them: the jobs that end their runs end KILLED, and the exit of the sweep
    ends the others KILLED too, as it does the parent. Without that, they stayed RUNNING (and on SIGTERM the
    parent too).

    And no process outlives the sweep: none of the processes seen under it while it ran (its workers, their
    forked jobs) and none of its session is left once it has exited. Joblib's workers ignore SIGTERM, and its
    own kill of their process trees races with a worker forking its next job: such a job went on fitting for
    37 minutes after pytest had ended."""
    with sigint_not_ignored():
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nmf_lab",
                "-m",
                "experiment=movies",
                "solver.max_iter=100000000",
                "seed=0,1,2",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
                f"tracking.experiment={experiment_name}",
            ],
            cwd=tmp_path,
            env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own session and process group, as a terminal's foreground command has
        )
    since = int(proc_stat(process.pid)[3])  # its start: no process of its session started before it
    seen = {}  # every process seen under the sweep: pid -> (start time, command line, parent pid)
    try:
        deadline = time.monotonic() + 300
        while len(running_children(client, experiment_name)) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "the jobs never ran"
            seen.update(process_tree(process.pid))
            time.sleep(0.3)
        tree = process_tree(process.pid)
        seen.update(tree)
        jobs = [pid for pid, (_, line, parent) in tree.items() if parent != process.pid and "tracker" not in line]
        assert len(jobs) >= 2, tree  # each running job is a fork of its worker
        if how == "ctrl-c to the group":
            os.killpg(process.pid, signal.SIGINT)
        elif how == "sigterm to the command":
            process.send_signal(signal.SIGTERM)
        else:
            os.kill(tree[jobs[0]][2], signal.SIGKILL)  # the worker of a job
        output, _ = process.communicate(timeout=120)
        left = left_behind(process.pid, since, clock_ticks(), seen)
    finally:
        process.kill()
        process.wait()
        for pid in session_processes(process.pid, since, clock_ticks()):  # dies with the test, not after pytest
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running after the sweep exited: {left}\n{output}"
    assert process.returncode != 0, output
    (parent,), children = runs_of(client, experiment_name)
    assert parent.info.status == KILLED
    statuses = [(child.info.status, child.data.tags.get(PROCESS_DIED_TAG)) for child in children]
    assert len(children) >= 2 and {child.info.status for child in children} == {KILLED}, statuses
    for child in children:
        if PROCESS_DIED_TAG in child.data.tags:
            assert "nmf-lab ended the run as KILLED" in child.data.tags[PROCESS_DIED_TAG]


@contextlib.contextmanager
def sigint_not_ignored():
    """A process started inside gets SIGINT's default action even when pytest ignores SIGINT, as it does when
    a non-interactive shell starts it in the background (``pytest &`` in a script, some CI runners): an ignored
    disposition is inherited across exec, the sweep would ignore the test's Ctrl-C and run on until the timeout."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def proc_stat(pid: int) -> tuple[str, int, int, str] | None:
    """(state, parent pid, session id, start time) of a process, from /proc/<pid>/stat; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[3]), fields[19]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def process_tree(root: int) -> dict[int, tuple[str, str, int]]:
    """The live processes under ``root``, however deep: pid -> (start time, command line, parent pid)."""
    stats = {pid: stat for pid in all_pids() if (stat := proc_stat(pid)) is not None}
    tree, queue = {}, [root]
    while queue:
        parent = queue.pop()
        for pid, (state, ppid, _, start) in stats.items():
            if ppid == parent and state not in "ZX":
                tree[pid] = (start, command_line(pid), ppid)
                queue.append(pid)
    return tree


def clock_ticks() -> int:
    """Now, in the unit of a process's start time in /proc/<pid>/stat: clock ticks since boot."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK")) + 1


def session_processes(session: int, since: int, until: int) -> dict[int, str]:
    """The live processes of the session ``session`` that started between ``since`` and ``until`` (clock ticks
    since boot): pid -> command line. The bounds keep out a later session that reuses the id (the pid of its
    leader, once that has exited: pids wrap, at 32768 on many machines)."""
    return {
        pid: command_line(pid)
        for pid in all_pids()
        if (stat := proc_stat(pid)) is not None
        and stat[2] == session
        and stat[0] not in "ZX"
        and since <= int(stat[3]) <= until
    }


def left_behind(session: int, since: int, until: int, seen: dict, grace: float = 15.0) -> dict[int, str]:
    """After the sweep (its process, the leader of ``session``, started at ``since`` and ended by ``until``)
    exited: the processes of ``seen`` (pid -> (start time, ...)) that still run, and those of its session, as
    pid -> command line; empty if none is left within ``grace`` seconds (the resource trackers of
    multiprocessing and loky exit once every process that used them has, and nothing else of the sweep may be
    left; a leaked job would fit on for hours)."""
    deadline = time.monotonic() + grace
    while True:
        left = session_processes(session, since, until)
        for pid, (start, line, _) in seen.items():
            stat = proc_stat(pid)
            if stat is not None and stat[3] == start and stat[0] not in "ZX":  # the same process, still running
                left[pid] = line
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def running_children(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    return [run for run in runs if "mlflow.parentRunId" in run.data.tags]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_process_gone_tells_a_dead_process_from_a_live_one():
    here = process_tags()
    assert here[PID_TAG] == str(os.getpid()) and here[HOST_TAG] == socket.gethostname()
    assert process_gone(here) is None  # this process
    pid = dead_pid()
    assert process_gone({**here, PID_TAG: str(pid)}) == f"process {pid} on {here[HOST_TAG]} has exited"
    if PID_START_TAG in here:  # Linux: a pid now used by another process than the one recorded
        assert "another process" in process_gone({**here, PID_START_TAG: "1"})
        killed = subprocess.Popen(["sleep", "60"])
        os.kill(killed.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "Z" not in Path(f"/proc/{killed.pid}/stat").read_text().rsplit(")", 1)[1][:3]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        zombie = {**here, PID_TAG: str(killed.pid)}  # killed, not reaped yet by its parent: gone too
        assert process_gone(zombie) == f"process {killed.pid} on {here[HOST_TAG]} has exited"
        killed.wait()
    assert process_gone({**here, HOST_TAG: "another-host"}) is None  # cannot be told from here


def test_process_tags_name_the_slurm_job_as_squeue_and_scancel_take_it(monkeypatch):
    """Outside SLURM no job tag; in a job its id; in a task of an array job ``<array job>_<task>`` (the bare id
    of the array's first task would name the whole array). The variables are the ones slurmd sets; a real
    cluster's tags: tests/test_slurm.py."""
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert SLURM_JOB_TAG not in process_tags()
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    assert process_tags()[SLURM_JOB_TAG] == "1234"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "1200")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert process_tags()[SLURM_JOB_TAG] == "1200_3"


def test_the_summary_ends_orphans_and_leaves_live_runs(client, experiment_name, tmp_path, capsys):
    """A sweep whose parent is open, one child FINISHED, one RUNNING whose process has exited, one RUNNING in
    this (live) process: ``nmf-lab-summary`` ends the orphan FAILED with the note, and only it."""
    from nmf_lab.harness.cli import summary_main

    experiment_id = client.create_experiment(experiment_name)
    study = {"nmf_lab.study": "a_study_that_is_gone"}  # no study summary: the harness's alone
    with tracked_run(client, experiment_id, run_name="sweep", tags=study, end=False) as parent:
        pass
    alive = process_tags()
    children = {}
    for name, tags, end in (
        ("finished", alive, True),
        ("orphan", {**alive, PID_TAG: str(dead_pid())}, False),
        ("alive", alive, False),
    ):
        with tracked_run(client, experiment_id, run_name=name, parent_run_id=parent.run_id, tags=tags, end=end) as run:
            run.log_params({"name": name})
        children[name] = run.run_id
    summary_main([parent.run_id, "--tracking-uri", client.tracking_uri])
    status = {name: client.get_run(run_id).info.status for name, run_id in children.items()}
    assert status == {"finished": FINISHED, "orphan": FAILED, "alive": RUNNING}
    orphan = client.get_run(children["orphan"])
    assert "has exited" in orphan.data.tags[PROCESS_DIED_TAG]
    assert client.get_run(parent.run_id).data.metrics["n_failed"] == 2  # the orphan and the RUNNING child
    assert "summary of 3 children (2 failed)" in capsys.readouterr().out
    client.set_terminated(children["alive"], FINISHED)
    client.set_terminated(parent.run_id, FINISHED)
