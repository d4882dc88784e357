"""Photon-count noise: NMF with the Kullback–Leibler loss against the Frobenius loss on CryptoPunks under
Poisson noise at a few photon levels, each loss at the d it chooses from the noisy counts alone.

At a photon level ``lam`` (the count of the brightest entry) the clean matrix A is scaled to ``lam A``, each
entry is drawn ``C ~ Poisson(lam A)`` and scaled back, ``A_noisy = C / lam`` (seeded by ``noise.seed``): few
photons, much noise. NMF with the KL loss is the maximum-likelihood factorization of Poisson counts; the
Frobenius loss treats every entry's noise alike. Both run the multiplicative updates (``solver``, mu by default)
for the same iterations from the same start, at every d of ``poisson.ranks``.

The choice of d sees the noisy counts only (count splitting, binomial thinning): ``C1 ~ Binomial(C, 1/2)`` and
``C2 = C - C1`` are independent Poisson counts of ``lam A / 2`` each. Each loss fits ``C1`` at every d, and the
d whose ``W H`` is closest to ``C2`` in squared error (an unbiased estimate, up to a constant, of its squared
error against the clean ``lam A / 2``: the quantity PSNR measures) is that loss's d; then it fits the whole
``A_noisy`` at that d, and that fit is scored against the clean A (PSNR over the opaque colour entries). The d
is chosen at half the photons, so it leans small. Beside it the run logs each loss at the d that is best against
the clean images (``oracle``): a bound no method could pick, labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.shared import display_images, fit_options, shown
from nmf_lab import fit_nmf
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.metrics import psnr
from nmf_lab.presentation.figures import side_by_side_grids
from nmf_lab.presentation.study_figures import psnr_against_photons

LOSSES = ("kl", "frobenius")
HEADLINE = ("psnr_kl_at_lowest", "psnr_frobenius_at_lowest", "psnr_kl_at_highest", "psnr_frobenius_at_highest")
"""The PSNR (dB) of each loss, at its chosen d, at the lowest and the highest photon level."""


@dataclass
class PoissonSettings:
    """``poisson``: the photon levels (the count of an entry of value 1), the grid of d each loss chooses
    from, and the seed of the count splitting that chooses it."""

    photons: list[float] = field(default_factory=lambda: [1.0, 4.0, 16.0, 64.0])
    ranks: list[int] = field(default_factory=lambda: [8, 16, 32])
    split_seed: int = 0

    def check(self) -> None:
        if not self.photons or any(not p > 0 for p in self.photons):
            raise InvalidOption("photons", self.photons, "a non-empty list of numbers > 0")
        if not self.ranks or any(r < 1 for r in self.ranks):
            raise InvalidOption("ranks", self.ranks, "a non-empty list of integers >= 1")
        if self.split_seed < 0:
            raise InvalidOption("split_seed", self.split_seed, "an integer >= 0")


SETTINGS = {"poisson": PoissonSettings}


def photon_noise(A: np.ndarray, photons: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(C, C / photons)``: counts ``C ~ Poisson(photons * A)`` and the noisy matrix scaled back."""
    counts = np.random.default_rng(seed).poisson(photons * A).astype(np.float64)
    return counts, counts / photons


