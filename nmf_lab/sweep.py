"""Jobs and sweeps: one job is one MLflow run; a Hydra multirun is a parent run with one child per job.

:class:`SweepCallback` (configured under ``hydra.callbacks``) validates every job of a multirun, opens the
parent run before the first job and writes the summary after the last. :func:`summarize_sweep` writes that
summary from what the store holds, so it can also be run again alone: ``nmf-lab-summary <parent run id>``.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import csv
import hashlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hydra.experimental.callback import Callback
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from nmf_lab.config import Config, ConfigError, validate
from nmf_lab.tracking import (
    TAG_PREFIX,
    RunLog,
    child_runs,
    flatten,
    TrackingUnavailable,
    finished_run_with_tag,
    get_experiment_id,
    open_client,
    provenance_tags,
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


def job_config(cfg: DictConfig) -> DictConfig:
    """A copy of a composed config without Hydra's own ``hydra`` node: what a job sees."""
    cfg = copy.deepcopy(cfg)
    if "hydra" in cfg:
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
    return cfg


def run_job(
    cfg: DictConfig,
    settings: Config,
    *,
    experiment_name: str,
    overrides: Sequence[str],
    in_sweep: bool,
    blas_threads: int | None = None,
) -> str:
    """Run one job as one MLflow run and return its final status.

    In a sweep the run is a child of the parent named by ``$NMF_LAB_PARENT_RUN_ID``, and a failure is
    recorded (FAILED, with its traceback) without stopping the other jobs. Outside a sweep it is re-raised.
    ``blas_threads`` limits the BLAS threads of the job (None: no limit).
    """
    from threadpoolctl import threadpool_limits

    from experiments import STUDIES

    client = open_client(settings.tracking.uri)
    experiment_id = get_experiment_id(client, experiment_name)
    parent_run_id = os.environ.get(PARENT_RUN_ENV) if in_sweep else None
    digest = config_digest(cfg)
    earlier = None
    if in_sweep and settings.sweep.skip_finished:
        earlier = finished_run_with_tag(client, experiment_id, CONFIG_DIGEST_TAG, digest)
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        tags = {
            STUDY_TAG: settings.experiment.study,
            OVERRIDES_TAG: " ".join(overrides),
            CONFIG_DIGEST_TAG: digest,
            **provenance_tags(PROJECT_DIR),
        }
        if earlier is not None:
            tags[REUSED_TAG] = earlier.info.run_id
        try:
            with tracked_run(
                client,
                experiment_id,
                run_name=" ".join(overrides) or experiment_name,
                parent_run_id=parent_run_id,
                tags=tags,
            ) as run:
                if earlier is not None:
                    log.info("skipping %s: run %s has the same config", " ".join(overrides), earlier.info.run_id)
                    run.copy_from(earlier)
                else:
                    log_config(run, cfg)
                    STUDIES[settings.experiment.study].run(settings, run)
        except Exception:
            if not in_sweep:
                raise
            log.exception("job %s failed; the sweep goes on", " ".join(overrides))
            return RunStatus.to_string(RunStatus.FAILED)
    return RunStatus.to_string(RunStatus.FINISHED)


