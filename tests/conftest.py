"""Shared fixtures: one real MLflow sqlite store per test session, and a way to run the real CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PUNKS_PNG = PROJECT_ROOT.parent / "shared" / "data" / "punks.png"


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """A real sqlite tracking store, created once (its migrations cost ~7 s) and shared by the session."""
    from mlflow.tracking import MlflowClient

    store = tmp_path_factory.mktemp("mlruns") / "mlflow.db"
    uri = f"sqlite:///{store}"
    MlflowClient(uri).search_experiments()  # creates and migrates the database
    return uri


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
    """Run ``python -m nmf_lab ARGS`` in a temporary directory against the session's store."""

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
