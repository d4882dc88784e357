"""What an NMF solver needs from the data, for each kind of data: the *problem* it is written against.

A solver (:mod:`nmf_lab.core.solvers`) updates ``W`` (m x d) and ``H`` (d x n) and asks the problem only for
the least-squares subproblem of one factor with the other fixed (:mod:`nmf_lab.core.least_squares`)::

    problem.least_squares(W)        H's subproblem:  C = W^T (M * A),  G_j = W^T diag(m_j) W
    problem.T.least_squares(H.T)    W's subproblem, on the transposed problem (X = W^T)

and, before each iteration, ``problem.refresh(W, H)`` (a problem whose data depend on the iterate updates
them there). An iteration asks for the two as one call, ``problem.update_and_cross(W, H, step, sub)``: H's
half-step ``step`` at W, then W's subproblem at the new H (:func:`update_and_cross`, two products here; a
problem whose data live in blocks does both in one pass over them, :mod:`nmf_lab.distributed.problem`). The
kinds:

- :class:`DenseProblem`: every entry observed, ``min ||A - W H||_F``;
- :class:`MaskedProblem`: ``min ||M * (A - W H)||_F`` exactly (weighted updates, one Gram matrix per column);
- :class:`ImputedProblem`: the same objective by imputation (EM): before each iteration the hidden entries
  are set to the current ``W H`` and the dense subproblems of that filled matrix are solved. The filled
  objective is the masked one plus ``||(1 - M) * (W_k H_k - W H)||^2``, equal to it at the current iterate,
  so a step that lowers the filled objective lowers the masked one; it costs one product ``W H`` more than
  a dense iteration, against about d / 4 dense iterations for exact masked HALS. The hidden entries are never
  read.

Errors. ``problem.error(report)`` gives ``||M * (A - W H)||_F`` at the iterate a solver reports, from the
products its last half-steps left (:class:`Side`), accumulated in float64: ``||M * A||^2 - 2 <C, X> + sum_j
x_j^T G_j x_j``. Small problems (at most :data:`EXACT_SIZE` entries), results that would cancel (below
``CANCELLATION_GUARD * ||M * A||^2``) and reports with no usable side get the exact norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nmf_lab.core.least_squares import DenseLeastSquares, MaskedLeastSquares, Part, inner

EXACT_SIZE = 1024
"""Up to this many entries in ``A`` (m n), every error is the exact norm (it costs about what the formula
does there; the spec's toy matrices get exact curves)."""

CANCELLATION_GUARD = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-3}
"""Below ``guard * ||M * A||_F^2`` the squared error from the products has lost too many digits to
cancellation, and the exact norm is computed instead (relative 1e-6 or better in float64)."""

MISSING = ("exact", "impute")
"""How a masked fit treats the hidden entries: :class:`MaskedProblem` or :class:`ImputedProblem`."""


def component_floor(A: np.ndarray, rank: int, mask: np.ndarray | None = None) -> float:
    """The floor ``eps0 = eps * sqrt(mean(A) / d)`` that the HALS solvers keep W and H at or above: the
    machine epsilon of ``A``'s dtype at the scale of an entry of the initial guess (spec 2.4). With a ``mask``
    (``A`` 0 outside it) the mean is over the observed entries."""
    mean = np.mean(A, dtype=np.float64) if mask is None else np.sum(A, dtype=np.float64) / np.count_nonzero(mask)
    return float(A.dtype.type(np.finfo(A.dtype).eps * np.sqrt(mean / rank)))


