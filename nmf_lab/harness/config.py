"""The job config: what Hydra composes, checked and typed before any MLflow run exists.

A composed config has the harness's own nodes (``experiment``, ``rank``, ``seed``, ``tracking``, ``sweep``,
``blas_threads``), the plug-in nodes that name what they build (``data._target_``: a loader class;
``solver.name``: a registered solver) and the nodes of the study's own settings (a study module's
``SETTINGS``, e.g. ``{"denoise": DenoiseSettings}``). :func:`validate` turns it into :class:`Config`:

- an unknown key, a wrong type or an out-of-range value raises :class:`ConfigError` naming the key;
- ``data`` becomes the loader object (``settings.data.load()`` reads the data);
- ``solver`` becomes a :class:`SolverConfig` whose ``options`` are the solver's own (``delta`` for mu, ...).

Only the keys a job composes are in its config, so its logged params (:func:`run_params`) say only what the
run used: a denoising node exists in denoising jobs only, the benchmark composes no solver.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.losses import LOSSES
from nmf_lab.core.problems import MISSING as MISSING_KINDS
from nmf_lab.core.solvers import get_solver, solver_names
from nmf_lab.core.validation import is_real

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
"""The project's ``conf/`` folder (the package is installed editable, from the project's own files)."""


class ConfigError(ValueError):
    """A config value that is unknown, of the wrong type or out of its valid range; the message names the key."""


def _require(ok: bool, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config value {key}={value!r}: {valid}")


@dataclass
class SolverConfig:
    """``solver/``: the update rule of :func:`nmf_lab.fit_nmf`, its precision, and when it stops: after
    ``max_iter`` iterations, when the projected gradient falls below ``tol`` times its start (0: off), or
    after ``time_limit`` seconds (null: none); with a mask, ``missing`` says how the hidden entries are
    treated (``exact``: the weighted updates; ``impute``: filled with W H before each iteration). ``loss``
    (``frobenius``, ``kl``, ``is`` or a real β) and the penalties ``alpha_W``, ``alpha_H`` (a number or
    ``same``) and ``l1_ratio`` are those of :func:`nmf_lab.fit_nmf` (scikit-learn's meaning). Every other key of
    the node is an option of the solver (its registry entry lists them), collected in ``options``."""

    name: str = "mu"
    max_iter: int = 1000
    tol: float = 0.0
    time_limit: float | None = None
    dtype: str = "float64"
    missing: str = "exact"
    loss: Any = "frobenius"
    alpha_W: float = 0.0
    alpha_H: Any = "same"
    l1_ratio: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        _require(self.max_iter >= 0, "solver.max_iter", self.max_iter, "must be an integer >= 0")
        _require(self.tol >= 0, "solver.tol", self.tol, "must be >= 0 (0: no stopping rule)")
        _require(
            self.time_limit is None or self.time_limit > 0,
            "solver.time_limit",
            self.time_limit,
            "must be null (no limit) or a number of seconds > 0",
        )
        _require(self.dtype in ("float64", "float32"), "solver.dtype", self.dtype, "one of float64, float32")
        _require(self.missing in MISSING_KINDS, "solver.missing", self.missing, f"one of {', '.join(MISSING_KINDS)}")
        _require(
            (isinstance(self.loss, str) and self.loss.lower() in LOSSES) or is_real(self.loss, finite=True),
            "solver.loss",
            self.loss,
            f"one of {', '.join(LOSSES)} or a finite real beta",
        )
        _require(self.beta == 2 or get_solver(self.name).beta_losses, "solver.loss", self.loss, self._beta_solvers())
        _require(is_real(self.alpha_W, finite=True) and self.alpha_W >= 0, "solver.alpha_W", self.alpha_W, ">= 0")
        _require(
            self.alpha_H == "same" or (is_real(self.alpha_H, finite=True) and self.alpha_H >= 0),
            "solver.alpha_H",
            self.alpha_H,
            "'same' (alpha_W) or a number >= 0",
        )
        _require(0 <= self.l1_ratio <= 1, "solver.l1_ratio", self.l1_ratio, "a number in [0, 1]")

    @property
    def beta(self) -> float:
        """β of ``loss`` (2 for Frobenius)."""
        return LOSSES[self.loss.lower()] if isinstance(self.loss, str) else float(self.loss)

    @property
    def penalized(self) -> bool:
        return self.alpha_W > 0 or (self.alpha_H != "same" and self.alpha_H > 0)

    def _beta_solvers(self) -> str:
        takes = [name for name in solver_names() if get_solver(name).beta_losses]
        return f"solver {self.name} fits the Frobenius loss only; the solvers for other losses: {', '.join(takes)}"

    def objective(self) -> dict[str, Any]:
        """The keywords of :func:`nmf_lab.fit_nmf` for the loss and the penalties."""
        return {"loss": self.loss, "alpha_W": self.alpha_W, "alpha_H": self.alpha_H, "l1_ratio": self.l1_ratio}


SOLVER_KEYS = tuple(f.name for f in dataclasses.fields(SolverConfig) if f.name != "options")
"""The keys every solver config has; the others are the solver's own options."""


@dataclass
class NoiseConfig:
    """``noise/``: the noise model of spec 6.1 (``sigma = 0``: none), seeded apart from the NMF."""

    sigma: float = 0.0
    seed: int = 0

    def check(self) -> None:
        _require(self.sigma >= 0, "noise.sigma", self.sigma, "must be >= 0 (0 means no noise)")
        _require(self.seed >= 0, "noise.seed", self.seed, "must be an integer >= 0")


@dataclass
class TrackingConfig:
    """``tracking/``: where runs are recorded.

    ``uri: null`` means ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlruns/mlflow.db`` under the current
    directory. ``experiment: null`` names the MLflow experiment after the selected experiment config.
    """

    uri: str | None = None
    experiment: str | None = None


@dataclass
class SweepConfig:
    """How a multirun treats its jobs.

    ``skip_finished``: a job whose resolved config (tracking aside) equals that of a FINISHED run in the same
    experiment is not fitted again; its child run copies that run's metrics and names it in the tag
    ``nmf_lab.reused_from``. An interrupted sweep resumes cheaply.
    """

    skip_finished: bool = False


@dataclass
class ExperimentConfig:
    """``experiment/``: the study that runs the job, a module named by its dotted path (``experiments.images``)
    with ``run(settings, run)`` and optionally ``summarize(children, parent)``, ``SETTINGS`` (its own config
    nodes) and ``check(settings)`` (raises :class:`~nmf_lab.core.errors.InvalidOption` naming the full key of a
    config it cannot run)."""

    study: str = MISSING


@dataclass
class Config:
    """The whole job: the study, what it factorizes (``data``) with how many components, from which initial
    guess (``init``: a name of :data:`nmf_lab.core.inits.INITS`) and which seed."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: Any = None
    solver: Any = None
    noise: NoiseConfig | None = None
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    engine: Any = None
    sweep: SweepConfig = field(default_factory=SweepConfig)
    rank: int = 2
    seed: int = 0
    init: str = "random"
    blas_threads: int | None = None

    def check(self) -> None:
        from nmf_lab.core.inits import INITS

        _require(self.rank >= 1, "rank", self.rank, "the number of components d must be >= 1")
        _require(self.init in INITS, "init", self.init, f"one of {', '.join(INITS)}")
        _require(self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        _require(
            self.blas_threads is None or self.blas_threads >= 1,
            "blas_threads",
            self.blas_threads,
            "must be null (automatic) or an integer >= 1",
        )
        for key, value in vars(self).items():
            if hasattr(value, "check"):
                try:
                    value.check()
                except InvalidOption as error:  # a study's settings name the key within their node
                    raise ConfigError(f"invalid config value {key}.{error}") from error


HARNESS_KEYS = ("tracking", "sweep", "blas_threads", "engine")
"""Keys that say where and how a job runs, not what it computes: in ``config.yaml`` but not logged as params."""


def register_configs() -> None:
    """Store the schemas that ``conf/`` YAML files build on, and a config for every registered solver
    without a YAML file of its own (a plug-in solver runs as ``solver=NAME`` with its defaults)."""
    cs = ConfigStore.instance()
    cs.store(group="tracking", name="tracking_schema", node=TrackingConfig)
    cs.store(group="noise", name="noise_schema", node=NoiseConfig)
    for name in solver_names():
        if not (CONF_DIR / "solver" / f"{name}.yaml").is_file():
            cs.store(group="solver", name=name, node=solver_defaults(name))


def solver_defaults(name: str) -> dict[str, Any]:
    """The full solver config of a registered solver with its defaults: the common keys and its options."""
    common = OmegaConf.to_container(OmegaConf.structured(SolverConfig(name=name)))
    del common["options"]
    return {**common, **{key: option.default for key, option in get_solver(name).options.items()}}


def load_study(dotted: str) -> ModuleType:
    """The study module named by ``experiment.study``; it must define ``run(settings, run)``.

    Raises :class:`ConfigError` naming the value when the module cannot be imported or has no ``run``.
    """
    if not isinstance(dotted, str) or not dotted:
        raise ConfigError(f"invalid config value experiment.study={dotted!r}: a module's dotted path")
    try:
        module = importlib.import_module(dotted)
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"invalid config value experiment.study={dotted!r}: no module {error.name!r} on the Python path "
            f"(a study is a module with run(settings, run), e.g. experiments.images)"
        ) from error
    except Exception as error:  # the module exists but fails to import
        raise ConfigError(
            f"invalid config value experiment.study={dotted!r}: importing it failed with "
            f"{type(error).__name__}: {error}"
        ) from error
    if not callable(getattr(module, "run", None)):
        raise ConfigError(
            f"invalid config value experiment.study={dotted!r}: the module {module.__file__} has no function "
            f"run(settings, run)"
        )
    return module


def validate(cfg: DictConfig) -> Config:
    """The typed, range-checked job config; raises :class:`ConfigError` naming the first bad key."""
    if "hydra" in cfg:
        raise ValueError("validate() takes a job's config, without Hydra's own node (see job_config)")
    study, schema = _study_schema(cfg)
    container = OmegaConf.to_container(cfg, resolve=True)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), container)
    except OmegaConfBaseException as error:
        raise _config_error(error) from error
    settings = OmegaConf.to_object(typed)
    settings.data = _build_loader(container.get("data"))
    settings.solver = _build_solver(container.get("solver"))
    settings.engine = build_engine(container.get("engine"))
    settings.check()
    if callable(getattr(study, "check", None)):  # what the study itself cannot run, e.g. data it cannot draw
        try:
            study.check(settings)
        except InvalidOption as error:
            raise ConfigError(f"invalid config value {error}") from error
    return settings


def typed_config(cfg: DictConfig) -> DictConfig:
    """A logged job config (its ``config.yaml``) with the types of its schema: ``rank`` an int, ``noise.sigma``
    a float even where the YAML says ``0``. Nothing is built (no loader reads its folder). A config that no
    longer fits the schema (its study gone, an older layout) is returned as it is."""
    try:
        return OmegaConf.merge(OmegaConf.structured(_study_schema(cfg)[1]), cfg)
    except (ConfigError, OmegaConfBaseException):
        return cfg


def _study_schema(cfg: DictConfig) -> tuple[ModuleType, type]:
    """The study a config names, and its schema: :class:`Config` plus a field for each node of the study's
    own settings (its ``SETTINGS``)."""
    study = load_study(OmegaConf.select(cfg, "experiment.study", default=None))
    study_settings = getattr(study, "SETTINGS", {})
    if not study_settings:
        return study, Config
    fields = [(key, schema, field(default_factory=schema)) for key, schema in study_settings.items()]
    return study, dataclasses.make_dataclass("StudyConfig", fields, bases=(Config,))


def _config_error(error: OmegaConfBaseException) -> ConfigError:
    key = error.full_key or "?"
    if type(error).__name__ == "ConfigKeyError":
        return ConfigError(f"unknown config key {key}; check its spelling (nmf-lab --cfg job shows the config)")
    message = str(error).splitlines()[0]
    return ConfigError(f"invalid config value {key}={getattr(error, 'value', '?')!r}: {message}")


def _build_loader(node: dict | None):
    """The data loader named by ``data._target_``, constructed from the node's other keys."""
    if node is None:
        return None
    options = dict(node)
    target = options.pop("_target_", None)
    if not isinstance(target, str):
        raise ConfigError("the data config has no _target_: it must name its loader, e.g. nmf_lab.data.punks.Punks")
    module_name, _, name = target.rpartition(".")
    try:
        loader = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"invalid config value data._target_={target!r}: no such class ({error})") from error
    fields = {f.name for f in dataclasses.fields(loader)} if dataclasses.is_dataclass(loader) else None
    unknown = sorted(set(options) - fields) if fields is not None else []
    if unknown:
        raise ConfigError(f"unknown config key data.{unknown[0]}; {target} takes {', '.join(sorted(fields))}")
    try:
        return loader(**options)
    except InvalidOption as error:
        raise ConfigError(f"invalid config value data.{error}") from error
    except TypeError as error:
        raise ConfigError(f"invalid data config for {target}: {error}") from error


