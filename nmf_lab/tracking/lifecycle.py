"""A run's life: created by :func:`tracked_run` and always ended in a final state (FINISHED, FAILED, or KILLED
on Ctrl-C or SIGTERM), ended later by whoever owns it (:func:`end_run`), or ended as an orphan when its process
died without ending it (:func:`end_orphan`). A run's status is set here and nowhere else."""

from __future__ import annotations

import signal
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

    with access_errors(client.tracking_uri, action):
        run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    run_log = RunLog(client, run.info.run_id)
    try:
        yield run_log
    except (KeyboardInterrupt, Interrupted):
        client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        try:
            run_log.log_text(traceback.format_exc(), "error/traceback.txt")
        finally:
            client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    if end:
        client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.FINISHED))


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
