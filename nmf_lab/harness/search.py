"""A search: an Optuna study whose trials are the jobs of one sweep (``hydra/sweeper=optuna``, the sweeper in
``hydra_plugins/nmf_lab_optuna_sweeper``).

The study lives in the tracking store's own database (the sqlite file of ``sqlite:///mlruns/mlflow.db``, or the
PostgreSQL database behind it; a tracking *server* needs ``hydra.sweeper.storage``), under a name made from the
experiment, the objective and the search space, so that the same command run again adds trials to the same
study. Trials are asked in batches (ask/tell); each is one job of the sweep, a child run of its parent tagged
``nmf_lab.trial``. When a batch has ended, each trial's outcome is read from its run: FAILED (or no run) is a
failed trial (Optuna's FAIL), a FINISHED run gives the objective, its final metric. Pruning reads the run's
error at ``checkpoints`` evenly spaced iterations. A job whose study fits through
:func:`experiments.shared.fit` reports them itself while it fits (:func:`trial_callback`, the fit's callback:
``$NMF_LAB_SEARCH`` names the study, its storage and pruner) and stops its fit when the pruner prunes it; its run
ends FINISHED with ``nmf_lab.stop_reason = callback`` and the trial PRUNED. For any other study the sweeper reads
the run's metric history (``intermediate``, by default ``error``, step = iteration) at the checkpoints when the job
has ended, and a pruner that would have stopped the trial at one of them marks it PRUNED: that records which trials
a pruner finds unpromising and tells the sampler, but does not save their time.

At the end the parent run gets the tag ``nmf_lab.best_run`` (the run of the study's best trial), the metrics
``study_trials`` (trials in the study so far, earlier sweeps included) and ``best_<objective>``, the figures
``figures/optimization_history.png`` and ``figures/param_importances.png`` and the table ``tables/search.md``
(the best trial linked to its run, then every trial), which its description shows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Sequence
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from nmf_lab.harness.config import ConfigError
from nmf_lab.harness.job import PARENT_RUN_ENV, TRIAL_TAG
from nmf_lab.presentation import describe, search_figures
from nmf_lab.tracking.lifecycle import FAILED, FINISHED, end_run
from nmf_lab.tracking.run_log import TAG_PREFIX, RunLog, set_description
from nmf_lab.tracking.store import experiment_name_of, open_client
from nmf_lab.tracking.stored import StoredRun, child_runs

log = logging.getLogger(__name__)

BEST_RUN_TAG = TAG_PREFIX + "best_run"
STUDY_NAME_TAG = TAG_PREFIX + "optuna_study"
STUDY_STORAGE_TAG = TAG_PREFIX + "optuna_storage"
TRIAL_STATE_TAG = TAG_PREFIX + "trial_state"
RUN_ID_ATTR = "mlflow_run_id"
"""The user attribute of a trial that names its run."""

RUN_VALUE_ATTR = "run_objective"
"""The user attribute of a trial that holds its run's objective metric (for a pruned trial: where its fit stopped;
Optuna's value of a pruned trial is its last intermediate value, e.g. the absolute error)."""

SEARCH_ENV = "NMF_LAB_SEARCH"
"""Set by the sweeper when it has a pruner (its jobs inherit it): JSON of the study's name, storage, pruner config
and checkpoints, with which a job reports its fit's error and stops when pruned (:func:`trial_callback`)."""

PRUNED_ATTR = "pruned_at_step"
"""The user attribute a job sets on its trial when the pruner stopped its fit there."""

STORAGE_ENV = "NMF_LAB_OPTUNA_STORAGE"
"""The study's database when the tracking store is a server (``hydra.sweeper.storage`` reads it)."""


