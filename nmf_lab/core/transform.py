"""Projection of new samples onto a learned basis: non-negative least squares with ``W`` fixed.

:func:`transform` gives the coefficients ``H`` (d x n_new) of the columns of ``A_new`` (m x n_new) on the
columns of a basis ``W`` (m x d), e.g. one that :func:`nmf_lab.core.nmf.fit_nmf` learned or a run logged as
``arrays/W.npy``::

    min_{H >= 0} ||M ∘ (A_new - W H)||_F        (M the mask, all ones without one)

It is the fit's own loop (:func:`nmf_lab.core.nmf.iterate`) with W held fixed (scikit-learn's
``update_H=False``): the solver's H half-step, over and over, on the same subproblem. The problem splits into
one NNLS problem per column, ``min_{h >= 0} ||m_j ∘ (a_j - W h)||``, and the stopping rule applies to each
column. Per iteration a few d x d by d x n products and d passes over d x n numbers; the only m x n product
is the setup ``W^T A_new``.
"""

from __future__ import annotations

import numpy as np

from nmf_lab.core.nmf import NMFResult, iterate
from nmf_lab.core.problems import make_problem
from nmf_lab.core.solvers import get_solver
from nmf_lab.core.validation import check_dtype, check_int, check_non_negative, is_real

__all__ = ["TRANSFORM_SOLVERS", "transform"]

TRANSFORM_SOLVERS = ("hals", "mu")
"""The solvers :func:`transform` knows."""


def transform(
    A_new,
    W,
    *,
    solver: str = "hals",
    max_iter: int = 2000,
    tol: float = 1e-7,
    mask=None,
    dtype=None,
) -> NMFResult:
    """The non-negative coefficients ``H`` of the columns of ``A_new`` on the basis ``W``, with ``W`` fixed.

    Args:
        A_new: m x n_new, one sample (image) per column, or a 1-D array of length m, one sample (treated as
            an m x 1 matrix: ``H`` is then d x 1). Real numbers, finite and >= 0 (inside the mask); it may be
            all zeros (its coefficients are then 0).
        W: m x d, non-negative and finite, not all zero, float32 or float64 (e.g. ``np.load("arrays/W.npy")``)
            or any real array; from any solver. It is never modified. An all-zero column of ``W`` leaves its
            coefficient undetermined (it does not change ``W H``): it gets the coefficient 0, the solution of
            least norm.
        solver: ``"hals"`` (the default): exact coordinate descent over the rows of ``H``, ``h_k <- max(0,
            (c_k - sum_{l != k} g_kl h_l) / g_kk)`` with ``G = W^T W`` and ``C = W^T A_new`` (with a mask, one
            ``G_j`` per column, see below), floor 0 so that coefficients reach exact zeros; after iterations
            20, 40, 80, ... each column not yet converged whose support ``F = {k: h_k > 0}`` the last pass
            kept gets a subspace step: the exact least-squares fit on F, accepted if it is non-negative and
            fits at least as well (:meth:`_Problem.subspace_step`). Coordinate descent converges only
            linearly (slowly when ``G`` is ill-conditioned, e.g. for a basis with similar columns); once it
            has found the support, the subspace step lands on the NNLS solution. ``"mu"``: Lee & Seung's
            multiplicative updates of ``H`` alone, ``H <- H * C / (G H)`` (a zero denominator gives 0, and
            entries below the smallest normal number are set to 0: subnormal arithmetic is slow); they
            approach zero coefficients only slowly, so they rarely meet ``tol`` and need thousands of
            iterations for 1e-5 relative in the objective. Both never increase the error.
        max_iter: the largest number of iterations (passes over the columns not yet converged), an integer
            >= 0. Late iterations are cheap: only the slow columns are left.
        tol: column j has converged once the projected gradient of its objective
            ``f_j(h) = ||m_j ∘ (a_j - W h)||^2 / 2`` has fallen to ``tol`` times its value at the start,
            ``||grad^P f_j(h_j^k)|| <= tol ||grad^P f_j(h_j^0)||``, with ``grad f_j = G_j h - c_j`` and the
            entries at ``h = 0`` with a gradient >= 0 (optimal there) counted as zero; converged columns are
            no longer updated, and the run stops once every column has converged (``stop_reason`` ``"tol"``).
            A finite number >= 0; 0 turns the rule off. With the defaults the objective of every column was
            within 5e-9 (relative) of ``scipy.optimize.nnls``'s on 300 CryptoPunks with a d = 64 basis
            (float64 and float32) and within 1e-9 on small random problems. In float32 the gradient carries
            rounding of about 1e-6 relative, so some columns never meet ``tol = 1e-7`` and run to ``max_iter``
            (cheaply, alone).
            With a rank-deficient ``G_j`` (d > m, or fewer observed rows than d) the solution is not unique,
            the subspace steps do not apply, and coordinate descent may need far more iterations.
        mask: None (every entry observed) or a boolean NumPy array of ``A_new``'s shape, True where
            ``A_new`` is observed; the entries outside it may hold anything, NaN included. Column j is fitted
            on its observed rows only, with the Gram matrix ``G_j = W^T diag(m_j) W`` (d^2 n_new numbers in
            memory, formed by one (d(d+1)/2 x m) by (m x n_new) product). A coefficient whose basis column is
            zero on all the observed rows of its sample (all of a sample's coefficients, if none of its
            entries is observed) is undetermined and set to 0. An all-True mask is the same as None.
        dtype: the dtype of the computation and of ``H``: ``None`` (float32 if ``A_new`` and ``W`` are both
            float32, else float64), ``"float32"`` or ``"float64"``. Errors are accumulated in float64.

    The start ``H_0`` is, for each column, the best non-negative multiple of the all-ones vector,
    ``h_j = max(0, 1^T c_j) / (1^T G_j 1)`` (0 for undetermined coefficients).

    Returns:
        An :class:`~nmf_lab.core.nmf.NMFResult` with ``W`` a copy of the given ``W`` in the computation's dtype
        (the same values), ``H`` the d x n_new coefficients (2-D, d x 1 for a 1-D ``A_new``),
        ``errors[k] = ||M ∘ (A_new - W H_k)||_F`` (float64, ``n_iter + 1`` of them, ``errors[0]`` at ``H_0``;
        the exact norm for small problems and near cancellation, else from the d x n products), ``n_iter``,
        ``solver``, ``stop_reason`` (``"tol"`` or ``"max_iter"``), ``times`` (seconds from the start, after
        validation and the setup products; ``times[k]`` when ``errors[k]`` was known) and empty ``options``;
        ``best_iter == n_iter``.

    Raises:
        ValueError: naming the argument and what is valid: an unknown solver, shapes that do not agree (both
        shapes named), a negative, infinite or NaN entry of ``W`` or of ``A_new`` inside the mask, an all-zero
        ``W``, a mask that is not a boolean array of ``A_new``'s shape, an invalid ``max_iter``, ``tol`` or
        ``dtype``.
    """
    if not isinstance(solver, str) or solver not in TRANSFORM_SOLVERS:
        raise ValueError(f"unknown transform solver {solver!r}; known: {', '.join(TRANSFORM_SOLVERS)}")
    max_iter = check_int("max_iter", max_iter, minimum=0)
    if not is_real(tol, finite=True) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0 (0 turns the stopping rule off), got {tol!r}")
    A, W, mask = _check_inputs(A_new, W, mask, dtype)
    problem = make_problem(A, mask, fixed_W=True)
    H = _start(problem.least_squares(W), W, mask)
    entry = get_solver(solver)
    options = entry.resolve_options({"delta": 0.0} if solver == "mu" else {})
    return iterate(problem, W, H, entry, options, max_iter=max_iter, tol=tol, update_W=False)


