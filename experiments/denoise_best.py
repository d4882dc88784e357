"""The best NMF denoiser nmf-lab builds (issue 11, section 4; issue 20): a mean of early-stopped HALS fits of the
noisy images, with d, the iteration budget and the number of fits all chosen from the noisy images at run time,
the post-processing the noise model allows, and a model measured on punks it never saw.

**Inputs.** Only the noisy images ``A_noisy = add_noise(A, sigma, seed)`` (spec 6.1: Gaussian noise on the
non-zero entries of A, clipped to [0, 1]; zero entries stay exactly zero), their noise level ``sigma`` (a
property of the noise model, like the zero rule) and the alpha channel (which pixels are transparent), as in
every study. The noise is one draw for the whole matrix of N images (N = 10,000 punks by default), so the first
500 noisy punks here are not those of ``experiment=denoise`` (N = 500). The clean images only score.

**Test images.** The first ``denoise_best.first`` (punks 0..499) are out of every choice and of the model's fit:
the logged model denoises them as punks it never saw (``psnr_unseen``).

**The score** (:class:`experiments.shared.NoiseSplit`, :func:`nmf_lab.core.noise.split_noise`). The other noisy
images are split into two copies with independent noise: ``A_in = A_noisy + tau Z`` (clipped) and ``A_target =
A_noisy - Z / tau``, with ``Z`` fresh Gaussian noise of level ``sigma`` (seed ``cv_seed``). A candidate denoiser
fits ``A_in`` (noise ``sigma sqrt(1 + tau^2)``, 1.12 sigma for tau = 0.5), and its post-processed
reconstruction is scored by its mean squared error against ``A_target`` over the opaque non-zero entries: the
noise of the target is independent of what was fitted, so the score is the clean error plus a constant, and
what minimises it needs no clean image. (A held-out *entry* error measures prediction instead, and favours other
d and budgets than denoising does; see :mod:`nmf_lab.core.rank_selection`.)

**Method** (every choice from the score; the user's inputs are the grid of d, tau, the checkpoint step, the
patience, the probes, the tolerance and the compute budget ``max_members``).

1. *d and the iteration budget* (:func:`nmf_lab.core.rank_selection.select_ensemble`): for every d of
   ``denoise_best.ranks``, ``probes`` HALS fits of ``A_in`` (float32, seeds ``seed, seed + 1, ...``) are scored
   every ``every`` iterations without restarting them, up to ``solver.max_iter`` or until the first fit's
   score has not reached a new minimum for ``patience`` iterations; the curve of d is the score of the mean of
   the probes. d and the budget are the lowest point: the mean of fits averages out part of what each fits of
   the noise, so it wants a richer, longer fit than one fit does.
2. *The number of fits*: from the probes, more fits of ``A_in`` at that d and budget are added while the score
   of their mean falls by more than ``member_tol`` times what the second fit did (a diminishing-returns rule
   without a scale), up to ``max_members`` fits (the compute budget). Early stopping is the regulariser: HALS
   from a random start fits the structure shared by many images first and the noise later; fits from
   different seeds share the signal but fit different parts of the noise.
3. *Post-processing from the noise model alone* (:func:`nmf_lab.core.denoiser.postprocess` and the denoiser's
   ``keep_zeros``): the clean images lie in [0, 1] (clip), transparent pixels have colour 0, and an entry that
   is 0 in ``A_noisy`` is set to 0 (*the zero rule*): the noise never moves a zero entry, and a non-zero entry a
   becomes 0 only when the noise falls below -a (probability ``Phi(-a / sigma)``, small unless a < sigma).
   It holds only for this noise model (zero entries get no noise): its gain is logged
   (``psnr_first_500_no_zero_rule``, ``psnr_unseen_no_zero_rule``), and the logged model applies it only when
   the caller says so (``params={'zero_rule': True}``; without the parameter it refuses to predict).

*The transductive denoiser* is the mean of that many fits of all N noisy images (``A_noisy``, the test images
included: a denoiser may fit the noisy images it denoises), post-processed: ``psnr_first_500`` over the test images
and ``psnr`` over all N. *The model* (``runs:/<run id>/denoiser``) holds the bases W of as many fits of the other
noisy images, projects new images onto each and averages, with the same post-processing. The run loads it back with
``mlflow.pyfunc.load_model`` and applies it to the noisy test images (``psnr_unseen``); it measures it on a fresh
noise draw of the test images too (``model_gain_db``, :func:`experiments.shared.model_gain`), and registers it as
``nmf-lab-denoiser`` only if it helps.

**Scoring** (the clean images are used here only): PSNR over the colour channels of opaque pixels. For each
run-time choice the run also logs what the clean images would have chosen and the PSNR the choice lost:
``oracle_rank`` / ``psnr_loss`` (the mean of ``probes`` fits of all images at each d of the grid, at the chosen
budget), ``oracle_iterations`` / ``psnr_loss_iterations`` (the same at the chosen d, scored every ``every``
iterations), ``oracle_members`` /
``psnr_loss_members`` (the mean of the first k fits of all images, k up to ``max_members``). The same run
compares, on the same first noisy images: the study's method (``experiments.denoise``: NMF of those images
alone, mu, ``study_iter`` iterations, at the d of ``study_ranks`` that is best against the clean images) and
the truncated SVD (at its best d of ``svd_ranks``), with and without post-processing, and each step of the
method with its gain (``tables/steps.md``, ``figures/psnr_by_step.png``).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from experiments.shared import (
    NoiseSplit,
    check_denoiser_inputs,
    display_images,
    draw_reconstructions,
    ensemble_scores,
    fit_options,
    load_noisy,
    model_gain,
    post_processed,
    shown,
)
from nmf_lab import NMFResult, fit_nmf, truncated_svd
from nmf_lab.core.denoiser import Denoiser, model_input, postprocess
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.metrics import psnr
from nmf_lab.core.rank_selection import BudgetSelection, EnsembleSelection, select_ensemble
from nmf_lab.presentation.figures import cross_validation_curves, psnr_by_step, run_time_choices
from nmf_lab.tracking.model import describe, log_denoiser, predict, register_denoiser

HEADLINE = (
    "psnr_first_500",
    "psnr_unseen",
    "model_gain_db",
    "psnr",
    "cv_rank",
    "cv_iterations",
    "cv_members",
    "psnr_study",
    "wall_seconds",
    "cpu_seconds",
)
"""What the CLI prints first: the PSNRs (dB) of the denoiser over the first images (transductive), of the model
on them unseen, the model's gain on fresh noise, the PSNR over all, the three run-time choices, the study's
method at its best d on the same images, and the run's wall and CPU time."""


