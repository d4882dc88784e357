"""The processes that run jobs: which one runs a job (recorded as tags on its run), whether it is still alive,
and running a job in a child process of its own so that its death (SIGKILL, the out-of-memory killer) takes
down nothing else.

A job that is killed outright cannot end its own run, which then stays RUNNING: the sweep's summary finds such
orphans with :func:`process_gone` and ends them FAILED, or KILLED when the sweep itself was interrupted
(:func:`nmf_lab.harness.summary.end_orphans`).

No process outlives its sweep: the sweep's process adopts the processes orphaned under it
(:func:`adopt_orphans`) and kills whatever it started that is still there when it exits (:func:`end_descendants`),
and a job's child dies with the worker that forked it (:func:`run_in_child`).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
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
    it to end its run (KILLED) and re-raises. Killed outright (a joblib worker SIGKILLed by its pool), the caller
    takes the child with it: the child gets SIGTERM (Linux), so that no job fits on with nobody waiting for it."""
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_run_and_send, args=(job, writer, os.getpid()), name="nmf-lab-job")
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


def _run_and_send(job: Callable[[], str], writer, parent: int) -> None:
    """In the child: run ``job`` and send back ("status", its status) or ("error", the exception it raised).
    The child gets SIGTERM (it ends its run KILLED) when ``parent``, the process that forked it, dies."""
    _die_with_parent(signal.SIGTERM, parent)
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


# -- no process outlives its sweep (Linux: /proc and prctl; elsewhere these do nothing) ---------------------

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` (Linux); False where it is not available or fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent(signum: int, parent: int) -> None:
    """Ask the kernel to send ``signum`` to this process when the process that forked it (``parent``) dies; if it
    has died already (it is no longer this process's parent), exit now: nothing has started yet."""
    if _prctl(_PR_SET_PDEATHSIG, int(signum)) and os.getppid() != parent:
        os._exit(1)


def adopt_orphans() -> bool:
    """Make this process a child subreaper (Linux): a process started under it whose parent dies (a job forked
    by a joblib worker that was killed) is re-parented to this process instead of init, so that
    :func:`end_descendants` still finds it. Returns whether it took effect."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _processes() -> dict[int, tuple[str, int]]:
    """Every process's (state, parent pid), from /proc (empty where there is no /proc)."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry)] = (fields[0], int(fields[1]))
    return table


def descendants(pid: int | None = None) -> list[int]:
    """The pids of the live processes (not zombies) under ``pid`` (default: this process), children first."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for child, (_, parent) in table.items():
        children.setdefault(parent, []).append(child)
    found, queue = [], [os.getpid() if pid is None else pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            queue.append(child)
            if table[child][0] not in "ZX":
                found.append(child)
    return found


def _is_resource_tracker(pid: int) -> bool:
    """Whether ``pid`` is a resource tracker of multiprocessing or loky: it ignores SIGINT and SIGTERM, holds
    nothing but the names of what it must clean up, and exits by itself, cleaning up, once every process that
    used it (this one included) has exited; killing it would leave its semaphores and temporary folders behind."""
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def end_descendants(timeout: float = 60.0) -> list[int]:
    """Kill (SIGKILL) every process this one started that is still running, however deep (joblib's workers and
    the jobs they forked; with :func:`adopt_orphans`, those whose parent died too), and wait until each has
    died; return their pids. Resource trackers are left to exit after this process (:func:`_is_resource_tracker`).

    Repeated until a scan finds none: a worker may fork a job between a scan and its kill, and that job is found
    by the next scan. SIGKILL, because joblib's workers turn SIGTERM into an exception of the job they run and
    go on with the next one. Gives up with an error logged after ``timeout`` seconds (a process that cannot be
    killed, e.g. stuck in the kernel)."""
    deadline = time.monotonic() + timeout
    killed: list[int] = []
    while True:
        alive = [pid for pid in descendants() if not _is_resource_tracker(pid)]
        if not alive:
            return killed
        if time.monotonic() > deadline:
            log.error("processes %s started by this sweep are still alive after SIGKILL", alive)
            return killed
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.02)
