"""The command-line apps: ``nmf-lab`` (a Hydra app: one job is one MLflow run, ``-m`` makes a sweep of child
runs) and ``nmf-lab-summary`` (write a sweep's summary again).

    nmf-lab                          # the default experiment
    nmf-lab experiment=toy           # spec Task 1 (a sweep of its own)
    nmf-lab -m experiment=movies seed=0,1,2
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nmf_lab.harness.config import CONF_DIR, experiment_name, register_configs, validate
from nmf_lab.harness.job import USER_ERRORS, check_data, run_job, stop
from nmf_lab.harness.processes import run_in_child
from nmf_lab.harness.progress import PROGRESS_ENV
from nmf_lab.harness.summary import summarize_sweep
from nmf_lab.harness.sweep import describe_sweep
from nmf_lab.tracking.lifecycle import FAILED, raise_interrupted_on_sigterm
from nmf_lab.tracking.store import TrackingUnavailable, import_store, open_client
from nmf_lab.tracking.stored import run_exists


def main() -> None:
    """``nmf-lab`` (and ``python -m nmf_lab``): set up what Hydra needs (:func:`prepare`), then run the Hydra app
    (:func:`app`) on the command line's arguments."""
    prepare()
    app()


def prepare() -> None:
    """What the app needs before Hydra composes a config: a study module in the current folder importable (as
    ``nmf-lab`` is run there) and the configs that are not YAML files registered
    (:func:`nmf_lab.harness.config.register_configs`). Done here, not on import, so that importing this module
    changes nothing."""
    study_path()
    register_configs()


def study_path() -> None:
    """Put the current folder on ``sys.path`` (once), so that ``experiment.study`` may name a module there."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def app(cfg: DictConfig) -> str:
    """Validate the composed config and find the data, then run the selected experiment as one tracked job and
    print where its run is and what it measured. A user's error stops it with one line
    (:func:`nmf_lab.harness.job.stop`)."""
    study_path()  # in a launcher's worker or a SLURM job too, which run this function without main()
    hydra_config = HydraConfig.get()
    in_sweep = hydra_config.mode == RunMode.MULTIRUN
    raise_interrupted_on_sigterm()
    parallel_workers = blas_threads_per_worker(hydra_config.launcher) is not None
    os.environ[PROGRESS_ENV] = "0" if parallel_workers else "1"
    try:
        settings = validate(cfg)
        if not in_sweep:  # a sweep's callback checked every job's data before its parent run
            check_data(settings)
        job = functools.partial(
            run_job,
            cfg,
            settings,
            experiment_name=experiment_name(settings, hydra_config),
            overrides=list(hydra_config.overrides.task),
            in_sweep=in_sweep,
            blas_threads=settings.blas_threads or blas_threads_per_worker(hydra_config.launcher),
            report=functools.partial(print, flush=True),
        )
        # In joblib's pool a job runs in a child of its worker: a job killed outright leaves the pool and the
        # other jobs alive (nmf_lab.harness.processes), and the sweep's summary ends its run FAILED.
        if "joblib" not in str(hydra_config.launcher.get("_target_", "")).lower():
            return job()
        import_store(settings.tracking.uri)  # once per worker, not once per job
        return run_in_child(job, died=FAILED)
    except USER_ERRORS as error:
        stop(error)


def blas_threads_per_worker(launcher: DictConfig) -> int | None:
    """BLAS threads for one job so that workers x threads does not exceed the cores.

    Joblib runs ``n_jobs`` workers on this machine (negative: cores + 1 + n_jobs); submitit's launchers (and
    ``hydra/launcher=slurm``, built on them) give each job ``cpus_per_task`` cores. The basic launcher runs one
    job at a time: no limit.
    """
    target = str(launcher.get("_target_", ""))
    cores = os.cpu_count() or 1
    if "joblib" in target.lower():
        n_jobs = int(launcher.get("n_jobs") or -1)
        workers = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
        return max(1, cores // max(1, workers))
    if "cpus_per_task" in launcher:
        return int(launcher.get("cpus_per_task") or 1)
    return None


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
    try:
        client = open_client(args.tracking_uri)
    except TrackingUnavailable as error:
        stop(error)
    if not run_exists(client, args.parent_run_id):
        raise SystemExit(f"nmf-lab-summary: no run {args.parent_run_id} in the store {client.tracking_uri}")
    summary = summarize_sweep(client, args.parent_run_id)
    print(
        f"summary of {summary.n_children} children ({summary.n_failed} failed) written to run "
        f"{args.parent_run_id}; varied: {', '.join(summary.varied) or 'nothing'}"
    )
    print(describe_sweep(client, args.parent_run_id, summary.varied))


if __name__ == "__main__":
    main()
