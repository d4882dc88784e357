"""Sweeps on a real SLURM cluster (one node, started by the test: munged, slurmctld, slurmd) with
``hydra/launcher=slurm``: every job is a SLURM job with its child run, and a job cancelled with ``scancel`` ends
KILLED while its siblings finish and the parent's summary counts it."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time

import pytest

from nmf_lab.harness.processes import SLURM_JOB_TAG
from nmf_lab.tracking.lifecycle import FAILED, FINISHED, KILLED

from helpers import artifact_paths, load_text, runs_of
from services import slurm_cluster

pytestmark = pytest.mark.slow
ON_THIS_CLUSTER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1"]


@pytest.fixture(scope="module")
def slurm():
    """The environment of a running one-node SLURM cluster (``SLURM_CONF``), for the module."""
    with slurm_cluster() as env:
        yield env


def nmf_lab(cwd, env, tracking_uri, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nmf_lab", *args, *ON_THIS_CLUSTER],
        cwd=cwd,
        env={**os.environ, **env, "MLFLOW_TRACKING_URI": tracking_uri},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_punks_ranks_sweep_runs_every_job_as_a_slurm_job(
    slurm, tracking_uri, client, experiment_name, tmp_path, punks_sheet
):
    process = nmf_lab(
        tmp_path,
        slurm,
        tracking_uri,
        "experiment=punks_ranks",
        "rank=2,4,8",
        f"data.path={punks_sheet}",  # as the other real-data tests: without the sheet it skips (fails in CI)
        "data.n_images=20",
        "solver.max_iter=20",
        f"tracking.experiment={experiment_name}",
    )
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stdout + stderr
    (parent,), children = runs_of(client, experiment_name)
    assert sorted(int(child.data.params["rank"]) for child in children) == [2, 4, 8]
    assert {run.info.status for run in [parent, *children]} == {FINISHED}
    # Each job ran as a task of one SLURM array job (its id as squeue and scancel take it: <array>_<task>).
    jobs = [child.data.tags[SLURM_JOB_TAG] for child in children]
    assert len(set(jobs)) == 3 and len({job.split("_")[0] for job in jobs}) == 1 and all("_" in job for job in jobs)
    assert parent.data.metrics["n_children"] == 3 and parent.data.metrics["n_failed"] == 0
    assert {"summary/children.csv", "figures/2e_error_curves.png", "figures/2f_error_against_rank.png"} <= set(
        artifact_paths(client, parent.info.run_id)
    )
    rows = list(csv.DictReader(io.StringIO(load_text(client, parent.info.run_id, "summary/children.csv", tmp_path))))
    assert sorted(row["rank"] for row in rows) == ["2", "4", "8"] and {row["status"] for row in rows} == {FINISHED}


def test_a_cancelled_job_ends_killed_and_the_parent_says_so(slurm, tracking_uri, client, experiment_name, tmp_path):
    """Two jobs: a short one, and one that would run for hours until it is cancelled with scancel once its run
    exists. The cancelled job's run ends KILLED, the other finishes, the parent is summarized and ends FAILED."""
    process = nmf_lab(
        tmp_path,
        slurm,
        tracking_uri,
        "-m",
        "experiment=movies",
        "solver.max_iter=30,100000000",
        f"tracking.experiment={experiment_name}",
    )
    try:
        deadline = time.monotonic() + 300
        while not (long := long_run(client, experiment_name)):
            assert time.monotonic() < deadline and process.poll() is None, "the long job's run never appeared"
            time.sleep(0.5)
        job = long.data.tags[SLURM_JOB_TAG]
        cancel = subprocess.run(["scancel", job], env={**os.environ, **slurm}, capture_output=True, text=True)
        assert cancel.returncode == 0, cancel.stderr
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode != 0 and "1 of 2 jobs failed" in stderr, stdout + stderr
    assert f"SLURM job {job} ended without a result" in stdout + stderr
    (parent,), children = runs_of(client, experiment_name)
    status = {child.data.params["solver.max_iter"]: child.info.status for child in children}
    assert status["30"] == FINISHED and status["100000000"] in (KILLED, FAILED)
    assert parent.info.status == FAILED
    assert parent.data.metrics["n_children"] == 2 and parent.data.metrics["n_failed"] == 1
    rows = list(csv.DictReader(io.StringIO(load_text(client, parent.info.run_id, "summary/children.csv", tmp_path))))
    assert {row["solver.max_iter"]: row["status"] for row in rows} == status


def long_run(client, experiment_name):
    """The run of the long job, once it exists."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], "params.`solver.max_iter` = '100000000'")
    return runs[0] if runs else None
