"""One job is one MLflow run: open it, record the config and provenance, run the study, end it.

In a sweep the run is a child of the sweep's parent (named by ``$NMF_LAB_PARENT_RUN_ID``) and a failure is
recorded without stopping the other jobs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from omegaconf import DictConfig, OmegaConf

from nmf_lab.core.inits import INITS
from nmf_lab.distributed.engine import Engine, EngineConfig, EngineUnavailable, check_engine, engine_session
from nmf_lab.harness.config import HARNESS_KEYS, Config, ConfigError, load_study, run_params
from nmf_lab.harness.processes import process_tags
from nmf_lab.presentation import describe
from nmf_lab.tracking.lifecycle import FAILED, FINISHED, tracked_run
from nmf_lab.tracking.provenance import provenance_tags
from nmf_lab.tracking.run_log import TAG_PREFIX, RunLog, set_description
from nmf_lab.tracking.store import (
    TrackingUnavailable,
    describe_experiment,
    experiment_name_of,
    get_experiment_id,
    open_client,
)
from nmf_lab.tracking.stored import (
    StoredRun,
    artifact_files,
    finished_run_with_tag,
    image_width,
    read_text_artifact,
    run_experiment_id,
)

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[2]
"""The project's root: its git commit is what a run records."""

PARENT_RUN_ENV = "NMF_LAB_PARENT_RUN_ID"
"""Set for the jobs of a multirun (worker processes inherit it): the run id of the sweep's parent."""

TRIAL_ENV = "NMF_LAB_TRIAL"
"""Set for one job of a search (``hydra/sweeper=optuna``, through ``hydra.job.env_set``): its trial's number."""

TRIAL_TAG = TAG_PREFIX + "trial"
"""A search's job tags its run with its trial's number: the sweeper reads the trial's outcome from that run."""

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
    report: Callable[[str], None] | None = None,
) -> str:
    """Run one job as one MLflow run and return its final status (``FINISHED`` or ``FAILED``).

    ``cfg`` is the job's composed config (without Hydra's node) and ``settings`` its validated form. In a
    sweep the run goes to the parent's experiment, else to ``experiment_name``.
    In a sweep a failure is recorded (FAILED, with its traceback) and the status returned; outside a sweep
    it is re-raised. ``blas_threads`` limits the BLAS threads of the job (None: no limit). The ended run gets
    its description (:func:`describe_run`), and ``report`` (e.g. ``print``) is given the block that says
    where the run is and what it measured (:func:`nmf_lab.presentation.describe.job_block`).
    """
    from threadpoolctl import threadpool_limits

    study = load_study(settings.experiment.study)
    client = open_client(settings.tracking.uri)
    parent_run_id = os.environ.get(PARENT_RUN_ENV) if in_sweep else None
    if parent_run_id:  # a sweep's jobs go where its parent is
        experiment_id = run_experiment_id(client, parent_run_id)
    else:
        experiment_id = get_experiment_id(client, experiment_name)
        describe_experiment(client, experiment_id, study_experiment_note(study))
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
        **process_tags(),  # which process runs the job: a sweep's summary ends the run if it dies
    }
    if in_sweep and os.environ.get(TRIAL_ENV):
        tags[TRIAL_TAG] = os.environ[TRIAL_ENV]
    if earlier is not None:
        tags[REUSED_TAG] = earlier.info.run_id
    command = None if in_sweep else " ".join(["nmf-lab", *overrides])
    run_id = None

    def ended(error: BaseException | None = None) -> None:
        describe_run(client, run_id, study, command=command, parent_run_id=parent_run_id, error=error, report=report)

    with threadpool_limits(limits=blas_threads, user_api="blas"):
        try:
            with tracked_run(
                client,
                experiment_id,
                run_name=" ".join(overrides) or experiment_name,
                parent_run_id=parent_run_id,
                tags=tags,
            ) as run:
                run_id = run.run_id
                log_config(run, cfg)
                if earlier is not None:
                    log.info("skipping %s: run %s has the same config", " ".join(overrides), earlier.info.run_id)
                    run.copy_metrics_from(earlier)
                else:
                    with engine_session(settings.engine or EngineConfig()) as engine:
                        log_engine(run, engine, report)
                        study.run(settings, run)
        except Exception as error:
            if run_id is not None:
                ended(error)
            if not in_sweep:
                raise
            log.exception("job %s failed; the sweep goes on", " ".join(overrides))
            return FAILED
    ended()
    return FINISHED


