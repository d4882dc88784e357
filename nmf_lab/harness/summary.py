"""The summary of a sweep, written to its parent run from what the store holds about the children.

First, a child still RUNNING whose process is gone (killed by SIGKILL, the out-of-memory killer or the cluster)
is ended FAILED with a note saying so (:func:`end_orphans`). Then always ``summary/children.csv`` (each child's
varied params, status and final metrics) and the metrics ``n_children`` and ``n_failed``; then whatever the
study's own ``summarize(children, parent)`` adds. It can be written again alone: ``nmf-lab-summary <parent run
id>``.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from nmf_lab.harness.config import ConfigError, load_study, typed_config
from nmf_lab.harness.job import STUDY_TAG
from nmf_lab.harness.processes import process_gone
from nmf_lab.tracking.lifecycle import FAILED, FINISHED, RUNNING, end_orphan
from nmf_lab.tracking.run_log import RunLog
from nmf_lab.tracking.stored import StoredRun, child_runs

log = logging.getLogger(__name__)


@dataclass
class SweepSummary:
    n_children: int
    n_failed: int
    varied: list[str]


def summarize_sweep(client, parent_run_id: str) -> SweepSummary:
    """Write the summary of the sweep whose parent run is ``parent_run_id`` (``client``: an MlflowClient)."""
    children = child_runs(client, parent_run_id, config_types=typed_config)
    end_orphans(client, children)
    varied = varied_params(children)
    parent = RunLog(client, parent_run_id)
    parent.log_text(children_csv(children, varied), "summary/children.csv")
    n_failed = sum(child.status != FINISHED for child in children)
    parent.log_metrics({"n_children": len(children), "n_failed": n_failed})
    finished = [child for child in children if child.status == FINISHED]
    study_name = client.get_run(parent_run_id).data.tags.get(STUDY_TAG)
    try:
        study = load_study(study_name)
    except ConfigError:
        log.warning("the study %r of sweep %s cannot be imported: no study summary", study_name, parent_run_id)
        study = None
    if study is not None and hasattr(study, "summarize") and finished:
        study.summarize(finished, parent)
    return SweepSummary(n_children=len(children), n_failed=n_failed, varied=varied)


def end_orphans(client, children: Sequence[StoredRun], status: str = FAILED) -> list[StoredRun]:
    """End with ``status`` (FAILED; KILLED when the sweep itself was interrupted) every child that is RUNNING
    while its process is known to be gone (:func:`process_gone`), with a note that says so; return those. A
    RUNNING child whose process lives, or cannot be checked from here (on another host without SLURM's squeue),
    is left as it is and logged."""
    orphans = []
    for child in children:
        if child.status != RUNNING:
            continue
        gone = process_gone(child.tags)
        if gone is None:
            log.warning("run %s is RUNNING and its process is alive or cannot be checked from here", child.run_id)
            continue
        note = (
            f"The job's process died before it could end this run: {gone}. It was killed by a signal it cannot "
            f"catch (SIGKILL, the out-of-memory killer, the cluster, an interrupted sweep stopping its workers); "
            f"nmf-lab ended the run as {status}."
        )
        end_orphan(client, child.run_id, note, status)
        child.status = status
        orphans.append(child)
        log.error("run %s: %s", child.run_id, note)
    return orphans


def varied_params(children: Sequence[StoredRun]) -> list[str]:
    """The params whose values differ between the children (what the sweep varied), sorted."""
    keys = sorted({key for child in children for key in child.params})
    return [key for key in keys if len({child.params.get(key) for child in children}) > 1]


def children_csv(children: Sequence[StoredRun], varied: Sequence[str]) -> str:
    metrics = sorted({key for child in children for key in child.metrics})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["run_id", "status", *varied, *metrics])
    for child in children:
        writer.writerow(
            [
                child.run_id,
                child.status,
                *(child.params.get(key, "") for key in varied),
                *(child.metrics.get(key, "") for key in metrics),
            ]
        )
    return buffer.getvalue()
