"""The schema of every config group, as dataclasses registered with Hydra's ConfigStore.

Hydra checks keys and types when it composes (an unknown key or a wrong type names the key); the
``check`` methods below add the ranges, run by :func:`validate` before any MLflow run exists.
Each YAML file under ``conf/<group>/`` starts from the schema stored here as ``<group>/<name>_schema``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from nmf_lab.data.punks import N_PUNKS, PUNKS_URL
from nmf_lab.data.toy import TOY_MATRICES
from nmf_lab.solvers import SOLVERS


class ConfigError(ValueError):
    """A config value out of its valid range; the message names the key."""


def _require(ok: bool, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config value {key}={value!r}: {valid}")


@dataclass
class SolverConfig:
    """``solver/``: the update rule of :func:`nmf_lab.fit_nmf`, its precision, and when it stops: after
    ``max_iter`` iterations, when the projected gradient falls below ``tol`` times its start (0: off), or
    after ``time_limit`` seconds (null: none)."""

    name: str = "mu"
    max_iter: int = 1000
    delta: float = 1e-9
    tol: float = 0.0
    time_limit: Optional[float] = None
    dtype: str = "float64"

    def check(self) -> None:
        _require(self.name in SOLVERS, "solver.name", self.name, f"one of {', '.join(sorted(SOLVERS))}")
        _require(self.max_iter >= 0, "solver.max_iter", self.max_iter, "must be an integer >= 0")
        _require(self.delta >= 0, "solver.delta", self.delta, "must be >= 0 (the spec uses 1e-9..1e-6)")
        _require(self.tol >= 0, "solver.tol", self.tol, "must be >= 0 (0: no stopping rule)")
        _require(
            self.time_limit is None or self.time_limit > 0, "solver.time_limit", self.time_limit,
            "must be null (no limit) or a number of seconds > 0",
        )
        _require(self.dtype in ("float64", "float32"), "solver.dtype", self.dtype, "one of float64, float32")


@dataclass
class ToyData:
    """``data/toy``, ``data/movies``: one of the spec's small matrices."""

    kind: str = "toy"
    matrix: str = "A1"

    def check(self) -> None:
        names = [*TOY_MATRICES, "movies"]
        _require(self.matrix in names, "data.matrix", self.matrix, f"one of {', '.join(names)}")


@dataclass
class PunksData:
    """``data/punks``: N CryptoPunks, their RGB channels as the 1728 x N matrix A (spec 4.2).

    ``path``: a local copy of the official sheet punks.png (else ``$NMF_LAB_PUNKS``, else it is downloaded
    once from ``url`` and verified). ``folder``: a folder of ``<id>.png`` files instead of the sheet.
    ``subset``: the ``first`` N punks, or a ``random`` sample of N drawn with ``subset_seed``.
    """

    kind: str = "punks"
    n_images: int = 500
    subset: str = "first"
    subset_seed: int = 0
    path: Optional[str] = None
    folder: Optional[str] = None
    url: str = PUNKS_URL

    def check(self) -> None:
        _require(1 <= self.n_images <= N_PUNKS, "data.n_images", self.n_images, f"must be in 1..{N_PUNKS}")
        _require(self.subset in ("first", "random"), "data.subset", self.subset, "one of first, random")
        _require(self.subset_seed >= 0, "data.subset_seed", self.subset_seed, "must be an integer >= 0")


@dataclass
class NoiseConfig:
    """``noise/``: the noise model of spec 6.1 (``sigma = 0``: none), seeded apart from the NMF."""

    kind: str = "none"
    sigma: float = 0.0
    seed: int = 0

    def check(self) -> None:
        _require(self.sigma >= 0, "noise.sigma", self.sigma, "must be >= 0 (0 means no noise)")
        _require(self.seed >= 0, "noise.seed", self.seed, "must be an integer >= 0")


@dataclass
class DenoiseConfig:
    """How the denoising study reconstructs A from A_noisy.

    ``method``: ``nmf`` (W H of an NMF fitted to A_noisy) or ``svd`` (the truncated SVD of A_noisy, rank d).
    ``postprocess``: use what the noise model guarantees, for both methods alike: clip to [0, 1] and set
    the colours of transparent pixels (known from alpha) to 0.
    """

    method: str = "nmf"
    postprocess: bool = False

    def check(self) -> None:
        _require(self.method in ("nmf", "svd"), "denoise.method", self.method, "one of nmf, svd")


@dataclass
class TrackingConfig:
    """``tracking/``: where runs are recorded.

    ``uri: null`` means ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlruns/mlflow.db`` under the current
    directory. ``experiment: null`` names the MLflow experiment after the selected experiment config.
    """

    uri: Optional[str] = None
    experiment: Optional[str] = None