def describe_run(
    client,
    run_id: str,
    study: ModuleType,
    *,
    command: str | None,
    parent_run_id: str | None = None,
    error: BaseException | None = None,
    report: Callable[[str], None] | None = None,
) -> None:
    """Write an ended run's description (:func:`nmf_lab.presentation.describe.run_note`: the study's task, how the run
    was made, its headline metrics and figures, the error of a failed run) and give ``report`` its console
    block. A failure here is logged, never raised: the run itself is done."""
    try:
        run = StoredRun.load(client, run_id)
        metrics = describe.headline(study)
        message = None if error is None else f"{type(error).__name__}: {error}"
        parent = None
        if parent_run_id:
            parent = (StoredRun.load(client, parent_run_id).name, parent_run_id)
        note = describe.run_note(
            run,
            task=describe.study_task(study),
            study=study.__name__,
            metrics=metrics,
            figures=logged_figures(client, run_id),
            tables=markdown_tables(client, run_id),
            command=command,
            parent=parent,
            error=message,
        )
        set_description(client, run_id, note)
        if report is not None:
            links = describe.ui_links(client.tracking_uri)
            if parent_run_id:  # the sweep's end says how to start the UI, once
                links = describe.UiLinks(links.base)
            experiment = experiment_name_of(client, run.experiment_id)
            report(describe.job_block(run, experiment=experiment, metrics=metrics, links=links, error=message))
    except Exception:
        log.exception("the description of run %s could not be written", run_id)


def log_engine(run: RunLog, engine: Engine, report: Callable[[str], None] | None) -> None:
    """Tag the run with its engine (kind, workers, dashboard) and, on Dask, say so (the CLI prints it)."""
    tags = {f"{TAG_PREFIX}engine": engine.kind, f"{TAG_PREFIX}engine.workers": str(engine.workers)}
    if engine.dashboard:
        tags[f"{TAG_PREFIX}engine.dashboard"] = engine.dashboard
    run.set_tags(tags)
    if engine.kind != "numpy" and report is not None:
        report(engine.describe())


def logged_figures(client, run_id: str) -> dict[str, int | None]:
    """The figures a run logged under ``figures/``: {artifact path: width in pixels}."""
    return {path: image_width(client, run_id, path) for path in artifact_files(client, run_id, "figures")}


def markdown_tables(client, run_id: str) -> dict[str, str]:
    """The Markdown tables a run logged under ``tables/``: {artifact path: text}."""
    paths = [path for path in artifact_files(client, run_id, "tables") if path.endswith(".md")]
    return {path: read_text_artifact(client, run_id, path) for path in paths}


def study_experiment_note(study: ModuleType) -> str:
    """The description of an experiment that a study's runs open."""
    return describe.experiment_note(task=describe.study_task(study), study=study.__name__)


class DataUnavailable(RuntimeError):
    """A job's data cannot be read (no copy, offline, wrong checksum); raised before any run exists."""


USER_ERRORS = (ConfigError, DataUnavailable, TrackingUnavailable, EngineUnavailable)
"""What a user can fix: the app stops on them with one line (:func:`stop`), not a traceback."""

SVD_INITS = tuple(init for init in INITS if init != "random")
"""The initial guesses built from the truncated SVD of A: they need d <= min(m, n)."""


def check_data(settings: Config) -> None:
    """Before any run exists: the job's data can be read (:func:`locate_data`), d fits it (:func:`check_rank`)
    and its engine can be used (:func:`nmf_lab.distributed.engine.check_engine`: a scheduler that does not
    answer is one line)."""
    locate_data(settings)
    check_rank(settings)
    check_engine(settings.engine or EngineConfig())


def locate_data(settings: Config) -> None:
    """Find the job's data: a data loader may have ``locate()``, which finds the data (and downloads and
    verifies it if need be), raising ``OSError`` or ``ValueError`` when it cannot; that becomes
    :class:`DataUnavailable`."""
    locate = getattr(settings.data, "locate", None)
    if callable(locate):
        try:
            locate()
        except (OSError, ValueError) as error:
            raise DataUnavailable(f"the data of this job cannot be read: {error}") from error


def check_rank(settings: Config) -> None:
    """An SVD-based initial guess needs d <= min(m, n); a data loader may tell (m, n) without reading its data
    (``matrix_shape``). Raises :class:`~nmf_lab.harness.config.ConfigError` naming the rank."""
    shape = getattr(settings.data, "matrix_shape", None)
    if shape is not None and settings.init in SVD_INITS and settings.rank > min(shape):
        raise ConfigError(
            f"invalid config value rank={settings.rank}: init={settings.init} needs rank <= min(m, n) = "
            f"{min(shape)} for A of shape {tuple(shape)} (there are only {min(shape)} singular vectors); "
            f"choose a smaller rank or init=random"
        )


def stop(error: BaseException) -> NoReturn:
    """Stop the app on a user's error (:data:`USER_ERRORS`): ``nmf-lab: <message>`` on stderr and exit
    status 1. With ``HYDRA_FULL_ERROR=1`` the full traceback comes first."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(error)
    raise SystemExit(f"nmf-lab: {error}") from error


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
    """The params the run used (:func:`nmf_lab.harness.config.run_params`) and the whole resolved config as the
    artifact ``config.yaml``."""
    run.log_params(run_params(cfg))
    run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