def build_engine(node: dict | None):
    """The engine of the ``engine`` node (:class:`nmf_lab.distributed.engine.EngineConfig`; none: NumPy)."""
    from nmf_lab.distributed.engine import EngineConfig

    try:
        return EngineConfig.from_node(node)
    except InvalidOption as error:
        raise ConfigError(f"invalid config value engine.{error}") from error
    except TypeError as error:
        raise ConfigError(f"invalid engine config: {error}") from error


def _build_solver(node: dict | None) -> SolverConfig | None:
    """The common solver settings, typed, and the solver's own options, checked by its registry entry."""
    if node is None:
        return None
    name = node.get("name")
    try:
        solver = get_solver(name)
    except ValueError as error:
        raise ConfigError(f"invalid config value solver.name={name!r}: one of {', '.join(solver_names())}") from error
    common = {key: value for key, value in node.items() if key in SOLVER_KEYS}
    try:
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SolverConfig), common))
    except OmegaConfBaseException as error:
        error.full_key = f"solver.{error.full_key}"
        raise _config_error(error) from error
    given = {key: value for key, value in node.items() if key not in SOLVER_KEYS}
    unknown = sorted(set(given) - set(solver.options))
    if unknown:
        valid = ", ".join([*SOLVER_KEYS, *solver.options])
        raise ConfigError(f"unknown config key solver.{unknown[0]}; solver {name} has {valid}")
    try:
        settings.options = solver.resolve_options(given)
    except InvalidOption as error:
        raise ConfigError(f"invalid config value solver.{error}") from error
    return settings


