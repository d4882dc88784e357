"""The team setup of the README, for real: an `mlflow server` with basic-auth over a PostgreSQL store (runs and
users in two databases of one real PostgreSQL cluster), artifacts proxied from a folder. Two sweeps at once from
two processes; missing, wrong and read-only credentials fail before any run exists."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nmf_lab.tracking.lifecycle import FINISHED
from nmf_lab.tracking.store import TrackingUnavailable

from helpers import artifact_paths, load_text, runs_of
from services import basic_auth_server

pytestmark = pytest.mark.slow
QUICK = ["experiment=movies", "solver.max_iter=30"]
ADMIN = ("admin", "admin-pw-for-tests")


@dataclass(frozen=True)
class TeamServer:
    uri: str
    root: Path  # holds the server's artifact folder, ``root / "artifacts"``
    users: dict[str, str]  # user name -> password: a team member and a reader, made by the admin

    @contextmanager
    def admin(self) -> Iterator[MlflowClient]:
        """A client as the admin, inside the block (MlflowClient reads the credentials from the environment at
        each request); the environment is restored after it."""
        saved = {key: os.environ.get(key) for key in CREDENTIALS}
        os.environ.update(credentials(*ADMIN))
        try:
            yield MlflowClient(self.uri)
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def credentials(user: str, password: str) -> dict[str, str]:
    return dict(zip(CREDENTIALS, (user, password)))


@pytest.fixture(scope="module")
def team_server():
    """The README's team setup (:func:`services.basic_auth_server`: PostgreSQL, `mlflow server --app-name
    basic-auth`, everyone may READ what they did not create) with a team member ``alice`` and a user ``reader``
    created by the admin."""
    users = {"alice": "alice-pw-for-tests", "reader": "reader-pw-for-tests"}
    with basic_auth_server(users, admin=ADMIN) as server:
        yield TeamServer(uri=server.uri, root=server.root, users=dict(server.users))


def nmf_lab(cwd: Path, *args: str, env: dict[str, str], output=subprocess.PIPE) -> subprocess.Popen:
    """``nmf-lab ARGS`` started in ``cwd``; its stdout and stderr go to ``output`` (default: pipes)."""
    return subprocess.Popen(
        [sys.executable, "-m", "nmf_lab", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=output,
        stderr=subprocess.STDOUT if output is not subprocess.PIPE else subprocess.PIPE,
        text=True,
    )


def test_two_sweeps_at_once_from_two_processes(team_server, experiment_name, tmp_path):
    """experiment=toy (24 jobs) and a movies sweep (8 jobs) start together, each on 2 joblib workers, as a team
    member: every run and both summaries land complete, with no error anywhere."""
    env = credentials("alice", team_server.users["alice"])
    common = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"tracking.uri={team_server.uri}"]
    sweeps = {
        f"{experiment_name}-toy": ["experiment=toy"],
        f"{experiment_name}-movies": ["-m", *QUICK, "rank=1,2", "seed=0,1,2,3"],
    }
    processes = {}
    for name, args in sweeps.items():  # their output to files: neither waits for the test to read it
        (tmp_path / name).mkdir()
        with open(tmp_path / name / "output.txt", "w") as output:
            processes[name] = nmf_lab(
                tmp_path / name, *args, *common, f"tracking.experiment={name}", env=env, output=output
            )
    for name, process in processes.items():
        process.wait(timeout=900)
        output = (tmp_path / name / "output.txt").read_text()
        assert process.returncode == 0, output
        for bad in ("Traceback", "ERROR", "Error", "database is locked"):
            assert bad not in output, f"{bad!r} in the output of {name}:\n{output}"

    with team_server.admin() as client:
        for name, n_jobs in ((f"{experiment_name}-toy", 24), (f"{experiment_name}-movies", 8)):
            (parent,), children = runs_of(client, name)
            assert len(children) == n_jobs
            assert {run.info.status for run in [parent, *children]} == {FINISHED}
            assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parent.info.run_id}
            assert parent.data.metrics["n_children"] == n_jobs and parent.data.metrics["n_failed"] == 0
            for child in children:  # every curve complete: one error per iteration and the start
                curve = client.get_metric_history(child.info.run_id, "error")
                assert len(curve) == child.data.metrics["n_iter"] + 1 == int(child.data.params["solver.max_iter"]) + 1
            summary = load_text(client, parent.info.run_id, "summary/children.csv", tmp_path)
            rows = list(csv.DictReader(io.StringIO(summary)))
            assert sorted(row["run_id"] for row in rows) == sorted(child.info.run_id for child in children)
            assert {row["status"] for row in rows} == {FINISHED}
        (toy_parent,), _ = runs_of(client, f"{experiment_name}-toy")
        assert {"figures/error_curves.png", "tables/final_errors.md"} <= set(
            artifact_paths(client, toy_parent.info.run_id)
        )
    assert len(list((team_server.root / "artifacts").rglob("W.npy"))) == 32  # proxied into the server's folder


def no_runs(team_server, experiment: str) -> bool:
    """True when, as the admin sees it, ``experiment`` does not exist or holds no run."""
    with team_server.admin() as client:
        found = client.get_experiment_by_name(experiment)
        return found is None or not client.search_runs([found.experiment_id])


@pytest.mark.parametrize(
    ("user", "password", "message"),
    [
        (None, None, "no credentials were given (MLFLOW_TRACKING_USERNAME is not set)"),
        ("alice", "not-her-password", "the password of user 'alice' is wrong"),
    ],
)
def test_missing_or_wrong_credentials_fail_before_any_run(
    team_server, run_job, monkeypatch, experiment_name, user, password, message
):
    for key, value in credentials(user, password).items():
        monkeypatch.setenv(key, value) if value else monkeypatch.delenv(key, raising=False)
    with pytest.raises(TrackingUnavailable) as raised:
        run_job(*QUICK, f"tracking.uri={team_server.uri}", f"tracking.experiment={experiment_name}")
    text = str(raised.value)
    assert team_server.uri in text and "refused the credentials" in text and message in text
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in text and "\n" not in text
    assert no_runs(team_server, experiment_name)


def test_a_sweep_without_credentials_stops_in_one_line_before_any_run(team_server, experiment_name, tmp_path):
    env = dict.fromkeys(CREDENTIALS, "")  # set but empty: no credentials
    where = [f"tracking.uri={team_server.uri}", f"tracking.experiment={experiment_name}"]
    _, stderr = nmf_lab(tmp_path, "-m", *QUICK, "seed=0,1", *where, env=env).communicate(timeout=300)
    assert f"nmf-lab: the MLflow tracking server {team_server.uri} refused the credentials" in stderr
    assert "Traceback" not in stderr
    assert no_runs(team_server, experiment_name)


def test_the_right_credentials_land_runs(team_server, run_job, monkeypatch, experiment_name):
    for key, value in credentials("alice", team_server.users["alice"]).items():
        monkeypatch.setenv(key, value)
    assert run_job(*QUICK, f"tracking.uri={team_server.uri}", f"tracking.experiment={experiment_name}") == FINISHED
    with team_server.admin() as client:
        (run,), _ = runs_of(client, experiment_name)
        assert run.info.status == FINISHED and run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert len(client.get_metric_history(run.info.run_id, "error")) == 31


def test_a_reader_gets_a_clear_error_and_no_run(team_server, run_job, monkeypatch, experiment_name, tmp_path):
    """The admin's experiment is READ-only for others (default_permission = READ): the reader is told so when the
    run would be created, for a job and for a sweep, and no run appears."""
    where = [f"tracking.uri={team_server.uri}", f"tracking.experiment={experiment_name}"]
    with team_server.admin() as admin:
        run_job(*QUICK, *where)
        experiment_id = admin.get_experiment_by_name(experiment_name).experiment_id
        before = {run.info.run_id for run in admin.search_runs([experiment_id])}
    assert len(before) == 1

    reader = credentials("reader", team_server.users["reader"])
    for key, value in reader.items():
        monkeypatch.setenv(key, value)
    expected = (
        f"the MLflow tracking server {team_server.uri} does not let user 'reader' create runs in experiment "
        f"'{experiment_name}' (permission denied)"
    )
    with pytest.raises(TrackingUnavailable, match=re.escape(expected)):
        run_job(*QUICK, *where)
    process = nmf_lab(tmp_path, "-m", *QUICK, "seed=0,1", *where, env=reader)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0 and f"nmf-lab: {expected}" in stderr and "Traceback" not in stderr
    with team_server.admin() as admin:
        assert {run.info.run_id for run in admin.search_runs([experiment_id])} == before
