"""Copy runs whole from one MLflow store to another: ``nmf-lab-push`` and ``nmf-lab-pull``
(:mod:`nmf_lab.harness.share`) are this module run in either direction.

A run is copied with its params and tags, the full history of every metric (steps and timestamps, in
``log_batch`` batches), its description, dataset inputs, every artifact, its logged models and the registered model
versions that point at them; its start and end times and its status (a FAILED run stays FAILED). A sweep's parent
brings its children, whose ``mlflow.parentRunId`` is remapped to the parent's copy. The experiment, with its
description, is created on the target when it is missing.

Once and only once: every copy carries the tags :data:`SOURCE_STORE_TAG` and :data:`SOURCE_RUN_TAG` (the store and
id of the original run; a copy of a copy names the original). A run whose copy (or the original itself) is on the
target with the same content is skipped; a changed one is replaced. A copy is tagged :data:`COPY_TAG` = ``in
progress`` (and stays RUNNING) until it has been checked against its source (:func:`differences`: params, tags,
metric keys, values and history lengths, the artifact list with every file's size, dataset inputs, logged models
and their artifacts); only then is it tagged ``complete`` and given the source's status. A sweep's parent is
completed after its children. An interrupted push thus leaves copies marked in progress, which the next push
replaces.

Everything goes through :class:`MlflowClient` (mlflow-export-import does not work with MLflow 3).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param, RunStatus, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE, MLFLOW_USER

from nmf_lab.tracking.run_log import TAG_PREFIX
from nmf_lab.tracking.store import (
    DEFAULT_STORE,
    TrackingUnavailable,
    access_errors,
    get_experiment_id,
    global_tracking_uri,
    open_client,
    resolve_tracking_uri,
)

SOURCE_STORE_TAG = TAG_PREFIX + "source.store"
"""On a copy: the store of the original run (its tracking URI, without credentials)."""
SOURCE_RUN_TAG = TAG_PREFIX + "source.run_id"
"""On a copy: the id of the original run in :data:`SOURCE_STORE_TAG`."""
SOURCE_VERSION_TAG = TAG_PREFIX + "source.model_version"
"""On a copied registered model version: ``<name>/<version>`` of the original version."""
COPY_TAG = TAG_PREFIX + "copy"
"""On a copy: :data:`IN_PROGRESS` while it is being copied, :data:`COMPLETE` once checked against its source."""
IN_PROGRESS, COMPLETE = "in progress", "complete"

COPIED, REPLACED, SKIPPED, FAILED_CHECK = "copied", "replaced", "skipped", "check failed"
"""What happened to a run (:attr:`Outcome.action`)."""

SOURCE_NAME_TAG = TAG_PREFIX + "source.run_name"
"""On a copy whose name was cut to :data:`NAME_LIMIT` characters: the original's whole name."""
NAME_LIMIT = 250
"""The longest run name a PostgreSQL store keeps (its ``runs.name`` column; sqlite has no limit): a longer name
(a sweep's parent is named after its command line) is cut, the whole name kept in :data:`SOURCE_NAME_TAG`."""
DIGEST_TAG = TAG_PREFIX + "source.digest"
"""On a copy: the digest of what it was checked against (:meth:`Snapshot.digest`): a push skips a complete copy
whose digest is its source's, without reading the copy back."""
STORE_TAGS = {MLFLOW_PARENT_RUN_ID, SOURCE_STORE_TAG, SOURCE_RUN_TAG, COPY_TAG, SOURCE_NAME_TAG, DIGEST_TAG}
"""Tags that belong to a store, not to the run's content: the parent link (remapped) and this module's."""
UNCOMPARED_TAGS = STORE_TAGS | {MLFLOW_USER, MLFLOW_RUN_NAME}
"""Tags :func:`differences` leaves out: a server may record its own user for the copy."""
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
"""A logged model's list of its registered versions, kept by MLflow itself (the versions are copied instead)."""

MODEL_BOOKKEEPING = frozenset({"registered_model_meta"})
"""Files MLflow writes into a logged model's artifacts when a registered version of it is loaded from a local
store (the registered name and version, which differ in each store): neither copied nor compared."""

