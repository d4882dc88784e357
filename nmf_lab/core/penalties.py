"""L1 and L2 penalties on W and H, with scikit-learn's meaning: one wrapper over any problem.

The penalized objective is scikit-learn's (``sklearn.decomposition.non_negative_factorization`` of the same
m x n matrix, its rows the samples: m samples, n features; its W is our W (m x d), its H our H (d x n))::

    loss(A, W H) + l1_W |W|_1 + l1_H |H|_1 + l2_W ||W||_F^2 / 2 + l2_H ||H||_F^2 / 2

    l1_W = alpha_W * l1_ratio * n,   l2_W = alpha_W * (1 - l1_ratio) * n        (n: the features)
    l1_H = alpha_H * l1_ratio * m,   l2_H = alpha_H * (1 - l1_ratio) * m        (m: the samples)

with ``loss`` ``||M * (A - W H)||_F^2 / 2`` or a β-divergence (:mod:`nmf_lab.core.losses`), and
``alpha_H="same"`` meaning ``alpha_W`` (:func:`penalty_weights`).

One piece serves every solver and every problem kind: :class:`PenalizedProblem` wraps a problem and gives
each half-step the penalized subproblem of its factor (:class:`PenalizedSubproblem`): for ``X`` with
weights ``(l1, l2)``, ``C <- C - l1`` and ``G_j <- G_j + l2 I`` (HALS: ``x_k <- max(floor, (c_k - l1 -
sum_{l != k} g_kl x_l) / (g_kk + l2))``, the exact minimiser of the penalized objective over one row), and
the multiplicative update's denominator gets ``+ l1 + l2 X`` (the numerator stays, so it stays positive).

The error a penalized fit logs (``NMFResult.errors``) is the penalized objective in the loss's own units:
``sqrt(||M * (A - W H)||^2 + 2 penalty)`` for the Frobenius loss (so that without a penalty it is
``||M * (A - W H)||_F``), ``D_beta(A | W H) + penalty`` for a β-divergence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmf_lab.core.least_squares import inner
from nmf_lab.core.problems import Report, Side, update_and_cross


@dataclass(frozen=True)
class Weights:
    """The penalty weights of one factor: ``l1 |X|_1 + l2 ||X||^2 / 2``."""

    l1: float = 0.0
    l2: float = 0.0

    def __bool__(self) -> bool:
        return self.l1 > 0 or self.l2 > 0

    def value(self, X: np.ndarray) -> float:
        """``l1 sum(X) + l2 ||X||^2 / 2`` (X >= 0), in float64."""
        total = 0.0
        if self.l1:
            total += self.l1 * float(np.sum(X, dtype=np.float64))
        if self.l2:
            total += self.l2 * inner(X, X) / 2
        return total


def penalty_weights(shape: tuple[int, int], alpha_W: float, alpha_H: float, l1_ratio: float):
    """``(Weights of W, Weights of H)`` for an m x n matrix, scikit-learn's scaling (module docstring);
    ``alpha_H`` is a number (``"same"`` is resolved by the caller)."""
    m, n = shape
    W = Weights(alpha_W * l1_ratio * n, alpha_W * (1.0 - l1_ratio) * n)
    H = Weights(alpha_H * l1_ratio * m, alpha_H * (1.0 - l1_ratio) * m)
    return W, H


class PenalizedSubproblem:
    """A subproblem with the penalty ``weights`` of its factor: ``C - l1`` and ``G_j + l2 I``; everything
    else is the wrapped subproblem's."""

    def __init__(self, sub, weights: Weights):
        self.inner, self.weights = sub, weights
        if hasattr(sub, "C"):
            self.C = sub.C - weights.l1 if weights.l1 else sub.C

    def __getattr__(self, name):  # part, version, F, exponent, ...: the wrapped subproblem's
        return getattr(self.inner, name)

    def gram_times(self, X: np.ndarray) -> np.ndarray:
        GX = self.inner.gram_times(X)
        if self.weights.l2:
            GX += self.weights.l2 * X
        return GX

    def quadratic(self, X: np.ndarray, GX: np.ndarray | None = None) -> float:
        if GX is not None:
            return inner(GX, X)
        return self.inner.quadratic(X) + self.weights.l2 * inner(X, X)

    def mu_terms(self, X: np.ndarray):
        """The wrapped numerator; the denominator plus ``l1 + l2 X``; ``(G + l2 I) X`` when there is a G."""
        numerator, denominator, GX = self.inner.mu_terms(X)
        l1, l2 = self.weights.l1, self.weights.l2
        if GX is not None and l2:
            GX = GX + l2 * X
        denominator = (GX if GX is not None else denominator + l2 * X) + l1
        return numerator, denominator, GX

    def gradient(self, X: np.ndarray, GX: np.ndarray | None = None) -> np.ndarray:
        """The penalized gradient: ``(G + l2 I) X - (C - l1)`` (``GX``: the penalized ``G X``), or the wrapped
        gradient plus ``l1 + l2 X``."""
        if GX is not None:
            return GX - self.C
        gradient = self.inner.gradient(X)
        gradient += self.weights.l1 + self.weights.l2 * X
        return gradient

    def passes(self, X, floor: float, **options):
        return self.inner.passes(X, floor, C=self.C, ridge=self.weights.l2, **options)

    def unwrapped(self, side: Side) -> Side:
        """The ``side`` as the wrapped subproblem's (its ``G X`` without the ridge)."""
        GX = side.GX
        if GX is not None and self.weights.l2:
            GX = GX - self.weights.l2 * side.X
        return Side(self.inner, side.X, GX)


