"""The store: where runs are recorded (a tracking URI), whether it answers and accepts the credentials, and
its experiments.

Everything goes through an explicit :class:`MlflowClient` (no fluent "active run" state); :func:`open_client` is
how nmf-lab gets one.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

DEFAULT_STORE = Path("mlruns") / "mlflow.db"
"""The default store, relative to the current directory; artifacts go beside it under ``mlruns/``."""


def quiet_mlflow() -> None:
    """Keep MLflow's own output out of nmf-lab's: no progress bar when reading artifacts (summaries read many
    small ones), no link printed when a run on a server ends (the CLI prints its own), and no "Creating initial
    MLflow database tables..." when a new database store is made. The two environment variables are set only
    where unset (a user's choice stays); :func:`open_client` calls this before it makes a client."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def resolve_tracking_uri(configured: str | None) -> str:
    """The tracking URI: ``configured`` if given, else ``$MLFLOW_TRACKING_URI``, else the default store.

    A relative sqlite path is made absolute against the current directory, and its folder is created.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE}"
    db = _sqlite_path(uri)
    if db is not None:
        db = db.resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{db}"
    return uri


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be used; raised before any run is created, naming the URI."""


def open_client(configured: str | None) -> MlflowClient:
    """An MlflowClient on :func:`resolve_tracking_uri` of ``configured``, checked to answer first.

    A server URI must answer ``GET /health`` within 5 seconds and accept the credentials (one authenticated
    request, see :func:`access_errors`), so that an unreachable or misconfigured server, or missing or wrong
    credentials, fail the job before anything is fitted or recorded. MLflow is quietened first
    (:func:`quiet_mlflow`).
    """
    quiet_mlflow()
    uri = resolve_tracking_uri(configured)
    if uri.startswith(("http://", "https://")):
        import requests

        advice = "start it (see the README) or point tracking.uri / MLFLOW_TRACKING_URI at a running one"
        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=5)
        except requests.RequestException as error:
            raise TrackingUnavailable(
                f"the MLflow tracking server {uri} is not reachable ({type(error).__name__}); {advice}"
            ) from error
        if response.status_code != 200:
            raise TrackingUnavailable(
                f"{uri} does not answer like an MLflow tracking server (GET /health gave HTTP "
                f"{response.status_code}); {advice}"
            )
        client = MlflowClient(uri)
        with access_errors(uri, "search experiments"):
            client.search_experiments(max_results=1)  # one authenticated request: credentials fail here
        return client
    return MlflowClient(uri)


CREDENTIALS_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@contextmanager
def access_errors(uri: str, action: str | Callable[[], str]) -> Iterator[None]:
    """Turn a server's refusal (HTTP 401: no or wrong credentials; 403: no permission to do ``action``, or a
    function that says what it was) into :class:`TrackingUnavailable`, one line naming ``uri``, the user and what
    to do."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as error:
        user = os.environ.get(CREDENTIALS_ENV[0])
        if error.error_code == "UNAUTHENTICATED":
            given = (
                f"the password of user {user!r} is wrong or the user does not exist"
                if user
                else f"no credentials were given ({CREDENTIALS_ENV[0]} is not set)"
            )
            raise TrackingUnavailable(
                f"the MLflow tracking server {uri} refused the credentials: {given}; set "
                f"{' and '.join(CREDENTIALS_ENV)} to your account on that server"
            ) from error
        if error.error_code == "PERMISSION_DENIED":
            what = action() if callable(action) else action
            raise TrackingUnavailable(
                f"the MLflow tracking server {uri} does not let user {user!r} {what} (permission denied); ask "
                f"an admin or the experiment's owner for EDIT permission, or use tracking.experiment=<a new name>"
            ) from error
        raise


def import_store(configured: str | None) -> None:
    """Import the MLflow store of :func:`resolve_tracking_uri` of ``configured`` without connecting to it (about
    1.5 s of CPU for a database store): a process that forks its jobs (:func:`nmf_lab.harness.processes.run_in_child`)
    then hands the modules on instead of every job importing them again."""
    import importlib

    server = resolve_tracking_uri(configured).startswith(("http://", "https://"))
    importlib.import_module("mlflow.store.tracking." + ("rest_store" if server else "sqlalchemy_store"))


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def get_experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created if needed.

    In a sqlite store, a new experiment keeps its artifacts beside the database, in ``<db folder>/<name>/``.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    db = _sqlite_path(client.tracking_uri)
    location = None
    if db is not None:
        location = (db.parent / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)).as_uri()
    with access_errors(client.tracking_uri, f"create the experiment {name!r}"):
        return client.create_experiment(name, artifact_location=location)


def experiment_name_of(client: MlflowClient, experiment_id: str) -> str:
    return client.get_experiment(experiment_id).name


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
"""MLflow 3's experiment kind for model training (the other, ``genai_development``, is its traces view). MLflow
3.17's UI reads the view from ``?workflowType=`` or the browser's last choice instead (see the README)."""


def describe_experiment(client: MlflowClient, experiment_id: str, note: str) -> None:
    """Give an experiment its description (Markdown, shown above its runs) and MLflow's experiment kind for
    model training, each only where it has none yet: a description edited in the UI stays."""
    tags = client.get_experiment(experiment_id).tags
    for key, value in ((MLFLOW_RUN_NOTE, note), (EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)):
        if key not in tags:
            client.set_experiment_tag(experiment_id, key, value)


@contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``uri`` for the block, then restore it and ``$MLFLOW_TRACKING_URI``
    (which setting it also sets). MLflow's model logging, ``mlflow.pyfunc.load_model`` of a ``models:/`` URI and
    the database registry's lookup of a version's logged model read the global URI, not a client's."""
    import mlflow
    from mlflow.environment_variables import MLFLOW_TRACKING_URI
    from mlflow.tracking._tracking_service import utils

    previous, previous_env = utils._tracking_uri, os.environ.get(MLFLOW_TRACKING_URI.name)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop(MLFLOW_TRACKING_URI.name, None)
        else:
            os.environ[MLFLOW_TRACKING_URI.name] = previous_env