BATCH = 1000  # metrics per log_batch (MLflow's limit)
PARAM_BATCH = 100  # params or tags per log_batch


SERVER_WORKERS = 4
"""Runs copied at once to a server (a sqlite store takes one writer at a time)."""


class NothingToCopy(ValueError):
    """No such experiment or run in the source store."""


class CopyStopped(RuntimeError):
    """The copy stopped half-way (a dropped connection, a store's error): the message says what is left."""


@dataclass
class Outcome:
    """One run's copy: its name, its ids in both stores, what was done, and the target experiment."""

    name: str
    source_id: str
    target_id: str = ""
    experiment_id: str = ""
    action: str = ""
    detail: str = ""
    parent_source_id: str | None = None


@dataclass
class Transfer:
    """Copy runs from ``source`` to ``target`` (two :class:`MlflowClient`); ``progress(run_name, step)`` is told each
    step (``step`` is None when a run is done) and may raise (Ctrl-C) anywhere. ``workers``: a sweep's children
    copied at once (threads: worth it against a server, whose requests wait on the network)."""

    source: MlflowClient
    target: MlflowClient
    progress: Callable[[str, str | None], None] = lambda name, step: None
    workers: int = 1
    outcomes: list[Outcome] = field(default_factory=list)
    _experiments: dict[str, str] = field(default_factory=dict)  # source experiment id -> target's
    _mapping: dict[str, str] = field(default_factory=dict)  # source run id -> target run id
    _experiment_of: dict[str, str] = field(default_factory=dict)  # target run id -> its experiment
    _existing: dict[str, dict[str, object]] = field(default_factory=dict)  # target experiment -> origin -> run

    # -- the plan ---------------------------------------------------------------------------------------------

    def select(self, experiments: Sequence[str] = (), run_ids: Sequence[str] = ()) -> list:
        """The source runs to copy: every active run of each experiment named, and each run named with its
        descendants; parents before their children, each level oldest first."""
        runs: dict[str, object] = {}
        for name in experiments:
            experiment = self.source.get_experiment_by_name(name)
            if experiment is None:
                raise NothingToCopy(f"no experiment {name!r} in {store_label(self.source.tracking_uri)}")
            for run in search_all(self.source, [experiment.experiment_id]):
                runs[run.info.run_id] = run
        for run_id in run_ids:
            try:
                run = self.source.get_run(run_id)
            except MlflowException as error:
                raise NothingToCopy(f"no run {run_id} in {store_label(self.source.tracking_uri)}") from error
            runs[run_id] = run
            for child in descendants(self.source, run):
                runs[child.info.run_id] = child
        return ordered(list(runs.values()))

    # -- before anything is copied -----------------------------------------------------------------------------

    def prepare(self, runs: Sequence) -> None:
        """Find or create each run's experiment on the target (with its description) and check that the target
        lets this user write there and register the runs' models: a refusal raises
        :class:`~nmf_lab.tracking.store.TrackingUnavailable` before any run is copied."""
        uri = self.target.tracking_uri
        experiments = [self.source.get_experiment(key) for key in dict.fromkeys(run.info.experiment_id for run in runs)]
        with refusals(uri, "search experiments"):
            found = {e.experiment_id: self.target.get_experiment_by_name(e.name) for e in experiments}
        for experiment in experiments:  # those the target has, first: a refusal comes before anything is created
            if found[experiment.experiment_id] is not None:
                self._experiment(experiment, found[experiment.experiment_id].experiment_id)
        for name in dict.fromkeys(version.name for run in runs for version in model_versions(self.source, run)):
            with refusals(uri, f"add versions to the registered model {name!r}", owner="model"):
                try:
                    registered = self.target.get_registered_model(name)
                except MlflowException as error:
                    if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise
                    continue  # created when its first version is copied
                self.target.update_registered_model(name, description=registered.description or "")
        for experiment in experiments:
            if found[experiment.experiment_id] is None:
                self._experiment(experiment, None)

    def _experiment(self, experiment, target_id: str | None) -> None:
        """Create the target's experiment (``target_id`` None) or check that this user may write to it, and
        give it the source's tags (its description) that it lacks; index the copies it holds."""
        with refusals(self.target.tracking_uri, f"create runs in experiment {experiment.name!r}"):
            target_id = target_id or get_experiment_id(self.target, experiment.name)
            tags = self.target.get_experiment(target_id).tags
            missing = {key: value for key, value in experiment.tags.items() if key not in tags}
            # A write this user needs anyway: the source's tags where the target has none, else the
            # description as it is (a READ-only user is refused here, before any run exists).
            probe = missing or {MLFLOW_RUN_NOTE: tags.get(MLFLOW_RUN_NOTE, experiment.tags.get(MLFLOW_RUN_NOTE, ""))}
            for key, value in probe.items():
                self.target.set_experiment_tag(target_id, key, value)
        self._experiments[experiment.experiment_id] = target_id
        self._existing[target_id] = index_copies(self.target, target_id)

    # -- the copy ----------------------------------------------------------------------------------------------

    def run(self, runs: Sequence) -> list[Outcome]:
        """Copy ``runs`` (from :meth:`select`, after :meth:`prepare`); the outcomes in the order of ``runs``."""
        children: dict[str, list] = {}
        chosen = {run.info.run_id for run in runs}
        for run in runs:
            parent = run.data.tags.get(MLFLOW_PARENT_RUN_ID)
            if parent in chosen:
                children.setdefault(parent, []).append(run)
        roots = [run for run in runs if run.data.tags.get(MLFLOW_PARENT_RUN_ID) not in chosen]
        for run in roots:
            self._copy_tree(run, children)
        order: dict[str, int] = {}  # each parent followed by its children, as the table shows them

        def visit(run) -> None:
            order[run.info.run_id] = len(order)
            for child in children.get(run.info.run_id, []):
                visit(child)

        for run in roots:
            visit(run)
        return sorted(self.outcomes, key=lambda outcome: order[outcome.source_id])

    def _copy_tree(self, run, children: dict[str, list]) -> None:
        """Copy ``run``, then its children (:attr:`workers` at a time), then complete it: a parent is whole only
        when its children are."""
        outcome, finish = self._copy_one(run)
        below = children.get(run.info.run_id, [])
        if self.workers > 1 and len(below) > 1:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="nmf-lab-copy") as pool:
                futures = [pool.submit(self._copy_tree, child, children) for child in below]
                try:
                    for future in futures:
                        future.result()
                except BaseException:  # Ctrl-C or an error: start no other run; those begun end (or stay in progress)
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        else:
            for child in below:
                self._copy_tree(child, children)
        finish()
        self.outcomes.append(outcome)
        self.progress(outcome.name, None)

    def _copy_one(self, run) -> tuple[Outcome, Callable[[], None]]:
        """Skip, copy or replace one run; returns its outcome and what completes it (after its children)."""
        info, source_id = run.info, run.info.run_id
        name = info.run_name or source_id
        experiment_id = self._experiments[info.experiment_id]
        source_parent = run.data.tags.get(MLFLOW_PARENT_RUN_ID, "")
        parent = self._mapping.get(source_parent)
        if parent is None and source_parent:  # a job pushed alone: its parent's copy, if the target holds one
            held = self._existing[experiment_id].get(source_parent)
            parent = held.info.run_id if held is not None else None
        outcome = Outcome(
            name, source_id, experiment_id=experiment_id, parent_source_id=run.data.tags.get(MLFLOW_PARENT_RUN_ID)
        )
        source = Snapshot.of(self.source, run)
        existing = self._existing[experiment_id].get(origin_of(run))
        if existing is not None:
            tags = existing.data.tags
            is_original = existing.info.run_id == origin_of(run)
            if is_original or (tags.get(COPY_TAG) == COMPLETE and tags.get(DIGEST_TAG) == source.digest()):
                outcome.target_id, outcome.action = existing.info.run_id, SKIPPED
                outcome.detail = "the original" if is_original else ""
                self._mapping[source_id] = existing.info.run_id
                self._experiment_of[existing.info.run_id] = experiment_id
                if parent and tags.get(MLFLOW_PARENT_RUN_ID) != parent:
                    self.target.set_tag(existing.info.run_id, MLFLOW_PARENT_RUN_ID, parent)
                return outcome, lambda: self._relink(run, existing.info.run_id, tags.get(MLFLOW_RUN_NOTE))
            if tags.get(COPY_TAG) == COMPLETE:
                found = differences(source, Snapshot.of(self.target, existing), final=True)
                outcome.detail = "changed: " + ("; ".join(found[:2]) or "its digest")
            else:
                outcome.detail = "an interrupted copy was replaced"
            self._remove(existing)
            outcome.action = REPLACED
        else:
            outcome.action = COPIED
        outcome.target_id = self._copy_body(run, source, experiment_id, parent)
        self._mapping[source_id] = outcome.target_id
        self._experiment_of[outcome.target_id] = experiment_id

        def finish() -> None:
            self._relink(run, outcome.target_id, run.data.tags.get(MLFLOW_RUN_NOTE))
            self.progress(name, "checking")
            copied = Snapshot.of(self.target, self.target.get_run(outcome.target_id))
            found = differences(source, copied, final=False)
            if found:
                outcome.action, outcome.detail = FAILED_CHECK, "; ".join(found[:3])
                return  # stays in progress, replaced by the next push
            self.target.set_tag(outcome.target_id, COPY_TAG, COMPLETE)
            if info.status != RunStatus.to_string(RunStatus.RUNNING):
                self.target.set_terminated(outcome.target_id, info.status, end_time=info.end_time)

        return outcome, finish

    def _relink(self, run, target_id: str, note: str | None) -> None:
        """Point the links to runs in a copy's description (``note``, as the copy has it) at the copies (a
        sweep's table of its jobs, once they are copied)."""
        original = run.data.tags.get(MLFLOW_RUN_NOTE)
        if original and note is not None:
            wanted = relinked(original, self._mapping, self._experiment_of)
            if wanted != note:
                self.target.set_tag(target_id, MLFLOW_RUN_NOTE, wanted)

    def _copy_body(self, run, source: Snapshot, experiment_id: str, parent: str | None) -> str:
        """Create the copy (RUNNING, tagged in progress) and copy everything into it; returns its id."""
        tags = {key: value for key, value in run.data.tags.items() if key not in STORE_TAGS}
        tags[SOURCE_STORE_TAG] = run.data.tags.get(SOURCE_STORE_TAG, store_label(self.source.tracking_uri))
        tags[SOURCE_RUN_TAG] = origin_of(run)
        tags[COPY_TAG] = IN_PROGRESS
        tags[DIGEST_TAG] = source.digest()
        if parent:
            tags[MLFLOW_PARENT_RUN_ID] = parent
        name = run.info.run_name or run.info.run_id
        full_name = whole_name(run)
        # A sqlite store keeps any name; a database server cuts it (MLflow's runs.name column in PostgreSQL).
        new_name = full_name if self.target.tracking_uri.startswith("sqlite:") else stored_name(full_name)
        if new_name != full_name:
            tags[SOURCE_NAME_TAG] = full_name
        if new_name:
            tags[MLFLOW_RUN_NAME] = new_name
        created = self.target.create_run(experiment_id, start_time=run.info.start_time, tags=tags, run_name=new_name)
        target_id = created.info.run_id
        self.progress(name, "params")
        params = [Param(key, value) for key, value in run.data.params.items()]
        for batch in chunks(params, PARAM_BATCH):
            self.target.log_batch(target_id, params=batch)
        self.progress(name, "metrics")
        points = [Metric(m.key, m.value, m.timestamp, m.step) for history in source.histories.values() for m in history]
        for batch in chunks(points, BATCH):
            self.target.log_batch(target_id, metrics=batch)
        if run.inputs and run.inputs.dataset_inputs:
            self.target.log_inputs(target_id, datasets=list(run.inputs.dataset_inputs))
        if source.artifacts:
            self.progress(name, f"artifacts ({len(source.artifacts)} files)")
            with tempfile.TemporaryDirectory() as tmp:
                self.source.download_artifacts(run.info.run_id, "", tmp)
                self.target.log_artifacts(target_id, tmp)
        for model in source.models:
            self.progress(name, f"model {model.name}")
            self._copy_model(run, model, experiment_id, target_id)
        return target_id

    def _copy_model(self, run, model, experiment_id: str, target_id: str) -> None:
        """Copy a logged model of ``run`` (its artifacts, params, tags, metrics) and its registered versions."""
        tags = {key: value for key, value in model.tags.items() if key != MODEL_VERSIONS_TAG}
        copy = self.target.create_logged_model(
            experiment_id,
            name=model.name,
            source_run_id=target_id,
            tags=tags,
            params=model.params or None,
            model_type=model.model_type,
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(download_model(self.source, model, tmp))
            for name in MODEL_BOOKKEEPING:
                (folder / name).unlink(missing_ok=True)
            self.target.log_model_artifacts(copy.model_id, str(folder))
        metrics = [
            Metric(
                m.key,
                m.value,
                m.timestamp,
                m.step,
                model_id=copy.model_id,
                dataset_name=m.dataset_name,
                dataset_digest=m.dataset_digest,
                run_id=target_id,
            )
            for m in model.metrics or []
        ]
        for batch in chunks(metrics, BATCH):
            self.target.log_batch(target_id, metrics=batch)
        steps = {output.model_id: output.step for output in getattr(run.outputs, "model_outputs", None) or []}
        if model.model_id in steps:
            self.target.log_outputs(target_id, [LoggedModelOutput(copy.model_id, steps[model.model_id])])
        self.target.finalize_logged_model(copy.model_id, model.status or LoggedModelStatus.READY)
        for version in model_versions(self.source, run):
            if (
                version.source not in (model.model_uri, f"models:/{model.model_id}")
                and version.model_id != model.model_id
            ):
                continue
            self._register(version, copy.model_id, target_id)

    def _register(self, version, model_id: str, target_id: str) -> None:
        """Register the copied model as a new version of ``version.name`` on the target (created if missing),
        with the version's description, tags and the aliases the target does not use yet."""
        try:
            registered = self.target.get_registered_model(version.name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            original = self.source.get_registered_model(version.name)
            registered = self.target.create_registered_model(
                version.name, tags=dict(original.tags or {}), description=original.description
            )
        tags = {**(version.tags or {}), SOURCE_VERSION_TAG: f"{version.name}/{version.version}"}
        with global_tracking_uri(self.target.tracking_uri):  # MLflow's database registry reads the global URI
            copy = self.target.create_model_version(
                version.name,
                source=f"models:/{model_id}",
                run_id=target_id,
                tags=tags,
                description=version.description,
                model_id=model_id,
            )
        for alias in version.aliases or []:
            if alias not in (registered.aliases or {}):
                self.target.set_registered_model_alias(version.name, alias, copy.version)

    def _remove(self, run) -> None:
        """Delete an interrupted or outdated copy with its registered versions and logged models."""
        run_id = run.info.run_id
        for version in self.target.search_model_versions(f"run_id = '{run_id}'"):
            self.target.delete_model_version(version.name, version.version)
        for model in self.target.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        ):
            self.target.delete_logged_model(model.model_id)
        self.target.delete_run(run_id)


# -- what a run is, read back from a store -------------------------------------------------------------------


@dataclass
class Snapshot:
    """What :func:`differences` compares: a run with its metric histories, artifact sizes and logged models."""

    run: object
    histories: dict[str, list]
    artifacts: dict[str, int]
    models: list
    model_files: list[tuple[str, dict[str, int]]]  # each logged model's name and artifact sizes

    @classmethod
    def of(cls, client: MlflowClient, run) -> Snapshot:
        histories = {key: client.get_metric_history(run.info.run_id, key) for key in sorted(run.data.metrics)}
        models = logged_models(client, run)
        files = sorted(((m.name, model_artifact_sizes(client, m.model_id)) for m in models), key=json.dumps)
        return cls(run, histories, artifact_sizes(client, run.info.run_id), models, files)

    def digest(self) -> str:
        """SHA-256 of the run's content: what :func:`differences` compares with ``final`` (the whole metric
        histories included), the same for a run and every copy of it."""
        run = self.run
        content = {
            "status": [run.info.status, run.info.start_time, run.info.end_time, whole_name(run)],
            "params": run.data.params,
            "tags": content_tags(run),
            "metrics": {
                key: sorted((m.step, m.timestamp, repr(m.value)) for m in h) for key, h in self.histories.items()
            },
            "artifacts": self.artifacts,
            "inputs": sorted(d.dataset.digest for d in (run.inputs.dataset_inputs if run.inputs else [])),
            "models": self.model_files,
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def differences(source: Snapshot, copy: Snapshot, *, final: bool) -> list[str]:
    """How ``copy`` differs from ``source`` (empty: equal): params, tags (but :data:`UNCOMPARED_TAGS`), metric keys,
    latest values and history lengths, the artifact list with sizes, dataset inputs and logged models; with
    ``final``, also the status and the start and end times."""
    a, b = source.run, copy.run
    found = []
    if final and (a.info.status, a.info.end_time) != (b.info.status, b.info.end_time):
        found.append(f"status {a.info.status} (ended {a.info.end_time}) vs {b.info.status} ({b.info.end_time})")
    if a.info.start_time != b.info.start_time:
        found.append("start time")
    if stored_name(whole_name(a)) != stored_name(whole_name(b)):
        found.append(f"name {b.info.run_name!r}")
    if a.data.params != b.data.params:
        found.append(f"params ({len(a.data.params)} vs {len(b.data.params)})")
    tags_a, tags_b = content_tags(a), content_tags(b)
    if tags_a != tags_b:
        found.append(f"tags {', '.join(changed(tags_a, tags_b)[:3])}")
    counts_a, counts_b = ({key: len(h) for key, h in s.histories.items()} for s in (source, copy))
    if counts_a != counts_b:
        found.append(f"metric histories of {', '.join(changed(counts_a, counts_b)[:3])}")
    elif a.data.metrics != b.data.metrics and not same_numbers(a.data.metrics, b.data.metrics):
        found.append("latest metric values")
    if source.artifacts != copy.artifacts:
        found.append(f"artifacts {', '.join(changed(source.artifacts, copy.artifacts)[:3])}")
    digests_a, digests_b = (
        sorted(d.dataset.digest for d in (run.inputs.dataset_inputs if run.inputs else [])) for run in (a, b)
    )
    if digests_a != digests_b:
        found.append("dataset inputs")
    if source.model_files != copy.model_files:
        found.append(f"logged models and their artifacts ({len(source.models)} vs {len(copy.models)} models)")
    return found


RUN_LINK = re.compile(r"(\[[0-9a-f]{8}\]\()?#/experiments/[^/)\s]+/runs/([0-9a-f]{32})")
"""A link to a run in a description: its route in the UI, ``#/experiments/<id>/runs/<id>``, with the link's text
when it is the run id's first 8 digits (a sweep's table of its jobs: ``[1a2b3c4d](#/experiments/3/runs/...``)."""


def content_tags(run) -> dict[str, str]:
    """A run's tags but :data:`UNCOMPARED_TAGS`, its description's links to runs left out (a copy's point at the
    copies)."""
    tags = {key: value for key, value in run.data.tags.items() if key not in UNCOMPARED_TAGS}
    if MLFLOW_RUN_NOTE in tags:
        tags[MLFLOW_RUN_NOTE] = RUN_LINK.sub(
            lambda match: ("[run](" if match.group(1) else "") + "#/experiments/*/runs/*", tags[MLFLOW_RUN_NOTE]
        )
    return tags


def relinked(note: str, mapping: dict[str, str], experiment_of: dict[str, str]) -> str:
    """``note`` with each link to a copied run pointing at its copy (``mapping``: source run id -> copy's id;
    ``experiment_of``: copy's id -> its experiment)."""

    def link(match: re.Match) -> str:
        copy = mapping.get(match.group(2))
        if copy is None:
            return match.group(0)
        text = f"[{copy[:8]}](" if match.group(1) else ""
        return f"{text}#/experiments/{experiment_of[copy]}/runs/{copy}"

    return RUN_LINK.sub(link, note)


def changed(a: dict, b: dict) -> list[str]:
    """The keys whose values differ between ``a`` and ``b`` (missing from one counts), sorted."""
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


def whole_name(run) -> str | None:
    """A run's name, whole: a copy's cut name is whole in its :data:`SOURCE_NAME_TAG`."""
    return run.data.tags.get(SOURCE_NAME_TAG, run.info.run_name)


def stored_name(name: str | None) -> str | None:
    """A run's name as a copy stores it: cut to :data:`NAME_LIMIT` characters."""
    return name if name is None or len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "…"


def same_numbers(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal, NaN equal to NaN."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def artifact_sizes(client: MlflowClient, run_id: str, folder: str | None = None) -> dict[str, int]:
    """Every artifact file of a run under ``folder`` with its size in bytes."""
    sizes = {}
    for info in client.list_artifacts(run_id, folder):
        if info.is_dir:
            sizes.update(artifact_sizes(client, run_id, info.path))
        else:
            sizes[info.path] = info.file_size
    return sizes


def model_artifact_sizes(client: MlflowClient, model_id: str, folder: str | None = None) -> dict[str, int]:
    """Every artifact file of a logged model with its size in bytes (but :data:`MODEL_BOOKKEEPING`)."""
    sizes = {}
    for info in client.list_logged_model_artifacts(model_id, folder):
        if info.is_dir:
            sizes.update(model_artifact_sizes(client, model_id, info.path))
        elif info.path not in MODEL_BOOKKEEPING:
            sizes[info.path] = info.file_size
    return sizes


def logged_models(client: MlflowClient, run) -> list:
    """The logged models a run made (its model outputs, and those whose source run it is), by id."""
    ids = [output.model_id for output in getattr(run.outputs, "model_outputs", None) or []]
    found = {model_id: client.get_logged_model(model_id) for model_id in ids}
    if ids:  # a model without an output link is rare: only look when the run has models at all
        for model in client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        ):
            found.setdefault(model.model_id, model)
    return sorted(found.values(), key=lambda model: model.creation_timestamp or 0)


def model_versions(client: MlflowClient, run) -> list:
    """The registered model versions of a run's logged models (none when it has no model)."""
    if not getattr(run.outputs, "model_outputs", None):
        return []
    return list(client.search_model_versions(f"run_id = '{run.info.run_id}'"))


def download_model(client: MlflowClient, model, folder: str) -> str:
    """Download a logged model's artifacts under ``folder``; the local folder that holds them."""
    import mlflow.artifacts

    return mlflow.artifacts.download_artifacts(
        artifact_uri=model.artifact_location, dst_path=folder, tracking_uri=client.tracking_uri
    )


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str = "") -> Iterator:
    """Every active run of the experiments, page by page."""
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def descendants(client: MlflowClient, run) -> list:
    """The runs under ``run`` (a sweep's children, and theirs)."""
    found, frontier = [], [run.info.run_id]
    while frontier:
        parent = frontier.pop()
        children = list(search_all(client, [run.info.experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'"))
        found += children
        frontier += [child.info.run_id for child in children]
    return found


def ordered(runs: list) -> list:
    """Parents before their children, each level oldest first."""
    by_id = {run.info.run_id: run for run in runs}

    def depth(run) -> int:
        level, parent = 0, run.data.tags.get(MLFLOW_PARENT_RUN_ID)
        while parent in by_id and level < len(by_id):
            level, parent = level + 1, by_id[parent].data.tags.get(MLFLOW_PARENT_RUN_ID)
        return level

    return sorted(runs, key=lambda run: (depth(run), run.info.start_time or 0, run.info.run_id))


def origin_of(run) -> str:
    """The id of the original run: a copy's :data:`SOURCE_RUN_TAG`, else the run's own."""
    return run.data.tags.get(SOURCE_RUN_TAG, run.info.run_id)


def index_copies(client: MlflowClient, experiment_id: str) -> dict[str, object]:
    """The active runs of a target experiment by the original they are (a copy's source run, or itself)."""
    index: dict[str, object] = {}
    for run in search_all(client, [experiment_id]):
        index.setdefault(run.info.run_id, run)
        if SOURCE_RUN_TAG in run.data.tags:
            origin = run.data.tags[SOURCE_RUN_TAG]
            held = index.get(origin)
            # Two copies of one run (a push raced another): keep the complete one.
            if held is None or held.data.tags.get(COPY_TAG) != COMPLETE:
                index[origin] = run
    return index


def chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def store_label(uri: str) -> str:
    """A store's URI as a tag and the table show it: without user name or password."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        return uri.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1], 1)
    return uri


@contextmanager
def refusals(uri: str, action: str, owner: str = "experiment") -> Iterator[None]:
    """:func:`~nmf_lab.tracking.store.access_errors` (one line naming ``uri``, the user and what to do), with
    advice that fits a copy (the app's own names ``tracking.experiment``) and the ``owner`` to ask."""
    try:
        with access_errors(uri, action):
            yield
    except TrackingUnavailable as error:
        text = str(error).replace(", or use tracking.experiment=<a new name>", "")
        text = text.replace("the experiment's owner", f"the {owner}'s owner")
        raise TrackingUnavailable(text) from error.__cause__


def local_store() -> str:
    """The local store: ``$MLFLOW_TRACKING_URI`` unless it names a server (a team member's shell often points it
    at the team's), else the app's default ``sqlite:///mlruns/mlflow.db``."""
    configured = os.environ.get("MLFLOW_TRACKING_URI", "")
    if configured and not configured.startswith(("http://", "https://")):
        return configured
    return f"sqlite:///{DEFAULT_STORE}"


def open_store(uri: str | None, *, create: bool) -> MlflowClient:
    """A client on ``uri`` (None: :func:`local_store`), checked as the app checks it: a server must answer and
    accept the credentials. A sqlite store to read from must exist (``create=False``)."""
    resolved = resolve_tracking_uri(uri or local_store())
    if resolved.startswith("sqlite:///") and not create:
        path = Path(resolved[len("sqlite:///") :])
        if not path.is_file():
            raise TrackingUnavailable(f"there is no MLflow store at {path} (looked for the sqlite file {resolved})")
    client = open_client(resolved)
    return MlflowClient(client.tracking_uri, registry_uri=client.tracking_uri)  # models stay in that store too


def copy_runs(
    source_uri: str | None,
    target_uri: str | None,
    *,
    experiments: Sequence[str] = (),
    run_ids: Sequence[str] = (),
    progress: Callable[[str, str | None], None] | None = None,
    planned: Callable[[int], None] | None = None,
) -> tuple[Transfer, list[Outcome]]:
    """Open both stores, select the runs, check the target lets us write, and copy: the transfer (its clients)
    and the outcomes. ``planned(n)`` is told how many runs will be looked at, before any is."""
    source = open_store(source_uri, create=False)
    target = open_store(target_uri, create=True)
    if store_label(source.tracking_uri) == store_label(target.tracking_uri):
        raise NothingToCopy(f"the source and the target are the same store ({store_label(target.tracking_uri)})")
    server = target.tracking_uri.startswith(("http://", "https://"))
    transfer = Transfer(
        source, target, progress=progress or (lambda name, step: None), workers=SERVER_WORKERS if server else 1
    )
    runs = transfer.select(experiments, run_ids)
    if not runs:
        raise NothingToCopy(f"nothing to copy: the experiments {list(experiments)} hold no run")
    transfer.prepare(runs)
    if planned is not None:
        planned(len(runs))
    try:
        with refusals(target.tracking_uri, "copy runs there"):
            return transfer, transfer.run(runs)
    except MlflowException as error:  # a dropped connection (after MLflow's retries), a store's error
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CopyStopped(
            f"the copy stopped: {first_line}; the runs copied so far are complete, the one being copied stays "
            f"marked 'in progress' and the next run of this command replaces it"
        ) from error