class PenalizedProblem:
    """A problem with the penalties ``W_weights`` and ``H_weights`` (:class:`Weights`): its subproblems are
    penalized (:class:`PenalizedSubproblem`), its error is the penalized objective (module docstring)."""

    penalized = True

    def __init__(self, problem, W_weights: Weights, H_weights: Weights, transposed=None):
        self.inner, self.W_weights, self.H_weights = problem, W_weights, H_weights
        self._T = transposed

    def __getattr__(self, name):  # shape, dtype, part, kind, static, floor, refresh, shared, ...
        return getattr(self.inner, name)

    @property
    def T(self):
        """The penalized problem of ``A^T`` (``W^T``'s subproblems: W's weights)."""
        if self._T is None:
            self._T = PenalizedProblem(self.inner.T, self.H_weights, self.W_weights, transposed=self)
        return self._T

    def least_squares(self, F: np.ndarray, **options):
        sub = self.inner.least_squares(F, **options)
        return PenalizedSubproblem(sub, self.H_weights) if self.H_weights else sub

    update_and_cross = update_and_cross  # on the penalized subproblems (never the wrapped problem's own)

    def next_least_squares(self, F: np.ndarray):
        return self.least_squares(F)

    def penalty(self, W: np.ndarray, H: np.ndarray) -> float:
        """``l1_W |W|_1 + l2_W ||W||^2 / 2 + l1_H |H|_1 + l2_H ||H||^2 / 2``."""
        return self.W_weights.value(W) + self.H_weights.value(H)

    def error(self, W: np.ndarray, H: np.ndarray, report: Report | None) -> float:
        """The penalized objective in the loss's units: the wrapped problem's error of the unpenalized sides,
        combined with the penalty by the loss (``sqrt(e^2 + 2 p)`` for Frobenius, ``e + p`` for β)."""
        if report is not None:
            report = Report(H=_unwrapped(report.H), W=_unwrapped(report.W))
        return self.inner.combine(self.inner.error(W, H, report), self.penalty(W, H))

    def exact_error(self, W: np.ndarray, H: np.ndarray) -> float:
        return self.inner.combine(self.inner.exact_error(W, H), self.penalty(W, H))


def _unwrapped(side: Side | None) -> Side | None:
    return side.sub.unwrapped(side) if side is not None and isinstance(side.sub, PenalizedSubproblem) else side