@dataclass
class DenoiseBestSettings:
    """``denoise_best``: the denoiser's inputs (none tuned on clean images), and what it is compared with.

    ``ranks``: the grid of d; ``tau``, ``cv_seed``: the noise splitting (:func:`nmf_lab.core.noise.split_noise`:
    the fits see noise ``sigma sqrt(1 + tau^2)``) and its seed; ``every``, ``patience``: the split score is
    measured every ``every`` iterations, up to ``solver.max_iter``, and a curve stops once it has not reached a
    new minimum for ``patience`` iterations; ``probes``: the fits each curve averages; ``max_members``: the compute
    budget, at most this many fits; ``member_tol``: a fit is kept while it lowers the split score by more than
    this fraction of what the second fit did; ``keep_zeros``: the zero rule (noisy zeros stay 0); ``first``: the
    test images 0..first - 1, out of the model's fit and every choice, scored (``psnr_first_500``,
    ``psnr_unseen``); ``study_ranks``, ``study_iter``: the study's method (mu on the first images alone) at the
    best of these d; ``svd_ranks``: the truncated SVD likewise; ``model_tol``: the tolerance of the model's
    projection (:func:`nmf_lab.core.transform.transform`); ``registered_model``: the registered model's name (''
    registers none).
    """

    ranks: list[int] = field(default_factory=lambda: [128, 192, 256, 320])
    tau: float = 0.5
    cv_seed: int = 0
    every: int = 5
    patience: int = 15
    probes: int = 4
    max_members: int = 16
    member_tol: float = 0.01
    keep_zeros: bool = True
    first: int = 500
    study_ranks: list[int] = field(default_factory=lambda: [64, 96, 128, 160, 192])
    study_iter: int = 1000
    svd_ranks: list[int] = field(default_factory=lambda: [16, 24, 32, 48, 64, 96, 128])
    model_tol: float = 0.01
    registered_model: str = "nmf-lab-denoiser"

    def check(self) -> None:
        for key in ("ranks", "study_ranks", "svd_ranks"):
            values = getattr(self, key)
            if not values or len(set(values)) != len(values) or min(values) < 1:
                raise InvalidOption(key, values, "a non-empty list of distinct integers >= 1")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise InvalidOption("tau", self.tau, "a finite number > 0 (the splitting's noise is tau times sigma)")
        for key, minimum in (
            ("cv_seed", 0),
            ("every", 1),
            ("patience", 1),
            ("probes", 2),
            ("first", 1),
            ("study_iter", 1),
        ):
            if getattr(self, key) < minimum:
                raise InvalidOption(key, getattr(self, key), f"an integer >= {minimum}")
        if self.max_members < self.probes:
            raise InvalidOption("max_members", self.max_members, f"an integer >= probes = {self.probes}")
        if not self.member_tol >= 0:
            raise InvalidOption("member_tol", self.member_tol, "a number >= 0")
        if not self.model_tol > 0:
            raise InvalidOption("model_tol", self.model_tol, "a number > 0")


