"""Singular-value baselines for NMF (spec section 2.2): the best rank-d approximation and the rank."""

from __future__ import annotations

import numpy as np

from nmf_lab.core.validation import check_int


def truncated_svd(A: np.ndarray, rank: int) -> np.ndarray:
    """The best rank-d approximation ``U_d S_d V_d^T`` of the m x n matrix ``A`` (spec equation 9).

    No matrix of rank ``rank`` is closer to ``A`` in the Frobenius norm (Eckart-Young), so
    ``||A - truncated_svd(A, d)||_F`` is a lower bound for the error of any rank-d NMF. A rank above
    min(m, n) gives ``A`` itself. Returns an m x n float64 array.
    """
    A = _as_matrix(A)
    rank = check_int("rank", rank, minimum=1)
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    return (U[:, :rank] * s[:rank]) @ Vt[:rank]


def truncation_errors(A: np.ndarray) -> np.ndarray:
    """``e[d] = ||A - truncated_svd(A, d)||_F`` for d = 0 .. min(m, n), from the singular values alone.

    ``e[d]^2`` is the sum of the squared singular values beyond the d-th, so ``e[0] = ||A||_F`` and
    ``e[min(m, n)] = 0``. Returns a float64 array of length ``min(m, n) + 1``.
    """
    s = np.linalg.svd(_as_matrix(A), compute_uv=False)
    tail = np.cumsum((s**2)[::-1])[::-1]  # tail[d] = sum of s[d:]^2
    return np.sqrt(np.append(tail, 0.0))


def numerical_rank(A: np.ndarray, tol: float | None = None) -> int:
    """The number of singular values of ``A`` above ``tol``.

    The default ``tol = max(m, n) * eps * s_max`` (float64 eps, s_max the largest singular value) is the
    usual threshold below which a singular value cannot be told from rounding error (as in
    ``numpy.linalg.matrix_rank``).
    """
    A = _as_matrix(A)
    s = np.linalg.svd(A, compute_uv=False)
    if tol is None:
        tol = max(A.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
    return int(np.sum(s > tol))


def _as_matrix(A) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.size == 0:
        raise ValueError(f"A must be a non-empty 2-D matrix, got an array of shape {A.shape}")
    return A
