"""β-divergence losses (Kullback–Leibler, Itakura–Saito and any real β): one problem kind, dense or masked.

The loss of ``A`` (m x n, mask ``M`` or none) and ``P = W H`` is the β-divergence summed over the observed
entries (Févotte & Idier 2011; scikit-learn's ``_beta_divergence``)::

    d_β(a | p) = (a^β + (β - 1) p^β - β a p^(β-1)) / (β (β - 1))     β not 0 or 1
    d_1(a | p) = a log(a / p) - a + p                                  Kullback–Leibler (β = 1)
    d_0(a | p) = a / p - log(a / p) - 1                                Itakura–Saito (β = 0)

(β = 2 is ``(a - p)^2 / 2``, the Frobenius loss, which stays the least-squares problems of
:mod:`nmf_lab.core.problems`). It is computed exactly, entry by entry in float64 (``0 log 0 = 0``: an
entry of 1e-323 gives the divergence of 0, to rounding; no clamping of ``p``), and summed in float64.

:class:`BetaProblem` gives each half-step the subproblem of its factor ``X`` (``F`` the other factor,
``B`` the data, ``P = F X``) with the multiplicative update's terms (:meth:`BetaSubproblem.mu_terms`)::

    X <- X * (F^T (M * B * P^(β-2)) / F^T (M * P^(β-1)))^γ(β)
    γ(β) = 1 / (2 - β) for β < 1,   1 for 1 <= β <= 2,   1 / (β - 1) for β > 2

the updates of Févotte & Idier (2011), which with that exponent never increase the divergence (with a mask
too: the weights enter as in the weighted Frobenius updates). For β = 1 the denominator is ``F^T M``, the
column sums of F without a mask (no product). Where a negative power of ``P`` is taken (β < 2), ``P`` is
kept at or above ``eps * mean(A)`` in the update only (scikit-learn keeps it above 1.2e-7, whatever the
scale of A). The data must be > 0 on the observed entries for β <= 0 (``d_0(0 | p)`` is infinite):
:func:`nmf_lab.core.nmf.fit_nmf` refuses such data with a clear error, as scikit-learn does.
"""

from __future__ import annotations

import numpy as np

from nmf_lab.core.problems import ProblemData, Report, component_floor

LOSSES = {"frobenius": 2.0, "kl": 1.0, "kullback-leibler": 1.0, "is": 0.0, "itakura-saito": 0.0}
"""The loss names ``fit_nmf(loss=...)`` takes and their β (scikit-learn's names too); any real β is a loss."""