def masked_norm(A: np.ndarray, mask: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """``||M * (A - W H)||_F``, the residual formed in the factors' dtype and summed in float64."""
    residual = W @ H
    np.subtract(A, residual, out=residual)
    np.multiply(residual, mask, out=residual)
    return float(np.linalg.norm(residual.astype(np.float64, copy=False)))


@dataclass(frozen=True)
class Side:
    """One half of a reported iterate: the subproblem ``sub`` of the factor ``X`` (``H``, or ``W^T`` on the
    transposed problem) at the other factor's reported value, and ``G X`` if the solver computed it there."""

    sub: object
    X: np.ndarray
    GX: np.ndarray | None = None


@dataclass(frozen=True)
class Report:
    """What a solver yields after an iteration: the sides of the iterate ``(W, H)`` it reports, either may be
    None. The error and the projected gradient come from them."""

    H: Side | None = None
    W: Side | None = None


class _Shared:
    """What a problem and its transposed view share: ``||M * A||^2`` of the current data and their version
    (it changes when :meth:`refresh` changes the data; a subproblem built before is then stale)."""

    def __init__(self, norm2: float):
        self.norm2, self.version = norm2, 0


def update_and_cross(problem, W: np.ndarray, H: np.ndarray, step, sub=None, *, columnwise: bool = True):
    """One iteration's H half-step and W's subproblem: ``step(sub, H)`` on H's subproblem at ``W`` (``sub``, or
    computed here when None), in place, then returns ``problem.T.least_squares(H.T)`` at the new H.
    ``columnwise``: ``step`` may be applied to column blocks of H separately with the same result (a problem
    of column blocks uses it to do both products in one pass); unused here."""
    step(problem.least_squares(W) if sub is None else sub, H)
    return problem.T.least_squares(H.T)


class ProblemData:
    """What every problem kind tells of its data ``A``: the shape and the dtype, and one iteration's two
    products (:func:`update_and_cross`)."""

    update_and_cross = update_and_cross

    def next_least_squares(self, F: np.ndarray):
        """H's subproblem at ``F`` for the next :meth:`update_and_cross`, computed now (the solver's report of
        the iterate may use it); a problem that computes it inside that call's pass returns None."""
        return self.least_squares(F)

    @property
    def shape(self) -> tuple[int, int]:
        return self.A.shape

    @property
    def dtype(self) -> np.dtype:
        return self.A.dtype


class DenseProblem(ProblemData):
    """``min ||A - W H||_F`` with every entry observed (``A`` m x n, finite, >= 0)."""

    static = True  # the data never change: F^T A is linear in F from one iteration to the next
    kind = "dense"
    beta = 2.0  # the loss: ||M * (A - W H)||_F^2 / 2 (a β-divergence: nmf_lab.core.losses)
    penalized = False  # no penalty (nmf_lab.core.penalties wraps a problem in one)

    def __init__(self, A: np.ndarray):
        self._view(A, Part(A), _Shared(float(np.einsum("ij,ij->", A, A, dtype=np.float64))), None)

    def _view(self, A, part: Part, shared: _Shared, transposed) -> None:
        self.A, self.part, self.shared, self._T = A, part, shared, transposed

    @property
    def T(self):
        """The problem of ``A^T`` (``W^T``'s subproblems), sharing this one's data, built once."""
        if self._T is None:
            other = object.__new__(type(self))
            other.__dict__.update(self.__dict__)
            other._view(self.A.T, self.part.transposed(), self.shared, self)
            other._transpose_extra(self)
            self._T = other
        return self._T

    def _transpose_extra(self, original) -> None:
        """Transpose what a subclass adds (its mask)."""

    @property
    def norm2(self) -> float:
        return self.shared.norm2

    def least_squares(self, F: np.ndarray, *, C: np.ndarray | None = None, keep: bool = False) -> DenseLeastSquares:
        """The subproblem of ``X`` in ``min ||A - F X||`` (F m x d); ``C = F^T A`` if the caller has it;
        ``keep``: F stays fixed over many calls (transform), keep what can be reused."""
        sub = DenseLeastSquares(F, self.part, C)
        sub.version = self.shared.version
        return sub

    def floor(self, rank: int) -> float:
        return component_floor(self.A, rank)

    @staticmethod
    def combine(error: float, penalty: float) -> float:
        """The penalized objective in the error's units: ``sqrt(error^2 + 2 penalty)`` (the error is the
        norm, the loss half its square)."""
        return math.sqrt(error * error + 2.0 * penalty)

    def refresh(self, W: np.ndarray, H: np.ndarray) -> bool:
        """Before an iteration at ``(W, H)``: update the data if they depend on the iterate; returns whether
        they changed (never, here)."""
        return False

    def exact_error(self, W: np.ndarray, H: np.ndarray) -> float:
        """``||A - W H||_F``, the residual formed in the factors' dtype and summed in float64."""
        return float(np.linalg.norm((self.A - W @ H).astype(np.float64, copy=False)))

    def error(self, W: np.ndarray, H: np.ndarray, report: Report | None) -> float:
        """The error at the iterate ``(W, H)`` the ``report`` was made at (None: at the initial guess)."""
        if self.A.size > EXACT_SIZE and report is not None:
            for side in (report.W, report.H):
                usable = side is not None and side.sub.version == self.shared.version
                if usable and (side.GX is not None or isinstance(side.sub, DenseLeastSquares)):
                    squared = self.norm2 - 2.0 * inner(side.sub.C, side.X) + side.sub.quadratic(side.X, side.GX)
                    if squared >= CANCELLATION_GUARD[self.dtype] * self.norm2:
                        return math.sqrt(squared)
                    break
        return self.exact_error(W, H)


class MaskedProblem(DenseProblem):
    """``min ||M * (A - W H)||_F`` exactly; ``A`` is 0 outside the mask ``M`` (m x n bool, a True in every row
    and column), never NaN."""

    kind = "exact mask"

    def __init__(self, A: np.ndarray, mask: np.ndarray, *, fixed_W: bool = False):
        """``fixed_W``: W is given, not fitted (transform): its rows for zero rows of A are not at the floor,
        so no row is left out of the Gram matrices."""
        shared = _Shared(float(np.einsum("ij,ij->", A, A, dtype=np.float64)))
        self._view(A, Part(A, every_row=fixed_W), shared, None)
        self.mask = mask
        self.M_part = np.ascontiguousarray(mask[self.part.rows][:, self.part.cols], dtype=A.dtype)
        self.fit_floor = lambda rank, A=A: component_floor(A, rank, mask)  # the fit's, for either view
        self._zero_row_counts = None

    def _transpose_extra(self, original) -> None:
        self.mask, self.M_part, self._zero_row_counts = original.mask.T, original.M_part.T, None

    def floor(self, rank: int) -> float:
        return self.fit_floor(rank)

    def least_squares(self, F: np.ndarray, *, C: np.ndarray | None = None, keep: bool = False) -> MaskedLeastSquares:
        extra = None
        if not self.part.all_rows:  # the rows of F for zero rows of A sit at the floor: their part of G_j
            if self._zero_row_counts is None:
                observed = self.mask[~self.part.nonzero_rows][:, self.part.cols]
                self._zero_row_counts = np.count_nonzero(observed, axis=0).astype(self.dtype)
            extra = self.dtype.type(self.floor(F.shape[1])) ** 2 * self._zero_row_counts
        sub = MaskedLeastSquares(F, self.part, self.mask, self.M_part, extra, C=C, keep=keep)
        sub.version = self.shared.version
        return sub

    def exact_error(self, W: np.ndarray, H: np.ndarray) -> float:
        """``||M * (A - W H)||_F``, formed in the factors' dtype and summed in float64."""
        return masked_norm(self.A, self.mask, W, H)


class ImputedProblem(DenseProblem):
    """``min ||M * (A - W H)||_F`` by imputation: the dense subproblems of ``A`` with its hidden entries set
    to ``W H`` before every iteration (:meth:`refresh`). ``A`` is 0 outside the mask."""

    static = False  # the filled matrix changes every iteration
    kind = "imputed mask"

    def __init__(self, A: np.ndarray, mask: np.ndarray):
        filled = A.copy()
        shared = _Shared(float(np.einsum("ij,ij->", A, A, dtype=np.float64)))
        self._view(filled, Part(filled, every_row=True, every_col=True), shared, None)  # the fill may be anywhere
        self.observed, self.mask, self.hidden = A, mask, ~mask
        self.fit_floor = lambda rank: component_floor(A, rank, mask)

    def _transpose_extra(self, original) -> None:
        self.observed, self.mask, self.hidden = original.observed.T, original.mask.T, original.hidden.T

    def floor(self, rank: int) -> float:
        return self.fit_floor(rank)

    def refresh(self, W: np.ndarray, H: np.ndarray) -> bool:
        """Set the hidden entries to ``W H``; returns True (the data changed)."""
        fit = W @ H
        np.copyto(self.A, fit, where=self.hidden)
        self.shared.norm2 = float(np.einsum("ij,ij->", self.A, self.A, dtype=np.float64))  # one pass, no product
        self.shared.version += 1
        return True

    def exact_error(self, W: np.ndarray, H: np.ndarray) -> float:
        """``||M * (A - W H)||_F`` on the observed entries only (never the fill)."""
        return masked_norm(self.observed, self.mask, W, H)


def make_problem(A: np.ndarray, mask: np.ndarray | None, missing: str = "exact", *, fixed_W: bool = False):
    """The problem of a checked ``A`` (0 outside ``mask``) and mask: dense without one, else by ``missing``
    (``fixed_W``: for a W that is given, not fitted)."""
    if mask is None:
        return DenseProblem(A)
    return MaskedProblem(A, mask, fixed_W=fixed_W) if missing == "exact" else ImputedProblem(A, mask)
