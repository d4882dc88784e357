"""Sharing runs, for real: `nmf-lab-push` copies a 24-job sweep (with a FAILED run beside it) and a denoising run
with its registered model from a local sqlite store to the team server (basic-auth over PostgreSQL), whole and
once; `nmf-lab-pull` brings them back into a fresh store, equal to the originals, after an interrupted pull; a
changed run is replaced; missing or wrong credentials and a READ-only user are refused in one line, with nothing
copied."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass

import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE, MLFLOW_USER

from nmf_lab.harness.share import pull_main, push_main
from nmf_lab.tracking.lifecycle import FAILED, FINISHED, RUNNING, tracked_run
from nmf_lab.tracking.store import get_experiment_id
from nmf_lab.tracking.transfer import (
    COMPLETE,
    COPY_TAG,
    DIGEST_TAG,
    IN_PROGRESS,
    NAME_LIMIT,
    SOURCE_NAME_TAG,
    SOURCE_RUN_TAG,
    SOURCE_STORE_TAG,
    artifact_sizes,
    copy_runs,
    model_artifact_sizes,
    whole_name,
)

from helpers import runs_of
from services import basic_auth_server

pytestmark = pytest.mark.slow
RUN_ROUTE = re.compile(r"/runs/([0-9a-f]{32})")
RUN_LINK = re.compile(r"(\[[0-9a-f]{8}\]\()?#/experiments/[^/)\s]+/runs/[0-9a-f]{32}")
"""A link to a run in a description: ``[<8 digits of its id>](#/experiments/<id>/runs/<id>``, or the route alone."""
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
NOT_CONTENT = {
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_USER,
    SOURCE_STORE_TAG,
    SOURCE_RUN_TAG,
    COPY_TAG,
    SOURCE_NAME_TAG,
    DIGEST_TAG,
}
ZERO_RULE = {"zero_rule": True}  # the models refuse to guess whether the zero rule holds for their input
SMALL_DENOISER = (  # experiment=denoise_best on 240 punks: about 3 s
    "data.n_images=240",
    "solver.max_iter=40",
    "noise.sigma=0.3",  # at this noise the small denoiser helps (+2 dB), so its model is registered
    "denoise_best.max_members=2",
    "denoise_best.probes=2",
    "denoise_best.patience=10",
    "denoise_best.ranks=[8,16]",
    "denoise_best.first=100",
    "denoise_best.study_ranks=[16,32]",
    "denoise_best.study_iter=60",
    "denoise_best.svd_ranks=[16,32]",
)


@contextmanager
def as_user(user: str | None, password: str | None) -> Iterator[None]:
    """MlflowClient reads the credentials from the environment at each request: set them (None: unset) for the
    block, and restore them after it."""
    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    for key, value in zip(CREDENTIALS, (user, password)):
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@dataclass(frozen=True)
class Originals:
    store: str
    sweep: str  # experiment names
    denoise: str
    model: str  # the registered model's name
    failed_run: str


@pytest.fixture(scope="module")
def team():
    with basic_auth_server({"alice": "alice-pw-for-tests", "reader": "reader-pw-for-tests"}) as server:
        yield server


@pytest.fixture(scope="module")
def originals(tracking_uri, punks_sheet, tmp_path_factory) -> Originals:
    """In the session's local store: a real `nmf-lab -m` sweep of 24 jobs (experiment=toy, 50 iterations), a
    FAILED run beside it, and a denoising run (experiment=denoise_best, small) that registers its model; the
    two commands run at once."""
    tag = uuid.uuid4().hex[:8]
    names = Originals(tracking_uri, f"push-sweep-{tag}", f"push-denoise-{tag}", f"push-denoiser-{tag}", "")
    cwd = tmp_path_factory.mktemp("originals")
    commands = [
        ["experiment=toy", "solver.max_iter=50", f"tracking.experiment={names.sweep}"],
        [
            "experiment=denoise_best",
            *SMALL_DENOISER,
            f"data.path={punks_sheet}",
            f"tracking.experiment={names.denoise}",
            f"denoise_best.registered_model={names.model}",
        ],
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "nmf_lab", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in commands
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    client = MlflowClient(tracking_uri)
    experiment_id = get_experiment_id(client, names.sweep)
    with pytest.raises(ValueError), tracked_run(client, experiment_id, run_name="a job that failed") as run:
        run.log_curve("error", np.array([3.0, 2.0, 1.5]))
        raise ValueError("this job fails")
    return Originals(tracking_uri, names.sweep, names.denoise, names.model, run.run_id)


def push(*args: str) -> str:
    """``nmf-lab-push ARGS`` in this process: what it prints (it raises SystemExit on a refusal)."""
    out = io.StringIO()
    with redirect_stdout(out):
        push_main(list(args))
    return out.getvalue()


def push_originals(team, originals) -> str:
    """``nmf-lab-push`` of the sweep and the denoising run from the originals' store to the team server."""
    return push("--from", originals.store, "--to", team.uri, "--experiment", originals.sweep,
                "--experiment", originals.denoise)  # fmt: skip


@pytest.fixture(scope="module")
def pushed(team, originals):
    """The first push, as alice: what it printed and how long it took."""
    started = time.perf_counter()
    with as_user("alice", team.users["alice"]):
        printed = push_originals(team, originals)
    return printed, time.perf_counter() - started


def load_model(store: str, uri: str):
    """``mlflow.pyfunc.load_model(uri)`` with ``store`` as MLflow's tracking and registry URI."""
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:
        return mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri("")
        mlflow.set_registry_uri("")
        os.environ.pop("MLFLOW_TRACKING_URI", None)


def all_runs(client: MlflowClient, *experiments: str) -> list:
    found = []
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        found += client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []
    return found


def assert_same_run(source: MlflowClient, original, target: MlflowClient, copy) -> None:
    """``copy`` holds what ``original`` holds: status, times, params, tags, every metric's full history (step,
    timestamp, value), dataset inputs, artifacts (names, sizes, and the bytes of the arrays), logged models."""
    a, b = original, copy
    assert (b.info.status, b.info.start_time, b.info.end_time) == (a.info.status, a.info.start_time, a.info.end_time)
    # A name longer than PostgreSQL keeps (a sweep's parent) is cut on the server, and whole in a tag.
    assert whole_name(b) == a.info.run_name and (
        b.info.run_name == a.info.run_name or len(b.info.run_name) == NAME_LIMIT
    )
    assert b.data.params == a.data.params
    content = [{k: v for k, v in run.data.tags.items() if k not in NOT_CONTENT} for run in (a, b)]
    notes = [RUN_LINK.sub("(run)", tags.pop(MLFLOW_RUN_NOTE, "")) for tags in content]  # links: see assert_copied
    assert content[1] == content[0] and notes[1] == notes[0]
    assert b.data.tags[COPY_TAG] == COMPLETE
    assert set(b.data.metrics) == set(a.data.metrics)
    for key in a.data.metrics:
        histories = [
            sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for client, run in ((source, a), (target, b))
        ]
        assert histories[1] == histories[0], key
    assert [d.dataset.digest for d in b.inputs.dataset_inputs] == [d.dataset.digest for d in a.inputs.dataset_inputs]
    sizes = artifact_sizes(source, a.info.run_id)
    assert artifact_sizes(target, b.info.run_id) == sizes and sizes
    for path in (p for p in sizes if p.endswith(".npy")):
        arrays = [
            np.load(client.download_artifacts(run.info.run_id, path)) for client, run in ((source, a), (target, b))
        ]
        np.testing.assert_array_equal(arrays[1], arrays[0])
    models = [[o.model_id for o in run.outputs.model_outputs] for run in (a, b)]
    assert len(models[1]) == len(models[0])
    for original_model, copied_model in zip(*models):
        assert model_artifact_sizes(target, copied_model) == model_artifact_sizes(source, original_model)


def assert_copied(source: MlflowClient, target: MlflowClient, originals: Originals) -> dict[str, str]:
    """Every original run has exactly one copy in ``target`` (found by its source tag), equal to it; the sweep's
    children point at the parent's copy. Returns original id -> copy id."""
    copies = {}
    for name in (originals.sweep, originals.denoise):
        wanted = all_runs(source, name)
        found = all_runs(target, name)
        assert len(found) == len(wanted)
        by_origin = {run.data.tags[SOURCE_RUN_TAG]: run for run in found}
        assert set(by_origin) == {run.info.run_id for run in wanted}  # one copy each, no duplicate
        for run in wanted:
            assert_same_run(source, run, target, by_origin[run.info.run_id])
            copies[run.info.run_id] = by_origin[run.info.run_id].info.run_id
        for run in wanted:
            parent = run.data.tags.get(MLFLOW_PARENT_RUN_ID)
            assert by_origin[run.info.run_id].data.tags.get(MLFLOW_PARENT_RUN_ID) == copies.get(parent)
            # A sweep's description links to its jobs: the copy's to the jobs' copies, in the same order.
            linked = [
                RUN_ROUTE.findall(r.data.tags.get(MLFLOW_RUN_NOTE, "")) for r in (run, by_origin[run.info.run_id])
            ]
            assert linked[1] == [copies[run_id] for run_id in linked[0]]
        assert target.get_experiment_by_name(name).tags == source.get_experiment_by_name(name).tags
    return copies


def test_a_push_copies_the_sweep_and_the_model_whole(team, originals, pushed):
    printed, seconds = pushed
    source = MlflowClient(originals.store, registry_uri=originals.store)
    with as_user(*team.admin):
        server = MlflowClient(team.uri, registry_uri=team.uri)
        copies = assert_copied(source, server, originals)
        parents, children = runs_of(server, originals.sweep)  # the sweep's parent and the failed run
        assert len(parents) == 2 and len(children) == 24 and {child.info.status for child in children} == {FINISHED}
        assert server.get_run(copies[originals.failed_run]).info.status == FAILED  # a FAILED run stays FAILED
        # The registered model: a version on the server, pointing at the copied run's logged model, which loads
        # and denoises as the original does.
        (original_version,) = source.search_model_versions(f"name='{originals.model}'")
        (version,) = server.search_model_versions(f"name='{originals.model}'")
        assert version.run_id == copies[original_version.run_id]
        (output,) = server.get_run(version.run_id).outputs.model_outputs
        assert version.source == f"models:/{output.model_id}"
        images = np.random.default_rng(0).random((2, 24, 24, 4))
        copied = load_model(team.uri, f"models:/{originals.model}/{version.version}")
    original = load_model(originals.store, original_version.source)
    np.testing.assert_array_equal(copied.predict(images, params=ZERO_RULE), original.predict(images, params=ZERO_RULE))
    # What the user sees: one row per run, every one copied, each with its link in the server's model-training view.
    assert f"27 runs from {originals.store} to {team.uri}" in printed and "27 copied" in printed
    for original, copy in copies.items():
        row = next(line for line in printed.splitlines() if original in line)
        assert copy in row and " copied " in row
        assert f"{team.uri}/#/experiments/" in row and f"/runs/{copy}?workflowType=machine_learning" in row
    print(f"\nfirst push of 27 runs: {seconds:.1f} s\n{printed}")


def test_a_second_push_copies_nothing(team, originals, pushed):
    with as_user("alice", team.users["alice"]):
        printed = push_originals(team, originals)
    assert "27 skipped" in printed and " copied" not in printed and " replaced" not in printed
    with as_user(*team.admin):
        server = MlflowClient(team.uri, registry_uri=team.uri)
        assert len(all_runs(server, originals.sweep, originals.denoise)) == 27
        assert len(server.search_model_versions(f"name='{originals.model}'")) == 1


def test_a_changed_run_is_copied_again_in_place_of_its_old_copy(team, originals, pushed):
    """A job's run gains a metric point after the push: the next push replaces its copy, and only that one."""
    source = MlflowClient(originals.store)
    _, children = runs_of(source, originals.sweep)
    changed = children[5].info.run_id
    source.log_metric(changed, "error", 0.25, step=10_000)
    with as_user("alice", team.users["alice"]):
        printed = push("--from", originals.store, "--to", team.uri, "--experiment", originals.sweep)
    assert "1 replaced, 25 skipped" in printed
    assert " replaced (changed: metric histories" in next(line for line in printed.splitlines() if changed in line)
    with as_user(*team.admin):
        server = MlflowClient(team.uri)
        copies = all_runs(server, originals.sweep)  # one copy each: the old copy of the changed run is gone
        assert sorted(run.data.tags[SOURCE_RUN_TAG] for run in copies) == sorted(
            run.info.run_id for run in all_runs(source, originals.sweep)
        )
        (copy,) = [run for run in copies if run.data.tags[SOURCE_RUN_TAG] == changed]
        assert_same_run(source, source.get_run(changed), server, copy)  # equal to its new self
        parent = next(
            run for run in copies if run.data.tags[SOURCE_RUN_TAG] == children[5].data.tags[MLFLOW_PARENT_RUN_ID]
        )
        assert copy.data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id


def test_an_interrupted_pull_then_a_pull_bring_back_the_originals(team, originals, pushed, fresh_tracking_uri):
    """Ctrl-C while the second job's metrics are being copied: the sweep's parent and that job stay in progress
    (RUNNING, tagged so), the first job is complete. The next pull replaces the two and copies the rest; the fresh
    store then holds the originals: equal histories, artifacts and the registered model, which predicts alike."""
    calls = []

    def interrupt(name, step):
        calls.append(step)
        if calls.count("metrics") == 3:
            raise KeyboardInterrupt

    with as_user("alice", team.users["alice"]):
        with pytest.raises(KeyboardInterrupt):
            copy_runs(team.uri, fresh_tracking_uri, experiments=[originals.sweep], progress=interrupt)
        local = MlflowClient(fresh_tracking_uri, registry_uri=fresh_tracking_uri)
        halfway = all_runs(local, originals.sweep)
        states = sorted((run.data.tags[COPY_TAG], run.info.status) for run in halfway)
        assert states == [(COMPLETE, FINISHED), (IN_PROGRESS, RUNNING), (IN_PROGRESS, RUNNING)]

        out = io.StringIO()
        with redirect_stdout(out):
            pull_main(
                [
                    "--from",
                    team.uri,
                    "--to",
                    fresh_tracking_uri,
                    "--experiment",
                    originals.sweep,
                    "--experiment",
                    originals.denoise,
                ]
            )
    printed = out.getvalue()
    assert "2 replaced, 1 skipped" in printed and "24 copied" in printed
    assert printed.count("replaced (an interrupted copy was replaced)") == 2
    source = MlflowClient(originals.store, registry_uri=originals.store)
    copies = assert_copied(source, local, originals)
    assert {
        run.info.run_id for run in local.search_runs([local.get_experiment_by_name(originals.sweep).experiment_id])
    } == {copies[run.info.run_id] for run in all_runs(source, originals.sweep)}  # the interrupted copies are gone
    (original_version,) = source.search_model_versions(f"name='{originals.model}'")
    (version,) = local.search_model_versions(f"name='{originals.model}'")
    assert version.run_id == copies[original_version.run_id]
    images = np.random.default_rng(1).random((2, 24, 24, 4))
    np.testing.assert_array_equal(
        load_model(fresh_tracking_uri, f"models:/{originals.model}/{version.version}").predict(
            images, params=ZERO_RULE
        ),
        load_model(originals.store, original_version.source).predict(images, params=ZERO_RULE),
    )
    assert f"start the UI: mlflow ui --backend-store-uri {fresh_tracking_uri}" in printed


def server_state(team) -> tuple:
    """What the admin sees on the server: every experiment with its runs, and every registered model version."""
    with as_user(*team.admin):
        server = MlflowClient(team.uri, registry_uri=team.uri)
        experiments = {e.name: e.experiment_id for e in server.search_experiments()}
        runs = sorted(run.info.run_id for run in server.search_runs(list(experiments.values()), max_results=5000))
        versions = sorted((v.name, v.version) for v in server.search_model_versions())
        return sorted(experiments), runs, versions


@pytest.fixture
def new_work(originals, experiment_name) -> str:
    """A run the server has not seen, in a new experiment of the local store: what a push would copy."""
    client = MlflowClient(originals.store)
    with tracked_run(client, get_experiment_id(client, experiment_name), run_name="new work") as run:
        run.log_curve("error", np.array([2.0, 1.0]))
    return experiment_name


@pytest.mark.parametrize(
    ("user", "password", "message"),
    [
        (None, None, "no credentials were given (MLFLOW_TRACKING_USERNAME is not set)"),
        ("alice", "not-her-password", "the password of user 'alice' is wrong or the user does not exist"),
    ],
)
def test_missing_or_wrong_credentials_copy_nothing(team, originals, new_work, user, password, message):
    before = server_state(team)
    with as_user(user, password), pytest.raises(SystemExit) as stopped:
        push("--from", originals.store, "--to", team.uri, "--experiment", new_work)
    text = str(stopped.value)
    assert text.startswith(f"nmf-lab-push: the MLflow tracking server {team.uri} refused the credentials: {message}")
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in text and "\n" not in text
    assert server_state(team) == before


def test_a_read_only_user_is_refused_before_anything_is_copied(team, originals, pushed, new_work):
    """The reader may read alice's experiment (default_permission = READ) but not write to it: a push into it stops
    in one line before its experiment, its runs or the model are touched."""
    source = MlflowClient(originals.store)
    with tracked_run(source, get_experiment_id(source, originals.denoise), run_name="another denoising run"):
        pass
    before = server_state(team)
    with as_user("reader", team.users["reader"]), pytest.raises(SystemExit) as stopped:
        push("--from", originals.store, "--to", team.uri, "--experiment", new_work, "--experiment", originals.denoise)
    expected = (
        f"nmf-lab-push: the MLflow tracking server {team.uri} does not let user 'reader' create runs in experiment "
        f"'{originals.denoise}' (permission denied); ask an admin or the experiment's owner for EDIT permission"
    )
    assert str(stopped.value) == expected
    assert server_state(team) == before  # no experiment, no run, no model version


def test_the_command_stops_in_one_line_without_credentials(team, originals, new_work):
    """The installed `nmf-lab-push`, as a user runs it: exit status 1, one line on stderr, no traceback."""
    env = {key: value for key, value in os.environ.items() if key not in CREDENTIALS}
    done = subprocess.run(
        [
            shutil.which("nmf-lab-push") or "nmf-lab-push",
            "--from",
            originals.store,
            "--to",
            team.uri,
            "--experiment",
            new_work,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "refused the credentials" in done.stderr, done.stderr
