"""The denoiser (:class:`nmf_lab.core.denoiser.Denoiser`) as an MLflow pyfunc model: logged with a run, loaded by
``mlflow.pyfunc.load_model`` and served by ``mlflow models serve``.

The model holds no pickle: its data is ``data/denoiser.npz`` (the bases W and the settings,
:meth:`~nmf_lab.core.denoiser.Denoiser.arrays`) and this module is its loader (``loader_module``), so loading it
needs nmf-lab installed (``--env-manager local`` when serving). ``predict`` takes a float array
(n, h, w, channels) in [0, 1], like the run's data set (the CryptoPunks: RGBA, alpha last, 0 = transparent),
and returns the denoised images in the same shape (:meth:`~nmf_lab.core.denoiser.Denoiser.denoise_images`).

Part of the tracking layer, the only one that imports mlflow: model logging needs MLflow's model API.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from nmf_lab.core.denoiser import Denoiser
from nmf_lab.tracking.run_log import RunLog

MODEL_NAME = "denoiser"
"""The name of the model a denoising run logs: ``runs:/<run id>/denoiser``."""

DATA_FILE = "denoiser.npz"


class DenoiserModel:
    """What ``mlflow.pyfunc.load_model`` wraps: ``predict(images)`` with images (n, h, w, channels) in [0, 1]."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser

    def predict(self, model_input, params=None) -> np.ndarray:
        return self.denoiser.denoise_images(np.asarray(model_input, dtype=np.float64))


def _load_pyfunc(data_path: str) -> DenoiserModel:
    """The loader MLflow calls with the path of the model's ``data/denoiser.npz`` (the ``loader_module``
    protocol)."""
    with np.load(data_path, allow_pickle=False) as arrays:
        return DenoiserModel(Denoiser.from_arrays(arrays))


def signature(denoiser: Denoiser) -> ModelSignature:
    """Input and output: float64 tensors (-1, h, w, channels)."""
    h, w, _ = denoiser.image_shape
    spec = Schema([TensorSpec(np.dtype(np.float64), (-1, h, w, denoiser.channels))])
    return ModelSignature(inputs=spec, outputs=spec)


def log_denoiser(
    run: RunLog,
    denoiser: Denoiser,
    *,
    input_example: np.ndarray | None = None,
    registered_model_name: str | None = None,
    name: str = MODEL_NAME,
) -> str:
    """Log ``denoiser`` as the pyfunc model ``name`` of ``run`` (``runs:/<run id>/<name>``) and return its
    model URI (``models:/<model id>``).

    ``input_example``: a few images (k, h, w, channels) kept with the model (its ``serving_input_example.json``
    is a ready request body for ``mlflow models serve``). ``registered_model_name``: also register it as a new
    version of that registered model (e.g. ``nmf-lab-denoiser``).
    """
    client = run.client
    experiment_id = client.get_run(run.run_id).info.experiment_id
    # The logged model is created here, in the run's experiment, so that MLflow's model logging needs no
    # active run (nmf-lab never uses MLflow's fluent run state).
    logged = client.create_logged_model(experiment_id, name=name, source_run_id=run.run_id)
    with tempfile.TemporaryDirectory() as tmp, _tracking_uri(client.tracking_uri), _quiet("mlflow.pyfunc"):
        data = Path(tmp) / DATA_FILE
        np.savez(data, **denoiser.arrays())
        Model.log(
            artifact_path=None,  # the model's name is ``name`` (artifact_path is MLflow's deprecated name)
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run.run_id,
            model_id=logged.model_id,
            loader_module=__name__,
            data_path=str(data),
            signature=signature(denoiser),
            input_example=None if input_example is None else np.asarray(input_example, dtype=np.float64),
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"],
            registered_model_name=registered_model_name,
        )
    return f"models:/{logged.model_id}"


@contextmanager
def _tracking_uri(uri: str):
    """MLflow's model logging reads the global tracking URI: point it at ``uri`` for the block, then restore
    MLflow's global (unset, usually) and ``$MLFLOW_TRACKING_URI`` (which setting the global also sets)."""
    import os

    from mlflow.environment_variables import MLFLOW_TRACKING_URI
    from mlflow.tracking._tracking_service import utils

    previous, previous_env = utils._tracking_uri, os.environ.get(MLFLOW_TRACKING_URI.name)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is not None:
            os.environ[MLFLOW_TRACKING_URI.name] = previous_env


@contextmanager
def _quiet(logger_name: str):
    """Hide a logger's INFO lines for the block (MLflow's "Validating input example against model signature")."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
