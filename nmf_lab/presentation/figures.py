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
    ylabel: str | None = None,
) -> Figure:
    """Error against iteration on a log y-axis, one line per entry of ``curves`` (label -> errors).

    ``styles`` optionally maps a label to matplotlib line properties (colour, line style); ``ylabel`` names
    what the curves are when it is not ``||A - W_k H_k||_F`` (another loss, a penalty: the objective).
    """
    figure = None
    if ax is None:  # fixed margins: a constrained layout would double the cost of drawing (one per run)
        figure = Figure(figsize=(6.4, 4.2))
        figure.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
        ax = figure.add_subplot()
    for label, errors in curves.items():
        style = {"linewidth": 1.4, **(styles or {}).get(label, {})}
        ax.semilogy(np.arange(len(errors)), _positive(errors), label=label, **style)
    ax.set(title=title, xlabel="iteration k", ylabel=ylabel or ERROR_LABEL)
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


def heatmaps(panels: Sequence[tuple[str, np.ndarray, Sequence[str], Sequence[str]]], *, title: str) -> Figure:
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


# -- images: nearest-neighbour, no anti-aliasing when enlarged, transparent pixels on a grey background -----
#
# Images are colour arrays (h, w, c, n) in [0, 1] with c = 1 (grayscale) or 3 (RGB), plus an optional opacity
# (h, w, n). Every picture is turned into RGB before it is drawn: a grayscale value v is the grey (v, v, v),
# 0 black and 1 white, exactly as a colour image with three equal channels would be (no colour map, no
# rescaling). Transparent pixels are blended with the grey BACKGROUND. The pixel scale (screen pixels per
# image pixel) follows from the image size: small images are enlarged by a whole factor, larger ones scaled
# by the exact ratio (and shrunk so that a figure stays within MAX_FIGURE_PIXELS).

BACKGROUND = 0.55
"""The grey that transparent pixels are drawn on (spec figure 4)."""
GAP = 1.0
"""The colour (white) of the one-pixel gaps between the images of a grid."""
TILE_PIXELS = 96
"""About how many screen pixels an image of a grid spans (4 per pixel for 24 x 24 punks, 12 for 8 x 8)."""
SINGLE_PIXELS = 240
"""About how many screen pixels a single large picture (the mean image of Task 2b) spans."""
MAX_FIGURE_PIXELS = 1800
"""The largest width or height of a picture panel row, in screen pixels (at 100 dpi)."""


