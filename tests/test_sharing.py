"""Sharing and scaling out, for real: an `mlflow server` process, the joblib and submitit launchers, failed
jobs, resumed sweeps and reproducible runs."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from nmf_lab.tracking.lifecycle import FAILED, FINISHED

from helpers import artifact_paths, load_array, load_text, runs_of
from services import free_port, mlflow_server

pytestmark = pytest.mark.slow
QUICK = ["experiment=movies", "solver.max_iter=60"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` over a sqlite store, artifacts proxied from a folder, on a free loopback port."""
    root = tmp_path_factory.mktemp("server")
    with mlflow_server(root, f"sqlite:///{root / 'mlflow.db'}") as uri:
        yield uri, root


def test_runs_and_a_sweep_land_on_a_tracking_server(server, run_job, run_cli, experiment_name, tmp_path, monkeypatch):
    uri, root = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # tracking=server takes the URI from the environment
    run_job(*QUICK, "tracking=server", f"tracking.experiment={experiment_name}")
    run_cli(
        "-m",
        *QUICK,
        "seed=0,1",
        "tracking=server",
        f"tracking.uri={uri}",
        f"tracking.experiment={experiment_name}-sweep",
    )
    client = MlflowClient(uri)
    (single,), _ = runs_of(client, experiment_name)
    assert single.info.status == FINISHED and single.info.artifact_uri.startswith("mlflow-artifacts:")
    assert len(client.get_metric_history(single.info.run_id, "error")) == 61
    # Artifacts come back over HTTP through the server's proxy, and live in its artifact folder.
    W = load_array(client, single.info.run_id, "arrays/W.npy", tmp_path)
    assert W.shape == (6, 2)
    assert list((root / "artifacts").rglob("W.npy"))
    (parent,), children = runs_of(client, f"{experiment_name}-sweep")
    assert len(children) == 2 and parent.data.metrics["n_children"] == 2
    assert "summary/children.csv" in artifact_paths(client, parent.info.run_id)


@pytest.fixture
def not_mlflow(tmp_path):
    """A plain HTTP server on a free loopback port: it answers, but not like MLflow."""
    port = free_port()
    http = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/not-mlflow"
    finally:
        http.terminate()


def test_an_unreachable_or_wrong_server_fails_fast_naming_the_uri(
    run_job, run_cli, client, experiment_name, not_mlflow
):
    from nmf_lab.tracking.store import TrackingUnavailable

    for uri in ("http://127.0.0.1:9", not_mlflow):
        with pytest.raises(TrackingUnavailable, match=re.escape(uri)):
            run_job(*QUICK, "tracking=server", f"tracking.uri={uri}", f"tracking.experiment={experiment_name}")
    # The command line says so in one line, for a single run and for a sweep, and creates no run.
    for args in ([*QUICK], ["-m", *QUICK, "seed=0,1"]):
        result = run_cli(
            *args,
            "tracking=server",
            f"tracking.uri={not_mlflow}",
            f"tracking.experiment={experiment_name}",
            check=False,
        )
        assert result.returncode != 0
        assert "nmf-lab: " in result.stderr and not_mlflow in result.stderr
        assert "Traceback" not in result.stderr
    assert client.get_experiment_by_name(experiment_name) is None


def test_submitit_local_sweep_has_the_same_parent_child_structure(run_cli, client, experiment_name):
    run_cli("-m", *QUICK, "seed=0,1", "hydra/launcher=submitit_local", f"tracking.experiment={experiment_name}")
    (parent,), children = runs_of(client, experiment_name)
    assert len(children) == 2 and parent.info.status == FINISHED
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.data.metrics["n_children"] == 2 and parent.data.metrics["n_failed"] == 0


FLAKY_STUDY = '''"""A study whose job with seed 1 fails while it runs (missing data is found before any run)."""
from experiments.shared import fit_and_log, load_matrix


def run(settings, run):
    if settings.seed == 1:
        raise FileNotFoundError("the data of seed 1 went missing")
    fit_and_log(load_matrix(settings.data), settings, run)
'''


def test_a_failing_job_is_recorded_and_listed_while_the_others_run(run_cli, client, experiment_name, tmp_path):
    (tmp_path / "flaky_study.py").write_text(FLAKY_STUDY)  # run_cli runs in tmp_path, where nmf-lab finds it
    result = run_cli(
        "-m", *QUICK, "experiment.study=flaky_study", "seed=0,1", f"tracking.experiment={experiment_name}", check=False
    )
    assert result.returncode != 0 and "1 of 2 jobs failed" in result.stderr
    (parent,), children = runs_of(client, experiment_name)
    statuses = {c.data.params["seed"]: c.info.status for c in children}
    assert statuses == {"1": FAILED, "0": FINISHED}
    (failed,) = [c for c in children if c.info.status == FAILED]
    assert "FileNotFoundError" in load_text(client, failed.info.run_id, "error/traceback.txt", tmp_path)
    assert parent.info.status == FAILED and parent.data.metrics["n_failed"] == 1
    rows = list(csv.DictReader(io.StringIO(load_text(client, parent.info.run_id, "summary/children.csv", tmp_path))))
    assert sorted(row["status"] for row in rows) == [FAILED, FINISHED]


def test_skip_finished_reuses_finished_jobs(run_job, run_cli, client, experiment_name):
    for seed in (0, 1):  # finished runs of the same configs, here run alone
        run_job(*QUICK, f"seed={seed}", f"tracking.experiment={experiment_name}")
    first = {run.data.params["seed"]: run for run in runs_of(client, experiment_name)[0]}
    run_cli("-m", *QUICK, "seed=0,1,2", "sweep.skip_finished=true", f"tracking.experiment={experiment_name}")
    parents, children = runs_of(client, experiment_name)
    (second_parent,) = [p for p in parents if p.data.metrics.get("n_children") == 3]
    assert second_parent.info.status == FINISHED and second_parent.data.metrics["n_failed"] == 0
    second = [c for c in children if c.data.tags["mlflow.parentRunId"] == second_parent.info.run_id]
    assert sorted(child.data.params["seed"] for child in second) == ["0", "1", "2"]
    reused = {c.data.params["seed"]: c.data.tags.get("nmf_lab.reused_from") for c in second}
    assert reused == {"0": first["0"].info.run_id, "1": first["1"].info.run_id, "2": None}
    for child in second:
        if child.data.params["seed"] in first:
            original = first[child.data.params["seed"]]
            assert curve(client, child.info.run_id) == curve(client, original.info.run_id)
            assert child.data.metrics["final_error"] == original.data.metrics["final_error"]


def curve(client, run_id):
    return [m.value for m in sorted(client.get_metric_history(run_id, "error"), key=lambda m: m.step)]


def test_a_logged_config_reruns_to_a_bit_identical_curve(run_job, client, experiment_name):
    for _ in range(2):
        run_job(*QUICK, "seed=3", f"tracking.experiment={experiment_name}")
    runs, _ = runs_of(client, experiment_name)
    assert len(runs) == 2
    first, second = (curve(client, run.info.run_id) for run in runs)
    assert first == second and len(first) == 61
    tags = runs[0].data.tags
    for key in ("git_commit", "git_dirty", "version", "numpy_version", "mlflow_version", "blas", "config_digest"):
        assert tags[f"nmf_lab.{key}"] not in ("", None)
    assert tags["nmf_lab.git_dirty"] in ("true", "false", "unknown")
    assert runs[0].data.tags["nmf_lab.config_digest"] == runs[1].data.tags["nmf_lab.config_digest"]
    assert tags["nmf_lab.numpy_version"] == np.__version__
