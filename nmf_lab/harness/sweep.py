"""The Hydra callback of a multirun: a sweep is one parent run whose children are its jobs.

:class:`SweepCallback` (configured under ``hydra.callbacks``) validates every job of a multirun, opens the
parent run before the first job and writes the summary (:mod:`nmf_lab.harness.summary`) after the last.
"""

from __future__ import annotations

import atexit
import logging
import os

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from nmf_lab.harness.config import Config, ConfigError, experiment_name, job_config, load_study, run_params, validate
from nmf_lab.harness.job import (
    PARENT_RUN_ENV,
    PROJECT_DIR,
    STUDY_TAG,
    USER_ERRORS,
    check_rank,
    locate_data,
    logged_figures,
    markdown_tables,
    stop,
    study_experiment_note,
    study_tags,
)
from nmf_lab.harness.processes import adopt_orphans, end_descendants
from nmf_lab.harness.summary import end_orphans, summarize_sweep
from nmf_lab.presentation import describe
from nmf_lab.tracking.lifecycle import (
    FAILED,
    FINISHED,
    KILLED,
    RUNNING,
    end_run,
    raise_interrupted_on_sigterm,
    run_status,
    tracked_run,
)
from nmf_lab.tracking.provenance import provenance_tags
from nmf_lab.tracking.run_log import TAG_PREFIX, set_description
from nmf_lab.tracking.store import describe_experiment, experiment_name_of, get_experiment_id, open_client
from nmf_lab.tracking.stored import StoredRun, child_runs

SWEEP_TAG = TAG_PREFIX + "sweep"

log = logging.getLogger(__name__)


