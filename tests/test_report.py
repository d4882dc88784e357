"""``nmf-lab-report``: which run each section takes, what it shows, the two formats, the logged report run, bad
sections files, and a report built against a real tracking server."""

from __future__ import annotations

import base64
import io
import re
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from nmf_lab.harness.config import CONF_DIR
from nmf_lab.presentation.report import NOTE_TAG, ReportError, build_report, load_sections, main
from nmf_lab.tracking.lifecycle import FAILED, FINISHED, end_run, tracked_run
from nmf_lab.tracking.store import get_experiment_id

from helpers import artifact_paths, load_text
from services import mlflow_server

UI = "http://127.0.0.1:5000"


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def make_run(client, experiment, *, figures=(), tables=None, note=None, metrics=None, fail=False, parent=None):
    """A run of ``experiment`` with these artifacts, FINISHED (or FAILED); returns its id. Runs made one after
    another start at least 2 ms apart, so their order by start time is their order of making."""
    time.sleep(0.002)
    tags = {NOTE_TAG: note} if note else None
    try:
        with tracked_run(client, get_experiment_id(client, experiment), parent_run_id=parent, tags=tags) as run:
            for path, data in figures:
                run.log_bytes(data, path)
            for path, text in (tables or {}).items():
                run.log_text(text, path)
            run.log_metrics(metrics or {})
            if fail:
                raise RuntimeError("this run fails")
    except RuntimeError:
        pass
    time.sleep(0.002)
    return run.run_id


