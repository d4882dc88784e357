"""The MLflow UI in a real browser (Playwright driving Debian's chromium) on a real `mlflow server`, over runs that
the real CLI logged to it: a punks run and a punks sweep. The links the CLI prints open the runs; a run's page
shows its description with its figures; the Model metrics tab draws the error curve; a sweep's parent lists its
children; and the experiment opens on its runs only in the model-training view (see the README)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from nmf_lab.presentation.describe import MODEL_TRAINING_VIEW
from nmf_lab.tracking.lifecycle import FINISHED

from helpers import runs_of
from services import chromium, mlflow_server, screenshot

pytestmark = pytest.mark.slow
SMALL = ["data.n_images=64", "solver.max_iter=50"]
VIEWPORT = {"width": 1400, "height": 1000}


def nmf_lab(*args: str, cwd, env) -> str:
    """Run the real console script (``python -m nmf_lab``); its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "nmf_lab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def printed_links(output: str) -> list[str]:
    """The UI links the CLI printed ("in the UI  <link>"), in order."""
    return re.findall(r"^\s+in the UI\s+(\S+)$", output, flags=re.MULTILINE)


def show_all(page) -> None:
    """Unfold a long description (the UI shows its first lines and "Show more")."""
    more = page.get_by_text("Show more", exact=True)
    if more.count():
        more.click()


def to_top(locator) -> None:
    """Scroll the page's inner scroll area so that ``locator`` is at its top."""
    locator.first.evaluate("element => element.scrollIntoView({block: 'start'})")