@dataclass
class BenchmarkConfig:
    """``benchmark``: what the benchmark experiment measures (all timings in one process, one initial guess).

    ``solvers``: nmf-lab's solvers to race to the target (``name`` or ``name:float32``); ``sklearn``: also time scikit-learn's NMF ("mu" and
    "cd", needs the ``bench`` extra); ``repeats``: timings are the median of this many; ``timing_iterations``:
    iterations per timing of seconds per iteration; ``target_iter``: the target error is nmf-lab mu's error
    after this many iterations; ``time_limit``: seconds a solver may take to reach it.
    """

    solvers: list[str] = field(
        default_factory=lambda: ["mu", "hals", "ahals", "ahals_extrapolated", "ahals_extrapolated:float32"]
    )
    sklearn: bool = True
    repeats: int = 5
    timing_iterations: int = 10
    target_iter: int = 1000
    time_limit: float = 900.0

    def check(self) -> None:
        unknown = [
            entry for entry in self.solvers
            if entry.partition(":")[0] not in SOLVERS or entry.partition(":")[2] not in ("", "float32", "float64")
        ]
        _require(not unknown and bool(self.solvers), "benchmark.solvers", self.solvers,
                 f"a non-empty list of {', '.join(sorted(SOLVERS))}, each optionally with :float32 or :float64")
        _require(self.repeats >= 1, "benchmark.repeats", self.repeats, "must be an integer >= 1")
        _require(self.timing_iterations >= 2, "benchmark.timing_iterations", self.timing_iterations,
                 "must be an integer >= 2")
        _require(self.target_iter >= 1, "benchmark.target_iter", self.target_iter, "must be an integer >= 1")
        _require(self.time_limit > 0, "benchmark.time_limit", self.time_limit, "must be > 0 seconds")


@dataclass
class SweepConfig:
    """How a multirun treats its jobs.

    ``skip_finished``: a job whose resolved config (tracking aside) equals that of a FINISHED run in the same
    experiment is not fitted again; its child run copies that run's params and metrics and names it in the
    tag ``nmf_lab.reused_from``. An interrupted sweep resumes cheaply.
    """

    skip_finished: bool = False


@dataclass
class ExperimentConfig:
    """``experiment/``: which study module of ``experiments/`` runs the job."""

    study: str = MISSING

    def check(self) -> None:
        from experiments import STUDIES

        _require(self.study in STUDIES, "experiment.study", self.study, f"one of {', '.join(STUDIES)}")


@dataclass
class Config:
    """The whole job: what to factorize (``data``), with how many components and which seed."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: Any = MISSING
    solver: SolverConfig = field(default_factory=SolverConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    rank: int = 2
    seed: int = 0
    blas_threads: Optional[int] = None

    def check(self) -> None:
        _require(self.rank >= 1, "rank", self.rank, "the number of components d must be >= 1")
        _require(self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        _require(
            self.blas_threads is None or self.blas_threads >= 1, "blas_threads", self.blas_threads,
            "must be null (automatic) or an integer >= 1",
        )
        for group in (self.experiment, self.data, self.solver, self.noise, self.denoise, self.benchmark):
            group.check()


def register_configs() -> None:
    """Store the schemas so that ``conf/`` YAML files can build on them (``defaults: [<name>_schema]``)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="solver", name="solver_schema", node=SolverConfig)
    cs.store(group="data", name="toy_schema", node=ToyData)
    cs.store(group="data", name="punks_schema", node=PunksData)
    cs.store(group="tracking", name="tracking_schema", node=TrackingConfig)
    cs.store(group="noise", name="noise_schema", node=NoiseConfig)


def validate(cfg: DictConfig) -> Config:
    """The typed, range-checked job config; raises :class:`ConfigError` naming the first bad key."""
    _reject_unknown_keys(cfg)
    settings = OmegaConf.to_object(cfg)
    assert isinstance(settings, Config), f"the config does not build on config_schema: {type(settings)}"
    settings.check()
    return settings


def _reject_unknown_keys(node: DictConfig, prefix: str = "") -> None:
    """Hydra's ``+key=value`` can add keys that a schema does not know; name them instead of ignoring."""
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        known = {f.name for f in dataclasses.fields(schema)}
        for key in node:
            if key not in known:
                raise ConfigError(
                    f"unknown config key {prefix}{key}; {prefix.rstrip('.') or 'the config'} has "
                    f"{', '.join(sorted(known))}"
                )
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _reject_unknown_keys(child, prefix=f"{prefix}{key}.")
