"""A run's life: created by :func:`tracked_run` and always ended in a final state (FINISHED, FAILED, or KILLED
on Ctrl-C or SIGTERM), ended later by whoever owns it (:func:`end_run`), or ended as an orphan when its process
died without ending it (:func:`end_orphan`). A run's status is set here and nowhere else."""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

from nmf_lab.tracking.run_log import TAG_PREFIX, RunLog
from nmf_lab.tracking.store import access_errors

FINISHED, FAILED, KILLED, RUNNING = (
    RunStatus.to_string(status)
    for status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.RUNNING)
)
"""Run statuses as MLflow spells them."""


class Interrupted(BaseException):
    """Raised in the main thread on SIGTERM, so that a terminated job ends its run as KILLED."""


def raise_interrupted_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Interrupted` (SIGINT already raises ``KeyboardInterrupt``)."""

    def handler(signum, frame):
        raise Interrupted(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


@contextmanager
def tracked_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    end: bool = True,
) -> Iterator[RunLog]:
    """Create a run and make sure it ends in a final state.

    FINISHED when the block completes; FAILED when it raises (the traceback is logged as
    ``error/traceback.txt`` and the exception re-raised); KILLED on Ctrl-C or SIGTERM. With ``end=False``
    a successful block leaves the run open (a sweep's parent, ended by its summary).
    """
    all_tags = dict(tags or {})
    if run_name:
        all_tags[MLFLOW_RUN_NAME] = run_name
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id

    def action() -> str:
        return f"create runs in experiment {client.get_experiment(experiment_id).name!r}"

    run_log = None
    try:
        # Ctrl-C or SIGTERM while the run is being created takes effect once it exists, here: not between its
        # creation in the store and this block, which would leave it RUNNING with nobody to end it.
        with _interrupts_deferred(), access_errors(client.tracking_uri, action):
            run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
            run_log = RunLog(client, run.info.run_id)
        yield run_log
    except (KeyboardInterrupt, Interrupted):
        if run_log is not None:
            client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        if run_log is None:  # the run could not be created
            raise
        try:
            run_log.log_text(traceback.format_exc(), "error/traceback.txt")
        finally:
            client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    if end:
        client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.FINISHED))


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on them as the handlers in place before would have
    (raising KeyboardInterrupt or :class:`Interrupted` from here, or the default action). Only the main thread
    receives signals in Python; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    before = {signum: signal.signal(signum, lambda signum, frame: pending.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)  # the handler restored above runs now


def run_status(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.status


def end_run(client: MlflowClient, run_id: str, status: str) -> None:
    """Set the final ``status`` (:data:`FINISHED`, :data:`FAILED` or :data:`KILLED`) of a run."""
    client.set_terminated(run_id, status)


PROCESS_DIED_TAG = TAG_PREFIX + "process_died"


def end_orphan(client: MlflowClient, run_id: str, note: str, status: str = FAILED) -> None:
    """End a RUNNING run whose process died without ending it, with ``status`` (FAILED, or KILLED), and
    ``note`` (why) as the tag ``nmf_lab.process_died`` and added to the run's description."""
    description = client.get_run(run_id).data.tags.get(MLFLOW_RUN_NOTE)
    client.set_tag(run_id, PROCESS_DIED_TAG, note)
    client.set_tag(run_id, MLFLOW_RUN_NOTE, f"{description}\n\n**{note}**" if description else f"**{note}**")
    client.set_terminated(run_id, status)
