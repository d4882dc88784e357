"""Filling missing pixels: NMF fitted to the pixels that are left, W H filling the holes.

A fraction p of the pixels of each image is removed, all colour channels of each removed pixel, either at
random or as one square block at a random place (:func:`nmf_lab.core.holes.pixel_holes`). NMF is fitted with a
mask to the entries left (:func:`nmf_lab.fit_nmf` with ``mask=``: it never reads the removed ones) and
``clip(W H, 0, 1)`` fills the holes. The simplest fill, each pixel channel's mean over the images where it was
not removed (:func:`nmf_lab.core.holes.row_mean_fill`), is measured in the same run.

``psnr_missing`` is the PSNR over the colour channels of the removed pixels that are opaque: a transparent
pixel's colour is not part of the picture (its alpha, which is never removed, hides it), as in every PSNR here.
The fit does not know the colours of removed transparent pixels either: a hole removes whatever it covers.
A block of more than half the image's side covers its centre in every image: those pixels are seen in no
image, the fit leaves their rows out (W's rows are then those of ``arrays/fitted_rows.npy``), both fills put 0
there, and ``never_seen_entries`` counts the scored entries among them.
A sweep over p and d (``inpaint_ranks``) draws psnr_missing against d, one line per p, with the mean fill.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from experiments.shared import display_images, fit_and_log, shown, warn_if_full_rank
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.holes import HOLES, entries_of_pixels, pixel_holes, row_mean_fill
from nmf_lab.core.metrics import psnr
from nmf_lab.presentation.figures import inpainting_grids, psnr_against_rank

HEADLINE = ("psnr_missing", "psnr_missing_baseline", "psnr_gain")
"""The metrics the CLI prints and a run's description shows first: PSNR (dB) over the removed pixels for the
NMF fill and the mean fill, and the difference."""


@dataclass
class InpaintSettings:
    """``inpaint``: which pixels are removed.

    ``fraction``: p, the part of each image's pixels removed, in (0, 1); ``holes``: ``random`` (pixels at
    random) or ``block`` (one square block of about p of the pixels at a random place); ``seed``: the holes'
    own seed, apart from the NMF's.
    """

    fraction: float = 0.3
    holes: str = "random"
    seed: int = 0

    def check(self) -> None:
        if not 0 < self.fraction < 1:
            raise InvalidOption("fraction", self.fraction, "the part of the pixels removed, a number in (0, 1)")
        if self.holes not in HOLES:
            raise InvalidOption("holes", self.holes, f"one of {', '.join(HOLES)}")
        if self.seed < 0:
            raise InvalidOption("seed", self.seed, "an integer >= 0")


SETTINGS = {"inpaint": InpaintSettings}
"""The config node of this study's own settings."""


def run(settings, run) -> None:
    image_set = settings.data.load()
    A = image_set.matrix()
    holes = settings.inpaint
    removed = pixel_holes(image_set.shape, image_set.n, holes.fraction, holes.holes, holes.seed)  # (h, w, n)
    missing = entries_of_pixels(removed, image_set.channels)
    observed = ~missing
    A_seen = np.where(observed, A, 0.0)  # what the fit is given: the removed entries are gone
    run.log_dataset(A_seen, name=f"{image_set.name}-holes", source=image_set.source)
    warn_if_full_rank(A, settings.rank)

    # A pixel channel removed in every image (a block wider than half the image always covers the centre) is
    # seen nowhere: nothing learned from the images can fill it. The fit is on the rows seen somewhere; both
    # fills put 0 into the others.
    seen = observed.any(axis=1)
    result = fit_and_log(A_seen[seen], settings, run, mask=observed[seen])
    fill = np.zeros_like(A)
    fill[seen] = np.clip(result.W @ result.H, 0.0, 1.0)
    filled = np.where(observed, A, fill)
    mean_fill = row_mean_fill(A_seen, observed)

    scored = missing & image_set.opaque_entries()  # the colour channels of removed opaque pixels
    psnr_missing, psnr_baseline = psnr(A, filled, scored), psnr(A, mean_fill, scored)
    run.log_metrics(
        {
            "psnr_missing": psnr_missing,
            "psnr_missing_baseline": psnr_baseline,
            "psnr_gain": psnr_missing - psnr_baseline,
            "removed_fraction": float(removed.mean()),
            "scored_entries": int(scored.sum()),
            "never_seen_entries": int(scored[~seen].sum()),
        }
    )
    if not seen.all():
        run.log_array(np.flatnonzero(seen), "arrays/fitted_rows.npy")  # the rows of A that W's rows are
    first = shown(image_set)
    figure = inpainting_grids(
        first.images,
        [
            (f"filled by NMF (d = {settings.rank})", display_images(image_set, filled[:, : first.n])),
            ("filled with pixel means", display_images(image_set, mean_fill[:, : first.n])),
        ],
        removed[..., : first.n],
        first.alpha,
        title=(
            f"Inpainting {image_set.n} images of {image_set.name}, {holes.fraction:.0%} of the pixels removed "
            f"({holes.holes}): NMF {psnr_missing:.2f} dB, pixel means {psnr_baseline:.2f} dB over the holes"
        ),
    )
    run.log_figure(figure, "figures/inpainting.png", compare_key="reconstructions")


def summarize(children, parent) -> None:
    """psnr_missing against d, one line per (fraction, holes), each with its mean fill as a dashed line;
    a table, and parent metrics ``best_rank.<p>`` and ``best_psnr_missing.<p>`` per fraction p."""
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    baselines: dict[str, list[float]] = defaultdict(list)
    for child in children:
        holes = child.config.inpaint
        label = f"p = {holes.fraction:g}" + (" (block)" if holes.holes == "block" else "")
        curves[label].append((child.config.rank, child.metrics["psnr_missing"]))
        baselines[label].append(child.metrics["psnr_missing_baseline"])
    series, rows = {}, []
    for label in sorted(curves):
        points = sorted(curves[label])
        ranks, values = [d for d, _ in points], [v for _, v in points]
        series[label] = (ranks, values)
        baseline = float(np.mean(baselines[label]))  # the same holes in every job of a p: one value
        best = int(np.argmax(values))
        key = label.replace("p = ", "p_").replace(" (block)", "_block")
        parent.log_metrics({f"best_rank.{key}": ranks[best], f"best_psnr_missing.{key}": values[best]})
        rows += [f"| {label} | {d} | {v:.2f} | {baseline:.2f} | {v - baseline:+.2f} |" for d, v in points]
    figure = psnr_against_rank(
        series,
        {label: float(np.mean(values)) for label, values in baselines.items()},
        title="Inpainting: PSNR over the removed pixels against d",
        ylabel="PSNR over the removed pixels (dB)",
        baseline_label="pixel means",
    )
    parent.log_figure(figure, "figures/inpainting_against_rank.png")
    header = "| removed | d | NMF (dB) | pixel means (dB) | gain (dB) |\n|---|---|---|---|---|\n"
    parent.log_text(header + "\n".join(rows) + "\n", "tables/inpainting.md")
