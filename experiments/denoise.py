"""Spec Task 3: denoising CryptoPunks with NMF (or, for comparison, the truncated SVD).

A job adds noise to the punks (3a), reconstructs them from the noisy matrix alone (3b) and measures the
reconstruction against the clean matrix; a sweep over d and sigma gives the U/L-shaped curve of 3c.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from experiments.fitting import fit
from experiments.images import SHOWN, draw_basis, draw_reconstructions, load, reconstruct
from nmf_lab import truncated_svd
from nmf_lab.data.images import images_to_matrix, matrix_to_images
from nmf_lab.figures import error_against_rank, image_grid
from nmf_lab.metrics import psnr
from nmf_lab.noise import add_noise
from nmf_lab.tracking import log_factorization


def run(settings, run) -> None:
    punks = load(settings.data)
    A, alpha = images_to_matrix(punks.images)
    A_noisy = add_noise(A, settings.noise.sigma, settings.noise.seed)
    run.log_dataset(A_noisy, name="cryptopunks-noisy", source=punks.source)
    shown = slice(0, min(SHOWN, A.shape[1]))
    noisy_images = matrix_to_images(A_noisy, alpha)
    figure = image_grid(noisy_images[..., shown], title=f"Task 3a: noisy punks, sigma = {settings.noise.sigma}")
    run.log_figure(figure, "figures/3a_noisy_images.png")

    d, method = settings.rank, settings.denoise.method
    if method == "nmf":
        result = fit(A_noisy, settings)
        log_factorization(run, A_noisy, result)  # the curve `error` is the fit's own objective, on A_noisy
        draw_basis(result.W, punks.images.shape[:2], run, name="3b_basis_images", title="Task 3b")
        X = result.W @ result.H
    else:
        X = truncated_svd(A_noisy, d)
        final = float(np.linalg.norm(A_noisy - X))
        run.log_metrics({"final_error": final, "relative_error": final / float(np.linalg.norm(A_noisy))})
    if settings.denoise.postprocess:
        X = postprocess(X, alpha)

    mask = colour_mask(alpha)
    run.log_metrics(
        {
            "noise_error": float(np.linalg.norm(A_noisy - A)),
            "clean_error": float(np.linalg.norm(A - X)),
            "psnr_noisy": psnr(A, A_noisy, mask),
            "psnr": psnr(A, X, mask),
        }
    )
    denoised = reconstruct(X[:, shown], alpha[..., shown])
    draw_reconstructions(
        [("original", punks.images[..., shown]), ("noisy", noisy_images[..., shown]),
         (f"denoised ({method}, d = {d})", denoised)],
        run,
        name="3b_original_noisy_denoised",
        title=f"Task 3b: denoising with {method.upper()}, sigma = {settings.noise.sigma}",
    )


def colour_mask(alpha: np.ndarray) -> np.ndarray:
    """The entries of A (1728 x N) that are colour channels of opaque pixels: where PSNR is measured."""
    h, w, n = alpha.shape
    return np.repeat((alpha > 0)[:, :, None, :], 3, axis=2).reshape(h * w * 3, n)


def postprocess(X: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What the noise model guarantees, applied to a reconstruction X (1728 x N): values lie in [0, 1], and
    transparent pixels (known from alpha) have colour 0."""
    return np.where(colour_mask(alpha), np.clip(X, 0.0, 1.0), 0.0)


def summarize(children, parent) -> None:
    """Task 3c: the clean-A error against d, one curve per method and sigma, the noise level
    ``||A_noisy - A||_F`` as a horizontal line, and the best d of each curve marked; parent metrics
    ``best_rank`` and ``best_clean_error`` (and per curve ``best_rank.<method>.sigma_<sigma>``)."""
    curves: dict[tuple[str, float], list[tuple[int, float, float]]] = defaultdict(list)
    noise_levels: dict[float, float] = {}
    for child in children:
        method, sigma = child.params["denoise.method"], float(child.params["noise.sigma"])
        curves[method, sigma].append(
            (int(child.params["rank"]), child.metrics["clean_error"], child.metrics["psnr"])
        )
        noise_levels[sigma] = child.metrics["noise_error"]
    series, rows = {}, []
    for (method, sigma), points in sorted(curves.items()):
        points.sort()
        ranks, errors, psnrs = (list(column) for column in zip(*points))
        series[f"{method.upper()}, sigma = {sigma:g}"] = (ranks, errors)
        best = int(np.argmin(errors))
        key = f"{method}.sigma_{sigma:g}"
        parent.log_metrics({f"best_rank.{key}": ranks[best], f"best_clean_error.{key}": errors[best],
                            f"best_psnr.{key}": psnrs[best]})
        rows.append(f"| {method} | {sigma:g} | {ranks[best]} | {errors[best]:.4f} | {psnrs[best]:.2f} |")
    # The headline: the noisy NMF curve (the largest sigma if several).
    noisy = [key for key in curves if key[1] > 0]
    if noisy:
        ranks, errors, _ = zip(*curves[max(noisy, key=lambda key: (key[0] == "nmf", key[1]))])
        best = int(np.argmin(errors))
        parent.log_metrics({"best_rank": ranks[best], "best_clean_error": errors[best]})
    levels = {f"noise level ||A_noisy - A||, sigma = {s:g}": v for s, v in sorted(noise_levels.items()) if s > 0}
    figure = error_against_rank(
        series, title="Task 3c: reconstruction error against the clean A", ylabel=r"$\|A - X\|_F$",
        levels=levels, mark_minimum=True,
    )
    parent.log_figure(figure, "figures/3c_clean_error_against_rank.png")
    table = "| method | sigma | best d | clean error | PSNR (dB) |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    parent.log_text(table, "tables/best_ranks.md")
