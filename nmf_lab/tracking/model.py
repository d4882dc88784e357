"""The denoiser (:class:`nmf_lab.core.denoiser.Denoiser`) as an MLflow pyfunc model: logged with a run, loaded by
``mlflow.pyfunc.load_model`` and served by ``mlflow models serve``.

The model holds no pickle: its data is ``data/denoiser.npz`` (the bases W and the settings,
:meth:`~nmf_lab.core.denoiser.Denoiser.arrays`) and this module is its loader (``loader_module``), so loading it
needs nmf-lab installed (``--env-manager local`` when serving). ``predict`` takes a float array
(n, h, w, channels) in [0, 1], like the run's data set (the CryptoPunks: RGBA, alpha last, 0 = transparent),
and returns the denoised images in the same shape (:meth:`~nmf_lab.core.denoiser.Denoiser.denoise_images`).
Its one parameter, ``zero_rule`` (``predict(images, params={"zero_rule": True})``), says whether the images'
zero entries are exact (spec 6.1's noise): a model built with the zero rule refuses to predict until told
(its description and its signature's parameter say so); a model built without it applies the rule only when
asked.

A model is measured before it is registered (``experiments.shared.model_gain``): :func:`register_denoiser`
refuses one that made images outside its fit worse.

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
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

from nmf_lab.core.denoiser import ZERO_RULE_ASSUMPTION, Denoiser
from nmf_lab.tracking.run_log import RunLog
from nmf_lab.tracking.store import global_tracking_uri

MODEL_NAME = "denoiser"
"""The name of the model a denoising run logs: ``runs:/<run id>/denoiser``."""

DATA_FILE = "denoiser.npz"


class DenoiserModel:
    """What ``mlflow.pyfunc.load_model`` wraps: ``predict(images)`` with images (n, h, w, channels) in [0, 1]."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser

    def get_raw_model(self) -> Denoiser:
        """The NumPy denoiser (``mlflow.pyfunc.load_model(uri).get_raw_model()``): its bases, its settings."""
        return self.denoiser

    def predict(self, model_input, params=None) -> np.ndarray:
        zero_rule = (params or {}).get("zero_rule")
        return self.denoiser.denoise_images(np.asarray(model_input, dtype=np.float64), zero_rule=zero_rule)


def _load_pyfunc(data_path: str) -> DenoiserModel:
    """The loader MLflow calls with the path of the model's ``data/denoiser.npz`` (the ``loader_module``
    protocol)."""
    with np.load(data_path, allow_pickle=False) as arrays:
        return DenoiserModel(Denoiser.from_arrays(arrays))


def signature(denoiser: Denoiser) -> ModelSignature:
    """Input and output: float64 tensors (-1, h, w, channels); the parameter ``zero_rule`` (boolean, default
    None: not said)."""
    h, w, _ = denoiser.image_shape
    spec = Schema([TensorSpec(np.dtype(np.float64), (-1, h, w, denoiser.channels))])
    params = ParamSchema([ParamSpec("zero_rule", "boolean", None)])
    return ModelSignature(inputs=spec, outputs=spec, params=params)


def describe(denoiser: Denoiser) -> str:
    """The model's description: what it does and what input it assumes."""
    h, w, c = denoiser.image_shape
    ranks = sorted({W.shape[1] for W in denoiser.bases})
    what = (
        f"An NMF denoiser of {h} x {w} images ({c} colour channel{'s' if c > 1 else ''}"
        f"{' and alpha' if denoiser.alpha else ''}, values in [0, 1]): the mean of the projections onto "
        f"{len(denoiser.bases)} learned bases (d = {', '.join(map(str, ranks))})"
        f"{', clipped to [0, 1] with transparent pixels at 0' if denoiser.postprocess else ''}."
    )
    if denoiser.keep_zeros:
        rule = (
            f" It was {ZERO_RULE_ASSUMPTION}. Pass params={{'zero_rule': True}} for such images (a noisy 0 stays 0), "
            "{'zero_rule': False} for any other noise; without the parameter it refuses to predict."
        )
    else:
        rule = (
            " It was built without the zero rule; params={'zero_rule': True} applies it (a noisy 0 stays 0) to "
            "images whose zero entries are exact (spec 6.1's noise)."
        )
    return what + rule


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
    with tempfile.TemporaryDirectory() as tmp, global_tracking_uri(client.tracking_uri), _quiet("mlflow.pyfunc"):
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
            input_example=_example(denoiser, input_example),
            metadata={"description": describe(denoiser), "zero_rule_built": denoiser.keep_zeros},
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"],
            registered_model_name=registered_model_name,
        )
    client.set_logged_model_tags(logged.model_id, {MLFLOW_NOTE: describe(denoiser)})
    return f"models:/{logged.model_id}"


MLFLOW_NOTE = "mlflow.note.content"
"""The tag MLflow shows as a description."""


def _example(denoiser: Denoiser, images: np.ndarray | None):
    """The input example: the images, with ``params={'zero_rule': True}`` for a model built with the rule
    (without it the model refuses, and the example is also the ready request of ``mlflow models serve``)."""
    if images is None:
        return None
    images = np.asarray(images, dtype=np.float64)
    return (images, {"zero_rule": True}) if denoiser.keep_zeros else images


def predict(model_uri: str, images: np.ndarray, *, client, zero_rule: bool | None = None) -> np.ndarray:
    """The logged model ``model_uri`` of ``client``'s store loaded with ``mlflow.pyfunc.load_model`` (as a user
    would; a ``models:/`` URI is looked up in that store, not in MLflow's global default) and applied to
    ``images`` (n, h, w, channels), with ``params={'zero_rule': zero_rule}`` when it is not None."""
    with global_tracking_uri(client.tracking_uri):
        model = mlflow.pyfunc.load_model(model_uri)
    params = None if zero_rule is None else {"zero_rule": bool(zero_rule)}
    return np.asarray(model.predict(np.asarray(images, dtype=np.float64), params=params))


class HarmfulModel(ValueError):
    """A model that made noisy images outside its fit worse: it is not registered."""


def register_denoiser(run: RunLog, model_uri: str, name: str, *, gain_db: float, description: str) -> str:
    """Register the logged model ``model_uri`` of ``run`` as a new version of ``name`` with ``description``, only
    if it helps: ``gain_db`` (its PSNR gain in dB on fresh noisy images outside its fit) must be > 0, else
    :class:`HarmfulModel`. Returns the version."""
    if not gain_db > 0:
        raise HarmfulModel(
            f"the model {model_uri} makes noisy images outside its fit worse ({gain_db:+.2f} dB): not registered"
        )
    client = run.client
    with global_tracking_uri(client.tracking_uri), _quiet("mlflow.tracking._model_registry.fluent"):
        version = mlflow.register_model(model_uri, name)
    client.update_model_version(name, version.version, description=description)
    return version.version


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
