"""Hierarchical alternating least squares (HALS) and accelerated HALS, on any problem.

HALS (Cichocki & Phan 2009) minimises the objective exactly over one row of H at a time, then over one
column of W at a time (the rows of W^T: the same half-step on the transposed problem), with ``eps0`` the
floor of :func:`nmf_lab.core.problems.component_floor`::

    h_k <- max(eps0, (c_k - sum_{l != k} g_kl h_l) / g_kk)          k = 1..d,   C = W^T A, G = W^T W

(with a mask, per column j: ``G_j = W^T diag(m_j) W``, exact coordinate minimisation over the observed
entries, :class:`nmf_lab.core.least_squares.MaskedLeastSquares`), so the error never increases. Accelerated
HALS (Gillis & Glineur 2012) repeats the passes of each half-step on the same products, at most ``1 +
floor(alpha * rho)`` times (:func:`sweep_budget`), until a pass moves the factor by at most ``inner_tol``
times the first did. HALS is accelerated HALS with ``alpha = 0``.

Before the first iteration the initial guess is lifted to the floor and rescaled to its best multiple
(:func:`start`; not with a penalty, :mod:`nmf_lab.core.penalties`, whose subproblems the passes solve
exactly as they are). Dead components: no entry is ever zero; a component at the floor comes back once it can
lower the error, with ``||w_k|| ~ eps0`` and ``||h_k|| ~ 1 / eps0``, and is then rebalanced
(:func:`rebalance`) so that the floor stays negligible for it. With W fixed (``update_W=False``: transform)
the floor is 0 and after iterations 20, 40, 80, ... each column whose support the last pass kept gets the
exact least-squares fit on its support where that is feasible and no worse
(:meth:`~nmf_lab.core.least_squares.DenseLeastSquares.solve_on_support`): coordinate descent converges only
linearly, and once the support is right this lands on the NNLS solution.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from nmf_lab.core.least_squares import inner
from nmf_lab.core.problems import Report, Side

BALANCE_LIMIT = 1e4
"""A component is rebalanced when ``||h_k|| / ||w_k||`` leaves ``[1 / BALANCE_LIMIT, BALANCE_LIMIT]``."""

SUBSPACE_FIRST = 20
"""With W fixed, the support steps come after iterations 20, 40, 80, 160, ..."""


def sweep_budget(problem, d: int, alpha: float) -> tuple[int, int]:
    """Gillis & Glineur's bound on the passes per half-step, ``1 + floor(alpha * rho)``, for (H, W): ``rho``
    is the cost of the half-step's products over the cost of one pass. With the non-zero part of A m' x n':
    ``rho_H = 1 + (m'n' + md) / (n (d + 1))`` and ``rho_W = 1 + (m'n' + nd) / (m (d + 1))``."""
    (m, n), (m_part, n_part) = problem.shape, problem.part.B.shape
    rho_H = 1 + (m_part * n_part + m * d) / (n * (d + 1))
    rho_W = 1 + (m_part * n_part + n * d) / (m * (d + 1))
    return 1 + int(alpha * rho_H), 1 + int(alpha * rho_W)


def clamp(problem, W: np.ndarray | None, H: np.ndarray, floor: float) -> None:
    """Raise the factors to the floor, and put the rows of W for zero rows of A, and the columns of H for zero
    columns, at it (their exact optimum, which the half-steps then leave alone); in place."""
    np.maximum(H, floor, out=H)
    H[:, ~problem.part.nonzero_cols] = floor
    if W is not None:
        np.maximum(W, floor, out=W)
        W[~problem.part.nonzero_rows] = floor


def start(problem, W: np.ndarray, H: np.ndarray, floor: float, update_W: bool):
    """Prepare the initial guess in place and return H's first subproblem. The factors are lifted to the
    floor (:func:`clamp`); when W is fitted, ``(W, H)`` is rescaled to its best multiple ``alpha W H``,
    ``alpha = <A, M * WH> / ||M * WH||^2 = <C, H> / quadratic(H)``, split as ``sqrt(alpha)`` on each."""
    clamp(problem, W if update_W else None, H, floor)
    problem.refresh(W, H)
    sub = problem.least_squares(W, keep=not update_W)
    if update_W and not problem.penalized:  # a rescaling changes a penalty: the guess is left as given
        fit, size = inner(sub.C, H), sub.quadratic(H)
        if fit > 0 and size > 0:
            root = np.sqrt(fit / size)
            W *= root
            H *= root
            clamp(problem, W, H, floor)
            problem.refresh(W, H)
            sub = problem.least_squares(W)
    return sub


def rebalance(W: np.ndarray, H: np.ndarray, problem, floor: float, others_W=(), others_H=()) -> np.ndarray | None:
    """If a component is out of balance, rescale every one to ``||w_k|| = ||h_k||`` (``w_k <- lambda_k w_k``,
    ``h_k <- h_k / lambda_k``, ``lambda_k = sqrt(||h_k|| / ||w_k||)``: W H and the error stay), the other
    points alike, in place; returns the scale, or None if nothing was done. Never with a penalty (it would
    change the penalized objective)."""
    if problem.penalized:
        return None
    ratio = np.sqrt(np.einsum("kj,kj->k", H, H, dtype=np.float64) / np.einsum("ik,ik->k", W, W, dtype=np.float64))
    if np.all((ratio <= BALANCE_LIMIT) & (ratio >= 1 / BALANCE_LIMIT)):
        return None
    scale = np.sqrt(ratio).astype(W.dtype)
    for X in (W, *others_W):
        X *= scale
    for X in (H, *others_H):
        X /= scale[:, None]
    for X, Y in zip((W, *others_W), (H, *others_H)):
        clamp(problem, X, Y, floor)
    return scale


def accelerated_hals(
    problem, W: np.ndarray, H: np.ndarray, *, alpha: float, inner_tol: float, update_W: bool = True
) -> Iterator[Report]:
    """Accelerated HALS (module docstring); yields after each iteration a :class:`Report` with H's
    subproblem at the new W and W's subproblem at the new H, with ``G X`` where the passes left it."""
    d = W.shape[1]
    floor = problem.floor(d) if update_W else 0.0
    sub = start(problem, W, H, floor, update_W)
    sweeps_H, sweeps_W = sweep_budget(problem, d, alpha)
    if not update_W:
        yield from _fixed_W(problem, W, H, sub, sweeps_H, inner_tol)
        return

    def step(sub, H):  # H's half-step: on any column block alone when the passes are a fixed number
        sub.passes(H, floor, max_sweeps=sweeps_H, inner_tol=inner_tol)

    while True:
        sub_W = problem.update_and_cross(W, H, step, sub, columnwise=inner_tol == 0 or sweeps_H == 1)
        GW = sub_W.passes(W.T, floor, max_sweeps=sweeps_W, inner_tol=inner_tol, want_GX=True)
        side_W = Side(sub_W, W.T, GW) if rebalance(W, H, problem, floor) is None else None
        needs_H_side = problem.refresh(W, H) or side_W is None  # the data changed, or W's side is gone
        sub = problem.least_squares(W) if needs_H_side else problem.next_least_squares(W)
        yield Report(H=None if sub is None else Side(sub, H), W=side_W)


def _fixed_W(problem, W, H, sub, sweeps: int, inner_tol: float) -> Iterator[Report]:
    """The iterations with W fixed (transform): H's passes, and after iterations 20, 40, 80, ... the exact
    fit on the support where each column settled (module docstring)."""
    support_at, k = SUBSPACE_FIRST, 0
    while True:
        if k + 1 == support_at:
            support = H > 0
        GH = sub.passes(H, 0.0, max_sweeps=sweeps, inner_tol=inner_tol, want_GX=True)
        k += 1
        if k == support_at:
            support_at *= 2
            if sub.solve_on_support(H, (support == (H > 0)).all(axis=0)):
                GH = sub.gram_times(H)
        if problem.refresh(W, H):
            sub, GH = problem.least_squares(W, keep=True), None
        yield Report(H=Side(sub, H, GH))


def hals(problem, W: np.ndarray, H: np.ndarray, *, update_W: bool = True) -> Iterator[Report]:
    """HALS: :func:`accelerated_hals` with one pass per half-step (``alpha = 0``)."""
    return accelerated_hals(problem, W, H, alpha=0.0, inner_tol=0.0, update_W=update_W)
