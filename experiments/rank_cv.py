"""Choosing d from the noisy images alone: cross-validation over held-out entries of A_noisy.

Task 3c asks for the d with the lowest reconstruction error, which the denoising study measures against the
clean images, which a real denoising problem never has. This study chooses d from A_noisy alone
(:func:`nmf_lab.core.rank_selection.cross_validate_rank`): in each of K folds a random part of the observed
entries is held out, NMF is fitted with a mask on the rest for every d of a grid (by imputation at the
defaults, ``solver.missing=impute``: the hidden entries set to the current ``W H`` before each unmasked
iteration; ``solver.missing=exact`` fits with the weighted updates), and the held-out error is measured; a
rule (``rank_cv.rule``) chooses d from the mean over the folds: by default the largest d within one standard
error of the lowest mean, since the held-out error (prediction) favours a smaller d than the clean error of
denoising does (:mod:`nmf_lab.core.rank_selection` measures why). Then NMF is fitted to all entries at every d
of the grid: the fit at the chosen d is the result, and only for evaluation are the clean images used, to find
the d that would have been best (the oracle) and what the choice lost in PSNR.

Which entries are held out: the colour channels of opaque pixels (all entries for images without alpha).
The colours of transparent pixels are known zeros (alpha is known, as in every study): they are always
observed and never scored, neither here nor in the PSNR.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from experiments.shared import (
    display_images,
    draw_reconstructions,
    fit,
    fit_and_log,
    fit_options,
    load_noisy,
    shown,
)
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.metrics import psnr
from nmf_lab.core.rank_selection import RULES, cross_validate_rank
from nmf_lab.presentation.figures import cross_validation_curves

HEADLINE = ("cv_rank", "oracle_rank", "psnr_cv", "psnr_loss")
"""The metrics the CLI prints and a run's description shows first: the d chosen from the noisy data, the d the
clean images would have chosen, the PSNR (dB) at the chosen d and what the choice lost."""


@dataclass
class RankCVSettings:
    """``rank_cv``: the cross-validation that chooses d.

    ``ranks``: the grid of d; ``folds``: K; ``holdout``: the fraction of the candidate entries each fold holds
    out (disjoint folds, ``folds * holdout <= 1``); ``rule``: ``one_se_largest`` (the largest d within one
    standard error of the lowest mean held-out error: the held-out error favours a smaller d than denoising
    does, see :mod:`nmf_lab.core.rank_selection`), ``min`` (the lowest) or ``one_se`` (the smallest d within one
    standard error); ``seed``: the folds' seed.
    """

    ranks: list[int] = field(default_factory=lambda: [64, 96, 112, 128, 160])
    folds: int = 3
    holdout: float = 0.1
    rule: str = "one_se_largest"
    seed: int = 0

    def check(self) -> None:
        if not self.ranks or len(set(self.ranks)) != len(self.ranks) or min(self.ranks) < 1:
            raise InvalidOption("ranks", self.ranks, "a non-empty list of distinct integers >= 1")
        if self.folds < 2:
            raise InvalidOption("folds", self.folds, "an integer >= 2")
        if not (0 < self.holdout <= 1 and self.folds * self.holdout <= 1):
            raise InvalidOption(
                "holdout", self.holdout, f"a fraction in (0, 1] with folds * holdout <= 1 (folds = {self.folds})"
            )
        if self.rule not in RULES:
            raise InvalidOption("rule", self.rule, f"one of {', '.join(RULES)}")
        if self.seed < 0:
            raise InvalidOption("seed", self.seed, "an integer >= 0")


SETTINGS = {"rank_cv": RankCVSettings}
"""The config node of this study's own settings."""


