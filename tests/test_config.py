"""Every config composes, bad values are stopped with a message that names the key, and a job's params say
only what it used."""

from __future__ import annotations

import os

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from nmf_lab.core.solvers import get_solver
from nmf_lab.harness.config import (
    CONF_DIR,
    SOLVER_KEYS,
    Config,
    ConfigError,
    job_config,
    register_configs,
    run_params,
    typed_config,
    validate,
)

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def composed(*overrides: str):
    return job_config(compose("config", overrides=list(overrides)))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_composes_and_validates(experiment):
    cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices.experiment == experiment
    settings = validate(job_config(cfg))
    assert isinstance(settings, Config)
    assert settings.experiment.study.startswith("experiments.")


def test_toy_experiment_is_a_sweep_of_24_jobs():
    from nmf_lab.harness.sweep import sweep_jobs

    cfg = compose("config", overrides=["experiment=toy"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 24
    assert len({tuple(job) for job in jobs}) == 24
    assert ["data.matrix=A4", "rank=3", "seed=1"] in [job[:3] for job in jobs]


@pytest.mark.parametrize("sweep, single", [("punks_ranks", "punks"), ("denoise_ranks", "denoise")])
def test_a_sweep_config_is_its_single_run_config_plus_a_sweep(sweep, single):
    """No copied values: the sweep's job config equals the single run's; only hydra's sweep differs."""
    assert OmegaConf.to_container(composed(f"experiment={sweep}")) == OmegaConf.to_container(
        composed(f"experiment={single}")
    )
    text = (CONF_DIR / "experiment" / f"{sweep}.yaml").read_text()
    assert yaml.safe_load(text)["defaults"] == [single]


@pytest.mark.parametrize(
    "override, key",
    [
        ("solver.max_iter=-1", "solver.max_iter"),
        ("solver.delta=-0.5", "solver.delta"),
        ("solver.delta=true", "solver.delta"),
        ("solver.name=newton", "solver.name"),
        ("solver.dtype=float16", "solver.dtype"),
        ("rank=0", "rank"),
        ("seed=-1", "seed"),
        ("init=svd", "init"),
        ("data.matrix=A9", "data.matrix"),
        ("experiment.study=nope.nothing", "experiment.study"),
        ("experiment.study=json", "experiment.study"),  # a module without run()
    ],
)
def test_out_of_range_values_name_the_key(override, key):
    cfg = composed("experiment=movies", override)
    with pytest.raises(ConfigError, match=rf"invalid config value {key}="):
        validate(cfg)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["solver=ahals", "solver.alpha=-1"], "solver.alpha"),
        (["solver=ahals", "solver.inner_tol=1.5"], "solver.inner_tol"),
        (["solver=ahals_extrapolated", "solver.eta=1.0"], "solver.eta"),
    ],
)
def test_solver_options_are_checked_by_their_registry_entry(overrides, key):
    with pytest.raises(ConfigError, match=rf"invalid config value {key}="):
        validate(composed("experiment=movies", *overrides))


@pytest.mark.parametrize(
    "override, key", [("solver.max_iter=many", "solver.max_iter"), ("rank=two", "rank"), ("seed=1.5", "seed")]
)
def test_wrong_types_name_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"invalid config value {key}="):
        validate(composed("experiment=movies", override))


@pytest.mark.parametrize("override", ["solver.maxiter=5", "rnak=3", "solver.alpha=1"])
def test_unknown_keys_are_rejected_when_composing(override):
    with pytest.raises(ConfigCompositionException, match=r"maxiter|rnak|alpha"):
        compose("config", overrides=["experiment=movies", override])


@pytest.mark.parametrize(
    "override, key", [("+solver.maxiter=5", "solver.maxiter"), ("+rnak=3", "rnak"), ("+data.foo=1", "data.foo")]
)
def test_keys_added_with_plus_are_rejected_by_validation(override, key):
    with pytest.raises(ConfigError, match=rf"unknown config key {key}\b"):
        validate(composed("experiment=movies", override))


@pytest.mark.parametrize("solver", ["mu", "hals", "ahals", "ahals_extrapolated"])
def test_solver_yaml_files_hold_the_common_keys_and_the_registry_defaults(solver):
    node = yaml.safe_load((CONF_DIR / "solver" / f"{solver}.yaml").read_text())
    options = {key: value for key, value in node.items() if key not in SOLVER_KEYS}
    assert set(SOLVER_KEYS) <= set(node) and node["name"] == solver
    assert options == {key: option.default for key, option in get_solver(solver).options.items()}


def test_solver_options_reach_the_settings_and_the_params():
    cfg = composed("experiment=movies", "solver=ahals", "solver.alpha=2.0")
    settings = validate(cfg)
    assert settings.solver.name == "ahals"
    assert settings.solver.options == {"alpha": 2.0, "inner_tol": 0.1}
    params = run_params(cfg)
    assert params["solver.alpha"] == 2.0 and params["solver.inner_tol"] == 0.1
    assert "solver.delta" not in params  # ahals has no delta


