"""The study report in a real browser (Playwright driving Debian's chromium), built from real runs of the
studies: every section of the built-in list is on the page, every figure decodes, nothing is logged to the
console as an error, and a screenshot is saved."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nmf_lab.report import build_report, load_sections

from services import unavailable

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("NMF_LAB_SHOTS", "/tmp/shots"))
"""Where the screenshots are copied for a person to look at."""

TINY = ["data.n_images=20", "rank=4", "solver.max_iter=15"]


def sync_playwright():
    """Playwright's entry point, or a skip (a failure in CI) when it or Debian's chromium is absent."""
    if not Path(CHROMIUM).is_file():
        unavailable(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install playwright)")
    return sync_playwright()


@pytest.mark.slow
def test_the_report_in_a_browser(run_job, run_cli, tracking_uri, experiment_name, punks_sheet, tmp_path):
    playwright_context = sync_playwright()
    prefix = experiment_name + "-"
    data = f"data.path={punks_sheet}"
    run_job("experiment=punks", *TINY, data, f"tracking.experiment={prefix}punks")
    run_job("experiment=denoise", *TINY, data, f"tracking.experiment={prefix}denoise")
    run_cli(
        "experiment=toy",
        "data.matrix=A1,A2",
        "rank=1,2",
        "seed=0",
        "solver.max_iter=20",
        f"tracking.experiment={prefix}toy",
    )
    run_cli(
        "experiment=punks_ranks",
        "rank=2,4",
        "data.n_images=20",
        "solver.max_iter=15",
        data,
        f"tracking.experiment={prefix}punks_ranks",
    )
    report = build_report(tracking_uri, tmp_path / "report", prefix=prefix)
    with_runs = {section.spec.id for section in report.sections if section.run is not None}
    assert with_runs == {"task1", "task2a-2d", "task2e-2f", "task3a-3b"}

    errors = []
    with playwright_context as playwright:  # Debian's chromium: Playwright's own browser download is not needed
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.html.resolve().as_uri())
        page.wait_for_load_state("load")
        for spec in load_sections():
            section = page.locator(f"section#{spec.id}")
            assert section.count() == 1, spec.id
            assert section.locator("h2").inner_text() == spec.title
            if spec.id in with_runs:
                assert "missing" not in section.get_attribute("class")
                assert section.locator("img").count() >= 1, spec.id
                assert section.locator(".run a").get_attribute("href").endswith("?workflowType=machine_learning")
            else:
                assert spec.command in section.locator("pre").inner_text()
        sizes = page.evaluate("Array.from(document.images).map(image => [image.complete, image.naturalWidth])")
        assert len(sizes) >= 8 and all(complete and width > 0 for complete, width in sizes), sizes
        assert page.evaluate("document.documentElement.scrollWidth") <= 1200  # wide figures shrink to the page
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        chromium.close()
    assert errors == []
    assert shot.stat().st_size > 10_000
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SHOTS / "report.png")