log = logging.getLogger("experiments.denoise_best")

SETTINGS = {"denoise_best": DenoiseBestSettings}
"""The config node of this study's own settings."""


def check(settings) -> None:
    """The denoiser's inputs (:func:`experiments.shared.check_denoiser_inputs`), and fits that run to every
    checkpoint of the curves."""
    check_denoiser_inputs(settings, "denoise_best")
    best = settings.denoise_best
    if settings.solver.tol or settings.solver.time_limit is not None:
        raise InvalidOption("solver.tol", settings.solver.tol, "0 and no solver.time_limit: the budget is chosen "
                            "from the curves, every fit runs to its checkpoints")  # fmt: skip
    if settings.solver.max_iter < best.every:
        raise InvalidOption(
            "solver.max_iter",
            settings.solver.max_iter,
            f"the largest budget, at least denoise_best.every = {best.every}",
        )


# -- the denoiser: from the noisy images alone ----------------------------------------------------------


@dataclass
class MemberSelection:
    """How many fits: the split score of the mean of the first k fits of the split input (``errors[k - 1]``,
    k = 1 .. fitted) and the count kept (``count``)."""

    errors: list[float]
    count: int
    tol: float


@dataclass
class Denoising:
    """What :func:`denoise` built: the test images, the choices (d and budget; the members), the fits of all
    images (``fits``), the model's bases (``bases``: fits of the other images), the denoised ``X`` (m x n, the
    mean of ``fits`` post-processed) and the seconds each part took."""

    test: np.ndarray
    rest: np.ndarray
    selection: BudgetSelection
    members: MemberSelection
    fits: list[NMFResult]
    bases: list[np.ndarray]
    X: np.ndarray
    seconds: dict[str, float]


def denoise(A_noisy: np.ndarray, opaque: np.ndarray, settings) -> Denoising:
    """The method of the module docstring, steps 1-3, from the noisy images ``A_noisy`` (m x n) and the opaque
    entries ``opaque`` (bool m x n) alone; ``settings`` is the job's config (solver, seed, noise.sigma,
    ``denoise_best``)."""
    best = settings.denoise_best
    options = fit_options(settings)
    n = A_noisy.shape[1]
    if n < best.first + 2:
        raise ValueError(f"{n} images are too few for {best.first} test images and two others")
    test, rest = np.arange(best.first), np.arange(best.first, n)
    start = time.perf_counter()
    split = NoiseSplit.of(A_noisy[:, rest], opaque[:, rest], sigma=settings.noise.sigma, tau=best.tau,
                          seed=best.cv_seed, keep_zeros=best.keep_zeros)  # fmt: skip
    chosen = select_ensemble(
        split.A_in,
        split.score,
        best.ranks,
        every=best.every,
        max_iter=settings.solver.max_iter,
        patience=best.patience,
        probes=best.probes,
        on_checkpoint=lambda d, k, error: log.info("split score: d = %d, %d iterations: %.7f", d, k, error),
        **{key: value for key, value in options.items() if key != "max_iter"},
    )
    selection = chosen.selection
    if selection.rank == selection.ranks[-1] or selection.budget == selection.iterations[-1]:
        log.warning(
            "the choice is at the edge of what was tried (d = %d of %s, %d of at most %d iterations): the score "
            "was still falling there; widen denoise_best.ranks or raise solver.max_iter",
            selection.rank, selection.ranks.tolist(), selection.budget, selection.iterations[-1],
        )  # fmt: skip
    cv_done = time.perf_counter()
    members = choose_members(split, chosen, settings)
    members_done = time.perf_counter()
    budget = {**options, "max_iter": selection.budget}
    fits = [fit_nmf(A_noisy, selection.rank, **{**budget, "seed": settings.seed + k}) for k in range(members.count)]
    others = np.ascontiguousarray(A_noisy[:, rest])
    bases = [fit_nmf(others, selection.rank, **{**budget, "seed": settings.seed + k}).W for k in range(members.count)]
    fits_done = time.perf_counter()
    X = post_processed(ensemble_mean(fits), A_noisy, opaque, keep_zeros=best.keep_zeros)
    seconds = {
        "cv_seconds": cv_done - start,
        "members_seconds": members_done - cv_done,
        "fit_seconds": fits_done - members_done,
    }
    return Denoising(test=test, rest=rest, selection=selection, members=members, fits=fits, bases=bases, X=X,
                     seconds=seconds)  # fmt: skip


