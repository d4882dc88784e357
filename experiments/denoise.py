"""Spec Task 3: denoising an image set (CryptoPunks by default, any ``data=`` image loader) with NMF (or, for
comparison, the truncated SVD).

A job adds noise to the images (3a), reconstructs them from the noisy matrix alone (3b) and measures the
reconstruction against the clean matrix; a sweep over d and sigma gives the U/L-shaped curve of 3c. An NMF job
also logs its denoiser (the learned W) as the MLflow model ``runs:/<run id>/denoiser`` (:mod:`nmf_lab.tracking.model`)
and says whether it helps: loaded back, the model denoises ``denoise.gain_images`` images outside the fit under a
fresh noise draw (:func:`experiments.shared.model_gain`), and ``model_gain_db`` (its PSNR minus the noisy images')
is in the run's description. A model fitted to few noisy images can make new ones worse (measured: at the
defaults, 500 punks and d = 64, it does).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from experiments.shared import (
    display_images,
    draw_basis,
    draw_reconstructions,
    fit_and_log,
    images_outside,
    load_noisy,
    model_gain,
    postprocess,
    shown,
    warn_if_full_rank,
)
from nmf_lab import truncated_svd
from nmf_lab.core.denoiser import Denoiser, model_input
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.metrics import psnr
from nmf_lab.presentation.figures import error_against_rank, image_grid
from nmf_lab.tracking.model import log_denoiser

METHODS = ("nmf", "svd")
HEADLINE = ("psnr_noisy", "psnr", "clean_error", "model_gain_db")
"""The metrics the CLI prints and a run's description shows first: PSNR (dB) before and after, ||A - X||_F, and
the logged model's gain (dB) on images outside its fit under fresh noise."""


@dataclass
class DenoiseSettings:
    """``denoise``: how the study reconstructs A from A_noisy.

    ``method``: ``nmf`` (W H of an NMF fitted to A_noisy) or ``svd`` (the truncated SVD of A_noisy, rank d).
    ``postprocess``: use what the noise model guarantees, for both methods alike: clip to [0, 1] and set
    the colours of transparent pixels (known from alpha) to 0 (without alpha: clip only).
    ``gain_images``: how many images outside the fit (the first ids not loaded) measure the logged model
    (``model_gain_db``).
    """

    method: str = "nmf"
    postprocess: bool = False
    gain_images: int = 100

    def check(self) -> None:
        if self.method not in METHODS:
            raise InvalidOption("method", self.method, f"one of {', '.join(METHODS)}")
        if self.gain_images < 1:
            raise InvalidOption("gain_images", self.gain_images, "an integer >= 1")


SETTINGS = {"denoise": DenoiseSettings}
"""The config node of this study's own settings (``denoise.method``, ``denoise.postprocess``)."""