def exponent(beta: float) -> float:
    """Févotte & Idier's exponent γ(β) of the multiplicative update (module docstring)."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def power(X: np.ndarray, exponent: float, out: np.ndarray | None = None) -> np.ndarray:
    """``X ** exponent`` (X > 0), with the cheap exponents (+-1, +-2, +-1/2) done without the general power
    (a logarithm and an exponential per entry)."""
    cheap = {1.0: np.copyto, -1.0: np.reciprocal, 2.0: np.square, 0.5: np.sqrt}
    if exponent in cheap and exponent != 1.0:
        return cheap[exponent](X, out=out)
    if exponent == 1.0:
        return X.copy() if out is None else (np.copyto(out, X), out)[1]
    if -exponent in (2.0, 0.5):
        result = power(X, -exponent, out)
        return np.reciprocal(result, out=result)
    return np.power(X, exponent, out=out)


def loss_name(beta: float) -> str:
    """``"frobenius"``, ``"kl"``, ``"is"`` or ``"beta=<β>"``."""
    names = {2.0: "frobenius", 1.0: "kl", 0.0: "is"}
    return names.get(float(beta), f"beta={float(beta):g}")


def objective_text(beta: float, penalized: bool) -> str:
    """What ``NMFResult.errors`` holds for this loss, in words."""
    if beta == 2:
        return "sqrt(||M * (A - W H)||_F^2 + 2 penalty)" if penalized else "||M * (A - W H)||_F"
    divergence = {1.0: "KL divergence", 0.0: "Itakura-Saito divergence"}.get(
        float(beta), f"beta-divergence (beta={beta:g})"
    )
    return f"{divergence} D(A | W H){' + penalty' if penalized else ''}"


class Divergence:
    """``sum over the observed entries of d_β(b | p)`` for the data ``B`` (0 outside ``mask``), exactly.

    For β = 1 (the common case, and the one timed against scikit-learn) as ``sum p - sum b + sum_{b > 0} b
    (log b - log p)`` over the observed entries: the constants once, then per call one logarithm per
    positive entry (float64 logarithms cost about 8 ns each here, more than the rest together); the terms
    cancel to at most ``eps sum b |log b|``, and the result is kept >= 0. For the other β entry by entry.
    """

    def __init__(self, B: np.ndarray, beta: float, mask: np.ndarray | None):
        self.beta, self.where = beta, (True if mask is None else mask)
        self.B = B.astype(np.float64, copy=False)
        self.positive = self.B > 0
        if beta == 1:
            self.index = np.flatnonzero(self.positive)  # positive entries are observed (B is 0 outside the mask)
            self.B_positive = self.B.ravel()[self.index]
            self.constant = float(np.dot(self.B_positive, np.log(self.B_positive)) - self.B_positive.sum())
            return
        zeros = np.zeros_like(self.B)
        if beta == 0:
            self.log_B = np.log(self.B, where=self.positive, out=zeros)
        else:
            self.B_beta = np.power(self.B, beta, where=self.positive, out=zeros)

    def __call__(self, P: np.ndarray, W: np.ndarray | None = None, H: np.ndarray | None = None) -> float:
        """The divergence of ``P = W H`` (``W``, ``H``: give ``sum p`` without a pass when there is no mask)."""
        beta, B, positive = self.beta, self.B, self.positive
        if beta == 1:
            if self.where is True and W is not None:
                total = float(np.dot(W.sum(axis=0, dtype=np.float64), H.sum(axis=1, dtype=np.float64)))
            else:
                total = float(np.sum(P, where=self.where, dtype=np.float64))
            logs = np.log(np.ascontiguousarray(P).ravel()[self.index].astype(np.float64, copy=False))
            return max(total + self.constant - float(np.dot(self.B_positive, logs)), 0.0)
        P = P.astype(np.float64, copy=False)
        d = np.log(P, where=positive, out=np.zeros_like(P)) if beta == 0 else None
        if beta == 0:  # b / p - (log b - log p) - 1 (b > 0 on every observed entry)
            d -= self.log_B
            d += np.divide(B, P, where=positive, out=np.zeros_like(P))
            d -= 1.0
        else:  # one power: P^(β-1) where p > 0, and P^β = P P^(β-1) (0 where p = 0)
            live = P > 0
            if live.all():  # the common case: no gather, no masked arithmetic
                d = power(P, beta - 1.0)
                cross = d * B
            else:
                d = np.zeros_like(P)
                d[live] = power(P[live], beta - 1.0)
                cross = np.multiply(d, B, where=positive, out=np.zeros_like(P))  # b p^(β-1), 0 where b = 0
            d *= P
            d *= beta - 1.0
            d -= beta * cross
            d += self.B_beta
            d /= beta * (beta - 1.0)
        np.maximum(d, 0.0, out=d)  # d_β >= 0: an entry's rounding (of order eps * a where p ~ a) is not negative
        return float(np.sum(d, where=self.where, dtype=np.float64))


class BetaSubproblem:
    """The β-divergence subproblem of ``X`` (d x N) with ``F`` (K x d) fixed, data ``B`` (K x N, 0 outside
    ``mask``): the multiplicative update's terms and the gradient. ``P = F X`` of the last :meth:`mu_terms`
    is kept (:attr:`product`, with the ``X`` it was formed from) for the error."""

    def __init__(self, F: np.ndarray, B: np.ndarray, mask: np.ndarray | None, M: np.ndarray | None, beta, guard):
        self.F, self.B, self.mask, self.M, self.beta, self.guard = F, B, mask, M, beta, guard
        self.exponent = exponent(beta)
        self.product = self.product_of = None
        self.version = 0

    def _times(self, X: np.ndarray) -> np.ndarray:
        """``F X``, formed in ``B``'s memory order (``(X^T F^T)^T`` on the transposed problem)."""
        if self.B.flags.f_contiguous and not self.B.flags.c_contiguous:
            return (X.T @ self.F.T).T
        return self.F @ X

    def _transposed_times(self, Y: np.ndarray) -> np.ndarray:
        """``F^T Y`` (d x N) as ``(Y^T F)^T``: several times faster here than ``F^T Y`` for these shapes (d much
        smaller than K and N; see also :meth:`nmf_lab.core.least_squares.Part.cross`)."""
        return np.ascontiguousarray((Y.T @ self.F).T)

    def mu_terms(self, X: np.ndarray):
        """``(F^T (M * B * P^(β-2)), F^T (M * P^(β-1)), None)`` with ``P = F X`` (kept)."""
        F, B, beta = self.F, self.B, self.beta
        P = self._times(X)
        self.product, self.product_of = P, X
        safe = np.maximum(P, self.guard) if beta < 2 else P
        if beta == 1:
            Q = np.divide(B, safe, out=safe if safe is not P else None)
            if self.M is not None:
                denominator = self._transposed_times(self.M)
            else:
                denominator = np.repeat(F.sum(axis=0)[:, None], X.shape[1], axis=1)
        else:  # R = P^(β-1) with one power and Q = B R / P where P is kept > 0 (β < 2), else two powers
            R = power(safe, beta - 1.0)
            Q = np.divide(R, safe, out=safe) if safe is not P else power(P, beta - 2.0)
            Q *= B
            if self.mask is not None:
                R *= self.mask
            denominator = self._transposed_times(R)
        return self._transposed_times(Q), denominator, None

    def gradient(self, X: np.ndarray, GX: np.ndarray | None = None) -> np.ndarray:
        """The gradient of the divergence in ``X``: denominator minus numerator."""
        numerator, denominator, _ = self.mu_terms(X)
        return denominator - numerator