@pytest.fixture(scope="module")
def ui(tmp_path_factory, punks_sheet):
    """A real `mlflow server` with a punks run and a punks sweep of two ranks logged through it by the CLI; the
    server's URI, a client, and what the CLI printed for each."""
    root = tmp_path_factory.mktemp("ui")
    with mlflow_server(root, f"sqlite:///{root / 'mlflow.db'}") as uri:
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "NMF_LAB_PUNKS": str(punks_sheet)}
        single = nmf_lab(*SMALL, "rank=8", "tracking.experiment=ui-run", cwd=root, env=env)
        sweep = nmf_lab("-m", *SMALL, "rank=4,8", "tracking.experiment=ui-sweep", cwd=root, env=env)
        yield {"uri": uri, "client": MlflowClient(uri), "single": single, "sweep": sweep}


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser):
    """A fresh browser context (no remembered view) and page; errors the page raises fail the test."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def test_the_printed_link_opens_the_run_with_its_description_and_figures(ui, page, tmp_path):
    (run,), _ = runs_of(ui["client"], "ui-run")
    (link,) = printed_links(ui["single"])
    assert link == f"{ui['uri']}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?{MODEL_TRAINING_VIEW}"
    page.goto(link)
    page.get_by_text("Description", exact=True).wait_for()
    show_all(page)
    note = run.data.tags[MLFLOW_RUN_NOTE]
    task = note.split("\n\n")[0]
    page.get_by_text(task[:60]).first.wait_for()  # the study's task, the description's first paragraph
    final_error = re.search(r"\| final_error \| (\S+) \|", note).group(1)
    row = page.locator("tr").filter(has_text="final_error")
    assert row.locator("td").all_inner_texts() == ["final_error", final_error]
    to_top(page.get_by_text("Description", exact=True))
    screenshot(page, tmp_path, "ui_run_description", full_page=False)
    figure = page.locator("img[src*='figures%2F2c_basis_images.png']")
    to_top(figure)
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=figure.element_handle())
    assert figure.evaluate("image => image.naturalWidth") > 100  # the basis images, served by the server
    screenshot(page, tmp_path, "ui_run_description_figure", full_page=False)
    wide = page.locator("a[href*='/artifacts/figures/2d_reconstructions.png']")  # linked, too wide to show
    assert page.locator("img[src*='figures%2F2d_reconstructions.png']").count() == 0
    page.goto(f"{ui['uri']}/{wide.get_attribute('href')}")
    page.get_by_text("figures/2d_reconstructions.png", exact=True).wait_for()  # the Artifacts tab shows it
    page.locator("img[src^='blob:'], img[src*='2d_reconstructions']").first.wait_for()
    screenshot(page, tmp_path, "ui_run_figure_in_artifacts", full_page=False)


def test_the_model_metrics_tab_draws_the_error_curve(ui, page, tmp_path):
    (run,), _ = runs_of(ui["client"], "ui-run")
    history = sorted(ui["client"].get_metric_history(run.info.run_id, "error"), key=lambda metric: metric.step)
    page.goto(
        f"{ui['uri']}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/model-metrics?{MODEL_TRAINING_VIEW}"
    )
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(has=page.get_by_text("error", exact=True))
    line = card.locator("path.js-line").first
    line.wait_for()
    points = [tuple(map(float, xy.split(","))) for xy in re.findall(r"[-\d.]+,[-\d.]+", line.get_attribute("d"))]
    xs, ys = zip(*points)
    assert len(points) >= 10 and list(xs) == sorted(xs)  # a curve over the steps (Plotly drops collinear points)
    assert history[0].value > history[-1].value and ys[0] < ys[-1]  # falling, as stored (SVG y grows downwards)
    screenshot(page, tmp_path, "ui_model_metrics", full_page=False)


def test_the_sweep_parent_lists_its_children_and_their_table(ui, page, tmp_path):
    (parent,), children = runs_of(ui["client"], "ui-sweep")
    assert parent.info.status == FINISHED and len(children) == 2
    links = printed_links(ui["sweep"])
    assert len(links) == 3 and parent.info.run_id in links[-1]  # each job, then the parent
    page.goto(links[-1])
    page.get_by_text("Child runs", exact=True).wait_for()
    for child in children:  # "Child runs" links to each child by its name
        page.get_by_role("link", name=child.info.run_name).first.wait_for()
    show_all(page)
    table = page.locator("table").filter(has_text="final_error")
    assert table.locator("tbody tr").count() == 2
    for child in children:
        link = table.locator(f"a[href*='{child.info.run_id}']")
        assert link.count() == 1 and link.inner_text() == child.info.run_id[:8]
    to_top(page.get_by_text("Description", exact=True))
    screenshot(page, tmp_path, "ui_sweep_parent", full_page=False)
    figure = page.locator("img[src*='figures%2F2f_error_against_rank.png']")
    to_top(figure)
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=figure.element_handle())


def test_the_experiment_opens_on_its_runs_in_the_model_training_view(ui, page, tmp_path):
    """MLflow 3.17 opens an experiment in its GenAI view (traces) whatever its kind tag says;
    ?workflowType=machine_learning, or the Model training toggle (which the browser remembers), shows the runs."""
    experiment = ui["client"].get_experiment_by_name("ui-sweep")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    url = f"{ui['uri']}/#/experiments/{experiment.experiment_id}"
    sweep_link = page.get_by_role("link", name=re.compile("^sweep: "))
    page.goto(url)
    page.wait_for_url(re.compile("workflowType=genai"))
    page.get_by_text("nmf-lab runs: pick the Model training view").wait_for()  # the description's first line
    screenshot(page, tmp_path, "ui_experiment_default_view", full_page=False)
    page.goto(f"{url}?{MODEL_TRAINING_VIEW}")
    sweep_link.wait_for()
    screenshot(page, tmp_path, "ui_experiment_runs", full_page=False)

    page.goto(url)  # the GenAI view again (a link's view is not remembered); now the toggle
    page.wait_for_url(re.compile("workflowType=genai"))
    page.get_by_text("Model training", exact=True).first.wait_for()
    got_it = page.get_by_role("button", name="Got it")  # a first-visit tip that covers the page
    if got_it.count():
        got_it.click()
    page.get_by_text("Model training", exact=True).first.click()
    page.wait_for_url(re.compile(MODEL_TRAINING_VIEW))
    page.goto(f"{ui['uri']}/#/experiments")
    page.goto(url)
    sweep_link.wait_for()