class SweepCallback(Callback):
    """Opens the parent run of a multirun and closes it with the sweep's summary."""

    def __init__(self) -> None:
        self.client = None
        self.parent_run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # SIGTERM stops the sweep as Ctrl-C does (a launcher's workers stopped, the runs ended KILLED at exit),
        # instead of killing this process outright with its parent run left RUNNING.
        raise_interrupted_on_sigterm()
        # No process outlives the sweep: the jobs of a killed worker are re-parented to this process, which kills
        # whatever is left of its workers and their jobs when it exits (_at_exit).
        adopt_orphans()
        atexit.register(self._at_exit)
        # Hydra turns a callback's Exception into a warning; SystemExit is how a callback stops the sweep.
        try:
            self._open_parent(config, kwargs.get("config_name"))
        except USER_ERRORS as error:
            stop(error)
        except Exception as error:  # e.g. a job's config that does not compose: no job may run without a parent
            raise SystemExit(f"nmf-lab: the sweep could not start: {type(error).__name__}: {error}") from error

    def _open_parent(self, config: DictConfig, config_name: str | None) -> None:
        jobs = compose_jobs(config_name, sweep_jobs(config), hydra_overrides=list(config.hydra.overrides.hydra))
        studies = sorted({settings.experiment.study for _, settings, _ in jobs})
        if len(studies) > 1:
            raise ConfigError(f"a sweep runs one study, and this one would run {', '.join(studies)}: sweep each apart")
        names = {experiment_name(settings, hydra) for _, settings, hydra in jobs}
        _, first, first_hydra = jobs[0]
        for settings in {repr(settings.data): settings for _, settings, _ in jobs}.values():
            locate_data(settings)  # each data set once: no run exists before its data is found
        for _, settings, _ in jobs:
            check_rank(settings)
        name = names.pop() if len(names) == 1 else first_hydra.runtime.choices.experiment
        self.client = open_client(first.tracking.uri)
        experiment_id = get_experiment_id(self.client, name)
        study = load_study(studies[0])
        describe_experiment(self.client, experiment_id, study_experiment_note(study))
        sweep = " ".join(_sweep_arguments(config))
        with tracked_run(
            self.client,
            experiment_id,
            run_name=f"sweep: {sweep}",
            tags={
                STUDY_TAG: studies[0],
                SWEEP_TAG: sweep,
                **study_tags(studies[0]),
                **provenance_tags(PROJECT_DIR),
            },
            end=False,
        ) as parent:
            parent.log_params(common_params([run_params(cfg) for cfg, _, _ in jobs]))
            n_jobs = int(config.hydra.sweeper.get("n_trials") or len(jobs))  # a search: its trials, not the checks
            parent.log_metrics({"n_jobs": n_jobs})
            note = describe.sweep_started_note(
                task=describe.study_task(study), study=studies[0], sweep=sweep, n_jobs=n_jobs
            )
            set_description(self.client, parent.run_id, note)
        self.parent_run_id = parent.run_id
        os.environ[PARENT_RUN_ENV] = parent.run_id
        log.info("sweep of %d jobs; parent run %s", n_jobs, parent.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        assert self.client is not None and self.parent_run_id is not None
        os.environ.pop(PARENT_RUN_ENV, None)
        try:
            summary = summarize_sweep(self.client, self.parent_run_id)
        except Exception as error:
            log.exception("the summary of the sweep failed")
            end_run(self.client, self.parent_run_id, FAILED)
            raise SystemExit(f"nmf-lab: the summary of parent run {self.parent_run_id} failed: {error!r}") from error
        # A search (hydra/sweeper=optuna) records a failed trial and goes on: it fails only if every job failed.
        fatal = getattr(sweeper_class(config), "failed_jobs_fatal", True) or summary.n_failed == summary.n_children
        failed = bool(summary.n_failed) and fatal
        end_run(self.client, self.parent_run_id, FAILED if failed else FINISHED)
        log.info("sweep summary logged to parent run %s", self.parent_run_id)
        print(describe_sweep(self.client, self.parent_run_id, summary.varied), flush=True)
        if failed:
            raise SystemExit(
                f"nmf-lab: {summary.n_failed} of {summary.n_children} jobs failed; their tracebacks are "
                f"in their runs (parent run {self.parent_run_id})"
            )

    def _at_exit(self) -> None:
        """At exit, however the sweep ended: every process it started that is still running is killed and waited
        for (:func:`nmf_lab.harness.processes.end_descendants`: joblib's workers, stopped on an interruption with a
        race of their own, and the jobs they forked). Then, after an interruption, the parent of the unfinished
        sweep ends as KILLED, and so do its children whose process died
        (:func:`nmf_lab.harness.summary.end_orphans`)."""
        killed = end_descendants()
        if killed:
            log.warning("killed %d processes the sweep left running: %s", len(killed), killed)
        if self.client is None or self.parent_run_id is None:
            return
        if run_status(self.client, self.parent_run_id) == RUNNING:
            end_orphans(self.client, child_runs(self.client, self.parent_run_id), KILLED)
            end_run(self.client, self.parent_run_id, KILLED)


def describe_sweep(client, parent_run_id: str, varied: list[str]) -> str:
    """Write a sweep parent's description from the store (:func:`nmf_lab.presentation.describe.sweep_note`: its
    jobs with the ``varied`` params, status and headline metrics, the study's summary tables and figures) and return
    the block the CLI prints (:func:`nmf_lab.presentation.describe.sweep_block`)."""
    parent = StoredRun.load(client, parent_run_id)
    children = child_runs(client, parent_run_id)
    study_name = parent.tags.get(STUDY_TAG, "")
    try:
        study = load_study(study_name)
        task, metrics = describe.study_task(study), describe.headline(study)
    except ConfigError:  # the study is gone (nmf-lab-summary of an old sweep)
        task, metrics = f"A sweep of the study `{study_name}`.", describe.DEFAULT_HEADLINE
    note = describe.sweep_note(
        parent,
        task=task,
        study=study_name,
        sweep=parent.tags.get(SWEEP_TAG, ""),
        children=children,
        varied=varied,
        metrics=metrics,
        tables=markdown_tables(client, parent_run_id),
        figures=logged_figures(client, parent_run_id),
    )
    set_description(client, parent_run_id, note)
    header, rows = describe.children_rows(children, varied, metrics)
    return describe.sweep_block(
        parent,
        experiment=experiment_name_of(client, parent.experiment_id),
        n_children=len(children),
        n_failed=sum(child.status != FINISHED for child in children),
        table=describe.text_table(header, rows),
        links=describe.ui_links(client.tracking_uri),
    )


def _sweep_arguments(config: DictConfig) -> list[str]:
    params = config.hydra.sweeper.get("params") or {}
    return [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The override list of every job of a multirun, as Hydra's basic sweeper will expand them. A sweeper that
    samples its jobs (``hydra/sweeper=optuna``) says which jobs to check instead (its ``jobs_to_check``)."""
    jobs_to_check = getattr(sweeper_class(config), "jobs_to_check", None)
    if jobs_to_check is not None:
        return jobs_to_check(_sweep_arguments(config))
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(_sweep_arguments(config))
    return BasicSweeper.split_arguments(overrides, None)[0]


def sweeper_class(config: DictConfig) -> type:
    """The class of the multirun's sweeper (``hydra.sweeper._target_``)."""
    from hydra.utils import get_class

    return get_class(config.hydra.sweeper._target_)


def compose_jobs(
    config_name: str | None, jobs: list[list[str]], hydra_overrides: list[str]
) -> list[tuple[DictConfig, Config, DictConfig]]:
    """Compose and validate the config of every job: (its job config, its settings, its Hydra node), so that a
    bad value stops the sweep before any run exists.

    ``hydra_overrides`` are the command line's ``hydra.*`` overrides: ``hydra.searchpath`` decides which
    config files exist (a user's own experiments).
    """
    from hydra import compose

    searchpath = [override for override in hydra_overrides if override.startswith("hydra.searchpath=")]
    composed = []
    for overrides in jobs:
        full = compose(config_name=config_name, overrides=[*searchpath, *overrides], return_hydra_config=True)
        cfg = job_config(full)
        composed.append((cfg, validate(cfg), full.hydra))
    return composed


def common_params(params: list[dict]) -> dict:
    """The params every job of a sweep has with the same value: what a parent run can truly say it used."""
    first, *others = params
    return {key: value for key, value in first.items() if all(key in p and p[key] == value for p in others)}