def test_params_say_only_what_the_run_used():
    punks = run_params(composed("experiment=punks"))
    assert not [key for key in punks if key.startswith(("benchmark.", "denoise.", "noise.", "tracking.", "sweep."))]
    assert punks["solver.delta"] == 1e-9 and punks["rank"] == 64 and punks["init"] == "random"
    assert "data.subset_seed" not in punks  # the first 500 punks: no seed drew them
    assert run_params(composed("experiment=punks", "data.subset=random"))["data.subset_seed"] == 0
    benchmark = run_params(composed("experiment=benchmark_small"))
    assert not [key for key in benchmark if key.startswith("solver.")]
    assert benchmark["benchmark.target_iter"] == 200
    clean = run_params(composed("experiment=denoise", "noise.sigma=0"))
    assert clean["noise.sigma"] == 0 and "noise.seed" not in clean  # no noise: no noise seed
    noisy = run_params(composed("experiment=denoise"))
    assert noisy["noise.sigma"] == 0.1 and noisy["noise.seed"] == 0 and noisy["denoise.method"] == "nmf"


@pytest.mark.parametrize(
    "launcher, target, threads",
    [("joblib", "JoblibLauncher", None), ("submitit_local", "LocalLauncher", 1), ("slurm", "SlurmLauncher", 2)],
)
def test_launcher_configs_compose_and_set_blas_threads(launcher, target, threads):
    from nmf_lab.harness.cli import blas_threads_per_worker

    cfg = compose("config", overrides=["experiment=movies", f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "joblib":
        cfg.hydra.launcher.n_jobs = 2
        threads = max(1, (os.cpu_count() or 1) // 2)
    assert blas_threads_per_worker(cfg.hydra.launcher) == threads


@pytest.mark.parametrize(
    "experiment, expected",
    [
        (
            "punks",
            {"rank": 64, "data.n_images": 500, "solver.max_iter": 1000, "experiment.study": "experiments.images"},
        ),
        ("denoise", {"rank": 64, "noise.sigma": 0.1, "data.n_images": 500, "experiment.study": "experiments.denoise"}),
        ("movies", {"rank": 2, "data.matrix": "movies"}),
        ("benchmark", {"rank": 64, "data.n_images": 10000}),
    ],
)
def test_experiment_values_win_over_the_primary_config(experiment, expected):
    cfg = compose("config", overrides=[f"experiment={experiment}"])
    for key, value in expected.items():
        assert OmegaConf.select(cfg, key) == value, key


def test_plain_nmf_lab_is_the_punks_study():
    cfg = compose("config", return_hydra_config=True)
    assert cfg.hydra.runtime.choices.experiment == "punks" and cfg.rank == 64


@pytest.mark.parametrize("solvers", ["[newton]", "[mu:float16]", "[]"])
def test_bad_benchmark_solvers_name_the_key(solvers):
    cfg = composed("experiment=benchmark_small", f"benchmark.solvers={solvers}")
    with pytest.raises(ConfigError, match=r"invalid config value benchmark.solvers="):
        validate(cfg)


def test_a_logged_config_reads_back_with_the_types_of_its_schema():
    logged = OmegaConf.to_container(composed("experiment=denoise"))
    logged["noise"]["sigma"], logged["rank"] = 0, 16  # as YAML may hold them: ints
    typed = typed_config(OmegaConf.create(logged))
    assert isinstance(typed.noise.sigma, float) and typed.noise.sigma == 0.0
    assert isinstance(typed.rank, int) and typed.denoise.method == "nmf"
    gone = OmegaConf.create({**logged, "experiment": {"study": "a_study_no_longer_installed"}})
    assert typed_config(gone) is gone  # read as it is


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["solver.loss=poisson"], "solver.loss"),
        (["solver=hals", "solver.loss=kl"], "solver.loss"),  # the HALS family: Frobenius only
        (["solver.alpha_W=-0.1"], "solver.alpha_W"),
        (["solver.alpha_H=all"], "solver.alpha_H"),
        (["solver.l1_ratio=2"], "solver.l1_ratio"),
    ],
)
def test_the_loss_and_the_penalties_are_checked(overrides, key):
    with pytest.raises(ConfigError, match=rf"invalid config value {key}="):
        validate(composed("experiment=movies", *overrides))


def test_the_loss_and_the_penalties_reach_fit_nmf_and_are_logged_only_when_used():
    from experiments.shared import fit_options

    plain = composed("experiment=punks")
    assert not [key for key in run_params(plain) if key.split(".")[-1] in ("loss", "alpha_W", "alpha_H", "l1_ratio")]
    cfg = composed("experiment=punks", "solver.loss=kl", "solver.alpha_W=0.1", "solver.l1_ratio=1")
    params = run_params(cfg)
    assert params["solver.loss"] == "kl" and params["solver.alpha_W"] == 0.1 and params["solver.l1_ratio"] == 1
    assert params["solver.alpha_H"] == "same"
    options = fit_options(validate(cfg))
    assert {key: options[key] for key in ("loss", "alpha_W", "alpha_H", "l1_ratio")} == {
        "loss": "kl", "alpha_W": 0.1, "alpha_H": "same", "l1_ratio": 1,
    }  # fmt: skip
    beta = run_params(composed("experiment=punks", "solver.loss=1.5"))
    assert beta["solver.loss"] == 1.5 and "solver.alpha_W" not in beta
