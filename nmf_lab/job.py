"""One job is one MLflow run: open it, record the config and provenance, run the study, end it.

In a sweep the run is a child of the sweep's parent (named by ``$NMF_LAB_PARENT_RUN_ID``) and a failure is
recorded without stopping the other jobs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nmf_lab.config import HARNESS_KEYS, Config, load_study, run_params
from nmf_lab.tracking import (
    FAILED,
    FINISHED,
    TAG_PREFIX,
    RunLog,
    finished_run_with_tag,
    get_experiment_id,
    open_client,
    provenance_tags,
    run_experiment_id,
    tracked_run,
)

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[1]
"""The project's root: its git commit is what a run records."""

PARENT_RUN_ENV = "NMF_LAB_PARENT_RUN_ID"
"""Set for the jobs of a multirun (worker processes inherit it): the run id of the sweep's parent."""

STUDY_TAG = TAG_PREFIX + "study"
OVERRIDES_TAG = TAG_PREFIX + "overrides"
CONFIG_DIGEST_TAG = TAG_PREFIX + "config_digest"
REUSED_TAG = TAG_PREFIX + "reused_from"


def run_job(
    cfg: DictConfig,
    settings: Config,
    *,
    experiment_name: str,
    overrides: Sequence[str],
    in_sweep: bool,
    blas_threads: int | None = None,
) -> str:
    """Run one job as one MLflow run and return its final status (``FINISHED`` or ``FAILED``).

    ``cfg`` is the job's composed config (without Hydra's node) and ``settings`` its validated form. In a
    sweep the run goes to the parent's experiment, else to ``experiment_name``.
    In a sweep a failure is recorded (FAILED, with its traceback) and the status returned; outside a sweep
    it is re-raised. ``blas_threads`` limits the BLAS threads of the job (None: no limit).
    """
    from threadpoolctl import threadpool_limits

    study = load_study(settings.experiment.study)
    client = open_client(settings.tracking.uri)
    parent_run_id = os.environ.get(PARENT_RUN_ENV) if in_sweep else None
    if parent_run_id:  # a sweep's jobs go where its parent is
        experiment_id = run_experiment_id(client, parent_run_id)
    else:
        experiment_id = get_experiment_id(client, experiment_name)
    digest = config_digest(cfg)
    earlier = None
    if in_sweep and settings.sweep.skip_finished:
        earlier = finished_run_with_tag(client, experiment_id, CONFIG_DIGEST_TAG, digest)
    tags = {
        STUDY_TAG: settings.experiment.study,
        OVERRIDES_TAG: " ".join(overrides),
        CONFIG_DIGEST_TAG: digest,
        **study_tags(settings.experiment.study),
        **provenance_tags(PROJECT_DIR),
    }
    if earlier is not None:
        tags[REUSED_TAG] = earlier.info.run_id
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        try:
            with tracked_run(
                client,
                experiment_id,
                run_name=" ".join(overrides) or experiment_name,
                parent_run_id=parent_run_id,
                tags=tags,
            ) as run:
                log_config(run, cfg)
                if earlier is not None:
                    log.info("skipping %s: run %s has the same config", " ".join(overrides), earlier.info.run_id)
                    run.copy_metrics_from(earlier)
                else:
                    study.run(settings, run)
        except Exception:
            if not in_sweep:
                raise
            log.exception("job %s failed; the sweep goes on", " ".join(overrides))
            return FAILED
    return FINISHED


def study_tags(study: str) -> dict[str, str]:
    """Which code the study ran: its file and the file's SHA-256 (a user's study lives outside nmf-lab's git
    repository, whose commit the provenance tags record)."""
    path = Path(load_study(study).__file__ or "")
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "unknown"
    return {TAG_PREFIX + "study_file": str(path), TAG_PREFIX + "study_sha256": digest}


def config_digest(cfg: DictConfig) -> str:
    """SHA-256 of the resolved config without the harness's keys: equal digests, equal jobs."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in HARNESS_KEYS:
        container.pop(key, None)
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(container)).encode()).hexdigest()


def log_config(run: RunLog, cfg: DictConfig) -> None:
    """The params the run used (:func:`nmf_lab.config.run_params`) and the whole resolved config as the
    artifact ``config.yaml``."""
    run.log_params(run_params(cfg))
    run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