def write_sections(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TWO_SECTIONS = """
- id: single
  title: "Task 2a-2d: a single run"
  experiments: [punks]
  command: nmf-lab
  about: "What the section *answers*."
  metrics: [final_error, relative_error, not_logged]
- id: gone
  title: "A study without runs"
  experiments: [nothing-here]
  command: nmf-lab experiment=nothing
"""

TABLE_IN_NOTE = "| d | error |\n|---|---|\n| 4 | 0.125 |\n\n| metric | value |\n|---|---|\n| relative_error | 0.5 |\n"
TABLE_APART = "| solver | seconds |\n|---|---|\n| hals | 7.5 |\n"


def data_uris(html: str, section_id: str) -> list[bytes]:
    """The images embedded in one section of the HTML report, decoded."""
    body = re.search(rf'<section id="{section_id}".*?</section>', html, re.S).group(0)
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', body)]


def test_each_section_shows_the_latest_finished_top_level_run(client, experiment_name, tmp_path):
    prefix = experiment_name + "-"
    sweep_parent = make_run(client, prefix + "punks")  # finished, the oldest
    older = make_run(client, prefix + "punks", figures=[("figures/2a.png", png(8, 4, (255, 0, 0)))])
    blue, green = png(30, 20, (0, 0, 255)), png(12, 12, (0, 255, 0))
    note = (
        f"The **latest** run; its [parent](#/experiments/1/runs/abc?workflowType=machine_learning).\n\n{TABLE_IN_NOTE}"
    )
    chosen = make_run(
        client,
        prefix + "punks",
        figures=[("figures/2a.png", blue), ("figures/2b.png", green), ("other/x.png", png(5, 5, (9, 9, 9)))],
        tables={"tables/in_note.md": TABLE_IN_NOTE, "tables/apart.md": TABLE_APART},
        note=note,
        metrics={"final_error": 2.5, "relative_error": 0.5},
    )
    red = png(8, 4, (255, 0, 0))  # the older run's figure, which the description below shows
    ui_images = (  # how a description shows figures in the UI: served by its server, relative to its address
        f"![figures/2b.png](get-artifact?path=figures%2F2b.png&run_uuid={chosen})\n\n"
        f"![the older one](get-artifact?path=figures%2F2a.png&run_uuid={older})\n\n"
        f"![figures/gone.png](get-artifact?path=figures%2Fgone.png&run_uuid={chosen})\n"
    )
    client.set_tag(chosen, NOTE_TAG, note + "\n" + ui_images)
    make_run(client, prefix + "punks", figures=[("figures/2a.png", png(9, 9, (1, 1, 1)))], fail=True)
    make_run(client, prefix + "punks", parent=sweep_parent)  # a sweep's job, the newest finished run
    sections = write_sections(tmp_path / "sections.yaml", TWO_SECTIONS)

    report = build_report(client.tracking_uri, tmp_path / "out", sections_file=sections, prefix=prefix)

    single, gone = report.sections
    assert single.run.run_id == chosen and chosen not in (older, sweep_parent)
    assert gone.run is None
    html = report.html.read_text()
    experiment_id = client.get_experiment_by_name(prefix + "punks").experiment_id
    assert f'<section id="single" class="report-section" data-run-id="{chosen}">' in html
    # The description's images first (embedded, the other run's too), then the run's other figures/*.png, in
    # order, byte for byte: 2b is shown once, other/x.png not at all.
    assert data_uris(html, "single") == [green, red, blue]
    gone = f"{UI}/get-artifact?path=figures%2Fgone.png&run_uuid={chosen}"
    assert (
        f'<a href="{gone.replace("&", "&amp;")}">figures/gone.png</a>' in html
    )  # an image that cannot be read: a link to the UI
    assert f'href="{UI}/#/experiments/{experiment_id}/runs/{chosen}?workflowType=machine_learning"' in html
    assert "The <strong>latest</strong> run" in html  # the description, rendered
    assert f'href="{UI}/#/experiments/1/runs/abc?workflowType=machine_learning"' in html  # its link made absolute
    assert html.count("<td>0.125</td>") == 1  # a table the description holds is not repeated
    assert "<td>hals</td>" in html and "<td>7.5</td>" in html
    assert "What the section <em>answers</em>." in html
    missing = re.search(r'<section id="gone" class="report-section missing".*?</section>', html, re.S).group(0)
    assert f"{prefix}nothing-here" in missing and "<code>nmf-lab experiment=nothing</code>" in missing

    markdown = report.markdown.read_text()
    link = f"{UI}/#/experiments/{experiment_id}/runs/{chosen}?workflowType=machine_learning"
    assert (
        f"**MLflow run** [{single.run.name}]({link}): id `{chosen}`, experiment `{prefix}punks`, started " in markdown
    )
    assert "| final_error | 2.5 |" in markdown and markdown.count("relative_error") == 1  # listed, unless described
    assert "![figures/2a.png](report_files/single/2a.png)" in markdown
    assert "![figures/2b.png](report_files/single/2b.png)" in markdown
    assert f"![the older one](report_files/single/{older[:8]}-2a.png)" in markdown
    files = tmp_path / "out" / "report_files" / "single"
    assert (files / "2a.png").read_bytes() == blue and (files / f"{older[:8]}-2a.png").read_bytes() == red
    assert "](get-artifact" not in markdown
    assert "```bash\nnmf-lab experiment=nothing\n```" in markdown

    logged = client.get_run(report.run_id)
    assert logged.info.status == FINISHED
    assert logged.info.experiment_id == client.get_experiment_by_name(prefix + "report").experiment_id
    assert logged.data.tags["nmf_lab.report.single"] == chosen and logged.data.tags["nmf_lab.report.gone"] == "none"
    logged_files = {f"report_files/single/{name}" for name in ("2a.png", "2b.png", f"{older[:8]}-2a.png")}
    assert {"report.html", "report.md", *logged_files} == set(artifact_paths(client, report.run_id))
    assert load_text(client, report.run_id, "report.html", tmp_path / "dl") == html


def test_a_section_over_several_experiments_takes_the_latest_of_them(client, experiment_name, tmp_path):
    prefix = experiment_name + "-"
    make_run(client, prefix + "benchmark", metrics={"seconds": 1.0})
    newer = make_run(client, prefix + "benchmark_small", metrics={"seconds": 2.0})
    sections = write_sections(
        tmp_path / "s.yaml",
        "- {id: bench, title: Bench, experiments: [benchmark, benchmark_small], command: x, metrics: [seconds]}\n",
    )
    report = build_report(client.tracking_uri, tmp_path / "out", sections_file=sections, prefix=prefix, log=False)
    (section,) = report.sections
    assert section.run.run_id == newer and report.run_id is None
    assert "| seconds | 2 |" in report.markdown.read_text()  # no description: the listed metrics
    assert client.get_experiment_by_name(prefix + "report") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("- {id: a, title: A, experiments: [x]}\n", r"section 1 \(a\): the key 'command' is missing"),
        ("- {id: a, title: A, experiments: [x], command: c, figure: y}\n", r"unknown key 'figure'; the keys are"),
        ("- {id: a, title: A, experiments: [], command: c}\n", "experiments must name at least one"),
        (
            "- {id: a, title: A, experiments: x, command: c}\n- {id: a, title: B, experiments: y, command: c}\n",
            "unique",
        ),
        ("- {id: a b, title: A, experiments: x, command: c}\n", "letters, digits"),
        ("- {id: a, title: A, experiments: [1], command: c}\n", "experiments must be a list of names"),
        ("{id: a}\n", "must hold a non-empty list of sections"),
    ],
)
def test_a_bad_sections_file_is_refused_before_anything_is_recorded(
    text, message, tmp_path, client, experiment_name, capsys
):
    sections = write_sections(tmp_path / "bad.yaml", text)
    with pytest.raises(ReportError, match=message) as raised:
        load_sections(sections)
    assert str(sections) in str(raised.value)
    with pytest.raises(SystemExit, match=r"nmf-lab-report: .*bad\.yaml"):
        main(
            [
                "--tracking-uri",
                client.tracking_uri,
                "--sections",
                str(sections),
                "--experiment-prefix",
                experiment_name,
                "--out",
                str(tmp_path),
            ]
        )
    assert client.get_experiment_by_name(experiment_name + "report") is None
    assert not (tmp_path / "report.html").exists()


