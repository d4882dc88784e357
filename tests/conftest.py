"""Shared fixtures: one real MLflow sqlite store per test session, the real CryptoPunks sheet found the way
the app finds it, and a way to run the real CLI in a subprocess. Helpers to import live in ``helpers.py``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

SUBPROCESS_FIXTURES = {"run_cli", "toy_sweep", "server"}
"""Fixtures that start the CLI or a server in a subprocess: a test that uses one is ``slow``."""


def pytest_collection_modifyitems(items):
    for item in items:
        if SUBPROCESS_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


REQUIRE_REAL_DATA_ENV = "NMF_LAB_REQUIRE_REAL_DATA"
"""Set to 1 (CI does): a real-data test that cannot find the data fails instead of skipping."""


@pytest.fixture(scope="session")
def punks_sheet() -> Path:
    """The verified official punks.png, found as ``nmf-lab`` finds it: ``$NMF_LAB_PUNKS``, else the download
    cache, else the verified download. Offline with no copy the test skips, saying how to get the file (or
    fails, when ``$NMF_LAB_REQUIRE_REAL_DATA=1``)."""
    from nmf_lab.data.punks import PATH_ENV, SheetUnavailableError, locate_sheet

    try:
        return locate_sheet()
    except SheetUnavailableError:
        reason = (
            f"the CryptoPunks sheet is not here and could not be downloaded: run `nmf-lab` once online (it "
            f"downloads and caches the verified file), or set {PATH_ENV}=/path/to/punks.png"
        )
        if os.environ.get(REQUIRE_REAL_DATA_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def registered():
    """``register(solver, replace=False)`` for this test only: every name it registers is removed from the
    solver registry at the end (so never replace a built-in with it)."""
    from nmf_lab.core import solvers

    names = {}

    def register(solver, **kwargs):
        solvers.register_solver(solver, **kwargs)
        names[solver.name] = True
        return solver.name

    yield register
    for name in names:
        solvers.registry._unregister(name)


@pytest.fixture(scope="session")
def migrated_empty_store(tmp_path_factory, worker_id) -> Path:
    """An empty sqlite MLflow database with every migration applied, made once per session (its migrations
    cost ~7 s): copy it to get a fresh store.

    Under pytest-xdist the first worker migrates an empty database and the others use it (under a lock), so
    the migrations run once per session, not once per worker.
    """
    import fcntl

    from mlflow.tracking import MlflowClient

    shared = tmp_path_factory.getbasetemp().parent if worker_id != "master" else tmp_path_factory.getbasetemp()
    template = shared / "migrated-empty-mlflow.db"
    with open(shared / "migrated-empty-mlflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            partial = shared / "migrating-mlflow.db"
            MlflowClient(f"sqlite:///{partial}").search_experiments()  # creates and migrates the database
            partial.rename(template)
        fcntl.flock(lock, fcntl.LOCK_UN)
    return template


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory, migrated_empty_store) -> str:
    """A real sqlite tracking store, a copy of :func:`migrated_empty_store`, shared by the session."""
    import shutil

    store = tmp_path_factory.mktemp("mlruns") / "mlflow.db"
    shutil.copyfile(migrated_empty_store, store)
    return f"sqlite:///{store}"


@pytest.fixture
def fresh_tracking_uri(tmp_path, migrated_empty_store) -> str:
    """A real sqlite tracking store of this test alone (a copy of :func:`migrated_empty_store`), in ``tmp_path``."""
    import shutil

    store = tmp_path / "fresh-mlruns" / "mlflow.db"
    store.parent.mkdir()
    shutil.copyfile(migrated_empty_store, store)
    return f"sqlite:///{store}"


@pytest.fixture(scope="session")
def client(tracking_uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


@pytest.fixture
def experiment_name(request) -> str:
    """A fresh MLflow experiment name, so that tests sharing the store never see each other's runs."""
    return re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-") + "-" + uuid.uuid4().hex[:8]


@pytest.fixture
def run_cli(tracking_uri, tmp_path):
    """Run ``python -m nmf_lab ARGS`` in a temporary directory against the session's store (a subprocess:
    tests that use it are marked ``slow``)."""

    def run(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **(env or {})}
        result = subprocess.run(
            [sys.executable, "-m", "nmf_lab", *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"nmf-lab {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture
def run_job(tracking_uri, monkeypatch, tmp_path):
    """Run one job of ``nmf-lab ARGS`` in this process (no sweeps): Hydra's compose API, the app's
    validation and :func:`nmf_lab.harness.job.run_job`, against the session's store. Raises what the job raises."""
    from hydra import compose, initialize_config_dir

    from nmf_lab.harness.config import CONF_DIR, experiment_name, job_config, register_configs, validate
    from nmf_lab.harness.job import run_job as run_one_job

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.chdir(tmp_path)

    def run(*overrides: str) -> str:
        register_configs()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            composed = compose("config", overrides=list(overrides), return_hydra_config=True)
        cfg = job_config(composed)
        settings = validate(cfg)
        return run_one_job(
            cfg,
            settings,
            experiment_name=experiment_name(settings, composed.hydra),
            overrides=list(overrides),
            in_sweep=False,
        )

    return run


@pytest.fixture
def run_study(run_job, client, experiment_name, tmp_path):
    """Run one job of ``nmf-lab ARGS`` in this process (:func:`run_job`) into this test's own experiment and
    read its one run back: a :class:`helpers.StudyRun` (status, run, metrics, params, tags, artifacts)."""
    from helpers import StudyRun, runs_of

    def run(*overrides: str):
        status = run_job(*overrides, f"tracking.experiment={experiment_name}")
        (one,), children = runs_of(client, experiment_name)
        assert not children, "run_study runs one job; a sweep has a parent and children"
        return StudyRun(status, one, client, tmp_path)

    return run


@pytest.fixture
def probe(registered):
    """``probe(name)`` registers "probe-NAME", which runs the solver ``name`` inside fit_nmf (with its options, on
    whatever problem fit_nmf builds: dense, masked, imputed, a loss) and records a float64 copy of every iterate
    ``(W_k, H_k)`` it reports; the error fit_nmf sends back is passed through. Returns the probe's name and the
    list of iterates."""
    import numpy as np

    from nmf_lab.core.solvers import Solver, get_solver

    def make(name):
        inner, iterates = get_solver(name), []

        def update(problem, W, H, **options):
            steps = inner.update(problem, W, H, **options)
            error = None
            while True:
                report = steps.send(error)  # send(None) starts the generator like next()
                iterates.append((W.astype(np.float64), H.astype(np.float64)))
                error = yield report

        entry = Solver(
            name=f"probe-{name}",
            update=update,
            monotone=inner.monotone,
            options=inner.options,
            summary=f"{name}, recording its iterates",
            problems=True,
            beta_losses=inner.beta_losses,
        )
        return registered(entry), iterates

    return make
