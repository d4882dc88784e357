"""One trial of the denoiser's search (``experiment=denoise_search``): the denoiser of ``experiment=denoise_best``
at a given d (``rank``), iteration budget (``solver.max_iter``) and number of fits (``denoise_trial.members``),
scored only on what the method may see.

The noisy images are split as in ``denoise_best`` (:class:`experiments.shared.Split`: test punks 0..first - 1,
``validation`` images, the rest for training). The fits of the training images (seeds ``seed, seed + 1, ...``)
are added one by one, and after each the held-out error of the mean of their predictions of held-out rows of
the validation images is logged (``heldout_error``, step = fits so far; :class:`nmf_lab.core.rank_selection.
RowHoldout`). Its last value is the search's objective, and its history what a pruner reads: with
``hydra.sweeper.intermediate=heldout_error`` a pruned trial stops adding fits. Then, for the report only, the
denoiser of those bases projects the noisy test punks, which no fit or choice saw, and is scored against the
clean ones (``psnr_unseen``; the search never reads it: ``hydra.sweeper.report`` puts the best trial's on the
parent run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from experiments.shared import Split, fit_options, load_noisy, member_fits, validation_holdout
from nmf_lab.core.denoiser import Denoiser
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.metrics import psnr
from nmf_lab.harness.search import trial_callback

log = logging.getLogger("experiments.denoise_trial")

HEADLINE = ("heldout_error", "psnr_unseen", "members")
"""What the CLI prints first: the objective, the clean score of the test punks (not searched), the fits made."""


@dataclass
class DenoiseTrialSettings:
    """``denoise_trial``: ``members`` fits averaged; the split and the validation of ``denoise_best`` (``folds``
    sets of ``holdout`` of the rows of ``validation`` images drawn with ``cv_seed``; the test punks
    0..``first`` - 1); ``model_tol``: the projection's tolerance; ``keep_zeros``: the zero rule when scoring."""

    members: int = 8
    folds: int = 2
    holdout: float = 0.1
    cv_seed: int = 0
    validation: int = 500
    first: int = 500
    model_tol: float = 0.01
    keep_zeros: bool = True

    def check(self) -> None:
        for key, minimum in (("members", 1), ("folds", 1), ("cv_seed", 0), ("validation", 1), ("first", 1)):
            if getattr(self, key) < minimum:
                raise InvalidOption(key, getattr(self, key), f"an integer >= {minimum}")
        if not (0 < self.holdout < 1 and self.folds * self.holdout <= 1):
            raise InvalidOption("holdout", self.holdout, "a fraction in (0, 1) with folds * holdout <= 1")
        if not self.model_tol > 0:
            raise InvalidOption("model_tol", self.model_tol, "a number > 0")


SETTINGS = {"denoise_trial": DenoiseTrialSettings}


def check(settings) -> None:
    if settings.noise.sigma <= 0:
        raise InvalidOption("noise.sigma", settings.noise.sigma, "a noise level > 0 (there is nothing to denoise)")
    if settings.solver is None:
        raise InvalidOption("solver", None, "a solver config (solver=hals)")


def run(settings, run) -> None:
    trial = settings.denoise_trial
    image_set, A, A_noisy = load_noisy(settings, run)
    opaque = image_set.opaque_entries()
    split = Split.of(image_set.n, trial.first, trial.validation, trial.cv_seed)
    holdout = validation_holdout(A_noisy, opaque, split, trial)
    train = A_noisy[:, split.train]
    pruning = trial_callback(trial.members, metric="heldout_error")
    bases = []
    for k, (W, error) in enumerate(member_fits(train, holdout, settings.rank, fit_options(settings), trial.members)):
        bases.append(W)
        run.log_metric("heldout_error", error, step=k + 1)
        log.info("fits: %d, validation held-out error %.6f", k + 1, error)
        if pruning is not None and pruning(k + 1, error):
            break
    # Scoring only: the clean test punks, never seen by a fit, a choice or the search.
    denoiser = Denoiser.for_images(image_set, bases, tol=trial.model_tol, keep_zeros=trial.keep_zeros)
    test = split.test
    X = denoiser.denoise_matrix(A_noisy[:, test], opaque[:, test])
    run.log_metrics({"members": len(bases), "psnr_unseen": psnr(A[:, test], X, opaque[:, test]),
                     "n_train": split.train.size, "n_validation": split.validation.size})  # fmt: skip