def over_background(images: np.ndarray, alpha: np.ndarray | None = None, background: float = BACKGROUND) -> np.ndarray:
    """Images (h, w, c, n), c = 1 or 3, as RGB (h, w, 3, n) in [0, 1] ready to draw: colours clipped to
    [0, 1], grayscale repeated into three equal channels, and with ``alpha`` (h, w, n) blended with the grey
    ``background`` (``rgb * alpha + background * (1 - alpha)``)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[2] not in (1, 3):
        raise ValueError(f"images must be an array (h, w, c, n) with c = 1 or 3, got shape {images.shape}")
    rgb = np.clip(images, 0.0, 1.0)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    if alpha is None:
        return rgb
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.shape != images.shape[:2] + images.shape[3:]:
        raise ValueError(f"alpha of shape {alpha.shape} does not fit images of shape {images.shape}")
    alpha = np.clip(alpha, 0.0, 1.0)[:, :, None, :]
    return rgb * alpha + background * (1.0 - alpha)


def mosaic(rgb: np.ndarray, columns: int, *, gap: int = 1, fill: float = GAP) -> np.ndarray:
    """Tile (h, w, 3, N) images row by row into one (rows*(h+gap)-gap, columns*(w+gap)-gap, 3) picture."""
    h, w, channels, n = rgb.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, channels), fill, dtype=np.float64)
    for i in range(n):
        top, left = (i // columns) * (h + gap), (i % columns) * (w + gap)
        canvas[top : top + h, left : left + w] = rgb[..., i]
    return canvas


def grid_picture(images: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """The RGB picture of a grid (see :func:`image_grid`): images on a near-square grid, one white pixel
    between them."""
    return mosaic(over_background(images, alpha), grid_columns(np.shape(images)[-1]))


def pixel_scale(image_size: int, picture_size: tuple[int, int], *, target: float = TILE_PIXELS) -> float:
    """Screen pixels per image pixel for pictures of ``picture_size`` (height, width of the whole row of
    panels) made of images whose larger side is ``image_size`` pixels: about ``target / image_size``, at
    most what keeps the row within :data:`MAX_FIGURE_PIXELS`. A whole number when it enlarges at least
    twice (pixel art: every pixel a crisp block), else the exact ratio (photos: smoothed when drawn)."""
    height, width = picture_size
    scale = min(target / image_size, MAX_FIGURE_PIXELS / width, MAX_FIGURE_PIXELS / height)
    return float(np.floor(scale)) if scale >= 2 else scale


PAD = 12
"""Screen pixels around and between the panels of a picture figure."""
LINE = 24
"""Screen pixels per line of a title; captions take ``CAPTION``."""
CAPTION = 20
CHAR = 9
"""About how wide a character of a title is, in screen pixels (at the default font size, 100 dpi)."""


def _pixel_figure(
    pictures: Sequence[tuple[str, np.ndarray]], title: str | None, image_size: int, *, target: float = TILE_PIXELS
) -> Figure:
    """RGB pictures side by side at :func:`pixel_scale` screen pixels per image pixel (100 dpi).

    The panels are placed at whole screen pixels, so an enlarged image pixel is a crisp ``scale x scale``
    block of exactly its colour; the figure is as large as the panels, the gaps and the title need.
    """
    width_pixels = sum(picture.shape[1] for _, picture in pictures)
    height_pixels = max(picture.shape[0] for _, picture in pictures)
    scale = pixel_scale(image_size, (height_pixels, width_pixels), target=target)
    sizes = [(round(picture.shape[1] * scale), round(picture.shape[0] * scale)) for _, picture in pictures]
    title_lines = title.split("\n") if title else []
    top = PAD + LINE * len(title_lines) + (CAPTION if any(name for name, _ in pictures) else 0)
    panels_width = sum(w for w, _ in sizes) + 3 * PAD * (len(pictures) - 1)
    widths = [panels_width, CHAR * max([len(line) for line in title_lines] + [0])]
    widths += [len(pictures) * CHAR * max(len(name) for name, _ in pictures)]
    width = max(widths) + 2 * PAD
    height = top + max(h for _, h in sizes) + PAD
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    left = (width - panels_width) // 2
    for (name, picture), (w, h) in zip(pictures, sizes):
        ax = figure.add_axes((left / width, (height - top - h) / height, w / width, h / height))
        # a whole scale: every image pixel a crisp block; otherwise (photos) smoothed rather than aliased
        crisp = scale >= 1 and scale == int(scale)
        ax.imshow(picture, interpolation="nearest" if crisp else "antialiased", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_title(name, fontsize="medium")
        ax.set_axis_off()
        left += w + 3 * PAD
    if title:
        figure.suptitle(title, y=1 - (PAD / 2) / height, va="top")
    return figure


def grid_columns(n: int) -> int:
    """Columns of a near-square grid for n images (8 for 64)."""
    return int(np.ceil(np.sqrt(n)))


def image_grid(images: np.ndarray, alpha: np.ndarray | None = None, *, title: str) -> Figure:
    """Images (h, w, c, n) on a near-square grid (8 x 8 for 64), transparent pixels (``alpha``) on grey."""
    return _pixel_figure([("", grid_picture(images, alpha))], title, max(np.shape(images)[:2]))


def side_by_side_grids(
    panels: Sequence[tuple[str, np.ndarray]], alpha: np.ndarray | None = None, *, title: str
) -> Figure:
    """Grids of the same images side by side, e.g. originals next to reconstructions: ``panels`` are
    (caption, images (h, w, c, n)) pairs, all drawn with the same opacity ``alpha`` (h, w, n) or none."""
    pictures = [(name, grid_picture(images, alpha)) for name, images in panels]
    return _pixel_figure(pictures, title, max(np.shape(panels[0][1])[:2]))


def basis_grid(W: np.ndarray, shape: tuple[int, int], *, title: str) -> Figure:
    """The columns of W (m x d, m = h * w * c, c = 1 or 3) as images (h, w) on a grid, each divided by its
    own maximum.

    Basis images have no alpha (spec 4.2): black and transparent cannot be told apart. Each column is
    scaled to a maximum of 1 so that faint components stay visible; the title says so.
    """
    h, w = shape
    m, d = W.shape
    if m % (h * w) or m // (h * w) not in (1, 3):
        raise ValueError(f"W has {m} rows, expected h * w * c with h * w = {h} * {w} and c = 1 or 3")
    peak = W.max(axis=0)
    scaled = W / np.where(peak > 0, peak, 1.0)
    picture = grid_picture(scaled.reshape(h, w, m // (h * w), d))
    return _pixel_figure([("", picture)], f"{title}\n(each image divided by its own maximum)", max(h, w))


def mean_image(
    mean: np.ndarray,
    mean_alpha: np.ndarray | None = None,
    never_opaque: np.ndarray | None = None,
    *,
    title: str,
) -> Figure:
    """Spec Task 2b: the mean image (h, w, c) (with its mean opacity (h, w), blended on grey), and, when
    ``never_opaque`` (h, w) is given, the map of the pixels that are transparent in every image (red)."""
    mean = np.asarray(mean)
    pictures = [
        ("mean image", over_background(mean[..., None], None if mean_alpha is None else mean_alpha[..., None])[..., 0])
    ]
    if never_opaque is not None:
        mask = np.where(never_opaque[..., None], np.array([0.85, 0.1, 0.1]), np.array([0.95, 0.95, 0.95]))
        pictures.append((f"never opaque: {int(never_opaque.sum())} pixels (red)", mask))
    return _pixel_figure(pictures, title, max(mean.shape[:2]), target=SINGLE_PIXELS)


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
            last = ranks[best] == max(ranks)  # a label right of the last point would leave the axes
            ax.annotate(
                f"best d = {ranks[best]}",
                (ranks[best], errors[best]),
                textcoords="offset points",
                xytext=(-6, -14) if last else (6, -14),
                ha="right" if last else "left",
                color=line.get_color(),
                fontsize="small",
            )
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


# -- choosing d, inpainting (appended) -----------------------------------------------------------------


def cross_validation_curves(
    ranks: Sequence[int],
    fold_errors: np.ndarray,
    standard_error: np.ndarray,
    chosen: int,
    clean: tuple[Sequence[float], str] | None = None,
    *,
    title: str,
    rule: str = "",
    score: tuple[str, str] = ("held-out entries (from the noisy data alone)", "held-out RMSE"),
) -> Figure:
    """Choosing d by cross-validation: the held-out error against d, each fold a thin line, the mean with
    +- one standard error and the chosen d marked; beside it, optionally, a measure of the clean error of the
    fits on all entries against d (``clean = (values, label)``, e.g. ``||A - X||_F``), its minimum circled and
    the chosen d marked there too. ``fold_errors`` is K x g over the g ``ranks`` (K = 1: one curve, no
    standard error); ``score``: the left panel's (title, y label)."""
    ranks = list(ranks)
    fold_errors = np.asarray(fold_errors, dtype=np.float64)
    mean = fold_errors.mean(axis=0)
    figure = Figure(figsize=(12.4 if clean else 6.8, 4.6), layout="constrained")
    axes = figure.subplots(1, 2 if clean else 1, squeeze=False)[0]
    ax = axes[0]
    folds = len(fold_errors) > 1
    for k, errors in enumerate(fold_errors if folds else []):
        ax.plot(ranks, errors, color="0.65", linewidth=0.9, marker=".", label="each fold" if k == 0 else None)
    ax.errorbar(ranks, mean, yerr=standard_error if folds else None, marker="o", capsize=4, color="C0",
                label="mean +- 1 standard error" if folds else score[1])  # fmt: skip
    best = int(np.argmin(mean))
    if folds:
        ax.axhline(
            mean[best] + standard_error[best], color="C0", linestyle="--", linewidth=0.9, label="lowest mean + 1 s.e."
        )
    at = ranks.index(chosen)
    ax.plot(chosen, mean[at], "o", markersize=15, markerfacecolor="none", color="C3")
    ax.axvline(chosen, color="C3", linestyle=":", label=f"chosen d = {chosen}" + (f" ({rule})" if rule else ""))
    ax.set(title=score[0], xlabel="number of components d")
    ax.set_ylabel(score[1])
    panels = [ax]
    if clean:
        values, label = clean
        ax = axes[1]
        ax.plot(ranks, values, marker="s", color="C2", label="fits on all entries")
        best = int(np.argmin(values))
        ax.plot(ranks[best], values[best], "o", markersize=15, markerfacecolor="none", color="C2")
        ax.annotate(
            f"lowest: d = {ranks[best]}",
            (ranks[best], values[best]),
            textcoords="offset points",
            xytext=(0, 12),
            ha="center",
            color="C2",
            fontsize="small",
        )
        ax.axvline(chosen, color="C3", linestyle=":", label=f"chosen from the noisy data: d = {chosen}")
        ax.set(title="against the clean images (for evaluation only)", xlabel="number of components d", ylabel=label)
        panels.append(ax)
    for ax in panels:
        ax.set_xticks(ranks)
        ax.tick_params(axis="x", labelrotation=45 if len(ranks) > 8 else 0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title)
    return figure


