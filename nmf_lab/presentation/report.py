"""``nmf-lab-report``: the study as one page to hand on, built from the latest finished runs in a tracking store.

    nmf-lab-report                                   # the default store; writes report/
    nmf-lab-report --tracking-uri http://127.0.0.1:5000 --out /tmp/report

The sections are data (``conf/report/sections.yaml``, or ``--sections FILE``): each names the MLflow
experiment(s) whose latest FINISHED top-level run (a single job or a sweep's parent) it shows. A section
holds the run's name and id with its link into the MLflow UI, the run's description (``mlflow.note.content``),
the metrics the section lists, the run's figures (``figures/*.png``) and its tables (``tables/*.md``). A
section with no such run says which command makes one.

The output is ``report.html`` (one self-contained page: styles inline, figures embedded as ``data:`` URIs) and
``report.md`` with its figures in ``report_files/``. The same files are logged as the artifacts of a run in the
experiment ``report``, whose tags name the run behind each section.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import markdown

from nmf_lab.presentation.describe import UiLinks, ui_links
from nmf_lab.tracking.lifecycle import tracked_run
from nmf_lab.tracking.run_log import TAG_PREFIX
from nmf_lab.tracking.store import TrackingUnavailable, get_experiment_id, open_client
from nmf_lab.tracking.stored import StoredRun, artifact_files, latest_finished_run, read_artifact

SECTIONS_FILE = Path(__file__).resolve().parents[2] / "conf" / "report" / "sections.yaml"
"""The built-in list of sections."""

REPORT_EXPERIMENT = "report"
"""The MLflow experiment of the runs that hold a built report."""

NOTE_TAG = "mlflow.note.content"
"""MLflow's tag for a run's description (Markdown)."""

_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class ReportError(ValueError):
    """A sections file that cannot be used; the message names the file, the entry and what is valid."""


@dataclass(frozen=True)
class SectionSpec:
    """One entry of a sections file (see ``conf/report/sections.yaml`` for the keys)."""

    id: str
    title: str
    experiments: tuple[str, ...]
    command: str
    about: str = ""
    figures: tuple[str, ...] | None = None
    tables: tuple[str, ...] | None = None
    metrics: tuple[str, ...] = ()


def load_sections(path: str | Path = SECTIONS_FILE) -> list[SectionSpec]:
    """The sections of a YAML file: a list of mappings with the keys of :class:`SectionSpec`.

    Raises :class:`ReportError` naming the file and the entry for a missing or unknown key, a key of the wrong
    type, or an id that is not unique or not made of letters, digits, ``-`` and ``_``.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    try:
        entries = OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, OmegaConfBaseException) as error:
        raise ReportError(f"cannot read the sections file {path}: {error}") from error
    if not isinstance(entries, list) or not entries:
        raise ReportError(f"the sections file {path} must hold a non-empty list of sections")
    known = set(SectionSpec.__dataclass_fields__)
    required = {"id", "title", "experiments", "command"}
    specs: list[SectionSpec] = []
    for index, entry in enumerate(entries):
        where = f"{path}, section {index + 1}"
        if not isinstance(entry, dict):
            raise ReportError(f"{where}: a section is a mapping with the keys {', '.join(sorted(known))}")
        where += f" ({entry.get('id', '?')})"
        if unknown := sorted(set(entry) - known):
            raise ReportError(f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(known))}")
        if missing := sorted(required - set(entry)):
            raise ReportError(f"{where}: the key {missing[0]!r} is missing")
        for key in ("id", "title", "command", "about"):
            if not isinstance(entry.get(key, ""), str):
                raise ReportError(f"{where}: {key} must be a string, got {entry[key]!r}")
        if not _ID.match(entry["id"]) or any(spec.id == entry["id"] for spec in specs):
            raise ReportError(f"{where}: the id must be unique and made of letters, digits, - and _")
        lists = {}
        for key in ("experiments", "figures", "tables", "metrics"):
            value = entry.get(key)
            if value is None:
                continue
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
                raise ReportError(f"{where}: {key} must be a list of names, got {entry[key]!r}")
            lists[key] = tuple(value)
        if not lists.get("experiments"):
            raise ReportError(f"{where}: experiments must name at least one MLflow experiment")
        specs.append(SectionSpec(**{**entry, **lists}))
    return specs


