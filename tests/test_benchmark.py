"""The benchmark experiment on a small matrix: what it logs is consistent with itself and with theory."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from nmf_lab import fit_nmf, random_init
from nmf_lab.data.punks import Punks

from helpers import artifact_paths, load_text, runs_of


@pytest.mark.slow  # a whole benchmark: every solver, scikit-learn, timings (about 3 s)
def test_small_benchmark_logs_timings_targets_and_ratios(run_job, client, experiment_name, tmp_path, punks_sheet):
    run_job(
        "experiment=benchmark_small",
        "data.n_images=120",
        "rank=8",
        "benchmark.target_iter=60",
        "benchmark.repeats=1",
        "benchmark.timing_iterations=10",
        f"data.path={punks_sheet}",
        f"tracking.experiment={experiment_name}",
    )
    (run,), _ = runs_of(client, experiment_name)
    m = run.data.metrics
    # The target is nmf-lab mu's error after target_iter iterations from the shared initial guess.
    A = Punks(n_images=120, path=str(punks_sheet)).load().matrix()
    reference = fit_nmf(A, 8, init=random_init(A, 8, 0), max_iter=60)
    assert m["target_error"] == pytest.approx(reference.errors[60], rel=1e-12)
    solvers = ["mu", "hals", "ahals", "ahals_extrapolated", "ahals_extrapolated:float32", "sklearn_mu", "sklearn_cd"]
    for name in solvers:
        assert m[f"time_to_target.{name}"] > 0
    for key in (
        "floor_seconds",
        "mu_iter_seconds",
        "mu32_iter_seconds",
        "fastest_iter_seconds",
        "mu_masked_iter_seconds",
        "fastest_masked_iter_seconds",
        "sklearn_mu_iter_seconds",
        "sklearn_cd_iter_seconds",
    ):
        assert m[key] > 0
    # The masked timings hide benchmark.missing (0.3) of the entries, drawn with the job's seed.
    assert m["missing_fraction"] == pytest.approx(0.3, abs=0.01)
    assert m["mu_masked_over_unmasked"] == pytest.approx(m["mu_masked_iter_seconds"] / m["mu_iter_seconds"])
    assert m["fastest_masked_over_unmasked"] == pytest.approx(
        m["fastest_masked_iter_seconds"] / m["fastest_iter_seconds"]
    )
    assert m["mu_iter_over_floor"] == pytest.approx(m["mu_iter_seconds"] / m["floor_seconds"])
    assert m["mu_iter_over_sklearn_mu"] == pytest.approx(m["mu_iter_seconds"] / m["sklearn_mu_iter_seconds"])
    ours = [m[f"time_to_target.{s}"] for s in solvers[:5]]
    assert m["best_time_to_target_over_sklearn_cd"] == pytest.approx(min(ours) / m["time_to_target.sklearn_cd"])
    assert m["mu_time_to_target_over_best"] == pytest.approx(m["time_to_target.mu"] / min(ours))
    assert run.data.tags["nmf_lab.benchmark.fastest_solver"] == solvers[int(np.argmin(ours))]
    assert "threads)" in run.data.tags["nmf_lab.blas"]
    paths = set(artifact_paths(client, run.info.run_id))
    assert {"tables/benchmark.md", "tables/benchmark.csv", "figures/error_against_time.png"} <= paths
    rows = dict(csv.reader(io.StringIO(load_text(client, run.info.run_id, "tables/benchmark.csv", tmp_path))))
    assert float(rows["mu_iter_over_floor"]) == pytest.approx(m["mu_iter_over_floor"])


def test_interleaved_timing_takes_every_contender_once_per_round_after_a_warm_up():
    from experiments.benchmark import interleaved_seconds

    calls = []

    def contender(name, seconds):
        def call():
            calls.append(name)
            return seconds

        return call

    medians = interleaved_seconds({"a": contender("a", [1.0]), "b": contender("b", [2.0, 4.0, 9.0])}, repeats=3)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three: a, b, a, b, ... never a, a, a, b, b, b
    assert medians == {"a": 1.0, "b": 4.0}  # the warm-up round is not counted
