"""What the studies share: the one way they fit and log a factorization, and (for image studies) loading an
image set, drawing grids and reconstructions. A study imports this module, never another study."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nmf_lab import NMFResult, fit_nmf
from nmf_lab.core.denoiser import postprocess as postprocess  # the studies' post-processing is the denoiser's
from nmf_lab.core.noise import add_noise
from nmf_lab.core.rank_selection import RowHoldout
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


# -- denoisers fitted on some images and chosen on others (experiment=denoise_best, experiment=denoise_search)


@dataclass(frozen=True)
class Split:
    """Which images (column indices) are test, validation and training images: the test images are out of every
    fit and choice (scored only), the validation images choose, the training images are fitted."""

    test: np.ndarray
    validation: np.ndarray
    train: np.ndarray

    @classmethod
    def of(cls, n: int, first: int, validation: int, seed: int) -> Split:
        """Test: 0..first - 1; validation: ``validation`` of the others, ``default_rng(seed).choice``, sorted;
        training: the rest."""
        if n < first + validation + 2:
            raise ValueError(f"{n} images are too few for {first} test and {validation} validation images")
        others = np.arange(first, n)
        chosen = np.sort(np.random.default_rng(seed).choice(others, validation, replace=False))
        return cls(test=np.arange(first), validation=chosen, train=np.setdiff1d(others, chosen))


def validation_holdout(A_noisy: np.ndarray, opaque: np.ndarray, split: Split, node) -> RowHoldout:
    """The validation images of ``split`` with ``node.folds`` disjoint sets of ``node.holdout`` of the rows held
    out (seed ``node.cv_seed``), scored on their opaque entries through the model's projection (tolerance
    ``node.model_tol``)."""
    return RowHoldout.of(
        A_noisy[:, split.validation],
        folds=node.folds,
        holdout=node.holdout,
        candidates=opaque[:, split.validation],
        seed=node.cv_seed,
        tol=node.model_tol,
    )


def member_fits(
    train: np.ndarray, holdout: RowHoldout, rank: int, options: dict, most: int, *, first: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, float]]:
    """Fits of the training images ``train`` at ``rank`` (``fit_nmf`` ``options``, seeds ``options["seed"] + k``),
    up to ``most``, one by one: each fit's W and the held-out error (:class:`RowHoldout`) of the mean of the
    predictions of the fits so far. ``first``: the first fit's W if it is already known."""
    sums = None
    for k in range(most):
        seed = options["seed"] + k
        W = first if k == 0 and first is not None else fit_nmf(train, rank, **{**options, "seed": seed}).W
        predictions = holdout.predictions(W)
        sums = predictions if sums is None else [total + P for total, P in zip(sums, predictions)]
        yield W, float(np.mean(holdout.fold_errors([total / (k + 1) for total in sums])))
