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
        ax.imshow(matrix, cmap="viridis", aspect="auto", interpolation="nearest")
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


# -- pixel art: nearest-neighbour, no anti-aliasing, transparent pixels on a grey background -----------

BACKGROUND = 0.55
"""The grey that transparent pixels are drawn on (spec figure 4)."""


def over_background(images: np.ndarray, background: float = BACKGROUND) -> np.ndarray:
    """RGBA images (h, w, 4, N) composited on grey: (h, w, 3, N) RGB in [0, 1] (colours clipped first)."""
    rgb = np.clip(images[:, :, :3], 0.0, 1.0)
    alpha = np.clip(images[:, :, 3:4], 0.0, 1.0)
    return rgb * alpha + background * (1.0 - alpha)


def mosaic(rgb: np.ndarray, columns: int, *, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile (h, w, 3, N) images row by row into one (rows*(h+gap)-gap, columns*(w+gap)-gap, 3) picture."""
    h, w, channels, n = rgb.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, channels), fill, dtype=np.float64)
    for i in range(n):
        top, left = (i // columns) * (h + gap), (i % columns) * (w + gap)
        canvas[top : top + h, left : left + w] = rgb[..., i]
    return canvas


def _pixel_axes(figure: Figure, picture: np.ndarray, ax, title: str) -> None:
    ax.imshow(picture, interpolation="nearest", resample=False)
    ax.set_title(title, fontsize="medium")
    ax.set_axis_off()


def _pixel_figure(pictures: Sequence[tuple[str, np.ndarray]], title: str | None, scale: float) -> Figure:
    """Pictures side by side, about ``scale`` screen pixels per image pixel at 100 dpi."""
    width = sum(picture.shape[1] for _, picture in pictures) * scale / 100 + 0.3 * len(pictures)
    height = max(picture.shape[0] for _, picture in pictures) * scale / 100 + (0.9 if title else 0.5)
    figure = Figure(figsize=(max(width, 3.0), height), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(pictures), squeeze=False)[0]
    for ax, (name, picture) in zip(axes, pictures):
        _pixel_axes(figure, picture, ax, name)
    if title:
        figure.suptitle(title)
    return figure


def grid_columns(n: int) -> int:
    """Columns of a near-square grid for n images (8 for 64)."""
    return int(np.ceil(np.sqrt(n)))


def image_grid(images: np.ndarray, *, title: str, scale: float = 4.0) -> Figure:
    """RGBA images (h, w, 4, N) on a near-square grid (8 x 8 for 64), transparent pixels on grey."""
    picture = mosaic(over_background(images), grid_columns(images.shape[-1]))
    return _pixel_figure([("", picture)], title, scale)


def side_by_side_grids(panels: Sequence[tuple[str, np.ndarray]], *, title: str, scale: float = 3.0) -> Figure:
    """Several grids of the same RGBA images (h, w, 4, N), e.g. originals next to reconstructions."""
    pictures = [(name, mosaic(over_background(images), grid_columns(images.shape[-1]))) for name, images in panels]
    return _pixel_figure(pictures, title, scale)


def basis_grid(W: np.ndarray, shape: tuple[int, int], *, title: str, scale: float = 4.0) -> Figure:
    """The columns of W (m x d, m = h * w * 3) as RGB images on a grid, each divided by its own maximum.

    Basis images have no alpha (spec 4.2): black and transparent cannot be told apart. Each column is
    scaled to a maximum of 1 so that faint components stay visible; the title says so.
    """
    h, w = shape
    d = W.shape[1]
    peak = W.max(axis=0)
    scaled = W / np.where(peak > 0, peak, 1.0)
    rgb = scaled.reshape(h, w, 3, d)
    picture = mosaic(rgb, grid_columns(d))
    return _pixel_figure([("", picture)], f"{title}\n(each image divided by its own maximum)", scale)


def mean_and_transparency(mean_image: np.ndarray, always_transparent: np.ndarray, *, title: str) -> Figure:
    """Spec Task 2b: the mean RGBA image (h, w, 4) on grey, and the (h, w) map of never-opaque pixels."""
    mean_rgb = over_background(mean_image[..., None])[..., 0]
    mask = np.where(always_transparent[..., None], np.array([0.85, 0.1, 0.1]), np.array([0.95, 0.95, 0.95]))
    count = int(always_transparent.sum())
    return _pixel_figure(
        [("mean image", mean_rgb), (f"never opaque: {count} pixels (red)", mask)],
        title,
        scale=10.0,
    )


def error_against_rank(
    series: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    *,
    title: str,
    ylabel: str = r"$\|A - WH\|_F$",
    levels: Mapping[str, float] | None = None,
    mark_minimum: bool = False,
) -> Figure:
    """Error against the number of components d: one marked line per entry of ``series``
    (label -> (ranks, errors)), optional horizontal reference ``levels`` (label -> value), and with
    ``mark_minimum`` the best d of each line circled and labelled."""
    figure = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = figure.add_subplot()
    all_ranks: set[int] = set()
    for (label, (ranks, errors)), marker in zip(series.items(), "osD^v<>p*"):
        (line,) = ax.plot(ranks, errors, marker=marker, label=label)
        all_ranks.update(ranks)
        if mark_minimum:
            best = int(np.argmin(errors))
            ax.plot(ranks[best], errors[best], "o", markersize=14, markerfacecolor="none", color=line.get_color())
            ax.annotate(f"best d = {ranks[best]}", (ranks[best], errors[best]), textcoords="offset points",
                        xytext=(6, -14), color=line.get_color(), fontsize="small")
    for (label, value), style in zip((levels or {}).items(), ["--", ":", "-."] * 4):
        ax.axhline(value, color="gray", linestyle=style, label=label)
    ax.set(title=title, xlabel="number of components d", ylabel=ylabel)
    ax.set_xticks(sorted(all_ranks))
    ax.tick_params(axis="x", labelrotation=45 if len(all_ranks) > 8 else 0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return figure


def error_against_time(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title: str, target: float | None = None
) -> Figure:
    """Relative error against wall-clock seconds, one line per solver (label -> (seconds, errors)), on a
    log y-axis, with the target error as a horizontal line."""
    figure = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = figure.add_subplot()
    for label, (seconds, errors) in curves.items():
        later = np.asarray(seconds) > 0  # the start (t = 0) has no place on a log axis
        ax.loglog(np.asarray(seconds)[later], _positive(np.asarray(errors)[later]), label=label, linewidth=1.4)
    if target is not None:
        ax.axhline(target, color="gray", linestyle="--", label="target")
    ax.set(title=title, xlabel="wall-clock seconds (log scale)", ylabel=r"$\|A - WH\|_F / \|A\|_F$")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return figure