@dataclass
class Section:
    """A section as built: its spec, the experiments searched, and its run (None: no finished run yet) with
    what the run shows. Every image is a file of the Markdown report, ``report_files/<section id>/<name>``."""

    spec: SectionSpec
    searched: tuple[str, ...] = ()
    run: StoredRun | None = None
    experiment: str = ""
    started: str = ""
    link: str = ""
    description: str = ""  # Markdown; its links absolute, its images pointing at their files
    images: dict[str, bytes] = field(default_factory=dict)  # file -> PNG bytes, every image of the section
    figures: list[tuple[str, str]] = field(default_factory=list)  # (artifact path, file) shown after the description
    tables: dict[str, str] = field(default_factory=dict)  # artifact path -> Markdown


def collect(client, specs: Sequence[SectionSpec], links: UiLinks, prefix: str = "") -> list[Section]:
    """Each section with the latest finished run of its experiments (``prefix`` + each name) and what it shows."""
    sections = []
    for spec in specs:
        section = Section(spec, searched=tuple(prefix + name for name in spec.experiments))
        found = [(name, latest_finished_run(client, name)) for name in section.searched]
        started = {run.run_id: client.get_run(run.run_id).info.start_time or 0 for _, run in found if run}
        if started:
            section.experiment, run = max(((n, r) for n, r in found if r), key=lambda pair: started[pair[1].run_id])
            section.run = run
            section.started = _local_time(started[run.run_id])
            section.link = links.run(run.experiment_id, run.run_id)
            files = artifact_files(client, run.run_id)
            figures = spec.figures or [p for p in files if p.startswith("figures/") and p.endswith(".png")]
            tables = spec.tables or [p for p in files if p.startswith("tables/") and p.endswith(".md")]
            for path in (path for path in figures if path in files):
                section.images[figure_file(section, path)] = read_artifact(client, run.run_id, path)
            section.description = _description(client, section, run.tags.get(NOTE_TAG, ""), links.base)
            section.figures = [
                (path, figure_file(section, path))
                for path in figures
                if figure_file(section, path) in section.images
                and f"]({figure_file(section, path)})" not in section.description
            ]
            section.tables = {
                path: read_artifact(client, run.run_id, path).decode("utf-8") for path in tables if path in files
            }
        sections.append(section)
    return sections


def figure_file(section: Section, path: str, run_id: str | None = None) -> str:
    """Where the Markdown report keeps the figure ``path`` of the section's run (or of another ``run_id``):
    ``report_files/<section id>/[<run id[:8]>-]<file name>``."""
    other = f"{run_id[:8]}-" if run_id and run_id != section.run.run_id else ""
    return f"report_files/{section.spec.id}/{other}{Path(path).name}"


_UI_IMAGE = re.compile(r"!\[([^\]]*)\]\(get-artifact\?path=([^&)\s]+)&run_uuid=(\w+)\)")
"""An image in a description, served by the MLflow UI: ``![alt](get-artifact?path=...&run_uuid=...)``."""


def _description(client, section: Section, text: str, base: str) -> str:
    """A run's description for the report: its links into the UI (``](#/...)``) made absolute, and its images
    from the UI's server (``get-artifact?...``) made files of the report; an image that cannot be read becomes
    a link to it in the UI."""

    def image(match: re.Match) -> str:
        alt, path, run_id = match.group(1), unquote(match.group(2)), match.group(3)
        file = figure_file(section, path, run_id)
        if file not in section.images:
            try:
                section.images[file] = read_artifact(client, run_id, path)
            except Exception:  # another run's artifact, gone or unreadable: the UI may still have it
                return f"[{alt or path}]({base}/get-artifact?path={match.group(2)}&run_uuid={run_id})"
        return f"![{alt}]({file})"

    return _UI_IMAGE.sub(image, text).replace("](#/", f"]({base}/#/")


def _local_time(milliseconds: int | None = None) -> str:
    """A time (ms since the epoch; None: now) as the report shows it, in the local time zone."""
    moment = datetime.datetime.now() if milliseconds is None else datetime.datetime.fromtimestamp(milliseconds / 1000)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")


# -- Markdown ---------------------------------------------------------------------------------------------


def run_line(section: Section) -> str:
    run = section.run
    return (
        f"**MLflow run** [{run.name or run.run_id}]({section.link}): id `{run.run_id}`, experiment "
        f"`{section.experiment}`, started {section.started}"
    )


def metrics_markdown(section: Section) -> str:
    """The section's ``metrics`` that the run has and its description does not show, as a Markdown table."""
    metrics, description = section.run.metrics, section.description
    keys = [key for key in section.spec.metrics if key in metrics and f"| {key} |" not in description]
    rows = [f"| {key} | {metrics[key]:.6g} |" for key in keys]
    return "| metric | value |\n|---|---|\n" + "\n".join(rows) if rows else ""


