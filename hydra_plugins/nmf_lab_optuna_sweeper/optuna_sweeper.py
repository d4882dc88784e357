"""A Hydra sweeper on current Optuna (``hydra/sweeper=optuna``): a search is one sweep whose jobs are its trials.

    nmf-lab -m experiment=movies hydra/sweeper=optuna 'hydra.sweeper.params.rank=int(interval(1,6))' \\
        hydra.sweeper.objective=relative_error hydra.sweeper.direction=minimize hydra.sweeper.n_trials=20

The search space is spelled as the official ``hydra-optuna-sweeper`` spells it (which pins ``optuna<3``, whose
database storage fails with SQLAlchemy 2.x): under ``hydra.sweeper.params`` or as command-line sweeps,
``choice(a,b)`` or ``a,b`` (categorical), ``range(a,b[,step])`` and ``int(interval(a,b))`` (integers),
``interval(a,b)`` (floats), ``tag(log, interval(a,b))`` (log scale); a plain value is the same in every trial.

Each launcher call runs a batch of trials asked from the study (ask/tell): ``n_jobs`` of them (default: the
launcher's parallelism), so trials run in parallel through joblib or SLURM. The trials are ordinary jobs of the
sweep (child runs of its parent, :class:`nmf_lab.harness.sweep.SweepCallback`); each learns its trial number
through ``$NMF_LAB_TRIAL`` (``hydra.job.env_set``) and tags its run with it, and the objective is read back
from that run's metrics (:mod:`nmf_lab.harness.search` does the study's work). Hydra scans this module at every
start: it imports Hydra only, and Optuna, MLflow and nmf-lab when a search runs.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module outside sys.modules, where a
# dataclass cannot resolve string annotations.
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

TRIAL_ENV = "NMF_LAB_TRIAL"
"""The environment variable that tells a job its trial number (:data:`nmf_lab.harness.job.TRIAL_ENV`; not
imported, so that Hydra's plugin scan imports no nmf-lab)."""


NO_PARAMS = (
    "the search has no parameters: give a sweep on the command line (e.g. 'rank=int(interval(1,6))'), under "
    "hydra.sweeper.params, or an hparams_search config"
)


class SearchSpaceError(ValueError):
    """A search space Optuna cannot sample (a shuffled range, a choice of lists, an empty interval)."""


@dataclass(frozen=True)
class Param:
    """One searched parameter: its override key as written (``rank``, ``+mine.factor``), its name in the study
    (the key without ``+``/``++``) and its distribution: ``categorical`` (``choices``), ``int`` or ``float``
    (``low``..``high`` inclusive, an optional ``step``, ``log`` scale). A choice of lists or dicts
    (``choice([16],[24,32])``) is a choice of their texts, ``raw`` in an override."""

    key: str
    name: str
    kind: str
    low: Any = None
    high: Any = None
    step: Any = None
    log: bool = False
    choices: tuple = ()
    raw: frozenset = frozenset()

    def distribution(self):
        import optuna.distributions as dist

        if self.kind == "categorical":
            return dist.CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return dist.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return dist.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def override(self, value: Any) -> str:
        if value in self.raw:
            return f"{self.key}={value}"
        return f"{self.key}={Override._get_value_element_as_str(value)}"

    def extremes(self) -> list:
        """The values a sweep's configs are checked with before any run: every choice, or both ends."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """The searched parameters and the overrides every trial gets (``fixed``)."""

    params: tuple[Param, ...]
    fixed: tuple[str, ...] = field(default=())

    def distributions(self) -> dict:
        return {param.name: param.distribution() for param in self.params}

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """A trial's overrides: the fixed ones, then each searched parameter at its value."""
        return [*self.fixed, *(param.override(values[param.name]) for param in self.params)]

    def describe(self) -> str:
        """One line per parameter, sorted: what makes a study (the default study name digests it)."""
        lines = [
            f"{param.name}: {param.kind} {list(param.choices) if param.choices else [param.low, param.high]}"
            + (f" step {param.step}" if param.step else "")
            + (" log" if param.log else "")
            for param in self.params
        ]
        return "\n".join(sorted(lines) + [f"fixed: {override}" for override in sorted(self.fixed)])


def search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """The search space of ``hydra.sweeper.params`` ({key: sweep}) and the command line's ``arguments``: a sweep
    is a parameter, a plain value an override every trial gets. Raises :class:`SearchSpaceError`."""
    texts = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    found: dict[str, Param] = {}
    fixed = []
    for override in OverridesParser.create().parse_overrides(texts):
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed.append(f"{key}={override.get_value_element_as_str()}")
            continue
        name = override.key_or_group
        found[name] = _param(key, name, override.value())
    return SearchSpace(params=tuple(found.values()), fixed=tuple(fixed))


def _param(key: str, name: str, sweep: Any) -> Param:
    log_scale = "log" in (sweep.tags or set())
    if isinstance(sweep, ChoiceSweep):
        if sweep.shuffle:
            raise SearchSpaceError(f"{key}: shuffle() means nothing to a sampler; give the choices as they are")
        # Optuna's choices are single values: a list or dict is chosen as its text
        texts = {
            i: Override._get_value_element_as_str(v) for i, v in enumerate(sweep.list) if isinstance(v, (list, dict))
        }
        choices = tuple(texts.get(i, value) for i, value in enumerate(sweep.list))
        return Param(key, name, "categorical", choices=choices, raw=frozenset(texts.values()))
    if isinstance(sweep, RangeSweep):
        if sweep.shuffle:
            raise SearchSpaceError(f"{key}: shuffle(range(...)) means nothing to a sampler; give range(...)")
        values = list(_range_values(sweep))
        if not values:
            raise SearchSpaceError(f"{key}: range({sweep.start}, {sweep.stop}, {sweep.step}) is empty")
        kind = "int" if all(isinstance(v, int) for v in [sweep.start, sweep.step]) else "float"
        return Param(key, name, kind, low=values[0], high=values[-1], step=sweep.step, log=log_scale)
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if not low < high:
            raise SearchSpaceError(f"{key}: interval({low}, {high}) is empty; the low end comes first")
        if log_scale and low <= 0:
            raise SearchSpaceError(f"{key}: tag(log, interval({low}, {high})) needs a low end above 0")
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        return Param(key, name, kind, low=low, high=high, log=log_scale)
    raise SearchSpaceError(f"{key}: {sweep!r} is not a sweep Optuna can sample (choice, range or interval)")


def _range_values(sweep: RangeSweep):
    value = sweep.start
    while (sweep.step > 0 and value < sweep.stop) or (sweep.step < 0 and value > sweep.stop):
        yield value
        value = value + sweep.step
        if isinstance(value, float):
            value = round(value, 12)


def jobs_to_check(arguments: Sequence[str]) -> list[list[str]]:
    """The jobs whose configs the sweep's callback composes and checks before any run exists
    (:func:`nmf_lab.harness.sweep.sweep_jobs`): every parameter at its first extreme, then each parameter in turn
    at each of its other extremes (a choice's every option, an interval's two ends)."""
    space = search_space(None, arguments)
    if not space.params:
        raise SearchSpaceError(NO_PARAMS)
    first = {param.name: param.extremes()[0] for param in space.params}
    jobs = [space.overrides(first)]
    for param in space.params:
        for value in param.extremes()[1:]:
            jobs.append(space.overrides({**first, param.name: value}))
    return jobs


class OptunaSweeper(Sweeper):
    """Hydra's sweeper for ``hydra/sweeper=optuna`` (its parameters: ``conf/hydra/sweeper/optuna.yaml``)."""

    failed_jobs_fatal = False
    """A failed trial is recorded (FAIL) and the search goes on: the sweep's callback does not fail the sweep."""

    jobs_to_check = staticmethod(jobs_to_check)

    def __init__(
        self,
        objective: str,
        direction: str = "minimize",
        n_trials: int = 20,
        n_jobs: int | None = None,
        storage: str | None = None,
        study_name: str | None = None,
        sampler: Any = None,
        pruner: Any = None,
        intermediate: str | None = "error",
        checkpoints: int = 10,
        params: Mapping[str, Any] | None = None,
        report: Sequence[str] = (),
    ) -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction={direction!r}: choose minimize or maximize")
        if int(n_trials) < 1:
            raise ValueError(f"hydra.sweeper.n_trials={n_trials}: a search needs at least 1 trial")
        self.objective = str(objective)
        self.direction = direction
        self.n_trials = int(n_trials)
        self.n_jobs = None if n_jobs is None else max(1, int(n_jobs))
        self.storage = storage
        self.study_name = study_name
        self.sampler = sampler
        self.pruner = pruner
        self.intermediate = intermediate
        self.checkpoints = max(1, int(checkpoints))
        self.report = [str(metric) for metric in (report or [])]
        self.params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from nmf_lab.harness.search import Search

        assert self.config is not None and self.launcher is not None
        space = search_space(self.params, arguments)
        if not space.params:
            raise SystemExit(f"nmf-lab: {NO_PARAMS}")
        search = Search.open(
            self.config,
            space,
            objective=self.objective,
            direction=self.direction,
            storage=self.storage,
            study_name=self.study_name,
            sampler=self.sampler,
            pruner=self.pruner,
            intermediate=self.intermediate,
            checkpoints=self.checkpoints,
            report=self.report,
        )
        batch = self.n_jobs or launcher_parallelism(self.config.hydra.launcher)
        log.info(
            "Optuna study %r (%d trials so far): %d trials, %d at a time",
            search.name,
            search.n_trials,
            self.n_trials,
            batch,
        )
        job_idx = 0
        while job_idx < self.n_trials and not search.stopped:
            trials = search.ask(min(batch, self.n_trials - job_idx))
            jobs = [
                [*space.overrides(trial.params), f"+hydra.job.env_set.{TRIAL_ENV}={trial.number}"] for trial in trials
            ]
            try:
                self.validate_batch_is_legal(jobs)
                self.launcher.launch(jobs, initial_job_idx=job_idx)
            except BaseException:
                search.abandon(trials)  # interrupted: the asked trials end FAIL, not RUNNING forever
                raise
            job_idx += len(trials)
            search.tell(trials)
        search.finish()


def launcher_parallelism(launcher: DictConfig) -> int:
    """How many jobs the launcher runs at once: joblib's ``n_jobs`` (negative: cores + 1 + n_jobs), submitit's
    ``array_parallelism`` (SLURM), else 1 (Hydra's basic launcher runs one job at a time)."""
    import os

    target = str(launcher.get("_target_", "")).lower()
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or -1)
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs if n_jobs < 0 else n_jobs)
    if "array_parallelism" in launcher:
        return max(1, int(launcher.get("array_parallelism") or 1))
    return 1