def choose_members(split: NoiseSplit, chosen: EnsembleSelection, settings) -> MemberSelection:
    """Step 2: starting from the probes of the choice of d and budget (``chosen``), fits of the split input at
    that d and budget (seeds ``seed + probes, ...``) are added while the split score of their mean falls by more
    than ``member_tol`` times what the second fit did, up to ``max_members`` (see the module docstring)."""
    best = settings.denoise_best
    selection = chosen.selection
    options = {**fit_options(settings), "max_iter": selection.budget}
    errors = list(chosen.member_scores)
    more = ensemble_scores(split, selection.rank, options, best.max_members, total=chosen.total, fitted=chosen.probes)
    for k in itertools.count():
        if k >= len(errors):
            error = next(more, None)
            if error is None:
                break
            errors.append(error)
            log.info("fits of the split input: %d, split score %.7f", k + 1, error)
        fall = errors[k - 1] - errors[k] if k >= 1 else None
        if fall is not None and not (fall > 0 and fall > best.member_tol * (errors[0] - errors[1])):
            return MemberSelection(errors=errors[: k + 1], count=k, tol=best.member_tol)  # stop, without it
    return MemberSelection(errors=errors, count=len(errors), tol=best.member_tol)


def ensemble_mean(fits: list[NMFResult]) -> np.ndarray:
    """``mean_k W_k H_k`` (m x n, float64) of the member fits, summed in order."""
    X = np.zeros((fits[0].W.shape[0], fits[0].H.shape[1]), dtype=np.float64)
    for result in fits:
        X += result.W @ result.H
    return X / len(fits)


# -- the study: denoise, score, compare, log ------------------------------------------------------------