def tables_to_show(section: Section) -> dict[str, str]:
    """The section's tables that its description does not already hold."""
    return {path: table for path, table in section.tables.items() if table.strip() not in section.description}


def section_markdown(section: Section) -> str:
    spec = section.spec
    parts = [f'<a id="{spec.id}"></a>\n\n## {spec.title}', spec.about]
    if section.run is None:
        wanted = ", ".join(f"`{name}`" for name in section.searched)
        parts.append(
            f"*No finished run in the experiment {wanted} yet.* Make one with:\n\n```bash\n{spec.command}\n```"
        )
        return "\n\n".join(part for part in parts if part) + "\n"
    parts += [run_line(section), section.description.strip(), metrics_markdown(section)]
    parts += [f"![{path}]({file})" for path, file in section.figures]
    parts += [f"**{path}**\n\n{table.strip()}" for path, table in tables_to_show(section).items()]
    return "\n\n".join(part for part in parts if part) + "\n"


def header_markdown(sections: Sequence[Section], *, store: str, links: UiLinks, built: str) -> str:
    found = sum(section.run is not None for section in sections)
    ui = f"The runs are in the MLflow UI at {links.base}"
    ui += f" (start it with `{links.command}`)." if links.command else "."
    contents = "\n".join(f"- [{s.spec.title}](#{s.spec.id})" + ("" if s.run else " (no run yet)") for s in sections)
    return (
        f"# nmf-lab: the study report\n\nBuilt {built} from the latest finished runs in `{store}`: "
        f"{found} of {len(sections)} sections have one. {ui}\n\n{contents}\n"
    )


def render_markdown(sections: Sequence[Section], *, store: str, links: UiLinks, built: str) -> str:
    """The report in Markdown; its figures are the files :func:`figure_file` names."""
    body = "\n".join(section_markdown(section) for section in sections)
    return header_markdown(sections, store=store, links=links, built=built) + "\n" + body