def config_digest(cfg: DictConfig) -> str:
    """SHA-256 of the resolved config without ``tracking`` and ``sweep``: equal digests, equal jobs."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in ("tracking", "sweep"):
        container.pop(key, None)
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(container)).encode()).hexdigest()


def log_config(run: RunLog, cfg: DictConfig) -> None:
    """The resolved config as dotted params and as the artifact ``config.yaml``."""
    run.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
    run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")


class SweepCallback(Callback):
    """Opens the parent run of a multirun and closes it with the sweep's summary."""

    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.parent_run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # Hydra turns a callback's Exception into a warning; SystemExit is how a callback stops the sweep.
        try:
            self._open_parent(config, kwargs.get("config_name"))
        except (ConfigError, TrackingUnavailable) as error:
            raise SystemExit(f"nmf-lab: {error}") from error

    def _open_parent(self, config: DictConfig, config_name: str | None) -> None:
        cfg = job_config(config)
        settings = validate(cfg)
        jobs = sweep_jobs(config)
        validate_jobs(config_name, jobs)
        experiment_name = settings.tracking.experiment or config.hydra.runtime.choices.experiment
        self.client = open_client(settings.tracking.uri)
        experiment_id = get_experiment_id(self.client, experiment_name)
        sweep = " ".join(_sweep_arguments(config))
        with tracked_run(
            self.client,
            experiment_id,
            run_name=f"sweep: {sweep}",
            tags={
                STUDY_TAG: settings.experiment.study,
                TAG_PREFIX + "sweep": sweep,
                **provenance_tags(PROJECT_DIR),
            },
            end=False,
        ) as parent:
            log_config(parent, cfg)
            parent.log_metrics({"n_jobs": len(jobs)})
        self.parent_run_id = parent.run_id
        os.environ[PARENT_RUN_ENV] = parent.run_id
        atexit.register(self._kill_if_unfinished)
        log.info("sweep of %d jobs; parent run %s", len(jobs), parent.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        assert self.client is not None and self.parent_run_id is not None
        os.environ.pop(PARENT_RUN_ENV, None)
        try:
            summary = summarize_sweep(self.client, self.parent_run_id)
        except Exception as error:
            log.exception("the summary of the sweep failed")
            self.client.set_terminated(self.parent_run_id, RunStatus.to_string(RunStatus.FAILED))
            raise SystemExit(f"nmf-lab: the summary of parent run {self.parent_run_id} failed: {error!r}")
        status = RunStatus.FAILED if summary.n_failed else RunStatus.FINISHED
        self.client.set_terminated(self.parent_run_id, RunStatus.to_string(status))
        log.info("sweep summary logged to parent run %s", self.parent_run_id)
        if summary.n_failed:
            raise SystemExit(
                f"nmf-lab: {summary.n_failed} of {summary.n_children} jobs failed; their tracebacks are "
                f"in their runs (parent run {self.parent_run_id})"
            )

    def _kill_if_unfinished(self) -> None:
        """At exit after an interruption: the parent of an unfinished sweep ends as KILLED."""
        if self.client is None or self.parent_run_id is None:
            return
        run = self.client.get_run(self.parent_run_id)
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            self.client.set_terminated(self.parent_run_id, RunStatus.to_string(RunStatus.KILLED))


def _sweep_arguments(config: DictConfig) -> list[str]:
    params = config.hydra.sweeper.get("params") or {}
    return [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The override list of every job of a multirun, as Hydra's basic sweeper will expand them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(_sweep_arguments(config))
    return BasicSweeper.split_arguments(overrides, None)[0]


def validate_jobs(config_name: str | None, jobs: list[list[str]]) -> None:
    """Compose and validate the config of every job, so that a bad value stops the sweep before any run."""
    from hydra import compose

    for overrides in jobs:
        validate(compose(config_name=config_name, overrides=overrides))


@dataclass
class ChildRun:
    """A finished job as the summary sees it: read back from the tracking store."""

    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    client: MlflowClient = field(repr=False)

    def curve(self, key: str = "error") -> np.ndarray:
        """The metric ``key`` of this run by step, e.g. its error curve."""
        history = sorted(self.client.get_metric_history(self.run_id, key), key=lambda m: m.step)
        return np.array([m.value for m in history], dtype=np.float64)


@dataclass
class SweepSummary:
    n_children: int
    n_failed: int
    varied: list[str]


def summarize_sweep(client: MlflowClient, parent_run_id: str) -> SweepSummary:
    """Write the summary of a sweep to its parent run, from the children in the store.

    Always: ``summary/children.csv`` (each child's varied params, status and final metrics) and the
    metrics ``n_children`` and ``n_failed``; then whatever the study's own ``summarize`` adds.
    """
    from experiments import STUDIES

    parent = client.get_run(parent_run_id)
    children = [
        ChildRun(
            run_id=run.info.run_id,
            name=run.info.run_name or "",
            status=run.info.status,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            client=client,
        )
        for run in child_runs(client, parent_run_id)
    ]
    varied = varied_params(children)
    run = RunLog(client, parent_run_id)
    run.log_text(children_csv(children, varied), "summary/children.csv")
    n_failed = sum(child.status != RunStatus.to_string(RunStatus.FINISHED) for child in children)
    run.log_metrics({"n_children": len(children), "n_failed": n_failed})
    study = STUDIES.get(parent.data.tags.get(STUDY_TAG, ""))
    finished = [c for c in children if c.status == RunStatus.to_string(RunStatus.FINISHED)]
    if study is not None and hasattr(study, "summarize") and finished:
        study.summarize(finished, run)
    return SweepSummary(n_children=len(children), n_failed=n_failed, varied=varied)


def varied_params(children: Sequence[ChildRun]) -> list[str]:
    """The params whose values differ between the children (what the sweep varied), sorted."""
    keys = sorted({key for child in children for key in child.params})
    return [key for key in keys if len({child.params.get(key) for child in children}) > 1]


def children_csv(children: Sequence[ChildRun], varied: Sequence[str]) -> str:
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


def summary_main(argv: Sequence[str] | None = None) -> None:
    """``nmf-lab-summary``: write a sweep's summary again, from its parent run id."""
    parser = argparse.ArgumentParser(prog="nmf-lab-summary", description=summary_main.__doc__)
    parser.add_argument("parent_run_id", help="the run id of the sweep's parent run")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="the store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)",
    )
    args = parser.parse_args(argv)
    client = open_client(args.tracking_uri)
    summary = summarize_sweep(client, args.parent_run_id)
    print(
        f"summary of {summary.n_children} children ({summary.n_failed} failed) written to run "
        f"{args.parent_run_id}; varied: {', '.join(summary.varied) or 'nothing'}"
    )
