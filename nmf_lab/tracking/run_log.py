"""What a run logs: params, tags, metrics, whole curves in one batch, figures, arrays, text, its data set and
its factorization (:class:`RunLog`), and its description."""

from __future__ import annotations

import io
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

TAG_PREFIX = "nmf_lab."
"""The prefix of nmf-lab's own tags (``nmf_lab.stop_reason``, ``nmf_lab.git_commit``, ...)."""


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
        and the factors as ``arrays/W.npy`` and ``arrays/H.npy``. With another loss or a penalty the curve and
        ``final_error`` are the objective minimised, which the tags ``nmf_lab.objective`` and ``nmf_lab.loss``
        name; ``relative_error`` stays ``||M * (A - W H)||_F / ||M * A||_F`` of the returned factors, comparable
        across losses."""
        final = result.final_error
        observed = np.asarray(A, dtype=np.float64) if mask is None else np.asarray(A, dtype=np.float64)[mask]
        norm = float(np.linalg.norm(observed))
        fit_error = final
        if getattr(result, "loss", "frobenius") != "frobenius" or getattr(result, "penalized", False):
            residual = np.asarray(A, dtype=np.float64) - result.W @ result.H  # the plain error of the factors
            fit_error = float(np.linalg.norm(residual if mask is None else residual[mask]))
        self.log_curve("error", result.errors)
        self.log_metrics(
            {
                "final_error": final,
                "relative_error": fit_error / norm,
                "n_iter": result.n_iter,
                "best_iter": result.best_iter,
            }
        )
        self.set_tags({TAG_PREFIX + "stop_reason": result.stop_reason})
        if getattr(result, "loss", "frobenius") != "frobenius" or getattr(result, "penalized", False):
            self.set_tags({TAG_PREFIX + "objective": result.objective, TAG_PREFIX + "loss": result.loss})
        self.log_array(result.W, "arrays/W.npy")
        self.log_array(result.H, "arrays/H.npy")

    def log_text(self, text: str, path: str) -> None:
        self.log_bytes(text.encode("utf-8"), path)

    def log_bytes(self, data: bytes, path: str) -> None:
        folder, name = os.path.split(path)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).write_bytes(data)
            self.client.log_artifact(self.run_id, str(Path(tmp) / name), artifact_path=folder or None)


def set_description(client: MlflowClient, run_id: str, note: str) -> None:
    """Set a run's description (Markdown, shown on its page in the UI)."""
    client.set_tag(run_id, MLFLOW_RUN_NOTE, note)


def _now_ms() -> int:
    return int(time.time() * 1000)
