"""Spec Task 2: NMF of an image set (CryptoPunks by default, any ``data=`` image loader): the data (2a, 2b),
basis images (2c), reconstructions (2d), and in a sweep over d the error curves (2e) and the final error
against d next to the truncated SVD (2f)."""

from __future__ import annotations

import numpy as np

from experiments.shared import display_images, draw_basis, draw_reconstructions, fit_and_log, shown, warn_if_full_rank
from nmf_lab import numerical_rank, truncation_errors
from nmf_lab.data.images import ImageSet
from nmf_lab.presentation.figures import error_against_rank, error_curves, image_grid, mean_image

HEADLINE = ("final_error", "relative_error", "svd_error")
"""The metrics the CLI prints and a run's description shows first: the NMF's error next to the truncated SVD's."""


def run(settings, run) -> None:
    image_set = settings.data.load()
    A = image_set.matrix()
    run.log_dataset(A, name=image_set.name, source=image_set.source, digest=image_set.digest)
    describe_data(image_set, A, run)
    warn_if_full_rank(A, settings.rank)
    result = fit_and_log(A, settings, run)
    run.log_metrics({"svd_error": svd_error(A, settings.rank)})
    first = shown(image_set)
    d = settings.rank
    draw_basis(result.W, image_set.shape, run, name="2c_basis_images", title="Task 2c")
    draw_reconstructions(
        [
            ("originals", first.images),
            (f"reconstructions WH (d = {d})", display_images(image_set, result.W @ result.H[:, : first.n])),
        ],
        run,
        alpha=first.alpha,
        name="2d_reconstructions",
        title="Task 2d: reconstructions (colours clipped to [0, 1])",
    )


def describe_data(image_set: ImageSet, A: np.ndarray, run) -> None:
    """Task 2a (the first 64 images) and 2b (the mean image, the numerical rank of A, and the pixels that
    are never opaque or always 0).

    Metrics: ``numerical_rank``; ``always_transparent_pixels``, the pixels whose alpha is 0 in every image
    (0 for a set without alpha: all its pixels are opaque); ``always_zero_pixels``, the pixels whose every
    colour channel is 0 in every image (the transparent background of the punks, the margins of digits).
    """
    first = shown(image_set)
    name, n = image_set.name, image_set.n
    figure = image_grid(first.images, first.alpha, title=f"Task 2a: {first.n} images of {name}")
    run.log_figure(figure, "figures/2a_images.png")
    alpha = image_set.alpha
    never_opaque = None if alpha is None else ~(alpha > 0).any(axis=-1)
    figure = mean_image(
        image_set.images.mean(axis=-1),
        None if alpha is None else alpha.mean(axis=-1),
        never_opaque,
        title=f"Task 2b: the mean of {n} images of {name}",
    )
    run.log_figure(figure, "figures/2b_mean_image.png")
    run.log_metrics(
        {
            "always_transparent_pixels": 0 if never_opaque is None else int(never_opaque.sum()),
            "always_zero_pixels": int((image_set.images == 0).all(axis=(2, 3)).sum()),
            "numerical_rank": numerical_rank(A),
        }
    )


def svd_error(A: np.ndarray, rank: int) -> float:
    """``||A - A_d||_F`` of the truncated SVD, the best any rank-d approximation can do."""
    errors = truncation_errors(A)
    return float(errors[min(rank, errors.size - 1)])


def summarize(children, parent) -> None:
    """Task 2e: the error curves of all d on one log plot; 2f: the final error against d, with the
    truncated-SVD error on the same axes."""
    children = sorted(children, key=lambda child: child.config.rank)
    ranks = [child.config.rank for child in children]
    curves = {f"d = {d}": child.curve("error") for d, child in zip(ranks, children)}
    parent.log_figure(error_curves(curves, title="Task 2e: error per iteration"), "figures/2e_error_curves.png")
    final = [child.metrics["final_error"] for child in children]
    svd = [child.metrics["svd_error"] for child in children]
    figure = error_against_rank(
        {"NMF": (ranks, final), "truncated SVD (the best rank-d approximation)": (ranks, svd)},
        title="Task 2f: final error against d",
    )
    parent.log_figure(figure, "figures/2f_error_against_rank.png")
    rows = [f"| {d} | {f:.4f} | {s:.4f} | {f / s if s else float('inf'):.3f} |" for d, f, s in zip(ranks, final, svd)]
    table = "| d | NMF final error | truncated SVD error | ratio |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    parent.log_text(table, "tables/final_errors.md")
    for d, f, s in zip(ranks, final, svd):
        parent.log_metrics({"final_error_by_rank": f, "svd_error_by_rank": s}, step=d)
