"""Runs read back from the store, as summaries, reports and reuse see them: :class:`StoredRun` (params, final
metrics, curves, config), a sweep's children, the latest finished run, and a run's artifacts."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from nmf_lab.tracking.lifecycle import FINISHED


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


def run_experiment_id(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.experiment_id


def run_exists(client: MlflowClient, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def artifact_files(client: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    """The paths of a run's artifact files under ``folder`` (None: all), sorted."""
    paths = []
    for info in client.list_artifacts(run_id, folder):
        paths.extend(artifact_files(client, run_id, info.path) if info.is_dir else [info.path])
    return sorted(paths)


def read_artifact(client: MlflowClient, run_id: str, path: str) -> bytes:
    """The bytes of a run's artifact file ``path``, e.g. ``figures/2c_basis_images.png``."""
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_bytes()


def read_text_artifact(client: MlflowClient, run_id: str, path: str) -> str:
    """A text artifact of a run, e.g. ``tables/final_errors.md``."""
    return read_artifact(client, run_id, path).decode("utf-8")


def image_width(client: MlflowClient, run_id: str, path: str) -> int | None:
    """The width in pixels of a run's image artifact ``path`` (None if it is not an image Pillow reads)."""
    from PIL import Image, UnidentifiedImageError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with Image.open(client.download_artifacts(run_id, path, tmp)) as image:
                return image.width
        except (OSError, UnidentifiedImageError):
            return None