def storage_url(configured: str | None, tracking_uri: str) -> str:
    """Where the study is stored: ``configured``, else the tracking store's database (sqlite, PostgreSQL, MySQL).
    A tracking server hides its database: then ``hydra.sweeper.storage`` must name it (:class:`ConfigError`)."""
    if configured:
        return configured
    if urlsplit(tracking_uri).scheme.split("+")[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        return tracking_uri
    raise ConfigError(
        f"the tracking store {tracking_uri} is a server, whose database an Optuna study cannot share through it: "
        f"set hydra.sweeper.storage (or ${STORAGE_ENV}) to a database URI, e.g. the server's own "
        f"postgresql+psycopg2://user:password@host/mlflow"
    )


def masked(url: str) -> str:
    """A database URI with its password replaced by ``***``."""
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@", 1) if parts.password else url


def default_study_name(experiment: str, objective: str, direction: str, space_text: str) -> str:
    """``<experiment>: <objective> <direction> [<digest of the search space>]``: the same command, the same study."""
    digest = hashlib.sha256(space_text.encode()).hexdigest()[:8]
    return f"{experiment}: {objective} {direction} [{digest}]"


def instantiate_seeded(config, offset: int = 0):
    """A sampler or pruner from its config (``{_target_: ..., seed: ...}``; None stays None). A seed is moved on by
    ``offset`` (the trials the study has): a resumed study does not draw its first sweep's values again."""
    if config is None:
        return None
    from hydra.utils import instantiate

    config = OmegaConf.to_container(config) if isinstance(config, DictConfig) else dict(config)
    if config.get("seed") is not None:
        config["seed"] = int(config["seed"]) + offset
    return instantiate(config)


def checkpoint_steps(n_steps: int, checkpoints: int) -> list[int]:
    """``checkpoints`` steps spread evenly over a curve of ``n_steps`` values, ending at the last one."""
    if n_steps <= 0:
        return []
    return sorted({max(0, round(k * (n_steps - 1) / checkpoints)) for k in range(1, checkpoints + 1)})


def trial_callback(total: int, metric: str = "error"):
    """In a job of a search with a pruner whose intermediate values are ``metric`` (``$NMF_LAB_SEARCH`` and
    ``$NMF_LAB_TRIAL`` set): a callback ``callback(k, value)`` that reports the metric at the checkpoints of steps
    0..``total`` (a fit's iterations, a denoiser's members) to the job's trial and returns True (stop) when the
    pruner prunes it, after recording the step in the trial's user attribute ``pruned_at_step``. None elsewhere,
    for another metric, or when the study cannot be reached (the job then runs to its end and the sweeper
    judges its curve)."""
    from nmf_lab.harness.job import TRIAL_ENV

    spec, number = os.environ.get(SEARCH_ENV), os.environ.get(TRIAL_ENV)
    if not spec or number is None:
        return None
    spec = json.loads(spec)
    if spec.get("intermediate", "error") != metric:
        return None
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.RDBStorage(spec["storage"], skip_compatibility_check=True)
        study = optuna.load_study(
            study_name=spec["study"],
            storage=storage,
            sampler=optuna.samplers.RandomSampler(),  # never samples here: the trial has its params
            pruner=instantiate_seeded(spec["pruner"]),
        )
        study_id = storage.get_study_id_from_name(spec["study"])
        trial = optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, int(number)))
    except Exception:
        log.exception("trial %s cannot report to its study; it runs to its end", number)
        return None
    steps = set(checkpoint_steps(total + 1, int(spec["checkpoints"])))  # the curve: values at steps 0..total

    def callback(k: int, error: float) -> bool:
        if k not in steps or not math.isfinite(error):
            return False
        try:
            trial.report(float(error), k)
            if trial.should_prune():
                trial.set_user_attr(PRUNED_ATTR, k)
                log.info("trial %s pruned at step %d (%s %.6g)", number, k, metric, error)
                return True
        except Exception:
            log.exception("trial %s could not report step %d", number, k)
        return False

    return callback


