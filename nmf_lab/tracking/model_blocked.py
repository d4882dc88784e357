"""The logged denoiser's ``predict`` on a batch too large for one process: the model is loaded as a user loads
it (``mlflow.pyfunc.load_model``) and its NumPy denoiser applied chunk by chunk on Dask
(:func:`nmf_lab.distributed.denoise.denoise_blocked`)."""

from __future__ import annotations

import mlflow

from nmf_lab.distributed.denoise import denoise_blocked

__all__ = ["predict_blocked"]


def predict_blocked(model_uri: str, images, *, zero_rule: bool | None = None, chunk: int = 2000):
    """``predict`` of the model ``model_uri`` on ``images`` (n, h, w, channels; a Dask array chunked along n, or
    an array cut into chunks of ``chunk``): a lazy Dask array (``.compute()``, or ``.to_zarr(...)`` for a
    batch beyond memory) equal, image by image, to ``mlflow.pyfunc.load_model(model_uri).predict(images)``
    to the NNLS tolerance."""
    denoiser = mlflow.pyfunc.load_model(model_uri).get_raw_model()
    return denoise_blocked(denoiser, images, zero_rule=zero_rule, chunk=chunk)
