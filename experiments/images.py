"""Spec Task 2: NMF of CryptoPunks images: the data (2a, 2b), basis images (2c), reconstructions (2d), and
in a sweep over d the error curves (2e) and the final error against d next to the truncated SVD (2f)."""

from __future__ import annotations

import numpy as np

from experiments.fitting import fit
from nmf_lab import numerical_rank, truncation_errors
from nmf_lab.data.images import for_display, images_to_matrix, matrix_to_images, opaque
from nmf_lab.data.punks import PunkSet, load_punks, select_punks
from nmf_lab.figures import (
    basis_grid,
    error_against_rank,
    error_curves,
    image_grid,
    mean_and_transparency,
    side_by_side_grids,
)
from nmf_lab.tracking import log_factorization

SHOWN = 64
"""How many images the grids show (spec 2a: 64 on an 8 x 8 grid)."""


def run(settings, run) -> None:
    punks = load(settings.data)
    A, alpha = images_to_matrix(punks.images)
    run.log_dataset(A, name="cryptopunks", source=punks.source)
    describe_data(punks, A, run)
    result = fit(A, settings)
    log_factorization(run, A, result)
    run.log_metrics({"svd_error": svd_error(A, settings.rank)})
    shown = slice(0, min(SHOWN, A.shape[1]))
    d = settings.rank
    draw_basis(result.W, punks.images.shape[:2], run, name="2c_basis_images", title="Task 2c")
    draw_reconstructions(
        [
            ("originals", punks.images[..., shown]),
            (f"reconstructions WH (d = {d})", reconstruct(result.W @ result.H[:, shown], alpha[..., shown])),
        ],
        run,
        name="2d_reconstructions",
        title="Task 2d: reconstructions (colours clipped to [0, 1])",
    )


def load(data) -> PunkSet:
    """The punks the ``data`` config selects (``data.n_images``, ``data.subset``, ...)."""
    ids = select_punks(data.n_images, subset=data.subset, seed=data.subset_seed)
    return load_punks(ids, path=data.path, folder=data.folder, url=data.url)


def describe_data(punks: PunkSet, A: np.ndarray, run) -> None:
    """Task 2a (64 images) and 2b (mean image, never-opaque pixels, numerical rank of A)."""
    images = punks.images
    shown = images[..., :SHOWN]
    run.log_figure(image_grid(shown, title=f"Task 2a: {shown.shape[-1]} CryptoPunks"), "figures/2a_images.png")
    always_transparent = ~opaque(images).any(axis=-1)
    figure = mean_and_transparency(
        images.mean(axis=-1), always_transparent, title=f"Task 2b: the mean of {images.shape[-1]} punks"
    )
    run.log_figure(figure, "figures/2b_mean_image.png")
    run.log_metrics(
        {"always_transparent_pixels": int(always_transparent.sum()), "numerical_rank": numerical_rank(A)}
    )


def draw_basis(W: np.ndarray, shape: tuple[int, int], run, *, name: str, title: str) -> None:
    """The columns of W as images (Task 2c, 3b), also as the MLflow image ``basis_images``."""
    figure = basis_grid(W, shape, title=f"{title}: the {W.shape[1]} columns of W as images")
    run.log_figure(figure, f"figures/{name}.png", compare_key="basis_images")


def draw_reconstructions(panels, run, *, name: str, title: str) -> None:
    """Grids of the same images side by side (Task 2d, 3b), also as the MLflow image ``reconstructions``.

    ``panels``: (caption, RGBA images (h, w, 4, n)) pairs, e.g. originals and reconstructions.
    """
    figure = side_by_side_grids(panels, title=title)
    run.log_figure(figure, f"figures/{name}.png", compare_key="reconstructions")


def reconstruct(X: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The images (h, w, 4, n) of a reconstruction X ((h * w * 3) x n, e.g. W H) with their alpha
    re-attached and colours clipped to [0, 1] for display."""
    return for_display(matrix_to_images(X, alpha))


def svd_error(A: np.ndarray, rank: int) -> float:
    """``||A - A_d||_F`` of the truncated SVD, the best any rank-d approximation can do."""
    errors = truncation_errors(A)
    return float(errors[min(rank, errors.size - 1)])


def summarize(children, parent) -> None:
    """Task 2e: the error curves of all d on one log plot; 2f: the final error against d, with the
    truncated-SVD error on the same axes."""
    children = sorted(children, key=lambda child: int(child.params["rank"]))
    ranks = [int(child.params["rank"]) for child in children]
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