def run(settings, run) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    best = settings.denoise_best
    image_set, A, A_noisy = load_noisy(settings, run)
    sigma = settings.noise.sigma
    opaque = image_set.opaque_entries()
    built = denoise(A_noisy, opaque, settings)  # the noisy images alone
    selection, d, budget, count = built.selection, built.selection.rank, built.selection.budget, built.members.count
    options = {**fit_options(settings), "max_iter": budget}

    # Everything below is evaluation: the clean images A score the denoiser and choose the baselines' d.
    test = built.test
    n_first = test.size
    first = slice(0, n_first)

    def scores(X: np.ndarray) -> tuple[float, float]:
        """(PSNR over the first images, PSNR over all), dB."""
        return psnr(A[:, first], X[:, first], opaque[:, first]), psnr(A, X, opaque)

    def full(X: np.ndarray) -> np.ndarray:
        return post_processed(X, A_noisy, opaque, keep_zeros=best.keep_zeros)

    psnr_first, psnr_all = scores(built.X)
    # What the clean images would have chosen (one choice at a time, the others as chosen), and the PSNR lost.
    extra = [
        fit_nmf(A_noisy, d, **{**options, "seed": settings.seed + k}) for k in range(count, best.max_members)
    ]  # more fits of all images, up to the compute budget: only to score the choice of the count
    by_members = members_curve(built.fits + extra, full, scores)
    oracle_members = int(np.argmax([value for value, _ in by_members])) + 1
    clean_by_rank = probes_by_rank(A_noisy, settings, built, lambda X: scores(full(X))[0])
    oracle = max(clean_by_rank, key=clean_by_rank.get)
    iterations, clean_by_iterations = probes_by_iterations(A_noisy, settings, built, lambda X: scores(full(X))[0])
    oracle_iterations = int(iterations[int(np.argmax(clean_by_iterations))])
    at_budget = clean_by_iterations[list(iterations).index(budget)]

    study = study_method(A[:, first], A_noisy[:, first], opaque[:, first], settings)
    svd = svd_method(A[:, first], A_noisy[:, first], opaque[:, first], best.svd_ranks)
    one_fit = built.fits[0].W @ built.fits[0].H
    steps = [
        ("noisy images", *scores(A_noisy)),
        (
            f"study's method: mu, {best.study_iter} iterations, first {n_first} only, best d = {study['rank']}",
            study["raw"],
            None,
        ),
        ("+ clip to [0, 1], transparent pixels 0", study["postprocessed"], None),
        ("+ noisy zeros stay 0", study["zero_rule"], None),
        (
            f"all {image_set.n} images, one {settings.solver.name} fit, validated d = {d} and budget "
            f"{budget} iterations",
            *scores(full(one_fit)),
        ),
        (f"mean of {count} fits (count by the split score)", psnr_first, psnr_all),
    ]
    raw_mean = ensemble_mean(built.fits)
    no_zero_rule = scores(postprocess(raw_mean, opaque))
    ablations = [  # the last step without one of its parts
        ("the zero rule (clipped, transparent pixels 0)", *no_zero_rule),
        ("any post-processing", *scores(raw_mean)),
        ("the ensemble (one fit, post-processed)", *scores(full(one_fit))),
    ]
    zeros = (A_noisy == 0) & opaque
    wrong = zeros & (A > 0)  # noisy zeros whose clean value is not 0: where the zero rule errs
    metrics = {
        "psnr_first_500": psnr_first,
        "psnr": psnr_all,
        "psnr_first_500_no_zero_rule": no_zero_rule[0],
        "psnr_no_zero_rule": no_zero_rule[1],
        "psnr_noisy_first_500": steps[0][1],
        "psnr_noisy": steps[0][2],
        "cv_rank": d,
        "cv_iterations": budget,
        "cv_members": count,
        "oracle_rank": oracle,
        "psnr_probes_cv_rank": clean_by_rank[d],
        "psnr_probes_oracle_rank": clean_by_rank[oracle],
        "psnr_loss": clean_by_rank[oracle] - clean_by_rank[d],
        "oracle_iterations": oracle_iterations,
        "psnr_probes_cv_iterations": at_budget,
        "psnr_probes_oracle_iterations": float(np.max(clean_by_iterations)),
        "psnr_loss_iterations": float(np.max(clean_by_iterations)) - at_budget,
        "oracle_members": oracle_members,
        "psnr_oracle_members": by_members[oracle_members - 1][0],
        "psnr_loss_members": by_members[oracle_members - 1][0] - by_members[count - 1][0],
        "members": count,
        "max_members": best.max_members,
        "psnr_study": study["raw"],
        "psnr_study_postprocessed": study["postprocessed"],
        "study_rank": study["rank"],
        "psnr_svd": svd["raw"],
        "psnr_svd_postprocessed": svd["postprocessed"],
        "svd_rank": svd["rank"],
        "gain_over_study": psnr_first - study["raw"],
        "zero_rule_gain": psnr_first - ablations[0][1],
        "zero_rule_wrong_fraction": float(np.count_nonzero(wrong) / max(1, np.count_nonzero(zeros))),
        "zero_rule_wrong_mean": float(A[wrong].mean()) if wrong.any() else 0.0,
        "n_images": image_set.n,
        "n_test": n_first,
        "n_train": built.rest.size,
        "seconds_per_iteration": float(np.median(np.concatenate([np.diff(r.times) for r in built.fits]))),
        **built.seconds,
    }
    run.log_metrics(metrics)
    for k, (value_first, value_all) in enumerate(by_members, start=1):
        run.log_metrics({"psnr_first_500_by_members": value_first, "psnr_by_members": value_all}, step=k)
    for k, value in enumerate(built.members.errors, start=1):
        run.log_metrics({"split_score_by_members": value}, step=k)
    by_rank = selection.by_rank()
    for g, rank in enumerate(selection.ranks.tolist()):
        run.log_metrics(
            {
                "split_score": by_rank.mean[g],
                "best_iterations": int(selection.iterations[selection.best_checkpoints()[g]]),
                "psnr_probes_by_rank": clean_by_rank[rank],
            },
            step=rank,
        )
        for k, value in zip(*selection.curve(rank)):
            run.log_metrics({f"split_score_d{rank}": value}, step=int(k))
    for k, value in zip(iterations, clean_by_iterations):
        run.log_metrics({"psnr_probes_by_iterations": value}, step=int(k))
    run.log_array(built.X[:, first], "arrays/denoised_first.npy")
    run.log_array(selection.mean, "arrays/split_scores.npy")
    run.log_array(selection.ranks, "arrays/ranks.npy")
    run.log_array(selection.iterations, "arrays/iterations.npy")
    run.log_array(np.asarray(built.members.errors), "arrays/split_score_by_members.npy")
    run.log_text(steps_table(steps, ablations, n_first, image_set.n), "tables/steps.md")
    run.log_text(choices_table(metrics, best), "tables/choices.md")

    sizes = list(range(1, len(by_members) + 1))
    figure = psnr_by_step(
        [(label, value) for label, value, _ in steps],
        {
            f"first {n_first} images": (sizes, [value for value, _ in by_members]),
            f"all {image_set.n} images": (sizes, [value for _, value in by_members]),
        },
        title=f"Denoising {image_set.n} noisy images of {image_set.name}, sigma = {sigma:g}",
        bars_title=f"PSNR over the first {n_first} images, step by step",
        curves_title=f"the mean of the first k fits (d = {d}, {budget} iter.)",
    )
    run.log_figure(figure, "figures/psnr_by_step.png")
    noise_of_target = sigma**2 * (1 + 1 / best.tau**2)  # the score is the clean MSE plus this (module docstring)

    def estimated_rmse(scores):  # the split score without the target's noise: an estimate of the clean RMSE
        return np.sqrt(np.maximum(np.asarray(scores) - noise_of_target, 0.0))

    figure = cross_validation_curves(
        selection.ranks.tolist(),
        estimated_rmse(by_rank.fold_errors),
        by_rank.standard_error,
        d,
        (
            [10 ** (-clean_by_rank[rank] / 20) for rank in selection.ranks.tolist()],
            f"clean RMSE, mean of {best.probes} fits ({budget} it.), first {n_first}",
        ),
        score=("the split score (noisy data alone)", "estimated clean RMSE"),
        title=f"d from the split score of {built.rest.size} noisy images (the mean of {best.probes} "
        f"{settings.solver.name} fits, each d at its best budget): d = {d}",
    )
    run.log_figure(figure, "figures/rank_cv.png")
    figure = run_time_choices(
        {rank: (k, estimated_rmse(v)) for rank, (k, v) in ((r, selection.curve(r)) for r in selection.ranks.tolist())},
        d,
        budget,
        (iterations, clean_by_iterations),
        estimated_rmse(built.members.errors),
        [value for value, _ in by_members],
        count,
        title=f"Chosen from the noisy images: d = {d}, {budget} iterations, {count} fits "
        f"(clean-best: d = {oracle}, {oracle_iterations} iterations, {oracle_members} fits)",
        clean_label=f"clean PSNR, first {n_first} (evaluation only)",
        score=("the split score", "estimated clean RMSE"),
    )
    run.log_figure(figure, "figures/choices.png")

    # The denoiser as a model: the bases of the fits of the training images (never the test images).
    denoiser = Denoiser.for_images(image_set, built.bases, tol=best.model_tol, keep_zeros=best.keep_zeros)
    test_set = image_set.subset(test)
    model_uri = log_denoiser(run, denoiser, input_example=model_input(test_set.subset(slice(0, 1)), A_noisy[:, :1]))
    noisy_test = model_input(test_set, A_noisy[:, test])
    unseen = {}
    for zero_rule in (True, False):
        out = predict(model_uri, noisy_test, client=run.client, zero_rule=zero_rule)
        X_model = out[..., : image_set.images.shape[2]].reshape(n_first, -1).T
        unseen[zero_rule] = psnr(A[:, test], X_model, opaque[:, test])
    run.log_metrics({"psnr_unseen": unseen[best.keep_zeros], "psnr_unseen_no_zero_rule": unseen[False]})
    gain = model_gain(run, model_uri, test_set, settings, zero_rule=best.keep_zeros)
    table = comparison_table({**metrics, "psnr_unseen": unseen[best.keep_zeros]}, study, svd, n_first)
    run.log_text(table, "tables/comparison.md")
    shown_set = shown(test_set)  # the study's method denoised the first images only
    k = shown_set.n
    draw_reconstructions(
        [
            ("noisy", np.clip(image_set.images_from_matrix(A_noisy[:, :k]), 0.0, 1.0)),
            (f"study's method (d = {study['rank']})", display_images(image_set, study["X"][:, :k])),
            (f"this denoiser ({count} fits, d = {d})", display_images(image_set, built.X[:, :k])),
            ("clean", shown_set.images),
        ],
        run,
        alpha=shown_set.alpha,
        name="noisy_denoised_clean",
        title=f"sigma = {sigma:g}: the study's method {study['raw']:.2f} dB, this denoiser {psnr_first:.2f} dB "
        f"(PSNR over the first {n_first})",
    )
    if best.registered_model:
        if gain > 0:
            register_denoiser(
                run,
                model_uri,
                best.registered_model,
                gain_db=gain,
                description=f"{describe(denoiser)} Fitted on {built.rest.size} noisy images; on the "
                f"{n_first} test images it never saw: {unseen[best.keep_zeros]:.2f} dB; on a fresh noise draw of them "
                f"it gains {gain:+.2f} dB.",
            )
        else:
            run.set_tags({"nmf_lab.model_not_registered": f"model_gain_db {gain:+.2f}: it makes images worse"})
    run.log_metrics({"wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu})


def probes_by_iterations(A_noisy: np.ndarray, settings, built: Denoising, score) -> tuple[np.ndarray, list[float]]:
    """Evaluation of the choice of the budget: the mean of ``probes`` fits of all images at the chosen d (seeds
    ``seed, seed + 1, ...``) up to the last checkpoint the choice reached at that d, ``score`` of it every
    ``every`` iterations (``on_iterate``: the same fits, never restarted)."""
    best = settings.denoise_best
    iterations = built.selection.curve(built.selection.rank)[0]
    totals: list[np.ndarray] = []

    def checkpoint(k: int, W: np.ndarray, H: np.ndarray) -> None:
        if k % best.every == 0:
            c = k // best.every - 1
            if c == len(totals):
                totals.append((W @ H).astype(np.float64))
            else:
                totals[c] += W @ H

    options = {**fit_options(settings), "max_iter": int(iterations[-1])}
    for k in range(best.probes):
        fit_nmf(A_noisy, built.selection.rank, on_iterate=checkpoint, **{**options, "seed": settings.seed + k})
    return iterations, [score(total / best.probes) for total in totals]


def members_curve(fits: list[NMFResult], full, scores) -> list[tuple[float, float]]:
    """``scores`` of the post-processed (``full``) mean of the first k fits, k = 1..K."""
    total, curve = 0.0, []
    for k, result in enumerate(fits, start=1):
        total = total + result.W @ result.H
        curve.append(scores(full(total / k)))
    return curve


def probes_by_rank(A_noisy: np.ndarray, settings, built: Denoising, score) -> dict[int, float]:
    """Evaluation of the choice of d: ``score`` of the mean of ``probes`` fits of all images (seeds ``seed, seed +
    1, ...``, the chosen budget) at each d of the grid (at the chosen d, the denoiser's own first fits)."""
    probes = settings.denoise_best.probes
    options = {**fit_options(settings), "max_iter": built.selection.budget}
    scored = {}
    for rank in built.selection.ranks.tolist():
        if rank == built.selection.rank and len(built.fits) >= probes:
            fits = built.fits[:probes]
        else:
            fits = [fit_nmf(A_noisy, rank, **{**options, "seed": settings.seed + k}) for k in range(probes)]
        scored[rank] = score(ensemble_mean(fits))
    return scored


def study_method(A: np.ndarray, A_noisy: np.ndarray, opaque: np.ndarray, settings) -> dict:
    """The denoising study's NMF (spec Task 3b: mu from the random start, ``study_iter`` iterations, float64)
    of these noisy images alone, at each d of ``study_ranks``; the d with the best PSNR against the clean
    ``A`` (raw, as the study logs it by default), its PSNR raw, post-processed and with the zero rule too,
    and its reconstruction ``X``."""
    best = settings.denoise_best
    results = {}
    for rank in best.study_ranks:
        result = fit_nmf(A_noisy, rank, solver="mu", max_iter=best.study_iter, seed=settings.seed, init="random")
        X = result.W @ result.H
        results[rank] = (psnr(A, X, opaque), X)
    rank = max(results, key=lambda r: results[r][0])
    X = results[rank][1]
    return {
        "rank": rank,
        "raw": results[rank][0],
        "postprocessed": psnr(A, postprocess(X, opaque), opaque),
        "zero_rule": psnr(A, post_processed(X, A_noisy, opaque, keep_zeros=True), opaque),
        "X": X,
        "by_rank": {r: value for r, (value, _) in results.items()},
    }


def svd_method(A: np.ndarray, A_noisy: np.ndarray, opaque: np.ndarray, ranks: list[int]) -> dict:
    """The truncated SVD of these noisy images at each d of ``ranks``: the d with the best PSNR against the
    clean ``A``, its PSNR raw and post-processed (clip, transparent 0)."""
    results = {rank: truncated_svd(A_noisy, rank) for rank in ranks}
    raw = {rank: psnr(A, X, opaque) for rank, X in results.items()}
    rank = max(raw, key=raw.get)
    return {"rank": rank, "raw": raw[rank], "postprocessed": psnr(A, postprocess(results[rank], opaque), opaque)}


def steps_table(steps, ablations, n_first: int, n: int) -> str:
    """Markdown: each step's PSNR over the first images and over all, and its gain over the step before; then
    the final denoiser without one of its parts, and what that costs."""
    header = f"| {{}} | PSNR, first {n_first} (dB) | {{}} (dB) | PSNR, all {n} (dB) |\n|---|---|---|---|"
    lines = [header.format("step", "gain")]
    for k, (label, value_first, value_all) in enumerate(steps):
        gain = "" if k == 0 else f"{value_first - steps[k - 1][1]:+.2f}"
        every = "" if value_all is None else f"{value_all:.2f}"
        lines.append(f"| {label} | {value_first:.2f} | {gain} | {every} |")
    final = steps[-1][1]
    lines += ["", header.format("the last step without", "change")]
    lines += [f"| {label} | {first:.2f} | {first - final:+.2f} | {every:.2f} |" for label, first, every in ablations]
    return "\n".join(lines) + "\n"


def comparison_table(metrics: dict, study: dict, svd: dict, n_first: int) -> str:
    """Markdown: the study's method, the truncated SVD and this denoiser on the same first noisy images."""
    rows = [
        ("noisy images", "", metrics["psnr_noisy_first_500"], ""),
        (
            f"the study's method: NMF (mu) of the first {n_first} alone, clean-optimal d",
            study["rank"],
            study["raw"],
            f"{study['postprocessed']:.2f}",
        ),
        (
            f"truncated SVD of the first {n_first}, clean-optimal d",
            svd["rank"],
            svd["raw"],
            f"{svd['postprocessed']:.2f}",
        ),
        (
            f"this denoiser: mean of {metrics['members']} fits of all {metrics['n_images']}, validated d",
            metrics["cv_rank"],
            metrics["psnr_first_500"],
            "(included)",
        ),
    ]
    if "psnr_unseen" in metrics:
        rows.append(
            (
                f"its model: {metrics['members']} bases fitted on {metrics['n_train']} other images, these {n_first} "
                "never seen",
                metrics["cv_rank"],
                metrics["psnr_unseen"],
                "(included)",
            )
        )
    lines = [
        f"| method | d | PSNR, first {n_first} (dB) | post-processed (dB) |",
        "|---|---|---|---|",
        *(f"| {name} | {d} | {value:.2f} | {post} |" for name, d, value, post in rows),
    ]
    return "\n".join(lines) + "\n"


def choices_table(metrics: dict, best) -> str:
    """Markdown: each run-time choice, what the clean images would have chosen, and the PSNR (dB) it lost."""
    rows = [
        (
            "d",
            f"split score (tau {best.tau:g}) of the mean of {best.probes} fits, grid {best.ranks}",
            metrics["cv_rank"],
            metrics["oracle_rank"],
            metrics["psnr_loss"],
            f"the mean of {best.probes} fits at each d",
        ),
        (
            "iterations",
            f"the same curves, scored every {best.every} iterations (patience {best.patience})",
            metrics["cv_iterations"],
            metrics["oracle_iterations"],
            metrics["psnr_loss_iterations"],
            f"the mean of {best.probes} fits at the chosen d",
        ),
        (
            "fits averaged",
            f"split score, kept while a fit lowers it by > {best.member_tol:g} x the "
            f"second's, at most {best.max_members}",
            metrics["cv_members"],
            metrics["oracle_members"],
            metrics["psnr_loss_members"],
            f"the mean of k fits, k <= {best.max_members}",
        ),
    ]
    lines = [
        "| choice | from the noisy images | chosen | clean-best | PSNR lost (dB) | clean scored on |",
        "|---|---|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} | {e:.3f} | {f} |" for a, b, c, d, e, f in rows),
    ]
    return "\n".join(lines) + "\n"
