"""The benchmark: how fast nmf-lab's solvers are, against the BLAS floor and scikit-learn.

Everything is measured in this one process from the same initial guess (the job's ``init`` and ``seed``):

- the time to reach a target error (nmf-lab mu's after ``target_iter`` iterations) for every solver;
- the floor: the two products ``W^T A`` and ``A H^T`` that any of these methods computes per iteration;
- seconds per iteration (median) of nmf-lab's ``mu`` in float64 and float32 and of the fastest solver,
  each also with a random ``missing`` fraction of the entries masked, and of scikit-learn's
  ``NMF(solver="mu")`` and ``NMF(solver="cd")`` with ``init="custom"``;
- each masked problem kind against its own floor: the exact weighted ``mu`` needs six m x n x d products per
  iteration (``W^T (M * A)``, ``W H`` twice, ``W^T P``, ``(M * A) H^T``, ``P H^T``), the imputed problem
  three (``W^T A``, ``A H^T`` and ``W H`` to fill the holes); the solvers of ``imputed`` are timed unmasked
  and imputed (``imputed_iter_over_unmasked.<solver>``, ``<solver>_imputed_over_three_product_floor``);
- the losses and penalties: nmf-lab's KL multiplicative update (``loss="kl"``, its exact divergence logged
  every iteration) against scikit-learn's (``beta_loss="kullback-leibler"``, which computes none), per
  iteration and in the divergence both reach after ``2 * timing_iterations`` iterations from the same start
  (``kl_iter_over_sklearn_kl``, ``kl_divergence_over_sklearn_kl``), and ``hals`` with an L1/L2 penalty
  against ``hals`` without (``hals_penalized_over_unpenalized``).

Timings are wall-clock seconds (``time.perf_counter``); ratios compare timings of the same run, taken
round-robin (:func:`interleaved_seconds`) so that load on the machine shifts them alike.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from experiments.shared import load_matrix
from nmf_lab import fit_nmf
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.inits import initial_factors
from nmf_lab.core.solvers import solver_names
from nmf_lab.presentation.figures import error_against_time


@dataclass
class BenchmarkSettings:
    """``benchmark``: what the benchmark measures (all timings in one process, one initial guess).

    ``solvers``: nmf-lab's solvers to race to the target, with their default options (``name`` or
    ``name:float32``); ``sklearn``: also time scikit-learn's NMF ("mu" and "cd"); ``missing``: the fraction of
    entries a mask hides for the masked timings of mu and the fastest solver (0: none); ``repeats``: timings
    are the median of this many rounds; ``timing_iterations``: iterations per timing of seconds per iteration;
    ``target_iter``: the target error is nmf-lab mu's error after this many iterations; ``time_limit``:
    seconds a solver may take to reach it; ``imputed``: the solvers timed with the imputed mask
    (``missing="impute"``) against themselves unmasked and against the three-product floor; ``kl``: time the
    KL multiplicative update (against scikit-learn's when ``sklearn``); ``penalty``: ``alpha_W`` of the
    penalized ``hals`` timed against the unpenalized one (``l1_ratio = 0.5``; 0: not timed).
    """

    solvers: list[str] = field(
        default_factory=lambda: ["mu", "hals", "ahals", "ahals_extrapolated", "ahals_extrapolated:float32"]
    )
    sklearn: bool = True
    missing: float = 0.3
    repeats: int = 5
    timing_iterations: int = 10
    target_iter: int = 1000
    time_limit: float = 900.0
    imputed: list[str] = field(default_factory=lambda: ["hals", "ahals"])
    kl: bool = True
    penalty: float = 0.1

    def check(self) -> None:
        known = solver_names()
        if any(name not in known for name in self.imputed):
            raise InvalidOption("imputed", self.imputed, f"a list of {', '.join(known)}")
        unknown = [
            entry
            for entry in self.solvers
            if entry.partition(":")[0] not in known or entry.partition(":")[2] not in ("", "float32", "float64")
        ]
        if unknown or not self.solvers:
            raise InvalidOption(
                "solvers",
                self.solvers,
                f"a non-empty list of {', '.join(known)}, each optionally with :float32 or :float64",
            )
        for key, minimum in (("repeats", 1), ("timing_iterations", 2), ("target_iter", 1)):
            if getattr(self, key) < minimum:
                raise InvalidOption(key, getattr(self, key), f"an integer >= {minimum}")
        if not self.time_limit > 0:
            raise InvalidOption("time_limit", self.time_limit, "a number of seconds > 0")
        if not 0 <= self.missing < 1:
            raise InvalidOption("missing", self.missing, "a fraction in [0, 1) (0: no masked timings)")
        if not self.penalty >= 0:
            raise InvalidOption("penalty", self.penalty, "a number >= 0 (0: no penalized timing)")


SETTINGS = {"benchmark": BenchmarkSettings}
"""The config node of this study's own settings."""
HEADLINE = ("mu_iter_over_floor", "mu_time_to_target_over_best", "best_time_to_target_over_sklearn_cd")
"""The ratios the CLI prints and the run's description shows first (below 1: the first is faster)."""


def run(settings, run) -> None:
    bench = settings.benchmark
    A = load_matrix(settings.data)
    d, norm = settings.rank, float(np.linalg.norm(A))
    W0, H0 = initial_factors(A, d, settings.init, settings.seed)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # 1. The race: seconds to reach nmf-lab mu's error after target_iter iterations, every solver alike.
    reference = fit_nmf(A, d, init=(W0, H0), solver="mu", max_iter=bench.target_iter)
    target = float(reference.errors[bench.target_iter])
    run.log_metrics({"target_error": target, "target_relative_error": target / norm})
    to_target: dict[str, float] = {}
    for solver in bench.solvers:  # "name" or "name:float32"
        name, _, dtype = solver.partition(":")
        result = (
            reference
            if solver == "mu"
            else fit_nmf(
                A,
                d,
                init=(W0, H0),
                solver=name,
                dtype=dtype or None,
                max_iter=10**7,
                time_limit=bench.time_limit,
                callback=lambda k, error: error <= target,
            )
        )
        curves[solver] = (result.times, result.errors / norm)
        to_target[solver] = first_time_below(result.times, result.errors, target)
    best = min(bench.solvers, key=lambda s: np.inf if np.isnan(to_target[s]) else to_target[s])

    # 2. Seconds per iteration, every contender timed once per round (see interleaved_seconds).
    mask = None
    if bench.missing > 0:
        mask = np.random.default_rng(settings.seed).uniform(size=A.shape) >= bench.missing
        run.log_metrics({"missing_fraction": 1.0 - float(mask.mean())})
    timings = seconds_per_iteration(A, W0, H0, bench, fastest=best, mask=mask)

    if bench.sklearn:
        for solver in ("mu", "cd"):
            seconds, errors = sklearn_time_to_target(
                A,
                W0,
                H0,
                solver,
                target,
                bench.time_limit,
                timings[f"sklearn_{solver}_call_seconds"],
                timings[f"sklearn_{solver}_iter_seconds"],
            )
            curves[f"sklearn_{solver}"] = (seconds, errors / norm)
            to_target[f"sklearn_{solver}"] = first_time_below(seconds, errors, target)

    if bench.kl and bench.sklearn:  # the divergence each reaches after 2 k iterations from the same start
        k2 = 2 * bench.timing_iterations
        ours = fit_nmf(A, d, init=(W0, H0), loss="kl", max_iter=k2).final_error
        theirs = sklearn_divergence(A, *sklearn_nmf(A, W0, H0, "mu", k2, beta_loss="kullback-leibler"), 1.0)
        run.log_metrics({"kl_divergence": ours, "sklearn_kl_divergence": theirs})
        timings["kl_divergence_over_sklearn_kl"] = ours / theirs

    ratios = benchmark_ratios(timings, to_target, bench.solvers)
    run.set_tags({"nmf_lab.benchmark.fastest_solver": best, "nmf_lab.benchmark.target_iter": bench.target_iter})
    run.log_metrics({**timings, **{f"time_to_target.{k}": v for k, v in to_target.items()}, **ratios})
    markdown, csv_text = benchmark_table(timings, to_target, ratios)
    run.log_text(markdown, "tables/benchmark.md")
    run.log_text(csv_text, "tables/benchmark.csv")
    print(markdown)
    figure = error_against_time(
        curves,
        target=target / norm,
        title=f"Relative error against time: A is {A.shape[0]} x {A.shape[1]}, d = {d}",
    )
    run.log_figure(figure, "figures/error_against_time.png")


def first_time_below(seconds: np.ndarray, errors: np.ndarray, target: float) -> float:
    """The first of ``seconds`` at which ``errors`` is <= ``target`` (NaN if it never is)."""
    reached = np.flatnonzero(errors <= target)
    return float(seconds[reached[0]]) if reached.size else float("nan")


def interleaved_seconds(contenders: dict[str, Callable[[], list[float]]], repeats: int) -> dict[str, float]:
    """The median seconds of each contender, timed round-robin: after one warm-up round, each of ``repeats``
    rounds calls every contender once, in turn. A contender returns the seconds it measured (one call, or
    one per iteration). Load from another job on the machine then slows every contender alike, instead of
    whichever happened to be timed while it ran."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(repeats + 1):
        for name, contender in contenders.items():
            seconds = contender()
            if round_ > 0:
                samples[name].extend(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def timed(work: Callable[[], object]) -> Callable[[], list[float]]:
    """A contender that times one call of ``work``."""

    def contender() -> list[float]:
        start = time.perf_counter()
        work()
        return [time.perf_counter() - start]

    return contender


def per_iteration(A, W0, H0, bench, **fit_options) -> Callable[[], list[float]]:
    """A contender: ``timing_iterations`` iterations of :func:`nmf_lab.fit_nmf`, the seconds of each but the
    first (it warms caches up)."""

    def contender() -> list[float]:
        result = fit_nmf(A, W0.shape[1], init=(W0, H0), max_iter=bench.timing_iterations, **fit_options)
        return list(np.diff(result.times)[1:])

    return contender


def seconds_per_iteration(A, W0, H0, bench, *, fastest: str, mask=None) -> dict[str, float]:
    """The timings: the two-product floor (float64, float32), nmf-lab's mu (float64, float32), the fastest
    solver, both with ``mask`` when given, and scikit-learn's mu and cd, all interleaved.

    scikit-learn's seconds per iteration come from calls with k and 2k iterations: per iteration
    ``(T(2k) - T(k)) / k`` and its fixed cost per call ``T(k) - k * per iteration``, so that the fixed cost
    (input checks, set-up) does not count as iterations.
    """
    A32, W32, H32 = A.astype(np.float32), W0.astype(np.float32), H0.astype(np.float32)
    contenders = {
        "floor_seconds": timed(lambda: (W0.T @ A, A @ H0.T)),
        "floor32_seconds": timed(lambda: (W32.T @ A32, A32 @ H32.T)),
        "mu_iter_seconds": per_iteration(A, W0, H0, bench),
        "mu32_iter_seconds": per_iteration(A, W0, H0, bench, dtype=np.float32),
    }
    name, _, dtype = fastest.partition(":")
    contenders["fastest_iter_seconds"] = per_iteration(A, W0, H0, bench, solver=name, dtype=dtype or None)
    if mask is not None:
        contenders["mu_masked_iter_seconds"] = per_iteration(A, W0, H0, bench, mask=mask)
        contenders["fastest_masked_iter_seconds"] = per_iteration(
            A, W0, H0, bench, solver=name, dtype=dtype or None, mask=mask
        )
        masked_A = np.where(mask, A, 0)
        contenders["six_product_floor_seconds"] = timed(lambda: masked_products(masked_A, mask, W0, H0, fill=False))
        contenders["three_product_floor_seconds"] = timed(lambda: masked_products(masked_A, mask, W0, H0, fill=True))
        for solver in bench.imputed:
            contenders[f"{solver}_iter_seconds"] = per_iteration(A, W0, H0, bench, solver=solver)
            contenders[f"{solver}_imputed_iter_seconds"] = per_iteration(
                A, W0, H0, bench, solver=solver, mask=mask, missing="impute"
            )
    if bench.kl:
        contenders["kl_iter_seconds"] = per_iteration(A, W0, H0, bench, loss="kl")
    if bench.penalty > 0:
        contenders["hals_unpenalized_iter_seconds"] = per_iteration(A, W0, H0, bench, solver="hals")
        contenders["hals_penalized_iter_seconds"] = per_iteration(
            A, W0, H0, bench, solver="hals", alpha_W=bench.penalty, l1_ratio=0.5
        )
    k = bench.timing_iterations
    sklearn_runs = {"mu": ("mu", {}), "cd": ("cd", {}), "kl": ("mu", {"beta_loss": "kullback-leibler"})}
    if not bench.kl:
        del sklearn_runs["kl"]
    for name, (solver, kwargs) in sklearn_runs.items() if bench.sklearn else ():
        for key, iterations in (("k", k), ("2k", 2 * k)):
            contenders[f"sklearn_{name}_{key}"] = timed(
                lambda solver=solver, kwargs=kwargs, iterations=iterations: sklearn_nmf(
                    A, W0, H0, solver, iterations, **kwargs
                )
            )
    timings = interleaved_seconds(contenders, bench.repeats)
    for solver in sklearn_runs if bench.sklearn else ():
        once, twice = timings.pop(f"sklearn_{solver}_k"), timings.pop(f"sklearn_{solver}_2k")
        if twice <= once:  # timing noise swamped the iterations: count the whole call instead
            timings[f"sklearn_{solver}_iter_seconds"], timings[f"sklearn_{solver}_call_seconds"] = twice / (2 * k), 0.0
        else:
            timings[f"sklearn_{solver}_iter_seconds"] = (twice - once) / k
            timings[f"sklearn_{solver}_call_seconds"] = max(once - k * (twice - once) / k, 0.0)
    return timings


def masked_products(A, mask, W, H, *, fill: bool):
    """The m x n x d products an iteration with a mask cannot do without: with ``fill`` the imputed problem's
    three (``W H`` to fill the holes, then ``W^T A``, ``A H^T``), else exact weighted mu's six."""
    if fill:
        filled = np.where(mask, A, W @ H)
        return W.T @ filled, filled @ H.T
    P = W @ H
    P *= mask
    first = (W.T @ A, W.T @ P)
    P = W @ H
    P *= mask
    return first, A @ H.T, P @ H.T


def sklearn_nmf(A, W, H, solver: str, max_iter: int, **kwargs):
    """scikit-learn's NMF of A (samples are rows there: W is m x d, H is d x n, as here) from (W, H)."""
    from sklearn.decomposition import NMF

    model = NMF(n_components=W.shape[1], init="custom", solver=solver, max_iter=max_iter, tol=0.0, **kwargs)
    W_new = model.fit_transform(A, W=W.copy(), H=H.copy())
    return W_new, model.components_


def sklearn_divergence(A, W, H, beta: float) -> float:
    """scikit-learn's ``_beta_divergence`` of ``A`` and ``W H``."""
    from sklearn.decomposition._nmf import _beta_divergence

    return float(_beta_divergence(A, W, H, beta))


def sklearn_time_to_target(A, W, H, solver, target, time_limit, overhead_per_call=0.0, per_iteration=0.0):
    """Seconds and errors of scikit-learn's NMF run in short chunks of iterations, warm-started from the
    last chunk, with the error measured outside the clock after each chunk (scikit-learn reports none),
    and the fixed cost of each call (:func:`seconds_per_iteration`) taken off, but never below the
    measured ``per_iteration`` cost of the chunk's iterations. Chunks grow with the
    iterations done (10 %), so the first time below ``target`` is late by at most 10 %."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    seconds, errors = [0.0], [float(np.linalg.norm(A - W @ H))]
    done, elapsed = 0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        while errors[-1] > target and elapsed < time_limit:
            chunk = max(1, done // 10)
            start = time.perf_counter()
            W, H = sklearn_nmf(A, W, H, solver, chunk)
            elapsed += max(time.perf_counter() - start - overhead_per_call, chunk * per_iteration)
            done += chunk
            seconds.append(elapsed)
            errors.append(float(np.linalg.norm(A - W @ H)))
    return np.array(seconds), np.array(errors)


def benchmark_ratios(timings: dict[str, float], to_target: dict[str, float], solvers) -> dict[str, float]:
    """The ratios the targets speak of (below 1 is faster for ``x_over_y``)."""
    ratios = {
        "mu_iter_over_floor": timings["mu_iter_seconds"] / timings["floor_seconds"],
        "mu32_iter_over_mu_iter": timings["mu32_iter_seconds"] / timings["mu_iter_seconds"],
    }
    if "mu_masked_iter_seconds" in timings:
        ratios["mu_masked_over_unmasked"] = timings["mu_masked_iter_seconds"] / timings["mu_iter_seconds"]
        ratios["mu_masked_over_six_product_floor"] = (
            timings["mu_masked_iter_seconds"] / timings["six_product_floor_seconds"]
        )
        ratios["fastest_masked_over_unmasked"] = (
            timings["fastest_masked_iter_seconds"] / timings["fastest_iter_seconds"]
        )
        for key in [key for key in timings if key.endswith("_imputed_iter_seconds")]:
            solver = key.removesuffix("_imputed_iter_seconds")
            ratios[f"imputed_iter_over_unmasked.{solver}"] = timings[key] / timings[f"{solver}_iter_seconds"]
            ratios[f"{solver}_imputed_over_three_product_floor"] = timings[key] / timings["three_product_floor_seconds"]
    best = np.nanmin([to_target[s] for s in solvers])
    ratios["mu_time_to_target_over_best"] = to_target["mu"] / best if "mu" in to_target else float("nan")
    if "sklearn_kl_iter_seconds" in timings and "kl_iter_seconds" in timings:
        ratios["kl_iter_over_sklearn_kl"] = timings["kl_iter_seconds"] / timings["sklearn_kl_iter_seconds"]
    if "hals_penalized_iter_seconds" in timings:
        ratios["hals_penalized_over_unpenalized"] = (
            timings["hals_penalized_iter_seconds"] / timings["hals_unpenalized_iter_seconds"]
        )
    if "sklearn_mu_iter_seconds" in timings:
        ratios["mu_iter_over_sklearn_mu"] = timings["mu_iter_seconds"] / timings["sklearn_mu_iter_seconds"]
        ratios["best_time_to_target_over_sklearn_cd"] = best / to_target["sklearn_cd"]
        ratios["best_time_to_target_over_sklearn_mu"] = best / to_target["sklearn_mu"]
    return ratios


def benchmark_table(timings, to_target, ratios) -> tuple[str, str]:
    """All measurements as (Markdown, CSV) tables of name and value."""
    rows = [*timings.items(), *((f"time_to_target.{k}", v) for k, v in to_target.items()), *ratios.items()]
    markdown = "| measurement | value |\n|---|---|\n" + "".join(f"| {k} | {v:.6g} |\n" for k, v in rows)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([("measurement", "value"), *rows])
    return markdown, buffer.getvalue()
