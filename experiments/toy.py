"""Spec Task 1: the multiplicative updates on the toy matrices A1..A4 (and what is unique about them)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from experiments.shared import fit_and_log
from nmf_lab import numerical_rank
from nmf_lab.presentation.figures import error_curve_panels

UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
"""u = 2^-53, the unit roundoff of float64."""


def run(settings, run) -> None:
    """Factorize one toy matrix; print and log W, H, WH and the final error as a table."""
    A = settings.data.load()
    result = fit_and_log(A, settings, run)
    run.log_metrics(
        {"numerical_rank": numerical_rank(A), "error_rounding_bound": rounding_bound(A, result.W, result.H)}
    )
    table = factors_table(settings.data.matrix, A, result)
    print(table)
    run.log_text(table, "tables/factors.md")


def rounding_bound(A: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """How far a computed ``||A - WH||_F`` may be from the exact one, from rounding alone.

    With W, H >= 0 each entry of ``fl(W H)`` is within ``gamma_d (W H)_ij`` of ``(W H)_ij``
    (``gamma_d = d u / (1 - d u)``, Higham, Accuracy and Stability, 3.5); the subtraction and the norm add
    about ``2 u`` relative. So the computed error is within ``(d + 2) u (||W H||_F + ||A||_F)``.
    """
    d = W.shape[1]
    return float((d + 2) * UNIT_ROUNDOFF * (np.linalg.norm(W @ H) + np.linalg.norm(A)))


def factors_table(name: str, A: np.ndarray, result) -> str:
    """W, H, WH and ||A - WH||_F as Markdown."""
    d = result.W.shape[1]
    return (
        "\n\n".join(
            [
                f"### {name}, d = {d}, {result.n_iter} iterations",
                _matrix_md("A", A),
                _matrix_md("W", result.W),
                _matrix_md("H", result.H),
                _matrix_md("WH", result.W @ result.H),
                f"||A - WH||_F = {result.final_error:.6g}",
            ]
        )
        + "\n"
    )


def _matrix_md(name: str, M: np.ndarray) -> str:
    header = "| " + name + " | " + " | ".join(f"col {j + 1}" for j in range(M.shape[1])) + " |"
    rule = "|---" * (M.shape[1] + 1) + "|"
    rows = [f"| row {i + 1} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for i, row in enumerate(M)]
    return "\n".join([header, rule, *rows])


def summarize(children, parent) -> None:
    """Task 1d-1g at a glance: error curves per matrix for d = 1, 2, 3 (log axis), the table of final
    errors per matrix, d and seed, and whether the error ever rose beyond rounding (equation 17 says it never
    does for delta = 0; with Algorithm 1's delta > 0 it can, by tiny amounts, once the error is near delta).

    Parent metrics: ``max_error_increase``, the largest rise ``e[k+1] - e[k]`` over all children, and
    ``max_relative_error_increase``, the largest ``(e[k+1] - e[k]) / e[k]``; ``n_rises_above_rounding``, the
    children with a rise larger than their ``error_rounding_bound`` (:func:`rounding_bound`).
    """
    panels: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    styles: dict[str, dict] = {}
    children = sorted(children, key=_key)
    delta = children[0].config.solver.get("delta", 0.0)
    seeds = sorted({child.config.seed for child in children})
    rows = []
    max_increase = max_relative = 0.0
    above = 0
    for child in children:
        matrix, d, seed = _key(child)
        errors = child.curve("error")
        label = f"d = {d}, seed {seed}"
        panels[matrix][label] = errors
        styles[label] = {"color": f"C{d - 1}", "linestyle": ["-", "--", ":", "-."][seeds.index(seed) % 4]}
        rise = float(np.max(np.diff(errors), initial=0.0))
        relative = float(np.max(np.diff(errors) / np.where(errors[:-1] > 0, errors[:-1], np.inf), initial=0.0))
        bound = child.metrics["error_rounding_bound"]
        above += rise > bound
        max_increase, max_relative = max(max_increase, rise), max(max_relative, relative)
        verdict = "no" if rise == 0 else ("**yes**" if rise > bound else "within rounding")
        rows.append(
            f"| {matrix} | {d} | {seed} | {child.metrics['final_error']:.6g} | {rise:.3g} | {bound:.3g} | {verdict} |"
        )
    figure = error_curve_panels(dict(panels), title="Task 1g: error per iteration for each matrix", styles=styles)
    parent.log_figure(figure, "figures/error_curves.png")
    table = (
        "| matrix | d | seed | final error | largest rise | rounding bound | rise beyond rounding |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "The errors are the exact norms ||A - W_k H_k||_F computed in float64. A computed norm may differ from\n"
        "the true one by rounding alone, at most (d + 2) u (||W_k H_k||_F + ||A||_F) with u = 2^-53\n"
        "(the rounding bound); a rise within it is not a rise of the error.\n\n"
        "Equation 17 (the error never rises) holds for Lee and Seung's updates without delta. Algorithm 1 adds\n"
        f"delta = {delta:g} to the denominators; each step is then a descent step only while the error is well\n"
        "above delta, and near it the error can rise a little (about 1e-12 at errors near 1e-9 here). With\n"
        "solver.delta=0 no rise exceeds the rounding bound.\n"
    )
    parent.log_text(table, "tables/final_errors.md")
    parent.log_metrics(
        {
            "max_error_increase": max_increase,
            "max_relative_error_increase": max_relative,
            "n_rises_above_rounding": above,
        }
    )


def _key(child) -> tuple[str, int, int]:
    return child.config.data.matrix, child.config.rank, child.config.seed