def _start(sub, W: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``h_j = max(0, 1^T c_j) / (1^T G_j 1)`` with ``1`` the indicator of the determined coefficients
    (``(G_j)_kk = sum_i m_ij w_ik^2 > 0``), 0 on the others (d x n)."""
    d, n = sub.C.shape
    squares = np.einsum("ik,ik->k", W, W)[:, None] if mask is None else (W * W).T @ mask.astype(W.dtype)
    ones = np.broadcast_to(squares > 0, (d, n)).astype(W.dtype)
    size = sub.gram_times(ones).sum(axis=0, dtype=np.float64)  # 1^T G_j 1
    fit = np.maximum(sub.C.sum(axis=0, dtype=np.float64), 0)
    scale = np.divide(fit, size, out=np.zeros_like(fit), where=size > 0)
    return (ones * scale).astype(W.dtype, copy=False)


def _check_inputs(A_new, W, mask, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``A_new`` as m x n (zero outside the mask), ``W`` as a copy, both in the computation's dtype, and the
    mask as m x n or None (None for an all-True mask)."""
    A_new, W = np.asarray(A_new), np.asarray(W)
    for name, X in (("A_new", A_new), ("W", W)):
        if X.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got an array of dtype {X.dtype}")
    if A_new.ndim not in (1, 2) or A_new.size == 0:
        raise ValueError(
            f"A_new must be a non-empty 1-D array (one sample of m entries) or 2-D matrix (m x n_new, one sample "
            f"per column), got an array of shape {A_new.shape}"
        )
    if W.ndim != 2 or W.size == 0:
        raise ValueError(f"W must be a non-empty 2-D matrix (m x d, one basis vector per column), got shape {W.shape}")
    if W.shape[0] != A_new.shape[0]:
        raise ValueError(
            f"A_new of shape {A_new.shape} and W of shape {W.shape} do not agree: A_new needs as many rows "
            f"(entries per sample) as W, {W.shape[0]}, got {A_new.shape[0]}"
        )
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            what = f"dtype {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
            raise ValueError(f"mask must be None or a NumPy array of dtype bool (True where observed), got {what}")
        if mask.shape != A_new.shape:
            raise ValueError(f"mask must have the shape of A_new, {A_new.shape}, got {mask.shape}")
    if A_new.ndim == 1:
        A_new = A_new[:, None]
        mask = None if mask is None else mask[:, None]

    both_float32 = A_new.dtype == np.float32 and W.dtype == np.float32
    resolved = check_dtype(dtype, np.float32 if both_float32 else np.float64)

    W = np.array(W, dtype=resolved, copy=True)
    check_non_negative("W", W)
    if not W.any():
        raise ValueError("W is all zeros: there is no basis to project onto")
    if mask is None or mask.all():
        A_new = A_new.astype(resolved, copy=False)
        check_non_negative("A_new", A_new)
        return A_new, W, None
    A_new = np.where(mask, A_new, 0).astype(resolved, copy=False)
    check_non_negative("A_new", A_new, where="inside the mask")
    return A_new, W, mask
