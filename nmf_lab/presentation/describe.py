"""What a person reads about runs: their descriptions in the MLflow UI (Markdown), the block the CLI prints when a
job ends, the table of a sweep's children, and links into the MLflow UI.

Plain text from plain values (a run as :class:`nmf_lab.tracking.stored.StoredRun` gives it: ``run_id``, ``name``,
``status``, ``params``, ``metrics``, ``experiment_id``, ``artifact_uri``); the store is read and written by the
tracking layer (:mod:`nmf_lab.tracking`). A study says which of its metrics are its headline with a module constant
``HEADLINE`` (default :data:`DEFAULT_HEADLINE`); its task is the first paragraph of its module docstring.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from urllib.parse import quote, unquote, urlsplit

DEFAULT_HEADLINE = ("final_error", "relative_error")
"""The headline metrics of a study without ``HEADLINE``: what every NMF run logs."""

LOCAL_UI = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves by default."""

MODEL_TRAINING_VIEW = "workflowType=machine_learning"
"""The query that opens MLflow 3's UI in its model-training view, where runs are listed (its default view is
the GenAI one: traces)."""


def headline(study: ModuleType) -> tuple[str, ...]:
    """The metrics a study puts first: its ``HEADLINE``, else :data:`DEFAULT_HEADLINE`."""
    return tuple(getattr(study, "HEADLINE", DEFAULT_HEADLINE))


def study_task(study: ModuleType) -> str:
    """What a study does, in a sentence or two: the first paragraph of its docstring, as one Markdown line."""
    doc = (study.__doc__ or "").strip()
    if not doc:
        return f"A run of the study `{study.__name__}`."
    first = re.split(r"\n\s*\n", doc)[0]
    return rst_to_markdown(" ".join(line.strip() for line in first.splitlines()))


def rst_to_markdown(text: str) -> str:
    """Docstring markup as Markdown: ``code`` and :role:`~x.y` become `code` and `y`."""
    text = re.sub(r":\w+:`~[\w.]*\.(\w+)`", r"`\1`", text)
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text)
    return re.sub(r"``(.+?)``", r"`\1`", text)


def number(value: float | None) -> str:
    """A metric as it is shown: 6 significant digits (``""`` for a missing one)."""
    return "" if value is None else f"{value:.6g}"


@dataclass(frozen=True)
class UiLinks:
    """Links into the MLflow UI of a store: ``base`` is the UI's address; ``command`` starts it (a local store)."""

    base: str
    command: str | None = None

    def run(self, experiment_id: str, run_id: str) -> str:
        return f"{self.base}/{run_route(experiment_id, run_id)}"

    def experiment(self, experiment_id: str) -> str:
        return f"{self.base}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING_VIEW}"


def run_route(experiment_id: str, run_id: str) -> str:
    """A run's page within the UI (relative to its address), in the model-training view."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def ui_links(tracking_uri: str) -> UiLinks:
    """Where the UI of the store ``tracking_uri`` is: a tracking server is its own UI (credentials left out of
    the address); any other store is opened with ``mlflow ui`` on :data:`LOCAL_UI` (a password in the URI is
    masked)."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
        return UiLinks(f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}")
    if parts.password:
        tracking_uri = tracking_uri.replace(f":{parts.password}@", ":***@", 1)
    return UiLinks(LOCAL_UI, command=f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}")


def artifact_folder(artifact_uri: str) -> str | None:
    """The local folder of a run's artifacts (a ``file:`` URI or a plain path), None when they are elsewhere."""
    parts = urlsplit(artifact_uri)
    if parts.scheme == "file":
        return unquote(parts.path)
    if parts.scheme == "" and artifact_uri:
        return artifact_uri
    return None


# -- the console ----------------------------------------------------------------------------------------


