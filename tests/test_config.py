"""Every config composes, and bad values are stopped with a message that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from nmf_lab.cli import CONF_DIR
from nmf_lab.config import Config, ConfigError, register_configs, validate

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def test_conf_dir_is_the_projects():
    assert CONF_DIR == Path(__file__).resolve().parents[1] / "conf"
    assert {"toy", "movies"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_composes_and_validates(experiment):
    from experiments import STUDIES

    cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices.experiment == experiment
    settings = validate(_without_hydra(cfg))
    assert isinstance(settings, Config)
    assert settings.experiment.study in STUDIES


def test_toy_experiment_is_a_sweep_of_24_jobs():
    from nmf_lab.sweep import sweep_jobs

    cfg = compose("config", overrides=["experiment=toy"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 24
    assert len({tuple(job) for job in jobs}) == 24
    assert ["data.matrix=A4", "rank=3", "seed=1"] in [job[:3] for job in jobs]


@pytest.mark.parametrize(
    "override, key",
    [
        ("solver.max_iter=-1", "solver.max_iter"),
        ("solver.delta=-0.5", "solver.delta"),
        ("solver.name=newton", "solver.name"),
        ("rank=0", "rank"),
        ("seed=-1", "seed"),
        ("data.matrix=A9", "data.matrix"),
        ("experiment.study=nope", "experiment.study"),
    ],
)
def test_out_of_range_values_name_the_key(override, key):
    cfg = compose("config", overrides=["experiment=movies", override])
    with pytest.raises(ConfigError, match=rf"invalid config value {key}="):
        validate(cfg)


@pytest.mark.parametrize(
    "override, key", [("solver.max_iter=many", "solver.max_iter"), ("rank=two", "rank")]
)
def test_wrong_types_name_the_key(override, key):
    with pytest.raises((ValidationError, ConfigCompositionException), match=key.split(".")[-1]):
        compose("config", overrides=["experiment=movies", override])


@pytest.mark.parametrize("override", ["solver.maxiter=5", "rnak=3"])
def test_unknown_keys_are_rejected(override):
    with pytest.raises((ConfigKeyError, ConfigCompositionException), match=r"maxiter|rnak"):
        compose("config", overrides=["experiment=movies", override])


@pytest.mark.parametrize("override, key", [("+solver.maxiter=5", "solver.maxiter"), ("+rnak=3", "rnak")])
def test_keys_added_with_plus_are_rejected_by_validation(override, key):
    cfg = compose("config", overrides=["experiment=movies", override])
    with pytest.raises(ConfigError, match=rf"unknown config key {key};"):
        validate(cfg)


def _without_hydra(cfg):
    from nmf_lab.sweep import job_config

    return job_config(cfg)


@pytest.mark.parametrize(
    "launcher, target, threads",
    [("joblib", "JoblibLauncher", None), ("submitit_local", "LocalLauncher", 1), ("slurm", "SlurmLauncher", 2)],
)
def test_launcher_configs_compose_and_set_blas_threads(launcher, target, threads):
    import os

    from nmf_lab.cli import blas_threads_per_worker

    cfg = compose("config", overrides=["experiment=movies", f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "joblib":
        cfg.hydra.launcher.n_jobs = 2
        threads = max(1, (os.cpu_count() or 1) // 2)
    assert blas_threads_per_worker(cfg.hydra.launcher) == threads


@pytest.mark.parametrize(
    "experiment, expected",
    [
        ("punks", {"rank": 64, "data.n_images": 500, "solver.max_iter": 1000, "experiment.study": "images"}),
        ("denoise", {"rank": 64, "noise.sigma": 0.1, "data.n_images": 500, "experiment.study": "denoise"}),
        ("movies", {"rank": 2, "data.matrix": "movies"}),
        ("benchmark", {"rank": 64, "data.n_images": 10000}),
    ],
)
def test_experiment_values_win_over_the_primary_config(experiment, expected):
    from omegaconf import OmegaConf

    cfg = compose("config", overrides=[f"experiment={experiment}"])
    for key, value in expected.items():
        assert OmegaConf.select(cfg, key) == value, key


def test_plain_nmf_lab_is_the_punks_study():
    cfg = compose("config", return_hydra_config=True)
    assert cfg.hydra.runtime.choices.experiment == "punks" and cfg.rank == 64


@pytest.mark.parametrize("solvers", ["[newton]", "[mu:float16]", "[]"])
def test_bad_benchmark_solvers_name_the_key(solvers):
    cfg = compose("config", overrides=["experiment=benchmark_small", f"benchmark.solvers={solvers}"])
    with pytest.raises(ConfigError, match=r"invalid config value benchmark.solvers="):
        validate(cfg)
