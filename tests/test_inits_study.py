"""The inits experiment end to end: a small sweep of init x solver on real punks, and its summary."""

from __future__ import annotations

import numpy as np
import pytest

from nmf_lab.tracking.lifecycle import FINISHED

from helpers import artifact_paths, load_text, runs_of


@pytest.mark.slow
def test_the_inits_sweep_compares_every_start_with_every_solver(
    run_cli, client, experiment_name, tmp_path, punks_sheet
):
    run_cli(
        "experiment=inits",
        "init=random,nndsvda",
        "solver=mu,hals",
        "data.n_images=40",
        "rank=4",
        "solver.max_iter=120",
        f"data.path={punks_sheet}",
        f"tracking.experiment={experiment_name}",
    )
    (parent,), children = runs_of(client, experiment_name)
    assert parent.info.status == FINISHED and len(children) == 4
    runs = {(c.data.params["solver.name"], c.data.params["init"]): c for c in children}
    assert set(runs) == {(s, i) for s in ("mu", "hals") for i in ("random", "nndsvda")}
    for child in children:
        history = sorted(client.get_metric_history(child.info.run_id, "error"), key=lambda m: m.step)
        curve = np.minimum.accumulate([m.value for m in history])
        assert child.data.metrics["error_at_10"] == curve[10] and child.data.metrics["error_at_100"] == curve[100]
        assert "error_at_1000" not in child.data.metrics  # the fit stopped at 120 iterations
        assert child.data.metrics["init_seconds"] > 0
    for solver in ("mu", "hals"):
        at_100 = {init: runs[solver, init].data.metrics["error_at_100"] for init in ("random", "nndsvda")}
        best = min(at_100, key=at_100.get)
        assert parent.data.tags[f"nmf_lab.inits.best.{solver}"] == best
        assert parent.data.metrics[f"random_over_best.{solver}"] == pytest.approx(at_100["random"] / at_100[best])
    table = load_text(client, parent.info.run_id, "tables/inits.md", tmp_path)
    assert table.count("**best**") == 2 and "| hals | nndsvda" in table
    assert "figures/error_curves_by_init.png" in artifact_paths(client, parent.info.run_id)