def run(settings, run) -> None:
    image_set, A, A_noisy = load_noisy(settings, run)
    sigma = settings.noise.sigma
    opaque = image_set.opaque_entries()
    cv = settings.rank_cv
    start = time.perf_counter()

    # 1. Choose d from A_noisy alone.
    selection = cross_validate_rank(
        A_noisy,
        cv.ranks,
        folds=cv.folds,
        holdout=cv.holdout,
        candidates=opaque,
        rule=cv.rule,
        fold_seed=cv.seed,
        **fit_options(settings),
    )
    cv_seconds = time.perf_counter() - start
    chosen = selection.rank

    # 2. Fit all entries at every d of the grid; the fit at the chosen d is the result (logged with its factors).
    psnrs, clean_errors = [], []
    for d in selection.ranks:
        at_d = dataclasses.replace(settings, rank=int(d))
        result = fit_and_log(A_noisy, at_d, run) if d == chosen else fit(A_noisy, at_d)
        X = result.W @ result.H
        if d == chosen:
            X_chosen = X
        # 3. For evaluation only: the clean images.
        psnrs.append(psnr(A, X, opaque))
        clean_errors.append(float(np.linalg.norm(A - X)))
    oracle = int(selection.ranks[int(np.argmax(psnrs))])
    at = {int(d): g for g, d in enumerate(selection.ranks)}
    metrics = {
        "cv_rank": chosen,
        **{f"cv_rank_{rule}": selection.chosen_by(rule) for rule in RULES},  # what each rule would choose
        "oracle_rank": oracle,
        "psnr_cv": psnrs[at[chosen]],
        "psnr_oracle": psnrs[at[oracle]],
        "psnr_loss": psnrs[at[oracle]] - psnrs[at[chosen]],
        "clean_error": clean_errors[at[chosen]],
        "heldout_entries": selection.heldout_entries,
        "cv_seconds": cv_seconds,
        "seconds": time.perf_counter() - start,
    }
    if sigma > 0:
        metrics["psnr_noisy"] = psnr(A, A_noisy, opaque)
    run.log_metrics(metrics)
    for g, d in enumerate(selection.ranks):
        run.log_metrics(
            {
                "heldout_error": selection.mean[g],
                "heldout_standard_error": selection.standard_error[g],
                "psnr_by_rank": psnrs[g],
                "clean_error_by_rank": clean_errors[g],
            },
            step=int(d),
        )
    run.log_array(selection.fold_errors, "arrays/fold_errors.npy")
    run.log_array(selection.ranks, "arrays/ranks.npy")
    run.log_text(table(selection, psnrs, clean_errors, oracle), "tables/rank_cv.md")

    scored_rmse = [10 ** (-value / 20) for value in psnrs]  # the RMSE over the opaque colour channels
    figure = cross_validation_curves(
        selection.ranks.tolist(),
        selection.fold_errors,
        selection.standard_error,
        chosen,
        (scored_rmse, "clean RMSE over the opaque colour channels"),
        rule=cv.rule,
        title=(
            f"Choosing d by {selection.folds}-fold cross-validation, {image_set.n} images of {image_set.name}, "
            f"sigma = {sigma:g}: d = {chosen} ({psnrs[at[chosen]]:.2f} dB), best d = {oracle} "
            f"({psnrs[at[oracle]]:.2f} dB)"
        ),
    )
    run.log_figure(figure, "figures/rank_cv.png")
    first = shown(image_set)
    draw_reconstructions(
        [
            ("original", first.images),
            ("noisy", np.clip(image_set.images_from_matrix(A_noisy[:, : first.n]), 0.0, 1.0)),
            (f"denoised (NMF, cross-validated d = {chosen})", display_images(image_set, X_chosen[:, : first.n])),
        ],
        run,
        alpha=first.alpha,
        name="original_noisy_denoised",
        title=f"Denoising at the d chosen from the noisy images, sigma = {sigma:g}",
    )


def table(selection, psnrs, clean_errors, oracle: int) -> str:
    """The Markdown table: per d, the held-out RMSE (mean +- standard error, each fold), and the clean error
    and PSNR of the fit on all entries; the chosen d and the oracle marked."""
    folds = " | ".join(f"fold {k}" for k in range(selection.folds))
    lines = [
        f"| d | held-out RMSE (mean +- s.e.) | {folds} | clean error | PSNR (dB) |",
        "|---|---|" + "---|" * selection.folds + "---|---|",
    ]
    for g, d in enumerate(selection.ranks):
        marks = (" (chosen)" if d == selection.rank else "") + (" (oracle)" if d == oracle else "")
        per_fold = " | ".join(f"{e:.5f}" for e in selection.fold_errors[:, g])
        lines.append(
            f"| {d}{marks} | {selection.mean[g]:.5f} +- {selection.standard_error[g]:.5f} | {per_fold} | "
            f"{clean_errors[g]:.3f} | {psnrs[g]:.2f} |"
        )
    return "\n".join(lines) + f"\n\nRule: {selection.rule}; each fold held out {selection.heldout_entries} entries.\n"