# -- HTML -------------------------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
section.missing { color: #555; } section.missing h2 { color: #777; }
img { max-width: 100%; height: auto; } figure { margin: 1em 0; } figure img { border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #666; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; } th { background: #f4f4f4; }
code, pre { background: #f6f6f6; border-radius: 3px; padding: 0.1em 0.3em; }
pre { padding: 0.6em; overflow-x: auto; } .run { color: #444; }
"""


def _html_from_markdown(text: str) -> str:
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _embedded(text: str, images: dict[str, bytes]) -> str:
    """Markdown ``text`` whose images point at report files, pointing at ``data:`` URIs instead."""
    for file, png in images.items():
        text = text.replace(f"]({file})", f"]({_data_uri(png)})")
    return text


def section_html(section: Section) -> str:
    spec = section.spec
    about = _html_from_markdown(spec.about) if spec.about else ""
    if section.run is None:
        wanted = ", ".join(f"<code>{html.escape(name)}</code>" for name in section.searched)
        return (
            f'<section id="{spec.id}" class="report-section missing" data-run-id="">\n'
            f"<h2>{html.escape(spec.title)}</h2>\n{about}\n"
            f"<p><em>No finished run in the experiment {wanted} yet.</em> Make one with:</p>\n"
            f"<pre><code>{html.escape(spec.command)}</code></pre>\n</section>\n"
        )
    parts = [
        f'<section id="{spec.id}" class="report-section" data-run-id="{section.run.run_id}">',
        f"<h2>{html.escape(spec.title)}</h2>",
        about,
        f'<div class="run">{_html_from_markdown(run_line(section))}</div>',
        _html_from_markdown(_embedded(section.description.strip(), section.images)),
        _html_from_markdown(metrics_markdown(section)),
    ]
    for path, file in section.figures:
        parts.append(
            f'<figure><img src="{_data_uri(section.images[file])}" alt="{html.escape(path)}">'
            f"<figcaption>{html.escape(path)}</figcaption></figure>"
        )
    for path, table in tables_to_show(section).items():
        parts.append(f"<p><strong>{html.escape(path)}</strong></p>\n{_html_from_markdown(table)}")
    parts.append("</section>\n")
    return "\n".join(part for part in parts if part)


def render_html(sections: Sequence[Section], *, store: str, links: UiLinks, built: str) -> str:
    """The report as one self-contained HTML page (figures embedded as ``data:`` URIs)."""
    header = _html_from_markdown(header_markdown(sections, store=store, links=links, built=built))
    body = "\n".join(section_html(section) for section in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>nmf-lab: the study report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header>{header}</header>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


# -- building, writing, logging -------------------------------------------------------------------------


@dataclass
class Report:
    """A built report: its sections, where it was written, and the run that holds it (None: not logged)."""

    sections: list[Section]
    html: Path
    markdown: Path
    run_id: str | None
    run_link: str | None


def build_report(
    tracking_uri: str | None = None,
    out: str | Path = "report",
    *,
    sections_file: str | Path = SECTIONS_FILE,
    prefix: str = "",
    log: bool = True,
) -> Report:
    """Build the report from the store ``tracking_uri`` (None: ``$MLFLOW_TRACKING_URI``, else the default store),
    write ``report.html``, ``report.md`` and ``report_files/`` into ``out``, and (``log``) log them as the
    artifacts of a new run in the experiment ``prefix + "report"``.

    ``prefix`` is put before every experiment name (runs filed with ``tracking.experiment=<prefix><name>``).
    """
    specs = load_sections(sections_file)  # a bad file fails before anything is read or recorded
    client = open_client(tracking_uri)
    links = ui_links(client.tracking_uri)
    sections = collect(client, specs, links, prefix)
    built = _local_time()
    store = _shown_store(client.tracking_uri)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    html_path, markdown_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(sections, store=store, links=links, built=built), encoding="utf-8")
    markdown_path.write_text(render_markdown(sections, store=store, links=links, built=built), encoding="utf-8")
    for section in sections:
        for file, png in section.images.items():
            (out / file).parent.mkdir(parents=True, exist_ok=True)
            (out / file).write_bytes(png)
    run_id = run_link = None
    if log:
        experiment_id = get_experiment_id(client, prefix + REPORT_EXPERIMENT)
        tags = {TAG_PREFIX + f"report.{s.spec.id}": s.run.run_id if s.run else "none" for s in sections}
        with tracked_run(client, experiment_id, run_name=f"report {built}", tags=tags) as run:
            run.log_metrics(
                {"sections": len(sections), "sections_with_a_run": sum(s.run is not None for s in sections)}
            )
            run.log_bytes(html_path.read_bytes(), "report.html")
            run.log_bytes(markdown_path.read_bytes(), "report.md")
            for section in sections:
                for file, png in section.images.items():
                    run.log_bytes(png, file)
        run_id, run_link = run.run_id, links.run(experiment_id, run.run_id)
    return Report(sections, html_path, markdown_path, run_id, run_link)


def _shown_store(uri: str) -> str:
    """The store's URI as the report shows it: without a password."""
    return re.sub(r"://([^:/@]+):[^@/]+@", r"://\1:***@", uri)


def main(argv: Sequence[str] | None = None) -> None:
    """``nmf-lab-report``: build the study report from the latest finished runs in a store."""
    parser = argparse.ArgumentParser(prog="nmf-lab-report", description=main.__doc__)
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="the store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)",
    )
    parser.add_argument("--out", default="report", help="the folder to write report.html and report.md to (report)")
    parser.add_argument("--sections", default=str(SECTIONS_FILE), help="the sections file (conf/report/sections.yaml)")
    parser.add_argument(
        "--experiment-prefix",
        default="",
        help="put this before every experiment name (for runs filed with tracking.experiment=<prefix><name>)",
    )
    parser.add_argument("--no-log", action="store_true", help="do not log the report as a run of the report experiment")
    args = parser.parse_args(argv)
    try:
        report = build_report(
            args.tracking_uri, args.out, sections_file=args.sections, prefix=args.experiment_prefix, log=not args.no_log
        )
    except (ReportError, TrackingUnavailable) as error:
        raise SystemExit(f"nmf-lab-report: {error}") from error
    found = [s for s in report.sections if s.run is not None]
    print(f"Report of {len(found)} of {len(report.sections)} sections (from the latest finished runs)")
    for section in report.sections:
        if section.run is not None:
            print(f"  {section.spec.id:<12} run {section.run.run_id} ({section.experiment})")
        else:
            print(f"  {section.spec.id:<12} no run yet: {section.spec.command}")
    print(f"  html      {report.html.resolve()}")
    print(f"  markdown  {report.markdown.resolve()}")
    if report.run_link:
        print(f"  logged    {report.run_link}")


if __name__ == "__main__":
    main(sys.argv[1:])
