"""One trial of the denoiser's search (``experiment=denoise_search``): the denoiser of ``experiment=denoise_best``
at a given d (``rank``), iteration budget (``solver.max_iter``) and number of fits (``denoise_trial.members``),
scored only on what the method may see.

The test punks 0..first - 1 are out of everything but the final score. The other noisy images are split into two
copies with independent noise (:class:`experiments.shared.NoiseSplit`, as in ``denoise_best``); fits of the
first copy (seeds ``seed, seed + 1, ...``) are added one by one, and after each the mean squared error of their
post-processed mean against the second copy is logged (``split_score``, step = fits so far): its last value is
the search's objective, its history what a pruner reads (``hydra.sweeper.intermediate=split_score``: a pruned
trial stops adding fits). Then, for the report only, the denoiser whose bases are as many fits of the other
noisy images projects the noisy test punks and is scored against the clean ones (``psnr_unseen``; the search
never reads it: ``hydra.sweeper.report`` puts the best trial's on the parent run).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from experiments.shared import NoiseSplit, check_denoiser_inputs, ensemble_scores, fit_options, load_noisy
from nmf_lab import fit_nmf
from nmf_lab.core.denoiser import Denoiser
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.metrics import psnr
from nmf_lab.harness.search import trial_callback

log = logging.getLogger("experiments.denoise_trial")

HEADLINE = ("split_score", "psnr_unseen", "members")
"""What the CLI prints first: the objective, the clean score of the test punks (not searched), the fits made."""


@dataclass
class DenoiseTrialSettings:
    """``denoise_trial``: ``members`` fits averaged; the noise splitting of ``denoise_best`` (``tau``, its seed
    ``cv_seed``); the test punks 0..``first`` - 1; ``model_tol``: the projection's tolerance; ``keep_zeros``: the
    zero rule."""

    members: int = 8
    tau: float = 0.5
    cv_seed: int = 0
    first: int = 500
    model_tol: float = 0.01
    keep_zeros: bool = True

    def check(self) -> None:
        for key, minimum in (("members", 1), ("cv_seed", 0), ("first", 1)):
            if getattr(self, key) < minimum:
                raise InvalidOption(key, getattr(self, key), f"an integer >= {minimum}")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise InvalidOption("tau", self.tau, "a finite number > 0")
        if not self.model_tol > 0:
            raise InvalidOption("model_tol", self.model_tol, "a number > 0")


SETTINGS = {"denoise_trial": DenoiseTrialSettings}


def check(settings) -> None:
    check_denoiser_inputs(settings, "denoise_trial")


def run(settings, run) -> None:
    trial = settings.denoise_trial
    image_set, A, A_noisy = load_noisy(settings, run)
    opaque = image_set.opaque_entries()
    test, rest = np.arange(trial.first), np.arange(trial.first, image_set.n)
    split = NoiseSplit.of(A_noisy[:, rest], opaque[:, rest], sigma=settings.noise.sigma, tau=trial.tau,
                          seed=trial.cv_seed, keep_zeros=trial.keep_zeros)  # fmt: skip
    options = fit_options(settings)
    pruning = trial_callback(trial.members, metric="split_score")
    members = 0
    for members, score in enumerate(ensemble_scores(split, settings.rank, options, trial.members), start=1):
        run.log_metrics({"split_score": score}, step=members)
        log.info("fits: %d, split score %.7f", members, score)
        if pruning is not None and pruning(members, score):
            break
    # Scoring only: the clean test punks, never seen by a fit, a choice or the search.
    others = np.ascontiguousarray(A_noisy[:, rest])
    bases = [fit_nmf(others, settings.rank, **{**options, "seed": settings.seed + k}).W for k in range(members)]
    denoiser = Denoiser.for_images(image_set, bases, tol=trial.model_tol, keep_zeros=trial.keep_zeros)
    X = denoiser.denoise_matrix(A_noisy[:, test], opaque[:, test])
    run.log_metrics({"members": members, "psnr_unseen": psnr(A[:, test], X, opaque[:, test]), "n_train": rest.size})
