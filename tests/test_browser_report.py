"""The study report in a real browser (Playwright driving Debian's chromium), built from real runs of the
studies: every section of the built-in list is on the page, every figure decodes, nothing is logged to the
console as an error, and a screenshot is saved."""

from __future__ import annotations

import pytest

from nmf_lab.presentation.report import build_report, load_sections

from services import chromium, screenshot

TINY = ["data.n_images=20", "rank=4", "solver.max_iter=15"]


@pytest.mark.slow
def test_the_report_in_a_browser(run_job, run_cli, tracking_uri, experiment_name, punks_sheet, tmp_path):
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
    with chromium() as browser:  # Debian's chromium: Playwright's own browser download is not needed
        page = browser.new_page(viewport={"width": 1200, "height": 900})
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
        shot = screenshot(page, tmp_path, "report")
    assert errors == []
    assert shot.stat().st_size > 10_000
