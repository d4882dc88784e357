"""Figures of a search (an Optuna study): its optimization history and its parameters' importances. Functions
from plain values to a matplotlib ``Figure`` (no Optuna here: :mod:`nmf_lab.harness.search` reads the study)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

STATE_STYLES = {
    "COMPLETE": {"marker": "o", "color": "tab:blue", "label": "complete"},
    "PRUNED": {"marker": "x", "color": "tab:orange", "label": "pruned (where its run stopped)"},
}


def optimization_history(
    numbers: Sequence[int],
    values: Sequence[float | None],
    states: Sequence[str],
    *,
    objective: str,
    direction: str,
    title: str,
) -> Figure:
    """Each trial's objective value against its number (complete trials as dots, pruned ones as crosses at
    their run's value, failed ones as ticks on the x-axis) and the best complete value so far as a step line."""
    figure = Figure(figsize=(6.4, 4.2))
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.22, top=0.88)
    ax = figure.add_subplot()
    numbers_arr = np.asarray(numbers, dtype=float)
    values_arr = np.array([np.nan if v is None else v for v in values], dtype=float)
    states_arr = np.asarray(states)
    for state, style in STATE_STYLES.items():
        chosen = (states_arr == state) & np.isfinite(values_arr)
        if chosen.any():
            ax.scatter(numbers_arr[chosen], values_arr[chosen], s=28, zorder=3, **style)
    complete = (states_arr == "COMPLETE") & np.isfinite(values_arr)
    if complete.any():
        best = np.where(complete, values_arr, np.inf if direction == "minimize" else -np.inf)
        best = np.minimum.accumulate(best) if direction == "minimize" else np.maximum.accumulate(best)
        shown = np.isfinite(best)
        ax.step(numbers_arr[shown], best[shown], where="post", color="tab:red", linewidth=1.4, label="best so far")
    failed = states_arr == "FAIL"
    if failed.any():  # no value: a tick on the x-axis
        ax.plot(
            numbers_arr[failed],
            np.zeros(failed.sum()),
            "|",
            color="black",
            markersize=16,
            markeredgewidth=2,
            label="failed",
            transform=ax.get_xaxis_transform(),
        )
    shown_values = values_arr[np.isfinite(values_arr)]
    if shown_values.size and shown_values.min() > 0 and shown_values.max() > 100 * shown_values.min():
        ax.set_yscale("log")  # values over decades (errors): the best ones stay apart
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{objective} ({direction})")
    ax.set_title(wrapped(title), fontsize="medium")
    ax.grid(True, alpha=0.3)
    if len(numbers):
        ax.set_xlim(min(numbers) - 0.5, max(numbers) + 0.5)
    # below the axes, in one row: inside it would hide the trials in a corner
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, frameon=False)
    return figure


def param_importances(importances: Mapping[str, float], *, objective: str, title: str, note: str = "") -> Figure:
    """Horizontal bars, the most important parameter on top (importances sum to 1); ``note`` instead when
    they could not be computed."""
    height = 1.3 + 0.45 * max(2, len(importances))  # inches; the margins below are fixed in inches too
    figure = Figure(figsize=(6.4, height))
    figure.subplots_adjust(left=0.3, right=0.95, bottom=0.6 / height, top=1 - 0.65 / height)
    ax = figure.add_subplot()
    if importances:
        names = list(importances)[::-1]
        values = [importances[name] for name in names]
        bars = ax.barh(names, values, color="tab:blue")
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize="small")
        ax.set_xlim(0, max(1.0, max(values) * 1.15))
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xlabel(f"importance for {objective} (they sum to 1)")
    figure.suptitle(wrapped(title), fontsize="medium")  # over the figure: the axes leave room for the names
    return figure


def wrapped(title: str, width: int = 70) -> str:
    """A title in lines of at most ``width`` characters (a study's name can be long)."""
    return "\n".join(textwrap.wrap(title, width)) or title
