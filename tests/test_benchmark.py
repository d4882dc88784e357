"""The benchmark experiment on a small matrix: what it logs is consistent with itself and with theory."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from nmf_lab import fit_nmf, random_init
from nmf_lab.data.punks import Punks


@pytest.mark.slow  # a whole benchmark: every solver, scikit-learn, timings (about 3 s)
def test_small_benchmark_logs_timings_targets_and_ratios(run_study, punks_sheet):
    run = run_study(
        "experiment=benchmark_small",
        "data.n_images=120",
        "rank=8",
        "benchmark.target_iter=60",
        "benchmark.repeats=1",
        "benchmark.timing_iterations=10",
        f"data.path={punks_sheet}",
    )
    m = run.metrics
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
    # The KL divergence each reaches after 20 iterations: the same updates in another order (H first here, W
    # first there: equal to rounding in the same order, tests/test_losses.py), a few percent apart either way.
    assert 0.9 <= m["kl_divergence"] / m["sklearn_kl_divergence"] <= 1.1
    assert m["kl_divergence_over_sklearn_kl"] == pytest.approx(m["kl_divergence"] / m["sklearn_kl_divergence"])
    # The masked timings hide benchmark.missing (0.3) of the entries, drawn with the job's seed.
    assert m["missing_fraction"] == pytest.approx(0.3, abs=0.01)
    # Every ratio the targets speak of is logged (their arithmetic: test_benchmark_ratios_by_hand). mu is one of
    # the contenders: the best time to the target is at most its own.
    for key in RATIOS:
        assert np.isfinite(m[key]) and m[key] > 0, key
    assert m["mu_time_to_target_over_best"] >= 1
    ours = [m[f"time_to_target.{s}"] for s in solvers[:5]]
    assert run.tags["nmf_lab.benchmark.fastest_solver"] == solvers[int(np.argmin(ours))]
    assert "threads)" in run.tags["nmf_lab.blas"]
    assert {"tables/benchmark.md", "tables/benchmark.csv", "figures/error_against_time.png"} <= run.paths()
    rows = dict(csv.reader(io.StringIO(run.text("tables/benchmark.csv"))))
    assert float(rows["mu_iter_over_floor"]) == pytest.approx(m["mu_iter_over_floor"])


RATIOS = (
    "mu_iter_over_floor",
    "mu32_iter_over_mu_iter",
    "mu_masked_over_unmasked",
    "mu_masked_over_six_product_floor",
    "fastest_masked_over_unmasked",
    "imputed_iter_over_unmasked.hals",
    "imputed_iter_over_unmasked.ahals",
    "hals_imputed_over_three_product_floor",
    "ahals_imputed_over_three_product_floor",
    "mu_time_to_target_over_best",
    "mu_iter_over_sklearn_mu",
    "best_time_to_target_over_sklearn_cd",
    "best_time_to_target_over_sklearn_mu",
    "kl_iter_over_sklearn_kl",
    "hals_penalized_over_unpenalized",
)


def test_benchmark_ratios_by_hand():
    """The ratios of made-up timings, worked out by hand; a solver that never reached the target (NaN) is not the
    best, and without masked or scikit-learn timings their ratios are not made up."""
    from experiments.benchmark import benchmark_ratios

    timings = {
        "floor_seconds": 0.2,
        "mu_iter_seconds": 0.6,
        "mu32_iter_seconds": 0.3,
        "fastest_iter_seconds": 0.4,
        "mu_masked_iter_seconds": 1.8,
        "fastest_masked_iter_seconds": 1.0,
        "sklearn_mu_iter_seconds": 1.2,
        "six_product_floor_seconds": 0.9,
        "three_product_floor_seconds": 0.5,
        "hals_iter_seconds": 0.4,
        "hals_imputed_iter_seconds": 0.6,
        "kl_iter_seconds": 0.9,
        "sklearn_kl_iter_seconds": 1.8,
        "hals_unpenalized_iter_seconds": 0.4,
        "hals_penalized_iter_seconds": 0.5,
    }
    to_target = {"mu": 3.0, "hals": 1.5, "ahals": float("nan"), "sklearn_cd": 6.0, "sklearn_mu": 12.0}
    ratios = benchmark_ratios(timings, to_target, ["mu", "hals", "ahals"])
    assert ratios == pytest.approx(
        {
            "mu_iter_over_floor": 3.0,
            "mu32_iter_over_mu_iter": 0.5,
            "mu_masked_over_unmasked": 3.0,
            "mu_masked_over_six_product_floor": 2.0,
            "fastest_masked_over_unmasked": 2.5,
            "imputed_iter_over_unmasked.hals": 1.5,
            "hals_imputed_over_three_product_floor": 1.2,
            "mu_time_to_target_over_best": 2.0,
            "mu_iter_over_sklearn_mu": 0.5,
            "best_time_to_target_over_sklearn_cd": 0.25,
            "best_time_to_target_over_sklearn_mu": 0.125,
            "kl_iter_over_sklearn_kl": 0.5,
            "hals_penalized_over_unpenalized": 1.25,
        },
        rel=1e-12,
    )
    plain = {key: timings[key] for key in ("floor_seconds", "mu_iter_seconds", "mu32_iter_seconds")}
    assert benchmark_ratios(plain, {"mu": 3.0, "hals": 1.5}, ["mu", "hals"]) == pytest.approx(
        {"mu_iter_over_floor": 3.0, "mu32_iter_over_mu_iter": 0.5, "mu_time_to_target_over_best": 2.0}, rel=1e-12
    )


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
