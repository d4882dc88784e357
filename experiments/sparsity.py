"""Sparse parts: an L1 penalty on H, on W and on both, swept over its weight; the Hoyer sparsity of the basis
(and of the coefficients) against the reconstruction error, and the basis images side by side.

A penalty on one factor alone is met by moving the scale to the other (``W H`` keeps its value as ``W / c``
and ``c H``), so the study sweeps the weight on H alone, on W alone and on both (``alpha_H = alpha_W``) and logs
the factors' largest entries beside the sparsity. Every fit starts from the same initial guess with the job's
solver (HALS by default: its coordinate steps solve the penalized problems exactly) for the same iterations;
the penalty is scikit-learn's (``alpha_W`` scaled by the n images for W, ``alpha_H`` by the m pixel entries for
H, ``l1_ratio = 1``: L1 only). The error is the plain ``||A - W H||_F / ||A||_F`` (the penalty left out), the
sparsity Hoyer's, ``(sqrt(k) - ||x||_1 / ||x||_2) / (sqrt(k) - 1)`` of each column of W (k = m) and each row
of H (k = n) of the components still alive, averaged: 0 for a flat vector, 1 for a single non-zero entry; it
does not depend on the scale of x.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.shared import fit_options
from nmf_lab import fit_nmf
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.inits import initial_factors
from nmf_lab.presentation.figures import side_by_side_grids
from nmf_lab.presentation.study_figures import sparsity_against_error

SWEEPS = {
    "H": ("L1 on H only (alpha_H; alpha_W = 0)", lambda a: {"alpha_W": 0.0, "alpha_H": a}),
    "W": ("L1 on W only (alpha_W; alpha_H = 0)", lambda a: {"alpha_W": a, "alpha_H": 0.0}),
    "both": ("L1 on W and H (alpha_W = alpha_H)", lambda a: {"alpha_W": a, "alpha_H": a}),
}
"""The sweeps: which factor the L1 penalty of weight ``a`` is on."""
HEADLINE = ("hoyer_W.none", "relative_error.none", "hoyer_W.both_strongest", "relative_error.both_strongest")
"""The basis's Hoyer sparsity and the relative error without a penalty and with the strongest L1 on both."""


@dataclass
class SparsitySettings:
    """``sparsity``: the weights ``alpha`` of the L1 penalty, swept on H alone, on W alone and on both."""

    alphas: list[float] = field(default_factory=lambda: [0.0001, 0.0003, 0.001, 0.002])

    def check(self) -> None:
        if not self.alphas or any(not a > 0 for a in self.alphas):
            raise InvalidOption("alphas", self.alphas, "a non-empty list of numbers > 0")


SETTINGS = {"sparsity": SparsitySettings}


def hoyer(X: np.ndarray, axis: int) -> np.ndarray:
    """Hoyer's sparsity of each vector of ``X`` along ``axis`` (k entries, k > 1); 0 for a zero vector."""
    k = X.shape[axis]
    l1, l2 = np.abs(X).sum(axis=axis), np.sqrt((X * X).sum(axis=axis))
    ratio = np.divide(l1, l2, out=np.full_like(l1, np.sqrt(k)), where=l2 > 0)
    return (np.sqrt(k) - ratio) / (np.sqrt(k) - 1)


def alive(W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """The components whose part of W H is above 1e-6 of the largest one's (the others are at the floor)."""
    size = W.max(axis=0) * H.max(axis=1)
    return size > 1e-6 * size.max()


def measure(A: np.ndarray, W: np.ndarray, H: np.ndarray) -> dict[str, float]:
    """The relative error (no penalty), the Hoyer sparsity of the live columns of W and rows of H, how many
    components are alive, and the factors' largest entries (a penalty on one factor moves the scale away)."""
    live = alive(W, H)
    return {
        "relative_error": float(np.linalg.norm(A - W @ H) / np.linalg.norm(A)),
        "hoyer_W": float(hoyer(W[:, live], 0).mean()),
        "hoyer_H": float(hoyer(H[live], 1).mean()),
        "components_alive": int(live.sum()),
        "max_W": float(W.max()),
        "max_H": float(H.max()),
    }


def run(settings, run) -> None:
    alphas = settings.sparsity.alphas
    image_set = settings.data.load()
    A = image_set.matrix()
    d = settings.rank
    start = initial_factors(A, d, settings.init, settings.seed)
    options = {key: value for key, value in fit_options(settings).items() if key not in ("init", "seed")}

    def fit(**penalty):
        return fit_nmf(A, d, init=start, **{**options, "l1_ratio": 1.0, **penalty})

    fits = {"none": fit()}
    for sweep, (_, penalty) in SWEEPS.items():
        for alpha in alphas:
            fits[f"{sweep}_{alpha:g}"] = fit(**penalty(alpha))
    measures = {name: measure(A, result.W, result.H) for name, result in fits.items()}
    for name, values in measures.items():
        run.log_metrics({f"{key}.{name}": value for key, value in values.items()})
    strongest = max(alphas)
    for sweep in SWEEPS:
        values = measures[f"{sweep}_{strongest:g}"]
        run.log_metrics({f"{key}.{sweep}_strongest": values[key] for key in ("relative_error", "hoyer_W")})

    title = f"{A.shape[1]} images, d = {d}, {settings.solver.name}, {settings.solver.max_iter} iterations"
    curves = {
        label: [(0.0, measures["none"]["relative_error"], measures["none"]["hoyer_W"])]
        + [(a, measures[f"{sweep}_{a:g}"]["relative_error"], measures[f"{sweep}_{a:g}"]["hoyer_W"]) for a in alphas]
        for sweep, (label, _) in SWEEPS.items()
    }
    figure = sparsity_against_error(curves, title=f"Sparsity of the basis against the error: {title}")
    run.log_figure(figure, "figures/sparsity_against_error.png")
    shown = {"none": "no penalty", **{f"{s}_{strongest:g}": f"{s}, alpha {strongest:g}" for s in ("both", "W")}}
    panels = []
    for name, caption in shown.items():
        values = measures[name]
        panels.append(
            (
                f"{caption}: error {values['relative_error']:.3f}, Hoyer {values['hoyer_W']:.2f}, "
                f"{values['components_alive']} alive",
                basis_images(fits[name].W, fits[name].H, image_set.shape),
            )
        )
    grids = side_by_side_grids(
        panels, title=f"The basis images (each divided by its maximum; dead components black): {title}"
    )
    run.log_figure(grids, "figures/basis_side_by_side.png")
    run.log_text(sweep_table(measures), "tables/sparsity.md")


def basis_images(W: np.ndarray, H: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The columns of W as images (h, w, c, d), each divided by its own maximum; a dead component (at the
    floor, :func:`alive`) black (divided by its maximum it would be a white square)."""
    h, w = shape
    peak = W.max(axis=0)
    scaled = W / np.where(peak > 0, peak, 1.0)
    scaled[:, ~alive(W, H)] = 0.0
    return scaled.reshape(h, w, W.shape[0] // (h * w), W.shape[1])


def sweep_table(measures: dict) -> str:
    """Markdown: per fit, the relative error, the Hoyer sparsity of W and H, the live components and scales."""
    lines = [
        "| penalty | relative error | Hoyer W | Hoyer H | components alive | max W | max H |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in measures.items():
        lines.append(
            f"| {name} | {v['relative_error']:.4f} | {v['hoyer_W']:.3f} | {v['hoyer_H']:.3f} | "
            f"{v['components_alive']} | {v['max_W']:.3g} | {v['max_H']:.3g} |"
        )
    return "\n".join(lines) + "\n"