def experiment_name(settings: Config, hydra_config: DictConfig) -> str:
    """The MLflow experiment of a job or sweep: ``tracking.experiment`` if set, else the experiment config's
    name (``punks``), followed by the data set when the command line chose another one (``punks-digits``), so
    that runs on different data are not compared as if they were alike."""
    if settings.tracking.experiment:
        return settings.tracking.experiment
    name = hydra_config.runtime.choices.experiment
    chosen = [override.partition("=")[2] for override in hydra_config.overrides.task if override.startswith("data=")]
    if chosen and "," not in chosen[-1]:
        name += f"-{chosen[-1]}"
    return name


def job_config(cfg: DictConfig) -> DictConfig:
    """A copy of a composed config without Hydra's own ``hydra`` node: what a job sees."""
    from omegaconf import open_dict, read_write

    cfg = cfg.copy()
    if "hydra" in cfg:
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
    return cfg


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The params a job logs: its resolved config as dotted keys, without the harness's keys
    (:data:`HARNESS_KEYS`) and without what the run did not use: the noise seed when sigma is 0, the subset
    seed of the first N images, data options left unset (null), the Frobenius loss and zero penalties."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in HARNESS_KEYS:
        container.pop(key, None)
    noise, data, solver = container.get("noise"), container.get("data"), container.get("solver")
    if isinstance(solver, dict):  # the loss and the penalties only when used
        if solver.get("loss", "frobenius") == "frobenius":
            solver.pop("loss", None)
        if not solver.get("alpha_W") and solver.get("alpha_H") in ("same", 0, 0.0, None):
            for key in ("alpha_W", "alpha_H", "l1_ratio"):
                solver.pop(key, None)
    if isinstance(noise, dict) and not noise.get("sigma"):
        noise.pop("seed", None)
    if isinstance(data, dict):
        if data.get("subset") == "first":
            data.pop("subset_seed", None)
        for key in [key for key, value in data.items() if value is None]:  # options not given
            del data[key]
    return _flatten(container)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"solver": {"name": "mu"}}`` -> ``{"solver.name": "mu"}``; lists become their string form."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix=f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