def job_block(run, *, experiment: str, metrics: Sequence[str], links: UiLinks, error: str | None = None) -> str:
    """What the CLI prints when a job ends: its experiment, run name and id, ``metrics`` (those it has), the
    artifact folder of a local store, its link in the UI, and the command that starts a local UI."""
    rows = [
        ("experiment", f"{experiment} (id {run.experiment_id})"),
        ("run", f"{run.name} (id {run.run_id})" if run.name else run.run_id),
    ]
    rows += [(key, number(run.metrics[key])) for key in metrics if key in run.metrics]
    if error:
        rows.append(("error", f"{error} (traceback: error/traceback.txt in its artifacts)"))
    folder = artifact_folder(run.artifact_uri)
    if folder:
        rows.append(("artifacts", folder))
    rows.append(("in the UI", links.run(run.experiment_id, run.run_id)))
    if links.command:
        rows.append(("start the UI", links.command))
    tags = getattr(run, "tags", None) or {}
    engine = tags.get("nmf_lab.engine", "numpy")
    if engine != "numpy":  # a Dask engine: where it ran (its dashboard was live during the run)
        workers = tags.get("nmf_lab.engine.workers", "?")
        dashboard = tags.get("nmf_lab.engine.dashboard")
        rows.append(("engine", f"{engine}, {workers} workers" + (f", dashboard {dashboard}" if dashboard else "")))
    return f"Run {run.status}\n" + aligned(rows)


def sweep_block(parent, *, experiment: str, n_children: int, n_failed: int, table: str, links: UiLinks) -> str:
    """What the CLI prints when a sweep ends: the parent run, its link, and the table of its children."""
    rows = [
        ("experiment", f"{experiment} (id {parent.experiment_id})"),
        ("parent run", f"{parent.name} (id {parent.run_id})"),
        ("jobs", f"{n_children} ({n_failed} failed)"),
        ("in the UI", links.run(parent.experiment_id, parent.run_id)),
    ]
    if links.command:
        rows.append(("start the UI", links.command))
    return f"Sweep {parent.status}\n" + aligned(rows) + "\n\n" + indent(table)


def aligned(rows: Sequence[tuple[str, str]]) -> str:
    """``label  value`` lines, indented by two spaces, values in one column."""
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def indent(text: str) -> str:
    return "\n".join(f"  {line}" if line else line for line in text.splitlines())


# -- tables ---------------------------------------------------------------------------------------------


