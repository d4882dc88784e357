"""The processes that run jobs: which one runs a job (recorded as tags on its run), whether it is still alive,
and running a job in a child process of its own so that its death (SIGKILL, the out-of-memory killer) takes
down nothing else.

A job that is killed outright cannot end its own run, which then stays RUNNING: the sweep's summary finds such
orphans with :func:`process_gone` and ends them FAILED, or KILLED when the sweep itself was interrupted
(:func:`nmf_lab.harness.summary.end_orphans`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

HOST_TAG = "nmf_lab.host"
PID_TAG = "nmf_lab.pid"
PID_START_TAG = "nmf_lab.pid_start"
SLURM_JOB_TAG = "nmf_lab.slurm_job_id"

SLURM_ALIVE = {"PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "COMPLETING", "REQUEUED", "RESIZING", "STOPPED"}
"""squeue states of a SLURM job whose processes may still run (any other state: it has ended)."""


def process_tags() -> dict[str, str]:
    """Tags that identify the process running a job: its host, pid, the pid's start time (Linux; tells a
    reused pid apart) and, inside a SLURM job, the job id (``<array job>_<task>`` for a task of an array job, as
    ``squeue -j`` and ``scancel`` take it: the bare id of the array's first task names the whole array)."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    stat = _stat(os.getpid())
    if stat is not None:
        tags[PID_START_TAG] = stat[1]
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
    if job:
        tags[SLURM_JOB_TAG] = job
    return tags


def process_gone(tags: Mapping[str, str]) -> str | None:
    """Why the process a run's ``tags`` name (:func:`process_tags`) is known to be gone, or None when it is
    alive or cannot be told from here (another host, no SLURM client)."""
    job = tags.get(SLURM_JOB_TAG)
    if job and shutil.which("squeue"):
        state = slurm_state(job)
        if state is None or state in SLURM_ALIVE:
            return None
        return f"its SLURM job {job} is {state or 'no longer known to SLURM'}"
    pid, host = tags.get(PID_TAG), tags.get(HOST_TAG)
    if not pid or host != socket.gethostname():
        return None
    where = f"process {pid} on {host}"
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return f"{where} has exited"
    except PermissionError:  # alive, another user's
        pass
    stat = _stat(int(pid))
    if stat is not None and stat[0] in "ZX":  # killed, not yet reaped by its parent
        return f"{where} has exited"
    start = tags.get(PID_START_TAG)
    if start is not None and stat is not None and stat[1] != start:
        return f"{where} has exited (the pid now belongs to another process)"
    return None


def _stat(pid: int) -> tuple[str, str] | None:
    """The state of the process ``pid`` (R, S, ..., Z for a zombie) and when it started, in clock ticks after
    boot (fields 3 and 22 of /proc/<pid>/stat; Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the fields after the command name, which may hold spaces
    return fields[0], fields[19]


def slurm_state(job: str) -> str | None:
    """The state squeue reports for ``job`` (e.g. RUNNING, CANCELLED), "" when SLURM no longer knows the job,
    or None when squeue cannot tell (no controller)."""
    try:
        done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return "" if "Invalid job id" in done.stderr else None
    states = done.stdout.split()
    return states[0] if states else ""


def run_in_child(job: Callable[[], str], died: str) -> str:
    """Run ``job`` (a function returning the job's final status) in a forked child process and return the
    status it returned, or ``died`` when the child was killed (by a signal it cannot catch) before it returned.
    An exception the job raises is raised here. Nothing but the job dies with the child: under joblib a worker
    that dies breaks its whole pool (loky then kills every other worker and the sweep stops), while a job in a
    child leaves the worker alive, and the pool goes on with the other jobs.

    The child is a ``multiprocessing`` fork, which exits as multiprocessing's children do (releasing what it
    made, e.g. tqdm's lock). The caller must not have opened database or HTTP connections before: the child
    would share them. Interrupted itself (Ctrl-C, SIGTERM), the caller passes SIGTERM on to the child, waits for
    it to end its run (KILLED) and re-raises."""
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_run_and_send, args=(job, writer), name="nmf-lab-job")
    sys.stdout.flush()
    sys.stderr.flush()
    child.start()
    writer.close()
    try:
        try:
            outcome = reader.recv()
        except EOFError:  # the child died before it sent anything
            outcome = None
        child.join()
    except BaseException:
        _terminate(child)
        raise
    finally:
        reader.close()
    if outcome is None:
        code = child.exitcode or 0
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        log.error("the job's process %d died (%s) before it could end its run", child.pid, how)
        return died
    kind, value = outcome
    if kind == "error":
        raise value
    return value


def _run_and_send(job: Callable[[], str], writer) -> None:
    """In the child: run ``job`` and send back ("status", its status) or ("error", the exception it raised)."""
    try:
        outcome = ("status", job())
    except BaseException as error:  # everything goes back to the parent
        outcome = ("error", error)
    try:
        pickle.loads(pickle.dumps(outcome))
    except Exception:  # an exception that does not pickle: its text does
        error = outcome[1]
        outcome = ("error", RuntimeError(f"{type(error).__name__}: {error}"))
    writer.send(outcome)
    writer.close()


def _terminate(child) -> None:
    """Ask the ``child`` process to stop (SIGTERM: it ends its run KILLED) and wait for it."""
    if child.is_alive():
        child.terminate()
    child.join()
