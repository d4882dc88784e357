"""The best NMF denoiser nmf-lab builds (issue 11, section 4): an ensemble of early-stopped HALS fits of all the
noisy images, at the d that cross-validation chooses, with the post-processing the noise model allows.

**Inputs.** Only the noisy images ``A_noisy = add_noise(A, sigma, seed)`` (spec 6.1: Gaussian noise on the
non-zero entries of A, clipped to [0, 1]; zero entries stay exactly zero) of all N images of the data set
(N = 10,000 punks by default), and the alpha channel (which pixels are transparent), as in every study. The
noise is one draw for the whole matrix, so the first 500 noisy punks here are not those of ``experiment=denoise``
(N = 500); every method of the comparison below runs on these.

**Method.**

1. *d by cross-validation over held-out entries* (:func:`nmf_lab.core.rank_selection.cross_validate_rank`): K folds
   each hide a fraction of the colour entries of the opaque pixels; every d of ``denoise_best.ranks`` is
   fitted to the rest with the members' own solver and iteration budget, and d has the lowest mean held-out
   error (``denoise_best.rule``). Exact masked HALS costs about d / 4 unmasked iterations, far too much for
   1728 x 10000; the cross-validation fits with the solver's imputation (EM) variant instead
   (:func:`imputed_solver`, ``hals_em``): before each iteration the hidden entries are set to the current
   ``W H`` and one unmasked iteration runs, which minimises the same masked objective (never reading a hidden
   entry) at about 3 unmasked iterations.
2. *Members*: ``denoise_best.members`` fits of ``A_noisy`` at that d with seeds ``seed, seed + 1, ...``, each
   stopped after ``solver.max_iter`` iterations (HALS, float32, 20 by default). The budget is the regulariser:
   HALS from a random start fits the structure shared by many images first and the noise later, so an
   early-stopped fit denoises better than a converged one. Fits from different seeds share the signal but fit
   different parts of the noise, so their mean ``X = mean_k W_k H_k`` denoises better than any one of them.
3. *Post-processing from the noise model alone* (:func:`nmf_lab.core.denoiser.postprocess` and the denoiser's
   ``keep_zeros``): the clean images lie in [0, 1] (clip), transparent pixels have colour 0, and an entry that
   is 0 in ``A_noisy`` is set to 0: the noise never moves a zero entry, and a non-zero entry a becomes 0 only
   when the noise falls below -a (probability ``Phi(-a / sigma)``, small unless a < sigma). Measured on the
   10,000 punks at sigma = 0.1 (``zero_rule_wrong_fraction``, ``zero_rule_wrong_mean``): 3.3 % of the noisy
   zeros of opaque pixels are not clean zeros, with clean values 0.10 on average, so the rule costs about
   0.01 per squared entry where it is wrong and removes all the error of the fit where it is right.

The denoised images are ``X`` for all N images; the run also logs the denoiser as an MLflow model (the
members' bases W_k, projection by :func:`nmf_lab.core.transform.transform`, the same post-processing), registered
as ``nmf-lab-denoiser``, and measures it on the first images too (``psnr_first_500_model``).

**Scoring** (the clean images are used here only, never by the denoiser): PSNR over the colour channels of
opaque pixels, ``psnr_first_500`` over the first ``denoise_best.first`` images and ``psnr`` over all N. The
same run compares, on the same first noisy images: the study's method (``experiments.denoise``: NMF of those
images alone, mu, ``study_iter`` iterations, at the d of ``study_ranks`` that is best against the clean images)
and the truncated SVD (at its best d of ``svd_ranks``), with and without post-processing, and each step of the
method with its gain (``tables/steps.md``, ``figures/psnr_by_step.png``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from experiments.shared import display_images, draw_reconstructions, fit_options, load_noisy, shown
from nmf_lab import NMFResult, fit_nmf, truncated_svd
from nmf_lab.core.denoiser import Denoiser, model_input, postprocess
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.metrics import psnr
from nmf_lab.core.rank_selection import RULES, RankSelection, cross_validate_rank
from nmf_lab.core.solvers import Products, Solver, get_solver, register_solver, solver_names
from nmf_lab.presentation.figures import cross_validation_curves, psnr_by_step
from nmf_lab.tracking.model import log_denoiser

HEADLINE = ("psnr_first_500", "psnr", "cv_rank", "psnr_study", "wall_seconds")
"""What the CLI prints first: the PSNRs (dB) of the denoiser over the first images and over all, the d chosen
from the noisy images, the study's method at its best d on the same images, and the run's wall time."""


@dataclass
class DenoiseBestSettings:
    """``denoise_best``: the denoiser, and what it is compared with.

    ``members``: how many fits are averaged; ``ranks``, ``folds``, ``holdout``, ``rule``, ``cv_seed``: the
    cross-validation that chooses d (the grid, K, the fraction of the opaque colour entries each fold hides,
    the rule, the folds' seed); ``keep_zeros``: set the entries that are 0 in the noisy images to 0;
    ``first``: psnr_first_500 is over this many first images; ``study_ranks``, ``study_iter``: the study's
    method (mu on the first images alone) at the best of these d; ``svd_ranks``: the truncated SVD likewise;
    ``model_tol``: the tolerance of the logged model's projection (:func:`nmf_lab.core.transform.transform`);
    ``registered_model``: the registered model's name ('' registers none).
    """

    members: int = 16
    ranks: list[int] = field(default_factory=lambda: [128, 192, 256, 320])
    folds: int = 2
    holdout: float = 0.1
    rule: str = "min"
    cv_seed: int = 0
    keep_zeros: bool = True
    first: int = 500
    study_ranks: list[int] = field(default_factory=lambda: [64, 96, 128, 160, 192])
    study_iter: int = 1000
    svd_ranks: list[int] = field(default_factory=lambda: [16, 24, 32, 48, 64, 96, 128])
    model_tol: float = 0.01
    registered_model: str = "nmf-lab-denoiser"

    def check(self) -> None:
        if self.members < 1:
            raise InvalidOption("members", self.members, "an integer >= 1")
        for key in ("ranks", "study_ranks", "svd_ranks"):
            values = getattr(self, key)
            if not values or len(set(values)) != len(values) or min(values) < 1:
                raise InvalidOption(key, values, "a non-empty list of distinct integers >= 1")
        if self.folds < 2:
            raise InvalidOption("folds", self.folds, "an integer >= 2")
        if not (0 < self.holdout <= 1 and self.folds * self.holdout <= 1):
            raise InvalidOption(
                "holdout", self.holdout, f"a fraction in (0, 1] with folds * holdout <= 1 (folds = {self.folds})"
            )
        if self.rule not in RULES:
            raise InvalidOption("rule", self.rule, f"one of {', '.join(RULES)}")
        for key, minimum in (("cv_seed", 0), ("first", 1), ("study_iter", 1)):
            if getattr(self, key) < minimum:
                raise InvalidOption(key, getattr(self, key), f"an integer >= {minimum}")
        if not self.model_tol > 0:
            raise InvalidOption("model_tol", self.model_tol, "a number > 0")


SETTINGS = {"denoise_best": DenoiseBestSettings}
"""The config node of this study's own settings."""


def check(settings) -> None:
    """The denoiser needs noise to remove and an NMF solver config."""
    if settings.noise.sigma <= 0:
        raise InvalidOption("noise.sigma", settings.noise.sigma, "a noise level > 0 (there is nothing to denoise)")
    if settings.solver is None:
        raise InvalidOption("solver", None, "a solver config (solver=hals)")


# -- the denoiser: from the noisy images alone ----------------------------------------------------------


@dataclass
class Denoising:
    """What :func:`denoise` built: the cross-validation, the member fits, the denoised ``X`` (m x n) and the
    seconds each part took."""

    selection: RankSelection
    fits: list[NMFResult]
    X: np.ndarray
    seconds: dict[str, float]


def denoise(A_noisy: np.ndarray, opaque: np.ndarray, settings) -> Denoising:
    """The method of the module docstring, steps 1-3, from the noisy images ``A_noisy`` (m x n) and the opaque
    entries ``opaque`` (bool m x n) alone; ``settings`` is the job's config (solver, seed, ``denoise_best``)."""
    best = settings.denoise_best
    options = fit_options(settings)
    start = time.perf_counter()
    selection = cross_validate_rank(
        A_noisy,
        best.ranks,
        folds=best.folds,
        holdout=best.holdout,
        candidates=opaque,
        rule=best.rule,
        fold_seed=best.cv_seed,
        **{**options, "solver": imputed_solver(options["solver"])},
    )
    cv_done = time.perf_counter()
    fits = [fit_nmf(A_noisy, selection.rank, **{**options, "seed": settings.seed + k}) for k in range(best.members)]
    fits_done = time.perf_counter()
    X = ensemble_mean(fits)
    X = post_processed(X, A_noisy, opaque, keep_zeros=best.keep_zeros)
    seconds = {"cv_seconds": cv_done - start, "fit_seconds": fits_done - cv_done}
    return Denoising(selection=selection, fits=fits, X=X, seconds=seconds)


def ensemble_mean(fits: list[NMFResult]) -> np.ndarray:
    """``mean_k W_k H_k`` (m x n, float64) of the member fits, summed in order."""
    X = np.zeros((fits[0].W.shape[0], fits[0].H.shape[1]), dtype=np.float64)
    for result in fits:
        X += result.W @ result.H
    return X / len(fits)


def post_processed(X: np.ndarray, A_noisy: np.ndarray, opaque: np.ndarray, *, keep_zeros: bool) -> np.ndarray:
    """X clipped to [0, 1] with the transparent pixels at 0 (:func:`nmf_lab.core.denoiser.postprocess`), and with
    ``keep_zeros`` the entries that are 0 in ``A_noisy`` at 0 too (as the denoiser's ``keep_zeros``)."""
    X = postprocess(X, opaque)
    return np.where(A_noisy > 0, X, 0.0) if keep_zeros else X


def imputed_solver(name: str) -> str:
    """The name of the imputation (EM) variant of the registered solver ``name``, ``<name>_em``, registered on
    first use; with a mask it fits ``min ||M * (A - W H)||_F`` as follows, without a mask it is ``name``.

    Before each iteration the unobserved entries of A are set to the current ``W H`` and one iteration of the
    unmasked solver runs on that filled matrix (a generalised EM step: the filled objective is the masked one
    plus ``||(1 - M) * (W_k H_k - W H)||^2``, equal to it at the current iterate, so an iteration that lowers
    the filled objective lowers the masked one: monotone when the solver is). The unobserved entries are never
    read. One iteration costs the unmasked one plus the product ``W H``, a fresh start of the solver and the exact
    masked error: about 3 unmasked iterations of HALS (d = 256, 1728 x 10000, float32: 0.87 s against 0.30 s,
    the fastest of 4 rounds on 2 shared cores), against d / 4 for exact masked HALS."""
    em_name = f"{name}_em"
    if em_name in solver_names():
        return em_name
    inner = get_solver(name)

    def update(A, W, H, *, mask=None, **options):
        if mask is None:
            yield from inner.update(A, W, H, **options)
            return
        filled, hidden = A.copy(), ~mask
        while True:
            np.copyto(filled, W @ H, where=hidden)
            steps = inner.update(filled, W, H, **options)
            next(steps)  # one iteration of the unmasked solver, W and H updated in place
            steps.close()
            yield Products(AHt=None, HHt=None, WtW=None, WtA=None)  # fit_nmf measures the masked error itself

    register_solver(
        Solver(
            name=em_name,
            update=update,
            monotone=inner.monotone,
            options=inner.options,
            summary=f"{name} with missing entries by imputation (EM): the hidden entries set to W H each iteration",
            supports_mask=True,
        )
    )
    return em_name


# -- the study: denoise, score, compare, log ------------------------------------------------------------


def run(settings, run) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    best = settings.denoise_best
    image_set, A, A_noisy = load_noisy(settings, run)
    sigma = settings.noise.sigma
    opaque = image_set.opaque_entries()
    built = denoise(A_noisy, opaque, settings)  # the noisy images alone
    selection, d = built.selection, built.selection.rank

    # Everything below is evaluation: the clean images A score the denoiser and choose the baselines' d.
    n_first = min(best.first, image_set.n)
    first = slice(0, n_first)

    def scores(X: np.ndarray) -> tuple[float, float]:
        """(PSNR over the first images, PSNR over all), dB."""
        return psnr(A[:, first], X[:, first], opaque[:, first]), psnr(A, X, opaque)

    def full(X: np.ndarray) -> np.ndarray:
        return post_processed(X, A_noisy, opaque, keep_zeros=best.keep_zeros)

    psnr_first, psnr_all = scores(built.X)
    by_members = members_curve(built.fits, full, scores)
    one_fit = built.fits[0].W @ built.fits[0].H
    single_by_rank = one_fit_by_rank(A_noisy, settings, built, lambda X: scores(full(X))[0])
    oracle = max(single_by_rank, key=single_by_rank.get)
    study = study_method(A[:, first], A_noisy[:, first], opaque[:, first], settings)
    svd = svd_method(A[:, first], A_noisy[:, first], opaque[:, first], best.svd_ranks)
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
            f"all {image_set.n} images, one {settings.solver.name} fit ({settings.solver.max_iter} iterations), "
            f"cross-validated d = {d}",
            *scores(full(one_fit)),
        ),
        (f"mean of {best.members} fits", psnr_first, psnr_all),
    ]
    raw_mean = ensemble_mean(built.fits)
    ablations = [  # the last step without one of its parts
        ("the zero rule (clipped, transparent pixels 0)", *scores(postprocess(raw_mean, opaque))),
        ("any post-processing", *scores(raw_mean)),
        ("the ensemble (one fit, post-processed)", *scores(full(one_fit))),
    ]
    zeros = (A_noisy == 0) & opaque
    wrong = zeros & (A > 0)  # noisy zeros whose clean value is not 0: where the zero rule errs
    metrics = {
        "psnr_first_500": psnr_first,
        "psnr": psnr_all,
        "psnr_noisy_first_500": steps[0][1],
        "psnr_noisy": steps[0][2],
        "cv_rank": d,
        "oracle_rank": oracle,
        "psnr_one_fit_cv_rank": single_by_rank[d],
        "psnr_one_fit_oracle_rank": single_by_rank[oracle],
        "psnr_loss": single_by_rank[oracle] - single_by_rank[d],
        "members": best.members,
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
        "seconds_per_iteration": float(np.median(np.concatenate([np.diff(r.times) for r in built.fits]))),
        **built.seconds,
    }
    run.log_metrics(metrics)
    for k, (value_first, value_all) in enumerate(by_members, start=1):
        run.log_metrics({"psnr_first_500_by_members": value_first, "psnr_by_members": value_all}, step=k)
    for g, rank in enumerate(selection.ranks.tolist()):
        run.log_metrics(
            {
                "heldout_error": selection.mean[g],
                "heldout_standard_error": selection.standard_error[g],
                "psnr_one_fit_by_rank": single_by_rank[rank],
            },
            step=rank,
        )
    run.log_array(built.X[:, first], "arrays/denoised_first.npy")
    run.log_array(selection.fold_errors, "arrays/fold_errors.npy")
    run.log_array(selection.ranks, "arrays/ranks.npy")
    run.log_text(steps_table(steps, ablations, n_first, image_set.n), "tables/steps.md")
    run.log_text(comparison_table(metrics, study, svd, n_first), "tables/comparison.md")

    sizes = list(range(1, best.members + 1))
    figure = psnr_by_step(
        [(label, value) for label, value, _ in steps],
        {
            f"first {n_first} images": (sizes, [value for value, _ in by_members]),
            f"all {image_set.n} images": (sizes, [value for _, value in by_members]),
        },
        title=f"Denoising {image_set.n} noisy images of {image_set.name}, sigma = {sigma:g}",
        bars_title=f"PSNR over the first {n_first} images, step by step",
        curves_title=f"the mean of the first k fits (d = {d})",
    )
    run.log_figure(figure, "figures/psnr_by_step.png")
    figure = cross_validation_curves(
        selection.ranks.tolist(),
        selection.fold_errors,
        selection.standard_error,
        d,
        (
            [10 ** (-single_by_rank[rank] / 20) for rank in selection.ranks.tolist()],
            f"clean RMSE of one fit, first {n_first} images",
        ),
        rule=selection.rule,
        title=f"d from {selection.folds}-fold cross-validation on {image_set.n} noisy images "
        f"({settings.solver.name}, {settings.solver.max_iter} iterations): d = {d}",
    )
    run.log_figure(figure, "figures/rank_cv.png")
    shown_set = shown(image_set.subset(first))  # the study's method denoised the first images only
    k = shown_set.n
    draw_reconstructions(
        [
            ("noisy", np.clip(image_set.images_from_matrix(A_noisy[:, :k]), 0.0, 1.0)),
            (f"study's method (d = {study['rank']})", display_images(image_set, study["X"][:, :k])),
            (f"this denoiser ({best.members} fits, d = {d})", display_images(image_set, built.X[:, :k])),
            ("clean", shown_set.images),
        ],
        run,
        alpha=shown_set.alpha,
        name="noisy_denoised_clean",
        title=f"sigma = {sigma:g}: the study's method {study['raw']:.2f} dB, this denoiser {psnr_first:.2f} dB "
        f"(PSNR over the first {n_first})",
    )

    # The denoiser as a model: the members' bases, projection, the same post-processing; registered.
    denoiser = Denoiser.for_images(
        image_set, [result.W for result in built.fits], tol=best.model_tol, keep_zeros=best.keep_zeros
    )
    X_model = denoiser.denoise_matrix(A_noisy[:, first], opaque[:, first])
    run.log_metrics({"psnr_first_500_model": psnr(A[:, first], X_model, opaque[:, first])})
    log_denoiser(
        run,
        denoiser,
        input_example=model_input(image_set.subset(slice(0, 1)), A_noisy[:, :1]),
        registered_model_name=best.registered_model or None,
    )
    run.log_metrics({"wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu})


def members_curve(fits: list[NMFResult], full, scores) -> list[tuple[float, float]]:
    """``scores`` of the post-processed (``full``) mean of the first k fits, k = 1..K."""
    total, curve = 0.0, []
    for k, result in enumerate(fits, start=1):
        total = total + result.W @ result.H
        curve.append(scores(full(total / k)))
    return curve


def one_fit_by_rank(A_noisy: np.ndarray, settings, built: Denoising, score) -> dict[int, float]:
    """Evaluation of the choice of d: ``score`` of one fit (the first member's seed) at each d of the grid."""
    options = fit_options(settings)
    scored = {}
    for rank in built.selection.ranks.tolist():
        result = built.fits[0] if rank == built.selection.rank else fit_nmf(A_noisy, rank, **options)
        scored[rank] = score(result.W @ result.H)
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
            f"this denoiser: mean of {metrics['members']} fits of all {metrics['n_images']}, cross-validated d",
            metrics["cv_rank"],
            metrics["psnr_first_500"],
            "(included)",
        ),
    ]
    lines = [
        f"| method | d | PSNR, first {n_first} (dB) | post-processed (dB) |",
        "|---|---|---|---|",
        *(f"| {name} | {d} | {value:.2f} | {post} |" for name, d, value, post in rows),
    ]
    return "\n".join(lines) + "\n"