def count_split(counts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binomial thinning: ``C1 ~ Binomial(C, 1/2)``, ``C2 = C - C1``, independent Poisson halves."""
    first = np.random.default_rng(seed).binomial(counts.astype(np.int64), 0.5).astype(np.float64)
    return first, counts - first


def fit_loss(X: np.ndarray, rank: int, loss: str, settings):
    """One fit of ``X`` at ``rank`` with ``loss`` (the job's solver, iterations and start)."""
    options = {**fit_options(settings), "loss": loss, "missing": "exact"}
    return fit_nmf(X, rank, **options)


def run(settings, run) -> None:
    study = settings.poisson
    image_set = settings.data.load()
    A = image_set.matrix()
    opaque = image_set.opaque_entries()
    results: dict[str, dict[float, dict]] = {loss: {} for loss in LOSSES}
    noisy_psnr: dict[float, float] = {}
    panels = [("clean", display_images(image_set, A[:, : shown(image_set).n]))]
    for level in study.photons:
        counts, A_noisy = photon_noise(A, level, settings.noise.seed)
        noisy_psnr[level] = psnr(A, A_noisy, opaque)
        first, second = count_split(counts, study.split_seed)
        for loss in LOSSES:
            heldout, clean = {}, {}
            for rank in study.ranks:
                half = fit_loss(first, rank, loss, settings)
                heldout[rank] = float(np.sum((half.W @ half.H - second) ** 2))
                clean[rank] = fit_loss(A_noisy, rank, loss, settings)
            chosen = min(study.ranks, key=heldout.get)
            scores = {rank: psnr(A, result.W @ result.H, opaque) for rank, result in clean.items()}
            oracle = max(study.ranks, key=scores.get)
            results[loss][level] = {"d": chosen, "psnr": scores[chosen], "oracle_d": oracle, "oracle": scores[oracle]}
            tag = f"{loss}.photons_{level:g}"
            run.log_metrics(
                {
                    f"d_chosen.{tag}": chosen,
                    f"psnr.{tag}": scores[chosen],
                    f"oracle_d.{tag}": oracle,
                    f"oracle_psnr.{tag}": scores[oracle],
                    **{f"heldout_squared_error.{tag}.d_{rank}": value for rank, value in heldout.items()},
                    **{f"psnr_at_d.{tag}.d_{rank}": value for rank, value in scores.items()},
                }
            )
            if level == min(study.photons):
                X = clean[chosen].W @ clean[chosen].H
                panels.append((f"{loss}, d = {chosen}", display_images(image_set, X[:, : shown(image_set).n])))
        if level == min(study.photons):
            panels.insert(
                1, (f"noisy, photon level {level:g}", display_images(image_set, A_noisy[:, : shown(image_set).n]))
            )
        run.log_metrics({f"psnr_noisy.photons_{level:g}": noisy_psnr[level]})

    low, high = min(study.photons), max(study.photons)
    run.log_metrics({f"psnr_{loss}_at_{name}": results[loss][level]["psnr"] for loss in LOSSES
                     for name, level in (("lowest", low), ("highest", high))})  # fmt: skip
    figure = psnr_against_photons(
        {loss: {level: (r["psnr"], r["d"]) for level, r in results[loss].items()} for loss in LOSSES},
        {loss: {level: (r["oracle"], r["oracle_d"]) for level, r in results[loss].items()} for loss in LOSSES},
        noisy_psnr,
        title=f"Punks under Poisson noise ({A.shape[1]} images): NMF ({settings.solver.name}, "
        f"{settings.solver.max_iter} iterations) with the KL and the Frobenius loss",
    )
    run.log_figure(figure, "figures/psnr_against_photons.png")
    first = shown(image_set)
    grids = side_by_side_grids(
        panels, first.alpha, title=f"Photon level {low:g}: the noisy images and each loss's fit at its chosen d"
    )
    run.log_figure(grids, "figures/reconstructions_lowest_photons.png")
    run.log_text(results_table(results, noisy_psnr), "tables/poisson.md")


def results_table(results: dict, noisy_psnr: dict) -> str:
    """Markdown: per photon level, the noisy PSNR and each loss's chosen d and PSNR, and its oracle."""
    header = "| photons | noisy PSNR | " + " | ".join(
        f"{loss}: d chosen | {loss}: PSNR | {loss}: oracle d | {loss}: oracle PSNR" for loss in LOSSES
    )
    lines = [header + " |", "|" + "---|" * (2 + 4 * len(LOSSES))]
    for level in sorted(noisy_psnr):
        cells = [f"{level:g}", f"{noisy_psnr[level]:.2f}"]
        for loss in LOSSES:
            r = results[loss][level]
            cells += [str(r["d"]), f"{r['psnr']:.2f}", str(r["oracle_d"]), f"{r['oracle']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