class BetaProblem(ProblemData):
    """``min sum_observed d_β(A | W H)`` (β != 2), dense or with a mask (``A`` 0 outside it)."""

    static = True
    penalized = False

    def __init__(self, A: np.ndarray, beta: float, mask: np.ndarray | None = None, *, transposed=None):
        self.A, self.beta, self.mask = A, float(beta), mask
        self.kind = "beta" if mask is None else "beta, exact mask"
        if transposed is None:
            self.divergence = Divergence(A, self.beta, mask)
            self.M = None if mask is None else mask.astype(A.dtype)
            observed = A.size if mask is None else np.count_nonzero(mask)
            self.guard = float(np.finfo(A.dtype).eps * max(np.sum(A, dtype=np.float64) / observed, 1.0))
        else:
            self.divergence, self.guard = transposed.divergence, transposed.guard
            self.M = None if transposed.M is None else transposed.M.T
        self.shared = self  # the version of the data, never changed
        self.version, self._T = 0, transposed

    @property
    def T(self):
        if self._T is None:
            self._T = BetaProblem(self.A.T, self.beta, None if self.mask is None else self.mask.T, transposed=self)
            self._T.kind = self.kind
        return self._T

    def least_squares(self, F: np.ndarray, **_) -> BetaSubproblem:
        """The β-divergence subproblem of ``X`` with ``F`` fixed (the name is the problems' protocol)."""
        return BetaSubproblem(F, self.A, self.mask, self.M, self.beta, self.guard)

    def floor(self, rank: int) -> float:
        return component_floor(self.A, rank, self.mask)

    def refresh(self, W: np.ndarray, H: np.ndarray) -> bool:
        return False

    @staticmethod
    def combine(error: float, penalty: float) -> float:
        return error + penalty

    def exact_error(self, W: np.ndarray, H: np.ndarray) -> float:
        """The divergence of ``W H`` (this problem's orientation: the original ``A``)."""
        return self.divergence(W @ H, W, H)

    def error(self, W: np.ndarray, H: np.ndarray, report: Report | None) -> float:
        """The divergence at ``(W, H)``, from the product ``W H`` the H side's subproblem kept if it has it."""
        side = report.H if report is not None else None
        if side is not None and isinstance(side.sub, BetaSubproblem) and side.sub.product_of is side.X:
            return self.divergence(side.sub.product, W, H)
        return self.exact_error(W, H)
