"""Load on the default store: a sweep of 48 small jobs on 8 joblib workers writing to the default sqlite store at
once. None is lost and none meets "database is locked" (MLflow's sqlite sessions wait up to 20 s for the lock).

The jobs fit the movie ratings and log what every fit logs (params, config, tags, the error curve, metrics, W and
H) without drawing figures, so that the store's writes, not matplotlib, make the load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from nmf_lab.tracking.lifecycle import FINISHED

from helpers import runs_of

N_JOBS, N_WORKERS = 48, 8

LEAN_STUDY = '''
"""The movies fit, logged as every fit is (curve, metrics, factors), without figures."""
from experiments.shared import fit


def run(settings, run):
    A = settings.data.load()
    run.log_factorization(A, fit(A, settings))
'''


@pytest.mark.slow
def test_48_jobs_on_8_workers_against_the_default_sqlite_store(tmp_path):
    (tmp_path / "lean_study.py").write_text(LEAN_STUDY)  # imported from the current folder
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}  # the default store
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmf_lab",
            "-m",
            "experiment=movies",
            "experiment.study=lean_study",
            "solver.max_iter=20",
            f"seed=range(0,{N_JOBS})",
            "hydra/launcher=joblib",
            f"hydra.launcher.n_jobs={N_WORKERS}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for bad in ("database is locked", "OperationalError", "Traceback"):
        assert bad not in output, output
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (parent,), children = runs_of(client, "movies")
    assert sorted(int(child.data.params["seed"]) for child in children) == list(range(N_JOBS))
    assert {run.info.status for run in [parent, *children]} == {FINISHED}
    assert parent.data.metrics["n_children"] == N_JOBS and parent.data.metrics["n_failed"] == 0
    for child in children:  # every job logged all it logs: its params, the whole error curve, its metrics
        assert child.data.params["solver.max_iter"] == "20"
        assert len(client.get_metric_history(child.info.run_id, "error")) == 21
        assert {"final_error", "relative_error", "n_iter", "best_iter"} <= set(child.data.metrics)
    artifacts = tmp_path / "mlruns" / "movies"
    for name in ("config.yaml", "W.npy", "H.npy"):  # and its artifacts
        assert len(list(artifacts.rglob(name))) == N_JOBS
