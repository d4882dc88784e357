"""Spec Task 1: the multiplicative updates on the toy matrices A1..A4 (and what is unique about them)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from experiments.fitting import fit
from nmf_lab import numerical_rank
from nmf_lab.data.toy import toy_matrix
from nmf_lab.figures import error_curve_panels
from nmf_lab.tracking import log_factorization


def run(settings, run) -> None:
    """Factorize one toy matrix; print and log W, H, WH and the final error as a table."""
    A = toy_matrix(settings.data.matrix)
    result = fit(A, settings)
    log_factorization(run, A, result)
    run.log_metrics({"numerical_rank": numerical_rank(A)})
    table = factors_table(settings.data.matrix, A, result)
    print(table)
    run.log_text(table, "tables/factors.md")


def factors_table(name: str, A: np.ndarray, result) -> str:
    """W, H, WH and ||A - WH||_F as Markdown."""
    d = result.W.shape[1]
    return "\n\n".join(
        [
            f"### {name}, d = {d}, {result.n_iter} iterations",
            _matrix_md("A", A),
            _matrix_md("W", result.W),
            _matrix_md("H", result.H),
            _matrix_md("WH", result.W @ result.H),
            f"||A - WH||_F = {result.final_error:.6g}",
        ]
    ) + "\n"


def _matrix_md(name: str, M: np.ndarray) -> str:
    header = "| " + name + " | " + " | ".join(f"col {j + 1}" for j in range(M.shape[1])) + " |"
    rule = "|---" * (M.shape[1] + 1) + "|"
    rows = [
        f"| row {i + 1} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for i, row in enumerate(M)
    ]
    return "\n".join([header, rule, *rows])


def summarize(children, parent) -> None:
    """Task 1d-1g at a glance: error curves per matrix for d = 1, 2, 3 (log axis), the table of final
    errors per matrix, d and seed, and ``max_error_increase``, the largest rise of the error between
    two iterations over all children (equation 17 says it is 0)."""
    panels: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    styles: dict[str, dict] = {}
    seeds = sorted({_key(child)[2] for child in children})
    rows = []
    max_increase = 0.0
    for child in sorted(children, key=_key):
        matrix, d, seed = _key(child)
        errors = child.curve("error")
        label = f"d = {d}, seed {seed}"
        panels[matrix][label] = errors
        styles[label] = {"color": f"C{d - 1}", "linestyle": ["-", "--", ":", "-."][seeds.index(seed) % 4]}
        rows.append(f"| {matrix} | {d} | {seed} | {child.metrics['final_error']:.6g} |")
        if errors.size > 1:
            max_increase = max(max_increase, float(np.max(np.diff(errors))))
    figure = error_curve_panels(
        dict(panels), title="Task 1g: error per iteration for each matrix", styles=styles
    )
    parent.log_figure(figure, "figures/error_curves.png")
    table = "| matrix | d | seed | final error |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    parent.log_text(table, "tables/final_errors.md")
    parent.log_metrics({"max_error_increase": max_increase})


def _key(child) -> tuple[str, int, int]:
    return child.params["data.matrix"], int(child.params["rank"]), int(child.params["seed"])
