"""What the studies share: the one way they fit and log a factorization, and (for image studies) loading an
image set, drawing grids and reconstructions. A study imports this module, never another study."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nmf_lab import NMFResult, fit_nmf
from nmf_lab.core.denoiser import postprocess as postprocess  # the studies' post-processing is the denoiser's
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.noise import add_noise, split_noise
from nmf_lab.data.images import ImageSet
from nmf_lab.harness.progress import fit_progress
from nmf_lab.presentation.figures import basis_grid, side_by_side_grids


def fit(A: np.ndarray, settings, mask: np.ndarray | None = None) -> NMFResult:
    """:func:`nmf_lab.fit_nmf` of ``A`` with ``settings.rank``, ``settings.init``, ``settings.seed`` and
    ``settings.solver`` (its name, stopping rule, dtype and the solver's own options), with a progress bar on
    a terminal. ``mask``: the observed entries of A (m x n booleans), or None for all."""
    solver = settings.solver
    with fit_progress(solver.max_iter, f"{solver.name}, d = {settings.rank}") as callback:
        return fit_nmf(A, settings.rank, mask=mask, callback=callback, **fit_options(settings))


def fit_options(settings) -> dict:
    """The keywords of :func:`nmf_lab.fit_nmf` a job's config sets, all but the rank, mask and callback:
    ``solver``, ``max_iter``, ``seed``, ``init``, ``dtype``, ``tol``, ``time_limit``, ``missing`` (used with a
    mask), the loss and penalties (``loss``, ``alpha_W``, ``alpha_H``, ``l1_ratio``) and the solver's options."""
    solver = settings.solver
    return {
        "solver": solver.name,
        "max_iter": solver.max_iter,
        "seed": settings.seed,
        "init": settings.init,
        "dtype": solver.dtype,
        "tol": solver.tol,
        "time_limit": solver.time_limit,
        "missing": solver.missing,
        **solver.objective(),
        **solver.options,
    }


def fit_and_log(A: np.ndarray, settings, run, mask: np.ndarray | None = None) -> NMFResult:
    """Fit ``A`` (m x n) as :func:`fit` does and log what every NMF run logs
    (:meth:`nmf_lab.tracking.run_log.RunLog.log_factorization`, plus ``figures/error_curve.png``). Returns the
    result."""
    from nmf_lab.presentation.figures import error_curves

    result = fit(A, settings, mask)
    run.log_factorization(A, result, mask)
    if result.loss == "frobenius" and not result.penalized:
        title, ylabel = f"{result.solver}, d = {result.W.shape[1]}: final error {result.final_error:.4g}", None
    else:  # the curve is the objective minimised
        title = f"{result.solver}, {result.loss} loss, d = {result.W.shape[1]}: final {result.final_error:.4g}"
        ylabel = result.objective
    figure = error_curves({"error": result.errors}, title=title, ylabel=ylabel)
    run.log_figure(figure, "figures/error_curve.png")
    return result


# -- image studies: what the image study and the denoising study draw, for any ImageSet -----------------

SHOWN = 64
"""How many images the grids show (spec 2a: 64 on an 8 x 8 grid): the first 64 of the set."""


def load_matrix(loader) -> np.ndarray:
    """The matrix A a data loader gives: an image set's :meth:`~nmf_lab.data.images.ImageSet.matrix`, or
    the matrix itself (the toy loaders)."""
    data = loader.load()
    return data.matrix() if isinstance(data, ImageSet) else np.asarray(data, dtype=np.float64)


def warn_if_full_rank(A: np.ndarray, rank: int) -> None:
    """Say so (a logged warning) when d is at least the smaller side of A: then W H can equal A, noise and
    all, and the factorization summarizes nothing (e.g. d = 64 for the 64-pixel digits)."""
    if rank >= min(A.shape):
        logging.getLogger("experiments").warning(
            "rank d = %d >= min(m, n) = %d for A of shape %s: W H can reproduce A exactly (noise included); "
            "choose a smaller rank, e.g. rank=%d",
            rank,
            min(A.shape),
            A.shape,
            max(1, min(A.shape) // 4),
        )


def shown(image_set):
    """The images the grids show: the first :data:`SHOWN` of the set (all, when it has fewer)."""
    return image_set.subset(slice(0, min(SHOWN, image_set.n)))


def dataset_name(image_set, sigma: float = 0.0) -> str:
    """The name of the run's dataset input: the set's name, with ``-noisy`` only when noise was added."""
    return f"{image_set.name}-noisy" if sigma > 0 else image_set.name


def load_noisy(settings, run):
    """The job's image set, its clean matrix A (m x n) and ``A_noisy = add_noise(A, noise.sigma, noise.seed)``
    (spec 6.1), with ``A_noisy`` logged as the run's dataset input: ``(image_set, A, A_noisy)``."""
    image_set = settings.data.load()
    A = image_set.matrix()
    sigma = settings.noise.sigma
    A_noisy = add_noise(A, sigma, settings.noise.seed)
    run.log_dataset(A_noisy, name=dataset_name(image_set, sigma), source=image_set.source)
    return image_set, A, A_noisy


def display_images(image_set, X: np.ndarray) -> np.ndarray:
    """The images (h, w, c, k) of the k columns of a reconstruction X (e.g. W H), colours clipped to [0, 1]
    for display (spec 4.2 step 5); the opacity is the set's own, passed to the figure alongside."""
    return np.clip(image_set.images_from_matrix(X), 0.0, 1.0)


def draw_basis(W: np.ndarray, shape: tuple[int, int], run, *, name: str, title: str) -> None:
    """The columns of W as images of ``shape`` (h, w) (Task 2c, 3b), also as the MLflow image
    ``basis_images``."""
    figure = basis_grid(W, shape, title=f"{title}: the {W.shape[1]} columns of W as images")
    run.log_figure(figure, f"figures/{name}.png", compare_key="basis_images")


def draw_reconstructions(panels, run, *, alpha: np.ndarray | None, name: str, title: str) -> None:
    """Grids of the same images side by side (Task 2d, 3b), also as the MLflow image ``reconstructions``.

    ``panels``: (caption, images (h, w, c, k)) pairs, e.g. originals and reconstructions; ``alpha``
    (h, w, k): their opacity, or None.
    """
    figure = side_by_side_grids(panels, alpha, title=title)
    run.log_figure(figure, f"figures/{name}.png", compare_key="reconstructions")


# -- a denoising model's check: does it help on images outside its fit? --------------------------------

FRESH_NOISE_OFFSET = 1
"""The fresh noise that measures a model (:func:`model_gain`) is drawn with seed ``noise.seed + 1``: another
draw than the one its fit saw."""


def model_gain(run, model_uri: str, unseen, settings, *, zero_rule: bool | None) -> float:
    """Measure the logged denoising model ``model_uri`` on the images ``unseen`` (an ImageSet outside its fit)
    under a fresh noise draw (``noise.sigma``, seed ``noise.seed + 1``): the model as a user loads it
    (``mlflow.pyfunc.load_model``, ``params={'zero_rule': zero_rule}``), its PSNR against the clean images
    minus the noisy images'. Logs ``model_gain_db`` (> 0: it helps), ``psnr_model_fresh``,
    ``psnr_noisy_fresh``, ``model_gain_images`` and ``tables/model_gain.md`` (a sentence the run's description
    shows: whether the model helps). Returns the gain in dB."""
    from nmf_lab.core.denoiser import model_input
    from nmf_lab.core.metrics import psnr
    from nmf_lab.tracking.model import predict

    sigma, seed = settings.noise.sigma, settings.noise.seed + FRESH_NOISE_OFFSET
    A, opaque = unseen.matrix(), unseen.opaque_entries()
    A_fresh = add_noise(A, sigma, seed)
    denoised = predict(model_uri, model_input(unseen, A_fresh), client=run.client, zero_rule=zero_rule)
    channels = unseen.images.shape[2]
    X = denoised[..., :channels].reshape(unseen.n, -1).T
    before, after = psnr(A, A_fresh, opaque), psnr(A, X, opaque)
    gain = after - before
    run.log_metrics(
        {"model_gain_db": gain, "psnr_model_fresh": after, "psnr_noisy_fresh": before, "model_gain_images": unseen.n}
    )
    verdict = "**The logged model helps**" if gain > 0 else "**The logged model makes noisy images worse**"
    rule = "" if zero_rule is None else f", zero_rule={bool(zero_rule)}"
    run.log_text(
        f"{verdict}: on {unseen.n} images outside its fit ({images_named(unseen)}) with fresh noise (sigma = "
        f"{sigma:g}, seed {seed}{rule}), it takes the PSNR from {before:.2f} dB to {after:.2f} dB "
        f"(model_gain_db {gain:+.2f})." + ("" if gain > 0 else " It is not registered.") + "\n",
        "tables/model_gain.md",
    )
    return gain


def images_named(image_set) -> str:
    """The ids of an image set in a few words: ``ids 500..599`` when consecutive, else the first few."""
    ids = np.asarray(image_set.ids)
    if ids.size and np.array_equal(ids, np.arange(ids[0], ids[0] + ids.size)):
        return f"ids {ids[0]}..{ids[-1]}"
    return f"ids {', '.join(map(str, ids[:5].tolist()))}{', ...' if ids.size > 5 else ''}"


def images_outside(settings, image_set, count: int):
    """Up to ``count`` images of the job's data set that are not in ``image_set`` (those the job loaded): the
    first ids of the set not among its ids, from the job's loader asked for ``n_images + count`` images in id
    order. None when the loader has no ``n_images`` or no more images."""
    import dataclasses

    from nmf_lab.core.errors import InvalidOption

    n = getattr(settings.data, "n_images", None)
    if n is None:
        return None
    try:
        larger = dataclasses.replace(settings.data, n_images=n + count, subset="first").load()
    except (InvalidOption, TypeError, ValueError):
        return None
    outside = np.flatnonzero(~np.isin(np.asarray(larger.ids), np.asarray(image_set.ids)))[:count]
    return larger.subset(outside) if outside.size else None


# -- denoisers chosen from the noisy images alone (experiment=denoise_best, experiment=denoise_search)


def check_denoiser_inputs(settings, node: str) -> None:
    """What a denoiser chosen from the noisy images needs (``settings`` a job's config, ``node`` its study's
    settings node, with ``first``): noise to remove, a solver config, and images beyond the ``first`` test ones."""
    if settings.noise.sigma <= 0:
        raise InvalidOption("noise.sigma", settings.noise.sigma, "a noise level > 0 (there is nothing to denoise)")
    if settings.solver is None:
        raise InvalidOption("solver", None, "a solver config (solver=hals)")
    first = getattr(settings, node).first
    n = getattr(settings.data, "n_images", None)
    if n is not None and n < first + 2:
        raise InvalidOption(f"{node}.first", first, f"at most data.n_images - 2 = {n - 2} (test images)")


def post_processed(X: np.ndarray, A_noisy: np.ndarray, opaque: np.ndarray, *, keep_zeros: bool) -> np.ndarray:
    """X clipped to [0, 1] with the transparent pixels at 0 (:func:`nmf_lab.core.denoiser.postprocess`), and with
    ``keep_zeros`` the entries that are 0 in ``A_noisy`` at 0 too (as the denoiser's ``keep_zeros``)."""
    X = postprocess(X, opaque)
    return np.where(A_noisy > 0, X, 0.0) if keep_zeros else X


@dataclass(frozen=True)
class NoiseSplit:
    """Noisy images split into two copies with independent noise (:func:`nmf_lab.core.noise.split_noise`): a
    denoiser fits ``A_in`` (m x n, float32, noise ``sigma sqrt(1 + tau^2)``) and its post-processed
    reconstruction is scored against ``target`` on the ``scored`` entries (opaque, non-zero in the noisy
    images): :meth:`score` estimates its clean error plus a constant, from the noisy images alone."""

    A_in: np.ndarray
    target: np.ndarray
    scored: np.ndarray
    opaque: np.ndarray
    keep_zeros: bool

    @classmethod
    def of(cls, A_noisy: np.ndarray, opaque: np.ndarray, *, sigma: float, tau: float, seed: int, keep_zeros: bool):
        A_in, target = split_noise(A_noisy, sigma, tau, seed)
        return cls(A_in.astype(np.float32), target, opaque & (A_noisy > 0), opaque, keep_zeros)

    def score(self, X: np.ndarray) -> float:
        """The mean squared error of the post-processed ``X`` (a reconstruction of ``A_in``) against ``target``."""
        residual = post_processed(X, self.A_in, self.opaque, keep_zeros=self.keep_zeros) - self.target
        return float(np.mean(residual[self.scored] ** 2))


def ensemble_scores(
    split: NoiseSplit, rank: int, options: dict, most: int, *, total: np.ndarray | None = None, fitted: int = 0
) -> Iterator[float]:
    """Fits of ``split.A_in`` at ``rank`` (``fit_nmf`` ``options``, seeds ``options["seed"] + k``) added one by one
    to a mean, k = ``fitted`` .. ``most`` - 1 (``total``: the sum of the ``W H`` of the first ``fitted`` if any);
    after each, the :meth:`NoiseSplit.score` of the mean so far."""
    for k in range(fitted, most):
        result = fit_nmf(split.A_in, rank, **{**options, "seed": options["seed"] + k})
        X = result.W @ result.H
        total = X.astype(np.float64) if total is None else total + X
        yield split.score(total / (k + 1))
