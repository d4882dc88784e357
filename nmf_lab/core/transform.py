"""Projection of new samples onto a learned basis: non-negative least squares with ``W`` fixed.

:func:`transform` gives the coefficients ``H`` (d x n_new) of the columns of ``A_new`` (m x n_new) on the
columns of a basis ``W`` (m x d), e.g. one that :func:`nmf_lab.core.nmf.fit_nmf` learned or a run logged as
``arrays/W.npy``::

    min_{H >= 0} ||M ∘ (A_new - W H)||_F        (M the mask, all ones without one)

The problem splits into one NNLS problem per column, ``min_{h >= 0} ||m_j ∘ (a_j - W h)||``. The solvers
work on all the columns at once (per iteration a few d x d by d x n products and d passes over d x n
numbers; the only m x n product is the setup ``W^T A_new``) and drop each column from the iteration once it
has converged, so a few slow columns cost little. 10,000 CryptoPunks (1728 x 10000) onto a d = 64 basis take
about 1.5 s with the defaults, float64 or float32 (2-core x86-64, OpenBLAS on one thread; setup 0.1 s).
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from nmf_lab.core.nmf import CANCELLATION_GUARD, EXACT_SIZE, NMFResult
from nmf_lab.core.solvers import _hals_sweep
from nmf_lab.core.validation import check_int, check_non_negative, is_real

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
    if not is_real(tol) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0 (0 turns the stopping rule off), got {tol!r}")
    A, W, mask = _check_inputs(A_new, W, mask, dtype)

    problem = _Problem(A, W, mask)
    H = problem.start()
    step = problem.hals_sweep if solver == "hals" else problem.mu_step

    start = time.perf_counter()
    squared, gradient2 = problem.evaluate(H)
    column_squared = squared  # ||m_j ∘ (a_j - W h_j)||^2 of every column, float64
    threshold2 = tol**2 * gradient2
    done = gradient2 <= threshold2 if tol > 0 else np.zeros(len(gradient2), dtype=bool)
    errors = [problem.total_error(column_squared, H)]
    times = [time.perf_counter() - start]
    H_active, active = H, None  # the columns still iterated (all of them: H itself), their indices
    subspace_at = _SUBSPACE_FIRST if solver == "hals" else -1
    k, reason = 0, None
    while True:
        if done.all():
            reason = "tol"
        elif k == max_iter:
            reason = "max_iter"
        if reason is not None:
            break
        if done.sum() >= max(1, len(done) // _COMPACT_FRACTION):  # drop the converged columns
            keep = ~done
            if active is None:
                active = np.flatnonzero(keep)
            else:
                H[:, active] = H_active
                active = active[keep]
            H_active = np.ascontiguousarray(H_active[:, keep])
            problem.select(keep)
            threshold2, done = threshold2[keep], done[keep]
        if k + 1 == subspace_at:
            support = H_active > 0
        step(H_active)
        k += 1
        squared, gradient2 = problem.evaluate(H_active)
        if k == subspace_at:  # the columns not converged whose support the last sweep kept
            subspace_at *= 2
            settled = ~done & (support == (H_active > 0)).all(axis=0)
            if settled.any() and problem.subspace_step(H_active, settled, squared):
                squared, gradient2 = problem.evaluate(H_active)
        done |= gradient2 <= threshold2
        if active is None:
            column_squared = squared
        else:
            column_squared[active] = squared
            if problem.needs_exact(column_squared):
                H[:, active] = H_active
        errors.append(problem.total_error(column_squared, H))
        times.append(time.perf_counter() - start)
    if active is not None:
        H[:, active] = H_active
    return NMFResult(
        W=W,
        H=H,
        errors=np.array(errors, dtype=np.float64),
        n_iter=k,
        solver=solver,
        stop_reason=reason,
        times=np.array(times, dtype=np.float64),
    )


_SUBSPACE_FIRST = 20
"""``"hals"`` takes subspace steps (:meth:`_Problem.subspace_step`) after iterations 20, 40, 80, 160, ..."""

_SUBSPACE_ROUNDS = 4
"""A subspace step solves up to 4 times, dropping the negative entries from the support each time."""

_BATCH = 512
"""The columns of one batch of d x d solves in :meth:`_Problem.subspace_step`."""

_COMPACT_FRACTION = 8
"""The converged columns are dropped from the iteration once they are at least 1/8 of the columns iterated
(a copy of the iterated arrays; until then they are iterated on, which only brings them closer)."""


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

    if dtype is None:
        both_float32 = A_new.dtype == np.float32 and W.dtype == np.float32
        resolved = np.dtype(np.float32 if both_float32 else np.float64)
    else:
        try:
            resolved = np.dtype(dtype)
        except (TypeError, ValueError):
            resolved = None
        if resolved is None or resolved.type not in (np.float32, np.float64):
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")

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


class _Problem:
    """``min_{H >= 0} f(H) = ||M ∘ (A - W H)||_F^2 / 2`` through its Gram matrices and ``C = W^T (M ∘ A)``.

    Without a mask every column shares ``G = W^T W`` (d x d). With one, column j has ``G_j = W^T diag(m_j) W``,
    stored scaled as ``S[k, l, j] = G_j[k, l] / G_j[k, k]`` with a zero diagonal (d x d x n), next to the
    diagonal ``D[k, j] = G_j[k, k]``; without a mask ``S`` is d x d x 1 and ``D`` is d x 1. Undetermined
    coefficients (``D[k, j] = 0``) have ``S[k, :, j] = 0`` and ``C_scaled[k, j] = 0``, which keeps them at 0.
    The per-column arrays hold the columns still iterated (:meth:`select` drops the others).
    """

    def __init__(self, A: np.ndarray, W: np.ndarray, mask: np.ndarray | None):
        self.A, self.W, self.mask = A, W, mask
        d = W.shape[1]
        self.C = W.T @ A  # d x n; A is 0 outside the mask
        self.a2 = np.einsum("ij,ij->j", A, A, dtype=np.float64)  # ||m_j ∘ a_j||^2
        G = (W.T @ W)[:, :, None] if mask is None else _masked_grams(W, mask)  # d x d x 1 or d x d x n
        self.shared = mask is None
        if self.shared:
            self.G = G[:, :, 0].copy()
        self.D = np.array(G[np.arange(d), np.arange(d)])  # d x 1 or d x n
        live = self.D > 0
        safe = np.where(live, self.D, 1)
        self.S = G  # scaled in place: d^2 n numbers with a mask
        self.S /= safe[:, None, :]
        self.S[np.arange(d), np.arange(d)] = 0
        self.S *= live[:, None, :]
        self.C_scaled = self.C / safe
        self.C_scaled *= live
        self.live = live
        if self.shared:
            self.S_shared = np.ascontiguousarray(self.S[:, :, 0])
        self.GH = None  # G H at the last evaluated iterate
        norm2 = float(self.a2.sum())
        self.guard = CANCELLATION_GUARD[A.dtype] * norm2
        self.always_exact = A.size <= EXACT_SIZE
        self.index = np.arange(A.shape[1])  # the iterated columns' indices into A

    def select(self, keep: np.ndarray) -> None:
        """Keep only the iterated columns where ``keep`` is True."""
        self.C, self.C_scaled, self.GH = self.C[:, keep], self.C_scaled[:, keep], self.GH[:, keep]
        self.index = self.index[keep]
        self.a2 = self.a2[keep]
        if not self.shared:
            self.S, self.D = np.ascontiguousarray(self.S[:, :, keep]), self.D[:, keep]

    def gram_times(self, H: np.ndarray) -> np.ndarray:
        """``G_j h_j`` for every iterated column j, d x n."""
        GH = self.S_shared @ H if self.shared else np.einsum("klj,lj->kj", self.S, H)
        GH += H
        GH *= self.D
        return GH

    def start(self) -> np.ndarray:
        """``h_j = max(0, 1^T c_j) / (1^T G_j 1)`` on the determined coefficients, 0 on the others (d x n)."""
        ones = self.live.astype(self.A.dtype) * np.ones((1, self.A.shape[1]), dtype=self.A.dtype)
        size = self.gram_times(ones).sum(axis=0, dtype=np.float64)  # 1^T G_j 1 over the live coefficients
        fit = np.maximum(self.C.sum(axis=0, dtype=np.float64), 0)
        scale = np.divide(fit, size, out=np.zeros_like(fit), where=size > 0)
        return (ones * scale).astype(self.A.dtype, copy=False)

    def evaluate(self, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per iterated column j, ``||m_j ∘ (a_j - W h_j)||^2`` and ``||grad^P_j f(H)||^2`` (float64); keeps
        ``G H`` for the next multiplicative update."""
        GH = self.gram_times(H)
        self.GH = GH
        gradient = GH - self.C
        squared = self.a2 + np.einsum("kj,kj->j", gradient - self.C, H, dtype=np.float64)  # a2 - 2 c.h + h.Gh
        gradient[(H <= 0) & (gradient >= 0)] = 0
        return squared, np.einsum("kj,kj->j", gradient, gradient, dtype=np.float64)

    def needs_exact(self, column_squared: np.ndarray) -> bool:
        """Whether :meth:`total_error` will compute the exact norm (it needs all of H then)."""
        return self.always_exact or float(column_squared.sum()) < self.guard

    def total_error(self, column_squared: np.ndarray, H: np.ndarray) -> float:
        """``||M ∘ (A - W H)||_F``: from the per-column squares, or exactly (small problems, cancellation)."""
        if not self.needs_exact(column_squared):
            return math.sqrt(float(column_squared.sum()))
        residual = self.A - self.W @ H
        if self.mask is not None:
            residual[~self.mask] = 0
        return float(np.linalg.norm(residual.astype(np.float64, copy=False)))

    def hals_sweep(self, H: np.ndarray) -> None:
        """One pass of exact coordinate descent over the rows of the iterated ``H``, in place (floor 0)."""
        if self.shared:
            _hals_sweep(H, self.S_shared, self.C_scaled, 0.0, np.empty(H.shape[1], dtype=H.dtype))
            return
        for k in range(H.shape[0]):
            row = np.einsum("lj,lj->j", self.S[k], H)
            np.subtract(self.C_scaled[k], row, out=row)
            np.maximum(row, 0, out=H[k])

    def subspace_step(self, H: np.ndarray, columns: np.ndarray, squared: np.ndarray) -> bool:
        """Replace each of the ``columns`` (a boolean over the iterated ones) of ``H`` by the exact least-squares
        fit on its support, where that is non-negative and fits at least as well; in place. ``squared`` holds
        the columns' squared residuals at ``H``. Returns whether any column changed.

        With ``F = {k : h_k > 0}``, ``x_F = G_FF^{-1} c_F`` and ``x = 0`` off F: one batched d x d solve per
        column, of ``G`` with its rows and columns off F replaced by the identity. If ``x >= 0`` it is feasible
        and, as the best point supported in F, at least as good as ``h``; it is taken if its residual, computed
        exactly, is not larger (this also rejects the ``x`` of a singular ``G_FF``). Once F is the optimal
        support this is the NNLS solution up to rounding, which coordinate descent approaches only linearly,
        slowly when ``G`` is ill-conditioned.
        """
        d = H.shape[0]
        diagonal = np.arange(d)
        changed = False
        candidates = np.flatnonzero(columns)
        for chunk in np.array_split(candidates, -(-candidates.size // _BATCH)):
            h = H[:, chunk]
            support = (h > 0).T  # b x d
            K = self.grams(chunk)
            K *= support[:, :, None] & support[:, None, :]
            K[:, diagonal, diagonal] += ~support
            rhs = np.where(support, self.C[:, chunk].T, 0)[:, :, None]
            x = _solve(K, rhs)  # b x d
            for _ in range(_SUBSPACE_ROUNDS - 1):  # drop the negative entries from F and solve again
                negative = x < 0
                redo = np.flatnonzero(negative.any(axis=1) & np.isfinite(x).all(axis=1))
                if redo.size == 0:
                    break
                drop = negative[redo]
                K_redo = K[redo]
                K_redo[drop] = 0  # rows, then columns, of the dropped entries: identity
                K_redo.transpose(0, 2, 1)[drop] = 0
                K_redo[:, diagonal, diagonal] += drop
                rhs_redo = rhs[redo]
                rhs_redo[drop] = 0
                K[redo], rhs[redo] = K_redo, rhs_redo
                x[redo] = _solve(K_redo, rhs_redo)
            x = x.T
            fits = np.isfinite(x).all(axis=0) & (x >= 0).all(axis=0)
            if fits.any():
                chunk, x = chunk[fits], x[:, fits]
                fits = self.exact_column_squares(x, chunk) <= squared[chunk]
                H[:, chunk[fits]] = x[:, fits]
                changed = changed or bool(fits.any())
        return changed

    def grams(self, chunk: np.ndarray) -> np.ndarray:
        """The Gram matrices ``G_j`` of the iterated columns ``chunk``, b x d x d (a new array)."""
        d = self.S.shape[0]
        if self.shared:
            return np.repeat(self.G[None], chunk.size, axis=0)
        K = np.moveaxis(self.S[:, :, chunk] * self.D[:, None, chunk], 2, 0)  # G_j[k, l] / g_kk * g_kk, 0 at k = l
        K[:, np.arange(d), np.arange(d)] = self.D[:, chunk].T
        return K

    def exact_column_squares(self, H: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        """``||m_j ∘ (a_j - W h_j)||^2`` (float64) of the iterated columns ``chunk``, ``H`` their coefficients."""
        columns = self.index[chunk]
        residual = self.A[:, columns] - self.W @ H
        if self.mask is not None:
            residual[~self.mask[:, columns]] = 0
        return np.einsum("ij,ij->j", residual, residual, dtype=np.float64)

    def mu_step(self, H: np.ndarray) -> None:
        """``H <- H * C / (G H)`` in place, with ``G H`` from the last :meth:`evaluate` (at this ``H``);
        subnormal results are set to 0."""
        ratio = np.divide(self.C, self.GH, out=np.zeros_like(self.C), where=self.GH > 0)
        H *= ratio
        H[np.less(H, np.finfo(H.dtype).tiny)] = 0


def _solve(K: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``K_i^{-1} rhs_i`` for a stack of b x d x d matrices and b x d x 1 right-hand sides, b x d; NaN for the
    exactly singular ones."""
    try:
        return np.linalg.solve(K, rhs)[:, :, 0]
    except np.linalg.LinAlgError:  # one singular matrix fails the whole stack: one by one
        x = np.full(rhs.shape[:2], np.nan, dtype=rhs.dtype)
        for i in range(K.shape[0]):
            with contextlib.suppress(np.linalg.LinAlgError):
                x[i] = np.linalg.solve(K[i], rhs[i])[:, 0]
        return x


def _masked_grams(W: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``G[k, l, j] = sum_i mask[i, j] W[i, k] W[i, l]``, d x d x n: one product of the d(d+1)/2 products of
    pairs of columns of W with the mask, mirrored."""
    d = W.shape[1]
    rows, cols = np.triu_indices(d)
    pairs = W[:, rows] * W[:, cols]  # m x d(d+1)/2
    upper = pairs.T @ mask.astype(W.dtype)  # d(d+1)/2 x n
    G = np.empty((d, d, mask.shape[1]), dtype=W.dtype)
    G[rows, cols] = upper
    G[cols, rows] = upper
    return G
