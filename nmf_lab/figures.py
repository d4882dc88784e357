"""Figures: functions from arrays to a matplotlib ``Figure``. No tracking, no pyplot state.

Figures are built with ``matplotlib.figure.Figure`` directly, so nothing depends on a GUI backend and
nothing needs closing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

ERROR_LABEL = r"$\|A - W_k H_k\|_F$"


def error_curves(
    curves: Mapping[str, np.ndarray],
    *,
    title: str,
    ax=None,
    legend_title: str | None = None,
    styles: Mapping[str, dict] | None = None,
) -> Figure:
    """Error against iteration on a log y-axis, one line per entry of ``curves`` (label -> errors).

    ``styles`` optionally maps a label to matplotlib line properties (colour, line style).
    """
    figure = None
    if ax is None:
        figure = Figure(figsize=(6.4, 4.2), layout="constrained")
        ax = figure.add_subplot()
    for label, errors in curves.items():
        style = {"linewidth": 1.4, **(styles or {}).get(label, {})}
        ax.semilogy(np.arange(len(errors)), _positive(errors), label=label, **style)
    ax.set(title=title, xlabel="iteration k", ylabel=ERROR_LABEL)
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1 or legend_title:
        ax.legend(title=legend_title, fontsize="small")
    return figure if figure is not None else ax.figure


def error_curve_panels(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    *,
    title: str,
    legend_title: str | None = None,
    styles: Mapping[str, dict] | None = None,
) -> Figure:
    """One log-scale error plot per panel (e.g. per matrix), side by side, sharing the legend style."""
    n = len(panels)
    columns = min(n, 2)
    rows = -(-n // columns)
    figure = Figure(figsize=(5.6 * columns, 3.9 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, curves) in zip(axes, panels.items()):
        error_curves(curves, title=name, ax=ax, legend_title=legend_title, styles=styles)
    for ax in axes[n:]:
        ax.set_visible(False)
    figure.suptitle(title)
    return figure


def heatmaps(
    panels: Sequence[tuple[str, np.ndarray, Sequence[str], Sequence[str]]], *, title: str
) -> Figure:
    """Labelled heat maps with the value in each cell: ``(title, matrix, row labels, column labels)``."""
    widths = [max(2.0, 0.75 * matrix.shape[1]) for _, matrix, _, _ in panels]
    height = max(2.5, 0.55 * max(matrix.shape[0] for _, matrix, _, _ in panels) + 1.3)
    figure = Figure(figsize=(sum(widths) + 3.0, height), layout="constrained")
    axes = figure.subplots(1, len(panels), width_ratios=widths, squeeze=False)[0]
    for ax, (name, matrix, row_labels, col_labels) in zip(axes, panels):
        image = ax.imshow(matrix, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks(range(matrix.shape[1]), col_labels, rotation=45, ha="right", fontsize="small")
        ax.set_yticks(range(matrix.shape[0]), row_labels, fontsize="small")
        threshold = (np.nanmax(matrix) + np.nanmin(matrix)) / 2
        for (i, j), value in np.ndenumerate(matrix):
            color = "black" if value > threshold else "white"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="x-small", color=color)
    figure.suptitle(title)
    return figure


def _positive(errors: np.ndarray) -> np.ndarray:
    """Exact zeros cannot be drawn on a log axis: show them as gaps instead of failing."""
    errors = np.asarray(errors, dtype=np.float64)
    return np.where(errors > 0, errors, np.nan)
