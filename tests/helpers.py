"""Reading runs back from a tracking store, for the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID


def runs_of(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"no experiment {experiment_name}"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if MLFLOW_PARENT_RUN_ID not in run.data.tags]
    children = [run for run in runs if MLFLOW_PARENT_RUN_ID in run.data.tags]
    return parents, children


def artifact_paths(client, run_id, folder=None):
    paths = []
    for info in client.list_artifacts(run_id, folder):
        paths.extend(artifact_paths(client, run_id, info.path) if info.is_dir else [info.path])
    return paths


def load_array(client, run_id, path, tmp_path):
    """A ``.npy`` artifact of a run, e.g. ``arrays/W.npy``."""
    import numpy as np

    return np.load(client.download_artifacts(run_id, path, str(tmp_path)), allow_pickle=False)


def factors(client, run_id, tmp_path):
    """The factors ``W, H`` a run logged (``arrays/W.npy``, ``arrays/H.npy``)."""
    return tuple(load_array(client, run_id, f"arrays/{name}.npy", tmp_path) for name in ("W", "H"))


def dataset_of(run):
    """The one dataset input of a run."""
    (dataset_input,) = run.inputs.dataset_inputs
    return dataset_input.dataset


def load_text(client, run_id, path, tmp_path):
    return Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text()


class StudyRun:
    """One job's run read back from the store (what the ``run_study`` fixture returns): the job's final
    ``status``, the MLflow ``run`` and its ``run_id``, ``metrics``, ``params`` and ``tags``, and its artifacts
    (``text``, ``array``, ``factors``, ``paths``), downloaded into ``tmp_path``. Anything else is the MLflow
    run's (``info``, ``data``, ``inputs``)."""

    def __init__(self, status, run, client, tmp_path):
        self.status, self.run, self.client, self.tmp_path = status, run, client, tmp_path
        self.run_id = run.info.run_id
        self.metrics, self.params, self.tags = run.data.metrics, run.data.params, run.data.tags

    def __getattr__(self, name):
        if name == "run":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.run, name)

    def text(self, path):
        return load_text(self.client, self.run_id, path, self.tmp_path)

    def array(self, path):
        return load_array(self.client, self.run_id, path, self.tmp_path)

    def factors(self):
        return factors(self.client, self.run_id, self.tmp_path)

    def paths(self):
        return set(artifact_paths(self.client, self.run_id))
