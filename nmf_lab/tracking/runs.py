"""MLflow tracking: the store, runs that always end in a final state, and what a run logs.

The only module that imports mlflow. Everything goes through an explicit :class:`MlflowClient` (no fluent
"active run" state), so a run's status is set here and nowhere else.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import signal
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # summaries read many small artifacts
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the CLI prints its own links
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."

DEFAULT_STORE = Path("mlruns") / "mlflow.db"
"""The default store, relative to the current directory; artifacts go beside it under ``mlruns/``."""

TAG_PREFIX = "nmf_lab."

FINISHED, FAILED, KILLED, RUNNING = (
    RunStatus.to_string(status)
    for status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.RUNNING)
)
"""Run statuses as MLflow spells them."""


class Interrupted(BaseException):
    """Raised in the main thread on SIGTERM, so that a terminated job ends its run as KILLED."""


def raise_interrupted_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Interrupted` (SIGINT already raises ``KeyboardInterrupt``)."""

    def handler(signum, frame):
        raise Interrupted(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


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
    credentials, fail the job before anything is fitted or recorded.
    """
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


def set_description(client: MlflowClient, run_id: str, note: str) -> None:
    """Set a run's description (Markdown, shown on its page in the UI)."""
    client.set_tag(run_id, MLFLOW_RUN_NOTE, note)


def artifact_files(client: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    """The paths of a run's artifact files under ``folder`` (None: all), sorted."""
    paths = []
    for info in client.list_artifacts(run_id, folder):
        paths.extend(artifact_files(client, run_id, info.path) if info.is_dir else [info.path])
    return sorted(paths)


def image_width(client: MlflowClient, run_id: str, path: str) -> int | None:
    """The width in pixels of a run's image artifact ``path`` (None if it is not an image Pillow reads)."""
    from PIL import Image, UnidentifiedImageError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with Image.open(client.download_artifacts(run_id, path, tmp)) as image:
                return image.width
        except (OSError, UnidentifiedImageError):
            return None


def read_text_artifact(client: MlflowClient, run_id: str, path: str) -> str:
    """A text artifact of a run, e.g. ``tables/final_errors.md``."""
    return read_artifact(client, run_id, path).decode("utf-8")


class RunLog:
    """What one run logs: params, metrics, curves, figures, arrays, text. Wraps ``client`` + ``run_id``."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = _now_ms()
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_curve(self, key: str, values: np.ndarray) -> None:
        """Log ``values[k]`` as metric ``key`` at step k, in one batch call."""
        now = _now_ms()
        metrics = [Metric(key, float(v), now, step) for step, v in enumerate(values)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_figure(self, figure, path: str, *, compare_key: str | None = None) -> None:
        """Save a matplotlib figure as the PNG artifact ``path``.

        With ``compare_key``, the same picture is also logged as an MLflow image under that key, which the
        UI's run comparison shows side by side across runs.
        """
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        self.log_bytes(buffer.getvalue(), path)
        if compare_key is not None:
            from PIL import Image

            buffer.seek(0)
            with Image.open(buffer) as image:
                self.client.log_image(self.run_id, image.convert("RGBA"), key=compare_key, step=0)

    def log_array(self, array: np.ndarray, path: str) -> None:
        """Save an array as a ``.npy`` artifact (loadable with ``allow_pickle=False``)."""
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        self.log_bytes(buffer.getvalue(), path)

    def log_dataset(
        self, features: np.ndarray, *, name: str, source: str, digest: str | None = None, context: str = "training"
    ) -> None:
        """Record the data a run fitted as an MLflow dataset input: name, source, digest and shape.

        ``digest``: the data set's own (e.g. :attr:`nmf_lab.data.images.ImageSet.digest`), of which MLflow keeps
        the first 32 hex digits (its limit is 36 characters); None lets MLflow hash ``features``."""
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_numpy(features, source=source, name=name, digest=digest and digest[:32])
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        self.client.log_inputs(self.run_id, [DatasetInput(dataset._to_mlflow_entity(), tags)])

    def copy_metrics_from(self, run) -> None:
        """Copy every metric history of another (finished) ``run`` into this one."""
        for key in run.data.metrics:
            history = self.client.get_metric_history(run.info.run_id, key)
            self.client.log_batch(self.run_id, metrics=[Metric(m.key, m.value, m.timestamp, m.step) for m in history])

    def log_factorization(self, A: np.ndarray, result, mask: np.ndarray | None = None) -> None:
        """What every NMF run logs: the error curve (metric ``error``, step = iteration) in one batch,
        ``final_error`` (at the returned factors), ``relative_error = final_error / ||A||_F`` (both over the
        observed entries when a ``mask`` is given), ``n_iter``, ``best_iter``, the tag ``nmf_lab.stop_reason``,
        and the factors as ``arrays/W.npy`` and ``arrays/H.npy``."""
        final = result.final_error
        observed = np.asarray(A, dtype=np.float64) if mask is None else np.asarray(A, dtype=np.float64)[mask]
        norm = float(np.linalg.norm(observed))
        self.log_curve("error", result.errors)
        self.log_metrics(
            {
                "final_error": final,
                "relative_error": final / norm,
                "n_iter": result.n_iter,
                "best_iter": result.best_iter,
            }
        )
        self.set_tags({TAG_PREFIX + "stop_reason": result.stop_reason})
        self.log_array(result.W, "arrays/W.npy")
        self.log_array(result.H, "arrays/H.npy")

    def log_text(self, text: str, path: str) -> None:
        self.log_bytes(text.encode("utf-8"), path)

    def log_bytes(self, data: bytes, path: str) -> None:
        folder, name = os.path.split(path)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).write_bytes(data)
            self.client.log_artifact(self.run_id, str(Path(tmp) / name), artifact_path=folder or None)


@contextmanager
def tracked_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    end: bool = True,
) -> Iterator[RunLog]:
    """Create a run and make sure it ends in a final state.

    FINISHED when the block completes; FAILED when it raises (the traceback is logged as
    ``error/traceback.txt`` and the exception re-raised); KILLED on Ctrl-C or SIGTERM. With ``end=False``
    a successful block leaves the run open (a sweep's parent, ended by its summary).
    """
    all_tags = dict(tags or {})
    if run_name:
        all_tags[MLFLOW_RUN_NAME] = run_name
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id

    def action() -> str:
        return f"create runs in experiment {client.get_experiment(experiment_id).name!r}"

    with access_errors(client.tracking_uri, action):
        run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    run_log = RunLog(client, run.info.run_id)
    try:
        yield run_log
    except (KeyboardInterrupt, Interrupted):
        client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        try:
            run_log.log_text(traceback.format_exc(), "error/traceback.txt")
        finally:
            client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    if end:
        client.set_terminated(run_log.run_id, RunStatus.to_string(RunStatus.FINISHED))


def finished_run_with_tag(client: MlflowClient, experiment_id: str, key: str, value: str):
    """The latest FINISHED run of the experiment whose tag ``key`` is ``value``, or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{key}` = '{value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def latest_finished_run(client: MlflowClient, experiment_name: str) -> StoredRun | None:
    """The latest FINISHED top-level run of the experiment ``experiment_name`` (a single job or a sweep's parent,
    never a sweep's job), by start time; None when there is none (or no such experiment)."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.status = '{FINISHED}'",
            order_by=["attributes.start_time DESC"],
            max_results=500,
            page_token=token,
        )
        for run in page:
            if MLFLOW_PARENT_RUN_ID not in run.data.tags:
                return StoredRun.of(client, run)
        token = page.token
        if not token:
            return None


def read_artifact(client: MlflowClient, run_id: str, path: str) -> bytes:
    """The bytes of a run's artifact file ``path``, e.g. ``figures/2c_basis_images.png``."""
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_bytes()


@dataclass
class StoredRun:
    """A finished run as a summary sees it, read back from the store: its params, final metrics, metric
    histories (:meth:`curve`) and its config (:attr:`config`, from ``config.yaml``, passed through
    ``config_types`` when given: a function that gives the values their schema's types)."""

    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    client: MlflowClient = field(repr=False)
    config_types: Callable[[Any], Any] | None = field(default=None, repr=False)
    experiment_id: str = ""
    artifact_uri: str = ""

    @classmethod
    def of(cls, client: MlflowClient, run, config_types=None) -> StoredRun:
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or "",
            status=run.info.status,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            client=client,
            config_types=config_types,
            experiment_id=run.info.experiment_id,
            artifact_uri=run.info.artifact_uri or "",
        )

    @classmethod
    def load(cls, client: MlflowClient, run_id: str) -> StoredRun:
        """The run ``run_id`` as it is in the store now."""
        return cls.of(client, client.get_run(run_id))

    def curve(self, key: str = "error") -> np.ndarray:
        """The metric ``key`` of this run by step, e.g. its error curve."""
        history = sorted(self.client.get_metric_history(self.run_id, key), key=lambda m: m.step)
        return np.array([m.value for m in history], dtype=np.float64)

    @functools.cached_property
    def config(self):
        """The run's resolved config (its ``config.yaml``) as an OmegaConf node: ``child.config.rank``."""
        from omegaconf import OmegaConf

        with tempfile.TemporaryDirectory() as tmp:
            config = OmegaConf.load(self.client.download_artifacts(self.run_id, "config.yaml", tmp))
        return self.config_types(config) if self.config_types is not None else config


def child_runs(client: MlflowClient, parent_run_id: str, config_types=None) -> list[StoredRun]:
    """The child runs of a parent run, oldest first (``config_types``: see :class:`StoredRun`)."""
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=50_000,
    )
    return [StoredRun.of(client, run, config_types) for run in runs]


def run_experiment_id(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.experiment_id


def run_exists(client: MlflowClient, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def experiment_name_of(client: MlflowClient, experiment_id: str) -> str:
    return client.get_experiment(experiment_id).name


def run_status(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.status


def end_run(client: MlflowClient, run_id: str, status: str) -> None:
    """Set the final ``status`` (:data:`FINISHED`, :data:`FAILED` or :data:`KILLED`) of a run."""
    client.set_terminated(run_id, status)


PROCESS_DIED_TAG = TAG_PREFIX + "process_died"


def end_orphan(client: MlflowClient, run_id: str, note: str, status: str = FAILED) -> None:
    """End a RUNNING run whose process died without ending it, with ``status`` (FAILED, or KILLED), and
    ``note`` (why) as the tag ``nmf_lab.process_died`` and added to the run's description."""
    description = client.get_run(run_id).data.tags.get(MLFLOW_RUN_NOTE)
    client.set_tag(run_id, PROCESS_DIED_TAG, note)
    client.set_tag(run_id, MLFLOW_RUN_NOTE, f"{description}\n\n**{note}**" if description else f"**{note}**")
    client.set_terminated(run_id, status)


def provenance_tags(project_dir: Path) -> dict[str, str]:
    """What it takes to reproduce a run: the git commit (and whether the tree was dirty), the versions of
    nmf-lab, NumPy and MLflow, and the BLAS with its thread count (threadpoolctl)."""
    import subprocess

    import mlflow
    from threadpoolctl import threadpool_info

    import nmf_lab

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return {
        TAG_PREFIX + "git_commit": commit or "unknown",
        TAG_PREFIX + "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        TAG_PREFIX + "version": nmf_lab.__version__,
        TAG_PREFIX + "numpy_version": np.__version__,
        TAG_PREFIX + "mlflow_version": mlflow.__version__,
        TAG_PREFIX + "blas": ", ".join(
            f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('num_threads')} threads)" for pool in blas
        )
        or "unknown",
    }


def _now_ms() -> int:
    return int(time.time() * 1000)