HOLE_COLOUR = (1.0, 0.0, 1.0)
"""The colour (magenta) that draws removed pixels, which no image here uses much."""


def inpainting_grids(
    original: np.ndarray,
    fills: Sequence[tuple[str, np.ndarray]],
    removed: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    title: str,
) -> Figure:
    """Inpainting side by side: the originals (h, w, c, n), the same with the ``removed`` pixels (h, w, n)
    drawn in :data:`HOLE_COLOUR`, and each fill (caption, images (h, w, c, n)); all with the originals'
    opacity ``alpha`` (h, w, n) or none."""
    rgb = over_background(original, alpha)
    holes = rgb.copy()
    removed = np.asarray(removed, dtype=bool)
    holes.transpose(0, 1, 3, 2)[removed] = HOLE_COLOUR
    columns = grid_columns(rgb.shape[-1])
    pictures = [("original", mosaic(rgb, columns)), ("with holes (magenta)", mosaic(holes, columns))]
    pictures += [(name, mosaic(over_background(images, alpha), columns)) for name, images in fills]
    return _pixel_figure(pictures, title, max(rgb.shape[:2]))


def psnr_against_rank(
    series: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    baselines: Mapping[str, float] | None = None,
    *,
    title: str,
    ylabel: str = "PSNR (dB)",
    baseline_label: str = "baseline",
) -> Figure:
    """A quality (higher is better, e.g. PSNR) against d: one marked line per entry of ``series`` (label ->
    (ranks, values)), and for a label also in ``baselines`` a dashed horizontal line of the same colour at its
    baseline value (its legend entry gives the value: baselines that coincide are drawn on top of each other)."""
    figure = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = figure.add_subplot()
    all_ranks: set[int] = set()
    for (label, (ranks, values)), marker in zip(series.items(), "osD^v<>p*"):
        (line,) = ax.plot(ranks, values, marker=marker, label=label)
        all_ranks.update(ranks)
        if baselines and label in baselines:
            ax.axhline(
                baselines[label],
                color=line.get_color(),
                linestyle="--",
                linewidth=1.0,
                label=f"{baseline_label}, {label}: {baselines[label]:.2f}",
            )
    ax.set(title=title, xlabel="number of components d", ylabel=ylabel)
    ax.set_xticks(sorted(all_ranks))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return figure


