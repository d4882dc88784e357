"""Which start wins? Every initial guess (``init``) with every solver on the same matrix: the error curves, and
the error after 10, 100 and 1000 iterations."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from experiments.shared import fit_and_log, load_matrix
from nmf_lab.core.inits import INITS, initial_factors
from nmf_lab.presentation.figures import error_curve_panels

CHECKPOINTS = (10, 100, 1000)
"""Iterations after which the errors are compared."""
HEADLINE = ("error_at_100", "final_error", "init_seconds")
"""The metrics the CLI prints and a run's description shows first."""


def run(settings, run) -> None:
    """One fit from ``settings.init``; logs ``init_seconds`` (the time the initial guess takes, which the
    error curve's clock leaves out) and ``error_at_<k>`` for each checkpoint the fit reached."""
    A = load_matrix(settings.data)
    start = time.perf_counter()
    initial_factors(A, settings.rank, settings.init, settings.seed)
    init_seconds = time.perf_counter() - start
    result = fit_and_log(A, settings, run)
    run.log_metrics({"init_seconds": init_seconds, **errors_at(result.errors)})


def errors_at(errors: np.ndarray) -> dict[str, float]:
    """``error_at_<k>``: the smallest error of iterations 0..k (what a fit stopped after k iterations returns,
    for the solvers whose curve may rise too), for each checkpoint k the curve reaches."""
    best = np.minimum.accumulate(errors)
    return {f"error_at_{k}": float(best[k]) for k in CHECKPOINTS if k < errors.size}


def summarize(children, parent) -> None:
    """The error curves of every init, one panel per solver; a table of the errors at the checkpoints with
    each init's ratio to the random start; per solver the tag ``nmf_lab.inits.best.<solver>`` (the init with
    the lowest error at the last checkpoint) and the metric ``random_over_best.<solver>`` (how much lower)."""
    by_solver: dict[str, dict[str, object]] = defaultdict(dict)
    for child in children:
        by_solver[child.config.solver.name][child.config.init] = child
    panels, rows, best_inits = {}, [], {}
    styles = {init: {"color": f"C{i}"} for i, init in enumerate(INITS)}
    for solver, runs in sorted(by_solver.items()):
        inits = [init for init in INITS if init in runs]
        panels[solver] = {init: runs[init].curve("error") for init in inits}
        checkpoints = [k for k in CHECKPOINTS if all(f"error_at_{k}" in runs[i].metrics for i in inits)]
        if not checkpoints:
            continue
        last = f"error_at_{checkpoints[-1]}"
        best = min(inits, key=lambda init: runs[init].metrics[last])
        best_inits[solver] = best
        if "random" in runs:
            parent.log_metrics({f"random_over_best.{solver}": runs["random"].metrics[last] / runs[best].metrics[last]})
        for init in inits:
            metrics = runs[init].metrics
            errors = " | ".join(f"{metrics[f'error_at_{k}']:.4f}" for k in checkpoints)
            ratio = metrics[last] / runs["random"].metrics[last] if "random" in runs else float("nan")
            mark = " **best**" if init == best else ""
            rows.append(f"| {solver} | {init}{mark} | {errors} | {ratio:.3f} | {metrics['init_seconds']:.3f} |")
    header = " | ".join(f"error after {k}" for k in CHECKPOINTS)
    table = (
        f"| solver | init | {header} | / random | init seconds |\n|---|---|{'---|' * len(CHECKPOINTS)}---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    parent.log_text(table, "tables/inits.md")
    parent.set_tags({f"nmf_lab.inits.best.{solver}": init for solver, init in best_inits.items()})
    figure = error_curve_panels(panels, title="Error per iteration from each initial guess", styles=styles)
    parent.log_figure(figure, "figures/error_curves_by_init.png")
