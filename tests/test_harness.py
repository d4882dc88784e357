"""End to end: the real CLI, real Hydra multiruns and a real MLflow sqlite store, read back with MlflowClient."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from nmf_lab.data.toy import TOY_MATRICES
from nmf_lab.tracking.lifecycle import FAILED, FINISHED, KILLED, tracked_run
from nmf_lab.tracking.store import resolve_tracking_uri

from helpers import artifact_paths, load_array, load_text, runs_of


@pytest.fixture(scope="module")
def toy_sweep(tracking_uri, client, tmp_path_factory):
    """`nmf-lab experiment=toy` once for the module, on the joblib launcher with 2 workers (a parallel sweep
    against one sqlite store): one parent, 24 children."""
    name = "toy-e2e"
    cwd = tmp_path_factory.mktemp("toy")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmf_lab",
            "experiment=toy",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"tracking.experiment={name}",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    parents, children = runs_of(client, name)
    return result, parents, children


@pytest.mark.slow
def test_toy_sweep_makes_one_parent_with_24_finished_children(toy_sweep):
    _, parents, children = toy_sweep
    assert len(parents) == 1 and len(children) == 24
    parent = parents[0]
    assert {child.data.tags[MLFLOW_PARENT_RUN_ID] for child in children} == {parent.info.run_id}
    assert {run.info.status for run in [parent, *children]} == {FINISHED}
    # 2 joblib workers on this machine's cores: each job limits its BLAS threads to cores // 2.
    expected = f"({max(1, (os.cpu_count() or 1) // 2)} threads)"
    assert all(expected in child.data.tags["nmf_lab.blas"] for child in children)
    combos = {(c.data.params["data.matrix"], c.data.params["rank"], c.data.params["seed"]) for c in children}
    assert combos == {(m, d, s) for m in TOY_MATRICES for d in "123" for s in "01"}


@pytest.mark.slow
def test_toy_children_log_params_curves_metrics_and_artifacts(toy_sweep, client, tmp_path):
    _, _, children = toy_sweep
    for child in children:
        params, metrics = child.data.params, child.data.metrics
        assert params["solver.name"] == "mu" and params["solver.max_iter"] == "1000"
        assert params["experiment.study"] == "experiments.toy"
        assert not [key for key in params if key.startswith(("noise.", "denoise.", "benchmark.", "tracking."))]
        A = TOY_MATRICES[params["data.matrix"]]
        history = client.get_metric_history(child.info.run_id, "error")
        curve = np.array([m.value for m in sorted(history, key=lambda m: m.step)])
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1001))
        assert metrics["final_error"] == curve[-1]
        assert metrics["relative_error"] == pytest.approx(curve[-1] / np.linalg.norm(A))
        assert metrics["numerical_rank"] == np.linalg.matrix_rank(A)
        assert "overrides" in " ".join(child.data.tags) and "rank=" in child.data.tags["nmf_lab.overrides"]
    child = children[0]
    paths = set(artifact_paths(client, child.info.run_id))
    assert {"config.yaml", "arrays/W.npy", "arrays/H.npy", "figures/error_curve.png", "tables/factors.md"} <= paths
    folder = Path(client.download_artifacts(child.info.run_id, "arrays", str(tmp_path)))
    W = np.load(folder / "W.npy", allow_pickle=False)
    H = np.load(folder / "H.npy", allow_pickle=False)
    A = TOY_MATRICES[child.data.params["data.matrix"]]
    rank = int(child.data.params["rank"])
    assert W.shape == (A.shape[0], rank) and H.shape == (rank, A.shape[1])
    assert np.linalg.norm(A - W @ H) == pytest.approx(child.data.metrics["final_error"], rel=1e-6)
    table = load_text(client, child.info.run_id, "tables/factors.md", tmp_path)
    assert "| W |" in table and "| H |" in table and "| WH |" in table and "||A - WH||_F" in table


@pytest.mark.slow
def test_toy_answers_task_1d_a1_with_one_component_has_error_one(toy_sweep):
    _, _, children = toy_sweep
    a1 = [c for c in children if c.data.params["data.matrix"] == "A1" and c.data.params["rank"] == "1"]
    assert len(a1) == 2
    for child in a1:
        assert child.data.metrics["final_error"] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.slow
def test_toy_summary_on_the_parent(toy_sweep, client, tmp_path):
    _, parents, children = toy_sweep
    parent = parents[0]
    paths = set(artifact_paths(client, parent.info.run_id))
    assert {"summary/children.csv", "figures/error_curves.png", "tables/final_errors.md"} <= paths
    rows = list(csv.DictReader(io.StringIO(load_text(client, parent.info.run_id, "summary/children.csv", tmp_path))))
    assert len(rows) == 24
    assert {"data.matrix", "rank", "seed", "final_error", "status"} <= set(rows[0])
    by_id = {c.info.run_id: c for c in children}
    for row in rows:
        assert float(row["final_error"]) == by_id[row["run_id"]].data.metrics["final_error"]
    assert parent.data.metrics["n_children"] == 24 and parent.data.metrics["n_failed"] == 0
    # Equation 17: the error never rises. The toy curves are exact norms, so a rise within the rounding bound
    # each child logs is rounding; the parent counts the others and its maxima are those of the curves.
    rises, relative, above = [], [], 0
    for child in children:
        history = sorted(client.get_metric_history(child.info.run_id, "error"), key=lambda m: m.step)
        curve = np.array([m.value for m in history])
        rises.append(np.max(np.diff(curve)))
        relative.append(np.max(np.diff(curve) / curve[:-1]))
        bound = child.data.metrics["error_rounding_bound"]
        assert 0 < bound < 1e-13
        above += rises[-1] > bound
    assert parent.data.metrics["max_error_increase"] == max(0.0, max(rises))
    assert parent.data.metrics["max_relative_error_increase"] == pytest.approx(max(0.0, max(relative)), rel=1e-12)
    assert parent.data.metrics["n_rises_above_rounding"] == above
    table = load_text(client, parent.info.run_id, "tables/final_errors.md", tmp_path)
    assert table.count("\n| A") == 24 and table.count("**yes**") == above and "(d + 2) u" in table


@pytest.mark.slow
def test_the_sweep_parent_logs_only_the_params_every_job_used(toy_sweep):
    _, parents, _ = toy_sweep
    params = parents[0].data.params
    assert params["solver.max_iter"] == "1000" and params["experiment.study"] == "experiments.toy"
    assert not {"rank", "seed", "data.matrix"} & set(params)  # swept: no single value was used by all


@pytest.mark.parametrize("delta, rises_beyond_rounding", [(1e-9, True), (0.0, False)])
def test_the_toy_rises_beyond_rounding_come_from_delta(run_job, client, experiment_name, delta, rises_beyond_rounding):
    """Equation 17 is Lee and Seung's theorem for delta = 0. With Algorithm 1's delta the error of A3 (d = 2,
    seed 0) rises by ~1e-12 once it is near 1e-9; with delta = 0 no rise exceeds the rounding bound."""
    run_job(
        "experiment=toy",
        "data.matrix=A3",
        "rank=2",
        "seed=0",
        f"solver.delta={delta}",
        f"tracking.experiment={experiment_name}",
    )
    (run,), _ = runs_of(client, experiment_name)
    history = sorted(client.get_metric_history(run.info.run_id, "error"), key=lambda m: m.step)
    rise = np.max(np.diff([m.value for m in history]))
    assert (rise > run.data.metrics["error_rounding_bound"]) == rises_beyond_rounding


@pytest.mark.slow
def test_summary_can_be_rerun_alone(toy_sweep, client, tracking_uri, tmp_path):
    _, parents, _ = toy_sweep
    parent_id = parents[0].info.run_id
    before = client.get_metric_history(parent_id, "n_children")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "nmf-lab-summary"), parent_id, "--tracking-uri", tracking_uri],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "summary of 24 children (0 failed)" in result.stdout
    assert len(client.get_metric_history(parent_id, "n_children")) == len(before) + 1
    assert client.get_run(parent_id).info.status == FINISHED


def test_movies_single_run(run_job, client, experiment_name, tmp_path):
    assert run_job("experiment=movies", f"tracking.experiment={experiment_name}", "solver.max_iter=300") == FINISHED
    parents, children = runs_of(client, experiment_name)
    assert len(parents) == 1 and not children
    run = parents[0]
    assert run.info.status == FINISHED
    assert run.data.params["rank"] == "2" and run.data.params["solver.max_iter"] == "300"
    paths = set(artifact_paths(client, run.info.run_id))
    assert {"figures/factors.png", "figures/reconstruction.png", "figures/error_curve.png"} <= paths
    W = load_array(client, run.info.run_id, "arrays/W.npy", tmp_path)
    # The two genres: each component loads mostly on the Marvel rows (0, 2, 4) or the LotR rows (1, 3, 5).
    marvel = [0, 2, 4]
    components = W / W.sum(axis=0)
    shares = sorted(components[marvel].sum(axis=0))
    assert shares[0] < 0.35 and shares[1] > 0.65
    config = load_text(client, run.info.run_id, "config.yaml", tmp_path)
    assert "study: experiments.movies" in config and "max_iter: 300" in config


@pytest.mark.slow
def test_a_sweep_over_two_studies_is_refused_before_any_run(run_cli, client, experiment_name):
    result = run_cli("-m", "experiment=movies,toy", f"tracking.experiment={experiment_name}", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "a sweep runs one study, and this one would run experiments.movies, experiments.toy" in result.stderr
    assert client.get_experiment_by_name(experiment_name) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, key",
    [
        (["experiment=movies", "solver.max_iter=-5"], "solver.max_iter"),
        (["-m", "experiment=movies", "seed=0,-1"], "seed"),
    ],
)
def test_invalid_config_stops_before_any_run(run_cli, client, experiment_name, args, key):
    result = run_cli(*args, f"tracking.experiment={experiment_name}", check=False)
    assert result.returncode != 0
    assert f"invalid config value {key}=" in result.stderr + result.stdout
    assert client.get_experiment_by_name(experiment_name) is None


@pytest.mark.slow
def test_interrupted_job_ends_killed(tracking_uri, client, experiment_name, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nmf_lab",
            "experiment=movies",
            "solver.max_iter=100000000",
            f"tracking.experiment={experiment_name}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment and client.search_runs([experiment.experiment_id]):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run never appeared")
        # At once: a SIGTERM just after the run's creation, before the job's code ran, left it RUNNING (the
        # 0.5 s this test used to wait hid that, except under load).
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
    (run,) = client.search_runs([client.get_experiment_by_name(experiment_name).experiment_id])
    assert run.info.status == KILLED
    assert process.returncode != 0


def test_a_raising_job_ends_failed_with_its_traceback(client, experiment_name, tmp_path):
    experiment_id = client.create_experiment(experiment_name)
    with pytest.raises(ZeroDivisionError), tracked_run(client, experiment_id, run_name="boom") as run:
        run.log_metrics({"before": 1.0})
        1 / 0  # noqa: B018 (the expression raises)
    stored = client.get_run(run.run_id)
    assert stored.info.status == FAILED
    traceback_text = load_text(client, run.run_id, "error/traceback.txt", tmp_path)
    assert "ZeroDivisionError" in traceback_text and "1 / 0" in traceback_text


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert (tmp_path / "mlruns").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:///other.db") == f"sqlite:///{tmp_path / 'other.db'}"


@pytest.mark.slow
def test_python_dash_m_and_the_console_script_are_the_same_app():
    script = Path(sys.executable).parent / "nmf-lab"
    results = [
        subprocess.run(command, capture_output=True, text=True, timeout=120)
        for command in ([str(script), "--help"], [sys.executable, "-m", "nmf_lab", "--help"])
    ]
    assert all(result.returncode == 0 for result in results)
    assert results[0].stdout == results[1].stdout
    assert "experiment: " in results[0].stdout