def psnr_by_step(
    steps: Sequence[tuple[str, float]],
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    *,
    title: str,
    bars_title: str,
    curves_title: str,
    xlabel: str = "number of fits averaged k",
) -> Figure:
    """A method built step by step: left, one horizontal bar per step (label, PSNR in dB), top to bottom, each
    with its value and its gain over the step above; right, a PSNR against a count (label -> (counts,
    values)), e.g. of the mean of the first k fits."""
    figure = Figure(figsize=(14.0, 0.5 * len(steps) + 2.6), layout="constrained")
    bars, curve = figure.subplots(1, 2, width_ratios=[1.5, 1.0])
    values = [value for _, value in steps]
    positions = np.arange(len(steps))[::-1]
    bars.barh(positions, values, color="C0", alpha=0.8)
    low = min(values) - 2.0
    for position, (k, value) in zip(positions, enumerate(values)):
        gain = "" if k == 0 else f"  ({value - values[k - 1]:+.2f})"
        bars.text(value + 0.05, position, f"{value:.2f} dB{gain}", va="center", fontsize="small")
    bars.set_yticks(positions, [label for label, _ in steps], fontsize="small")
    bars.set_xlim(low, max(values) + 3.5)
    bars.set(title=bars_title, xlabel="PSNR (dB)")
    bars.grid(True, axis="x", alpha=0.3)
    for (label, (counts, series)), marker in zip(curves.items(), "os^D"):
        curve.plot(counts, series, marker=marker, label=label)
    curve.set(title=curves_title, xlabel=xlabel, ylabel="PSNR (dB)")
    curve.xaxis.get_major_locator().set_params(integer=True)  # counts: whole numbers
    curve.grid(True, alpha=0.3)
    curve.legend(fontsize="small")
    figure.suptitle(title)
    return figure