def run(settings, run) -> None:
    image_set, A, A_noisy = load_noisy(settings, run)
    sigma = settings.noise.sigma
    first = shown(image_set)
    noisy_images = image_set.images_from_matrix(A_noisy[:, : first.n])
    name = image_set.name
    what = f"noisy images of {name}, sigma = {sigma:g}" if sigma > 0 else f"images of {name} (no noise, sigma = 0)"
    figure = image_grid(noisy_images, first.alpha, title=f"Task 3a: {first.n} {what}")
    run.log_figure(figure, "figures/3a_noisy_images.png")

    d, method = settings.rank, settings.denoise.method
    warn_if_full_rank(A, settings.rank)
    if method == "nmf":
        result = fit_and_log(A_noisy, settings, run)  # the curve `error` is the fit's own objective, on A_noisy
        draw_basis(result.W, image_set.shape, run, name="3b_basis_images", title="Task 3b")
        X = result.W @ result.H
    else:
        X = truncated_svd(A_noisy, d)
        final = float(np.linalg.norm(A_noisy - X))
        run.log_metrics({"final_error": final, "relative_error": final / float(np.linalg.norm(A_noisy))})
    opaque = image_set.opaque_entries()
    if settings.denoise.postprocess:
        X = postprocess(X, opaque)

    metrics = {"noise_error": float(np.linalg.norm(A_noisy - A)), "clean_error": float(np.linalg.norm(A - X))}
    if sigma > 0:  # without noise the noisy images are the clean ones: their PSNR is infinite
        metrics["psnr_noisy"] = psnr(A, A_noisy, opaque)
    run.log_metrics({**metrics, "psnr": psnr(A, X, opaque)})
    draw_reconstructions(
        [
            ("original", first.images),
            ("noisy", np.clip(noisy_images, 0.0, 1.0)),
            (f"denoised ({method}, d = {d})", display_images(image_set, X[:, : first.n])),
        ],
        run,
        alpha=first.alpha,
        name="3b_original_noisy_denoised",
        title=f"Task 3b: denoising with {method.upper()}, sigma = {sigma:g}",
    )
    if method == "nmf":  # the denoiser as a pyfunc model, runs:/<run id>/denoiser; one noisy image as its example
        denoiser = Denoiser.for_images(image_set, result.W, postprocess=settings.denoise.postprocess)
        model_uri = log_denoiser(
            run, denoiser, input_example=model_input(image_set.subset(slice(0, 1)), A_noisy[:, :1])
        )
        # Does it help? On images outside its fit, under fresh noise (a model that hurts says so).
        outside = images_outside(settings, image_set, settings.denoise.gain_images) if sigma > 0 else None
        if outside is not None:
            model_gain(run, model_uri, outside, settings, zero_rule=None)
        else:
            why = "there is no noise" if sigma == 0 else "the data set has no images outside the fit"
            run.log_text(f"The logged model was not measured: {why}.\n", "tables/model_gain.md")


def summarize(children, parent) -> None:
    """Task 3c: the clean-A error against d, one curve per method and sigma, the noise level
    ``||A_noisy - A||_F`` as a horizontal line, and the best d of each curve marked; parent metrics
    ``best_rank`` and ``best_clean_error`` (and per curve ``best_rank.<method>.sigma_<sigma>``)."""
    curves: dict[tuple[str, float], list[tuple[int, float, float]]] = defaultdict(list)
    noise_levels: dict[float, float] = {}
    for child in children:
        method, sigma = child.config.denoise.method, child.config.noise.sigma
        curves[method, sigma].append((child.config.rank, child.metrics["clean_error"], child.metrics["psnr"]))
        noise_levels[sigma] = child.metrics["noise_error"]
    series, rows = {}, []
    for (method, sigma), points in sorted(curves.items()):
        points.sort()
        ranks, errors, psnrs = (list(column) for column in zip(*points))
        series[f"{method.upper()}, sigma = {sigma:g}"] = (ranks, errors)
        best = int(np.argmin(errors))
        key = f"{method}.sigma_{sigma:g}"
        parent.log_metrics(
            {f"best_rank.{key}": ranks[best], f"best_clean_error.{key}": errors[best], f"best_psnr.{key}": psnrs[best]}
        )
        rows.append(f"| {method} | {sigma:g} | {ranks[best]} | {errors[best]:.4f} | {psnrs[best]:.2f} |")
    # The headline: the noisy NMF curve (the largest sigma if several).
    noisy = [key for key in curves if key[1] > 0]
    if noisy:
        ranks, errors, _ = zip(*curves[max(noisy, key=lambda key: (key[0] == "nmf", key[1]))])
        best = int(np.argmin(errors))
        parent.log_metrics({"best_rank": ranks[best], "best_clean_error": errors[best]})
    levels = {f"noise level ||A_noisy - A||, sigma = {s:g}": v for s, v in sorted(noise_levels.items()) if s > 0}
    figure = error_against_rank(
        series,
        title="Task 3c: reconstruction error against the clean A",
        ylabel=r"$\|A - X\|_F$",
        levels=levels,
        mark_minimum=True,
    )
    parent.log_figure(figure, "figures/3c_clean_error_against_rank.png")
    table = "| method | sigma | best d | clean error | PSNR (dB) |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    parent.log_text(table, "tables/best_ranks.md")