class Search:
    """One sweep's part of a study: ask trials, tell their outcome read from their runs, write the parent's
    summary. Open it with :meth:`open` (inside a sweep: the parent run exists)."""

    def __init__(
        self,
        client,
        parent: StoredRun,
        study,
        space,
        *,
        storage,
        objective,
        direction,
        intermediate,
        checkpoints,
        report=(),
    ):
        self.client = client
        self.storage = storage
        self.parent = parent
        self.study = study
        self.space = space
        self.distributions = space.distributions()
        self.objective = objective
        self.direction = direction
        self.intermediate = intermediate
        self.checkpoints = checkpoints
        self.report = list(report)  # metrics of the best trial's run reported at the end, never seen by the search
        self.told: dict[int, str] = {}  # trial number -> state, this sweep's trials
        self.problem: str | None = None

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def n_trials(self) -> int:
        return len(self.study.get_trials(deepcopy=False))

    @property
    def stopped(self) -> bool:
        return self.problem is not None

    @classmethod
    def open(
        cls,
        config: DictConfig,
        space,
        *,
        objective: str,
        direction: str,
        storage: str | None,
        study_name: str | None,
        sampler=None,
        pruner=None,
        intermediate: str | None = "error",
        checkpoints: int = 10,
        report: Sequence[str] = (),
    ) -> Search:
        """Create or load the study (``load_if_exists``: the same name continues it) in the tracking store's
        database, and record it on the sweep's parent run (``$NMF_LAB_PARENT_RUN_ID``)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        client = open_client(config.tracking.uri)
        parent = StoredRun.load(client, os.environ[PARENT_RUN_ENV])
        url = storage_url(storage, client.tracking_uri)
        experiment = experiment_name_of(client, parent.experiment_id)
        name = study_name or default_study_name(experiment, objective, direction, space.describe())
        # MLflow's schema and Optuna's share the database and its one alembic_version table (MLflow's revision):
        # Optuna's check of its own revision would fail there. Its tables carry their version in version_info.
        rdb = optuna.storages.RDBStorage(url, skip_compatibility_check=True)
        study = optuna.create_study(storage=rdb, study_name=name, direction=direction, load_if_exists=True)
        study.sampler = instantiate_seeded(sampler, offset=len(study.get_trials(deepcopy=False)))
        study.pruner = instantiate_seeded(pruner) or optuna.pruners.NopPruner()
        if study.direction.name.lower() != direction:
            raise SystemExit(
                f"nmf-lab: the study {name!r} exists and is to {study.direction.name.lower()} its objective, "
                f"not to {direction}: choose another hydra.sweeper.study_name"
            )
        if pruner is not None and intermediate:  # jobs that report this metric as they go stop when pruned
            pruner_config = OmegaConf.to_container(pruner) if isinstance(pruner, DictConfig) else dict(pruner)
            spec = {"storage": url, "study": name, "pruner": pruner_config, "checkpoints": checkpoints,
                    "intermediate": intermediate}  # fmt: skip
            os.environ[SEARCH_ENV] = json.dumps(spec)
        study.set_user_attr("objective", objective)
        study.set_user_attr("space", space.describe())
        RunLog(client, parent.run_id).set_tags({STUDY_NAME_TAG: name, STUDY_STORAGE_TAG: masked(url)})
        RunLog(client, parent.run_id).log_params(
            {
                "search.objective": objective,
                "search.direction": direction,
                "search.sampler": type(study.sampler).__name__,
                "search.pruner": type(study.pruner).__name__,
            }
        )
        return cls(
            client,
            parent,
            study,
            space,
            storage=masked(url),
            objective=objective,
            direction=direction,
            intermediate=intermediate,
            checkpoints=checkpoints,
            report=report,
        )

    def ask(self, n: int) -> list:
        return [self.study.ask(self.distributions) for _ in range(n)]

    def tell(self, trials: Sequence) -> None:
        """Each trial's outcome, read from its run (the parent's child tagged with its number)."""
        from optuna.trial import TrialState

        runs = {child.tags.get(TRIAL_TAG): child for child in child_runs(self.client, self.parent.run_id)}
        for trial in trials:
            run = runs.get(str(trial.number))
            state, value = TrialState.FAIL, None
            if run is None:
                log.error("trial %d: its job made no run; recorded as failed", trial.number)
            else:
                trial.set_user_attr(RUN_ID_ATTR, run.run_id)
                value = run.metrics.get(self.objective)
                if value is not None and math.isfinite(value):
                    trial.set_user_attr(RUN_VALUE_ATTR, value)
                if run.status != FINISHED:
                    log.warning("trial %d: run %s ended %s; recorded as failed", trial.number, run.run_id, run.status)
                elif value is None:
                    self.problem = (
                        f"hydra.sweeper.objective={self.objective} is not a metric of the trials' runs (run "
                        f"{run.run_id} logged {', '.join(sorted(run.metrics)) or 'no metrics'})"
                    )
                elif not math.isfinite(value):
                    log.warning("trial %d: %s = %s; recorded as failed", trial.number, self.objective, value)
                elif self._pruned(trial, run):
                    state = TrialState.PRUNED
                else:
                    state = TrialState.COMPLETE
            if state == TrialState.COMPLETE:
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=state)
            self.told[trial.number] = state.name
            if run is not None:
                RunLog(self.client, run.run_id).set_tags({TRIAL_STATE_TAG: state.name, STUDY_NAME_TAG: self.name})

    def _pruned(self, trial, run: StoredRun) -> bool:
        """Report the run's ``intermediate`` curve at the checkpoints; True if the pruner stops it at one."""
        reported = self.study.get_trials(deepcopy=False)[trial.number]
        if PRUNED_ATTR in reported.user_attrs:  # the job's fit was stopped there (trial_callback)
            log.info("trial %d was pruned at step %d", trial.number, reported.user_attrs[PRUNED_ATTR])
            return True
        if reported.intermediate_values:  # reported by the job as it fitted, and not pruned
            return False
        if not self.intermediate or self.intermediate not in run.metrics:
            return False
        curve = run.curve(self.intermediate)
        for step in checkpoint_steps(len(curve), self.checkpoints):
            if not math.isfinite(curve[step]):
                continue
            trial.report(float(curve[step]), step)
            if trial.should_prune():
                log.info("trial %d pruned at step %d (%s = %.6g)", trial.number, step, self.intermediate, curve[step])
                return True
        return False

    def abandon(self, trials: Sequence) -> None:
        """Trials asked but not told (the sweep was interrupted) end FAIL rather than RUNNING forever."""
        from optuna.trial import TrialState

        for trial in trials:
            if trial.number not in self.told:
                try:
                    self.study.tell(trial, state=TrialState.FAIL)
                except Exception:  # already finished, or the storage is gone: nothing more to do
                    log.exception("trial %d could not be ended", trial.number)

    def finish(self, out=print) -> None:
        """Write the study's summary to the parent run, and give ``out`` the console block. A trial metric that
        does not exist stops the sweep here: the parent ends FAILED, saying which metrics there are."""
        os.environ.pop(SEARCH_ENV, None)  # the jobs are done
        if self.problem is not None:
            set_description(self.client, self.parent.run_id, f"**Search FAILED**: {self.problem}\n")
            end_run(self.client, self.parent.run_id, FAILED)
            raise SystemExit(f"nmf-lab: {self.problem}")
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
        best = self.study.best_trial if complete else None
        parent = RunLog(self.client, self.parent.run_id)
        metrics = {
            "study_trials": len(trials),
            "study_trials_complete": len(complete),
            "trials_pruned": sum(state == "PRUNED" for state in self.told.values()),
            "trials_failed": sum(state == "FAIL" for state in self.told.values()),
        }
        best_run = None
        if best is not None:
            metrics[f"best_{self.objective}"] = best.value
            best_run = best.user_attrs.get(RUN_ID_ATTR)
            if best_run:
                parent.set_tags({BEST_RUN_TAG: best_run})
                reported = StoredRun.load(self.client, best_run).metrics
                metrics.update({f"best_{key}": reported[key] for key in self.report if key in reported})
        parent.log_metrics(metrics)
        self._log_figures(parent, trials)
        parent.log_text(self._table(trials, best), "tables/search.md")
        out(self._block(trials, best, best_run, metrics), flush=True)

    def _log_figures(self, parent: RunLog, trials) -> None:
        title = f"{self.name} ({len(trials)} trials)"
        figure = search_figures.optimization_history(
            [trial.number for trial in trials],
            [trial.user_attrs.get(RUN_VALUE_ATTR, trial.value if trial.values else None) for trial in trials],
            [trial.state.name for trial in trials],
            objective=self.objective,
            direction=self.direction,
            title=title,
        )
        parent.log_figure(figure, "figures/optimization_history.png")
        importances, note = self._importances()
        n_complete = sum(trial.state.name == "COMPLETE" for trial in trials)
        title = f"{self.name}: from {n_complete} complete trials" + (f" ({note})" if importances and note else "")
        figure = search_figures.param_importances(importances, objective=self.objective, title=title, note=note)
        parent.log_figure(figure, "figures/param_importances.png")

    def _importances(self) -> tuple[dict[str, float], str]:
        import optuna

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                importances = dict(optuna.importance.get_param_importances(self.study))
        except (RuntimeError, ValueError) as error:
            log.info("no parameter importances: %s", error)
            return {}, f"not computable yet: {error}"
        return importances, "; ".join(str(warning.message) for warning in caught)

    def _table(self, trials, best) -> str:
        """``tables/search.md``: the best trial with a link to its run, then every trial of the study."""
        names = [param.name for param in self.space.params]
        route = self._run_route
        if best is None:
            head = f"No trial of the study `{self.name}` has completed yet."
        else:
            run_id = best.user_attrs.get(RUN_ID_ATTR, "")
            values = ", ".join(f"`{key}={value}`" for key, value in best.params.items())
            head = (
                f"**Best trial** #{best.number} of {len(trials)} in the study `{self.name}`: "
                f"{self.objective} = {describe.number(best.value)} with {values}; "
                f"its run: [{run_id[:8]}]({route(run_id)})"
            )
        rows = [
            [
                f"#{trial.number}",
                trial.state.name,
                describe.number(trial.user_attrs.get(RUN_VALUE_ATTR, trial.value if trial.values else None)),
                *(str(trial.params.get(name, "")) for name in names),
                f"[{trial.user_attrs[RUN_ID_ATTR][:8]}]({route(trial.user_attrs[RUN_ID_ATTR])})"
                if RUN_ID_ATTR in trial.user_attrs
                else "",
            ]
            for trial in trials
        ]
        table = describe.markdown_table(["trial", "state", self.objective, *names, "run"], rows)
        return f"{head}\n\n{table}\n"

    def _run_route(self, run_id: str) -> str:
        return describe.run_route(self.parent.experiment_id, run_id)

    def _block(self, trials, best, best_run: str | None, metrics: dict) -> str:
        """What the CLI prints when the search ends (before the sweep's block)."""
        counts = {state: sum(s == state for s in self.told.values()) for state in ("COMPLETE", "PRUNED", "FAIL")}
        rows = [
            ("study", self.name),
            ("storage", self.storage),
            (
                "trials",
                f"{len(trials)} in the study; this sweep {len(self.told)}: {counts['COMPLETE']} complete, "
                f"{counts['PRUNED']} pruned, {counts['FAIL']} failed",
            ),
        ]
        if best is not None:
            values = " ".join(f"{key}={value}" for key, value in best.params.items())
            rows.append(("best trial", f"#{best.number}: {self.objective} = {describe.number(best.value)} ({values})"))
            for key in self.report:  # e.g. a clean-image score the search never saw
                if f"best_{key}" in metrics:
                    rows.append((f"its {key}", f"{describe.number(metrics[f'best_{key}'])} (reported, not searched)"))
        if best_run:
            links = describe.ui_links(self.client.tracking_uri)
            rows.append(("best run", f"{best_run} ({BEST_RUN_TAG} on the parent)"))
            rows.append(("in the UI", links.run(self.parent.experiment_id, best_run)))
        return f"Search of {self.objective} ({self.direction})\n" + describe.aligned(rows)