def run_time_choices(
    curves: Mapping[int, tuple[Sequence[int], Sequence[float]]],
    rank: int,
    budget: int,
    clean_iterations: tuple[Sequence[int], Sequence[float]],
    members_heldout: Sequence[float],
    members_clean: Sequence[float],
    members: int,
    *,
    title: str,
    clean_label: str,
    score: tuple[str, str] = ("held-out entries", "held-out RMSE"),
) -> Figure:
    """A denoiser's choices from held-out error, beside what the clean images say (evaluation only); ``score``:
    what the curves are (a name for the left panel's title, the y label).

    Left: the mean held-out RMSE against the iterations, one curve per d (``curves``: d -> (iterations,
    errors)), each curve's minimum dotted and the chosen (d, budget) circled. Middle: at d = ``rank``, the
    held-out curve and, on a second axis, the clean PSNR of one fit against the iterations
    (``clean_iterations``), the chosen and the clean-best budget marked. Right: the held-out RMSE of the mean
    of the first k members (``members_heldout``, k = 1, 2, ...) and the clean PSNR of the mean of the first k
    fits (``members_clean``), the chosen and the clean-best k marked."""
    figure = Figure(figsize=(17.0, 4.8), layout="constrained")
    left, middle, right = figure.subplots(1, 3)
    for (d, (iterations, errors)), colour in zip(sorted(curves.items()), [f"C{k}" for k in range(10)] * 10):
        left.plot(iterations, errors, marker=".", color=colour, label=f"d = {d}")
        best = int(np.argmin(errors))
        left.plot(iterations[best], errors[best], "o", color=colour, markersize=5)
    iterations, errors = curves[rank]
    at = list(iterations).index(budget)
    left.plot(budget, errors[at], "o", markersize=15, markerfacecolor="none", color="C3")
    left.set(title=f"{score[0]}: against iterations", xlabel="iterations", ylabel=score[1])
    left.annotate(
        f"chosen: d = {rank}, {budget} iterations",
        (budget, errors[at]),
        textcoords="offset points",
        xytext=(-10, 14),
        ha="right",
        color="C3",
        fontsize="small",
    )

    middle.plot(iterations, errors, marker=".", color="C0", label=f"{score[1]}, d = {rank}")
    middle.set(title=f"the budget at d = {rank}", xlabel="iterations", ylabel=score[1])
    clean_axis = middle.twinx()
    clean_x, clean_y = clean_iterations
    clean_axis.plot(clean_x, clean_y, marker="s", markersize=3, color="C2", label=clean_label)
    clean_best = int(np.argmax(clean_y))
    clean_axis.set_ylabel("PSNR against the clean images (dB)", color="C2")
    middle.axvline(clean_x[clean_best], color="C2", linestyle="--", label=f"clean-best: {clean_x[clean_best]}")
    middle.axvline(budget, color="C3", linestyle=":", linewidth=2, label=f"chosen: {budget}")
    handles = middle.get_legend_handles_labels()
    extra = clean_axis.get_legend_handles_labels()
    middle.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize="small", loc="upper center")

    counts = np.arange(1, len(members_heldout) + 1)
    right.plot(counts, members_heldout, marker="o", color="C0", label=f"{score[1]}, mean of the first k")
    right.set(title="the number of members", xlabel="members k", ylabel=score[1])
    clean_axis = right.twinx()
    clean_counts = np.arange(1, len(members_clean) + 1)
    clean_axis.plot(clean_counts, members_clean, marker="s", markersize=3, color="C2", label=clean_label)
    clean_axis.set_ylabel("PSNR against the clean images (dB)", color="C2")
    clean_best = int(np.argmax(members_clean)) + 1
    right.axvline(clean_best, color="C2", linestyle="--", label=f"clean-best: {clean_best}")
    right.axvline(members, color="C3", linestyle=":", linewidth=2, label=f"chosen: {members}")
    right.xaxis.get_major_locator().set_params(integer=True)
    handles = right.get_legend_handles_labels()
    extra = clean_axis.get_legend_handles_labels()
    right.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize="small", loc="center right")
    for ax in (left, middle, right):
        ax.grid(True, alpha=0.3)
    left.legend(fontsize="small")
    figure.suptitle(title)
    return figure