def test_the_built_in_sections_name_experiment_configs_that_exist():
    configs = {path.stem for path in (CONF_DIR / "experiment").glob("*.yaml")}
    specs = load_sections()
    assert {"task1", "task2a-2d", "task2e-2f", "task3a-3b", "task3c", "benchmark"} <= {spec.id for spec in specs}
    for spec in specs:
        assert set(spec.experiments) <= configs, spec.id
        chosen = re.fullmatch(r"nmf-lab(?: experiment=(\w+))?", spec.command)
        assert chosen, f"{spec.id}: {spec.command}"
        assert (chosen.group(1) or "punks") in spec.experiments


def test_the_command_line_says_what_it_built(client, experiment_name, tmp_path, capsys):
    prefix = experiment_name + "-"
    run_id = make_run(client, prefix + "punks", figures=[("figures/a.png", png(4, 4, (5, 5, 5)))])
    sections = write_sections(tmp_path / "sections.yaml", TWO_SECTIONS)
    args = ["--tracking-uri", client.tracking_uri, "--sections", str(sections), "--out", str(tmp_path / "r")]
    main([*args, "--experiment-prefix", prefix])
    printed = capsys.readouterr().out
    assert "Report of 1 of 2 sections" in printed
    assert f"single       run {run_id} ({prefix}punks)" in printed
    assert "gone         no run yet: nmf-lab experiment=nothing" in printed
    assert f"html      {tmp_path / 'r' / 'report.html'}" in printed
    (logged,) = client.search_runs([client.get_experiment_by_name(prefix + "report").experiment_id])
    assert f"logged    {UI}/#/experiments/{logged.info.experiment_id}/runs/{logged.info.run_id}?" in printed


@pytest.mark.slow
def test_a_report_from_a_tracking_server(tmp_path, experiment_name):
    """Against a real `mlflow server`: runs made through it, the report's links point at it, and the report run
    is logged there, its artifacts proxied by the server."""
    with mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'server.db'}") as uri:
        client = MlflowClient(uri)
        prefix = experiment_name + "-"
        figure = png(10, 6, (200, 100, 0))
        run_id = make_run(client, prefix + "punks", figures=[("figures/2c.png", figure)], metrics={"final_error": 3})
        sections = write_sections(tmp_path / "sections.yaml", TWO_SECTIONS)
        report = build_report(uri, tmp_path / "out", sections_file=sections, prefix=prefix)
        single, _ = report.sections
        assert single.run.run_id == run_id
        html = report.html.read_text()
        experiment_id = client.get_experiment_by_name(prefix + "punks").experiment_id
        assert f'href="{uri}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"' in html
        assert data_uris(html, "single") == [figure]
        assert "| final_error | 3 |" in report.markdown.read_text()
        assert report.run_link.startswith(f"{uri}/#/experiments/")
        assert client.get_run(report.run_id).info.status == FINISHED
        assert load_text(client, report.run_id, "report.md", tmp_path / "dl") == report.markdown.read_text()


def test_failed_and_killed_runs_are_never_shown(client, experiment_name, tmp_path):
    prefix = experiment_name + "-"
    make_run(client, prefix + "punks", fail=True)
    with tracked_run(client, get_experiment_id(client, prefix + "punks"), end=False) as run:
        pass  # left RUNNING, then ended as FAILED by hand: a sweep whose jobs failed
    end_run(client, run.run_id, FAILED)
    sections = write_sections(tmp_path / "sections.yaml", TWO_SECTIONS)
    report = build_report(client.tracking_uri, tmp_path / "out", sections_file=sections, prefix=prefix, log=False)
    assert [section.run for section in report.sections] == [None, None]
    assert "<code>nmf-lab</code>" in report.html.read_text()
