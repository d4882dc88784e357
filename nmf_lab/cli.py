"""``nmf-lab``: the Hydra app. One job is one MLflow run; ``-m`` makes a sweep of child runs.

    nmf-lab                          # the default experiment
    nmf-lab experiment=toy           # spec Task 1 (a sweep of its own)
    nmf-lab -m experiment=movies seed=0,1,2
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nmf_lab.config import ConfigError, register_configs, validate
from nmf_lab.progress import PROGRESS_ENV
from nmf_lab.sweep import run_job
from nmf_lab.tracking import TrackingUnavailable, raise_interrupted_on_sigterm

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
"""The project's ``conf/`` folder (the package is installed editable, from the project's own files)."""

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> str:
    """Validate the composed config, then run the selected experiment as one tracked job."""
    try:
        settings = validate(cfg)
    except ConfigError as error:
        raise SystemExit(f"nmf-lab: {error}") from error
    hydra_config = HydraConfig.get()
    raise_interrupted_on_sigterm()
    parallel_workers = blas_threads_per_worker(hydra_config.launcher) is not None
    os.environ[PROGRESS_ENV] = "0" if parallel_workers else "1"
    try:
        return run_job(
            cfg,
            settings,
            experiment_name=settings.tracking.experiment or hydra_config.runtime.choices["experiment"],
            overrides=list(hydra_config.overrides.task),
            in_sweep=hydra_config.mode == RunMode.MULTIRUN,
            blas_threads=settings.blas_threads or blas_threads_per_worker(hydra_config.launcher),
        )
    except TrackingUnavailable as error:
        raise SystemExit(f"nmf-lab: {error}") from error


def blas_threads_per_worker(launcher: DictConfig) -> int | None:
    """BLAS threads for one job so that workers x threads does not exceed the cores.

    Joblib runs ``n_jobs`` workers on this machine (negative: cores + 1 + n_jobs); submitit gives each job
    ``cpus_per_task`` cores. The basic launcher runs one job at a time: no limit.
    """
    target = str(launcher.get("_target_", ""))
    cores = os.cpu_count() or 1
    if "joblib" in target.lower():
        n_jobs = int(launcher.get("n_jobs") or -1)
        workers = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
        return max(1, cores // max(1, workers))
    if "submitit" in target.lower():
        return int(launcher.get("cpus_per_task") or 1)
    return None


if __name__ == "__main__":
    main()