def children_rows(
    children: Sequence, varied: Sequence[str], metrics: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """A sweep's children as (header, rows): the params the sweep varied, the status, and ``metrics`` (those
    that some child has)."""
    shown = [key for key in metrics if any(key in child.metrics for child in children)]
    header = [*varied, "status", *shown]
    rows = [
        [*(child.params.get(key, "") for key in varied), child.status, *(number(child.metrics.get(k)) for k in shown)]
        for child in children
    ]
    return header, rows


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, for a terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [[str(cell).ljust(width) for cell, width in zip(row, widths)] for row in [header, *rows]]
    return "\n".join("  ".join(line).rstrip() for line in lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


# -- descriptions in the MLflow UI (Markdown) -------------------------------------------------------------

NOTE_LIMIT = 8000
"""MLflow's limit on a tag's value (characters), and so on a run's description."""


def metrics_table(metrics: Mapping[str, float], keys: Sequence[str]) -> str:
    """The metrics ``keys`` that are in ``metrics``, as a Markdown table ('' when there is none)."""
    rows = [[key, number(metrics[key])] for key in keys if key in metrics]
    return markdown_table(["metric", "value"], rows) if rows else ""


EMBED_WIDTH = 720
"""Figures at most this many pixels wide are shown in a description; a wider one would widen the UI's
description beyond the window (MLflow strips an image's size attributes), so it is linked only."""


def figures_section(run, figures: Mapping[str, int | None]) -> str:
    """The figures a run logged ({artifact path: width in pixels, None if unknown}), each linked to its view in
    the Artifacts tab, and shown when at most :data:`EMBED_WIDTH` wide (the UI's server gives a run's artifact
    at ``get-artifact?path=...&run_uuid=...``, relative to the UI's address)."""
    if not figures:
        return ""
    parts = ["**Figures**"]
    for path, width in figures.items():
        route = f"#/experiments/{run.experiment_id}/runs/{run.run_id}/artifacts/{path}?{MODEL_TRAINING_VIEW}"
        parts.append(f"[`{path}`]({route})")
        if width is not None and width <= EMBED_WIDTH:
            parts.append(f"![{path}](get-artifact?path={quote(path, safe='')}&run_uuid={run.run_id})")
    return "\n\n".join(parts)


def within_limit(
    parts: Sequence[str], tables: Mapping[str, str] | None = None, last: str = "", limit: int = NOTE_LIMIT
) -> str:
    """Markdown paragraphs: ``parts``, then ``tables`` ({artifact path: Markdown}) as long as they fit in
    ``limit`` characters (a table that does not is named instead), then ``last``."""
    text = "\n\n".join(part for part in parts if part)
    room = limit - len(last) - 4
    for path, table in (tables or {}).items():
        whole = f"\n\n**{path}**\n\n{table.strip()}"
        named = f"\n\n**{path}**: in the Artifacts tab."
        text += whole if len(text) + len(whole) < room else named
    return (f"{text}\n\n{last}" if last else text)[: limit - 1] + "\n"


def run_note(
    run,
    *,
    task: str,
    study: str,
    metrics: Sequence[str],
    figures: Mapping[str, int | None] | None = None,
    tables: Mapping[str, str] | None = None,
    command: str | None = None,
    parent: tuple[str, str] | None = None,
    error: str | None = None,
) -> str:
    """A run's description: its study's task, how it was made (``command``, or the ``parent`` sweep as
    (name, run id)), its status, its headline ``metrics``, its ``figures`` (:func:`figures_section`) and
    ``tables`` ({artifact path: Markdown}), and for a failed run the error."""
    if command:
        made = f"made by `{command}`"
    elif parent:
        made = f"a job of the sweep [{parent[0]}]({run_route(run.experiment_id, parent[1])}): `{run.name}`"
    else:
        made = f"`{run.name}`"
    parts = [task, f"**Run {run.status}** (study `{study}`), {made}"]
    objective = getattr(run, "tags", {}).get("nmf_lab.objective")
    if objective:  # another loss or a penalty: the error curve is the objective minimised
        parts.append(f"**Objective minimised** (the `error` curve and `final_error`): `{objective}`.")
    if error:
        parts.append(f"**Error:** `{error}` (traceback: `error/traceback.txt` in the Artifacts tab).")
    parts.append(metrics_table(run.metrics, metrics))
    return within_limit(parts, tables, last=figures_section(run, figures or {}))


def sweep_note(
    parent,
    *,
    task: str,
    study: str,
    sweep: str,
    children: Sequence,
    varied: Sequence[str],
    metrics: Sequence[str],
    tables: Mapping[str, str] | None = None,
    figures: Mapping[str, int | None] | None = None,
) -> str:
    """A sweep parent's description: the study's task, the sweep, the table of its children (each linked to
    its run while the description stays within :data:`NOTE_LIMIT`; the first rows only if even unlinked
    they do not fit), the study's summary ``tables`` ({artifact path: Markdown}) and its ``figures``."""
    n_failed = sum(child.status != "FINISHED" for child in children)
    opening = [
        task,
        f"**Sweep {parent.status}** (study `{study}`): {len(children)} jobs, {n_failed} failed; varied: "
        f"{', '.join(f'`{key}`' for key in varied) or 'nothing'}; made by `nmf-lab -m {sweep}`",
    ]
    closing = figures_section(parent, figures or {})
    budget = NOTE_LIMIT - len("\n\n".join([*opening, closing])) - 200
    header, rows = children_rows(children, varied, metrics)
    links = [f"[{child.run_id[:8]}]({run_route(child.experiment_id, child.run_id)})" for child in children]
    table = markdown_table(["run", *header], [[link, *row] for link, row in zip(links, rows)])
    if len(table) > budget:
        table = markdown_table(header, rows)
    if len(table) > budget:
        lines = table.splitlines()
        kept = len("\n".join(lines[:2]))
        count = 2
        while count < len(lines) and kept + len(lines[count]) + 1 < budget:
            kept += len(lines[count]) + 1
            count += 1
        table = "\n".join(lines[:count]) + f"\n\n... and {len(lines) - count} more jobs in `summary/children.csv`."
    return within_limit([*opening, table if children else ""], tables, last=closing)


def sweep_started_note(*, task: str, study: str, sweep: str, n_jobs: int) -> str:
    """A sweep parent's description while its jobs run (the summary replaces it)."""
    return f"{task}\n\n**Sweep RUNNING** (study `{study}`): {n_jobs} jobs; made by `nmf-lab -m {sweep}`\n"


def experiment_note(*, task: str, study: str) -> str:
    """An experiment's description: first how to see its runs in MLflow 3's UI (the UI shows the first line of
    a folded description), then whose runs it holds."""
    return (
        "**nmf-lab runs: pick the Model training view** (the toggle at the top left, or add "
        f"`?{MODEL_TRAINING_VIEW}` to the address) to list them.\n\n"
        f"Runs of the study `{study}`. {task}\n\n"
        "Each job of `nmf-lab` is one run; a sweep (`nmf-lab -m ...`) is one parent run with its jobs nested "
        "under it, and the parent's description holds the table of its jobs.\n"
    )
