"""Non-negative matrix factorization ``A ~ W H`` (spec section 2.3): the entry point :func:`fit_nmf`.

Shapes follow the spec: ``A`` is m x n with one sample (image) per column, ``W`` is m x d, ``H`` is d x n.
Every input is validated here, at the boundary; the solvers in :mod:`nmf_lab.solvers` assume valid input.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from nmf_lab.solvers import SOLVERS, Products

CANCELLATION_GUARD = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-3}
"""Below ``guard * ||A||_F^2`` the cheap squared error loses digits to cancellation, and the exact norm
``||A - WH||_F`` is computed instead. With float64 this keeps every ``errors[k]`` within a relative 1e-6 of
the exact norm (the rounding of the cheap formula is about ``100 eps ||A||_F^2``)."""


@dataclass(frozen=True)
class NMFResult:
    """The outcome of :func:`fit_nmf`.

    Attributes:
        W: m x d basis matrix (its columns are the basis vectors, e.g. basis images), non-negative.
        H: d x n coefficient matrix (column i holds the weights of sample i), non-negative.
        errors: float64 array of length ``n_iter + 1``; ``errors[k] = ||A - W_k H_k||_F`` after k
            iterations, ``errors[0]`` at the initial guess.
        n_iter: the number of iterations done.
        solver: the name of the solver that produced the factors.
    """

    W: np.ndarray
    H: np.ndarray
    errors: np.ndarray
    n_iter: int
    solver: str

    @property
    def final_error(self) -> float:
        """``||A - W H||_F`` at the returned factors."""
        return float(self.errors[-1])


def fit_nmf(
    A,
    rank: int,
    *,
    solver: str = "mu",
    max_iter: int = 1000,
    delta: float = 1e-9,
    seed: int = 0,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> NMFResult:
    """Factorize a non-negative m x n matrix ``A`` into ``W`` (m x d) times ``H`` (d x n), d = ``rank``.

    Args:
        A: non-negative, finite, non-empty 2-D array. float32 input gives float32 factors; any other real
            input (integers included) is converted to float64.
        rank: the number of components d, a positive integer (it may exceed min(m, n)).
        solver: the update rule, a name in :data:`nmf_lab.solvers.SOLVERS` ("mu": Algorithm 1).
        max_iter: the number of iterations, >= 0.
        delta: the safe-division constant added to each denominator, >= 0 (the spec suggests 1e-9..1e-6).
        seed: seed of the random initial guess (ignored when ``init`` is given), an integer >= 0.
        init: optional ``(W0, H0)``, the initial factors (m x d and d x n, non-negative, finite, neither all
            zero). They are copied, never modified.

    The random initial guess is the contract of :func:`random_init`: ``rng = np.random.default_rng(seed)``,
    ``W0 = rng.uniform(0, 1, size=(m, d))``, then ``H0 = rng.uniform(0, 1, size=(d, n))``, both multiplied by
    ``sqrt(mean(A) / d)``.

    Returns:
        An :class:`NMFResult`. ``errors`` is tracked from the products each iteration computes anyway,
        accumulated in float64; the exact ``||A - W_k H_k||_F`` is used wherever that formula would cancel.

    Raises:
        ValueError: for any invalid argument, with a message naming the value and what is valid.
    """
    A = check_data(A)
    rank = _check_int("rank", rank, minimum=1)
    max_iter = _check_int("max_iter", max_iter, minimum=0)
    if not isinstance(delta, numbers.Real) or not np.isfinite(delta) or delta < 0:
        raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; known solvers: {', '.join(sorted(SOLVERS))}")
    seed = _check_int("seed", seed, minimum=0)
    if init is None:
        W, H = _random_init(A, rank, seed)
    else:
        W, H = _check_init(init, A, rank)

    tracker = _ErrorTracker(A)
    errors = np.empty(max_iter + 1, dtype=np.float64)
    errors[0] = tracker.exact(W, H)
    steps = SOLVERS[solver](A, W, H, delta=float(delta))
    for k in range(1, max_iter + 1):
        errors[k] = tracker.error(W, H, next(steps))
    return NMFResult(W=W, H=H, errors=errors, n_iter=max_iter, solver=solver)


def random_init(A: np.ndarray, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The random initial guess of Algorithm 1, in the dtype of the factors of ``A``.

    ``rng = np.random.default_rng(seed)``; ``W0 = rng.uniform(0, 1, size=(m, d))``, then
    ``H0 = rng.uniform(0, 1, size=(d, n))``; both are multiplied by ``sqrt(mean(A) / d)`` so that ``W0 H0``
    has the scale of ``A``.
    """
    A = check_data(A)
    return _random_init(A, _check_int("rank", rank, minimum=1), _check_int("seed", seed, minimum=0))


def _random_init(A: np.ndarray, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    m, n = A.shape
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.0, 1.0, size=(m, rank))
    H = rng.uniform(0.0, 1.0, size=(rank, n))
    scale = np.sqrt(np.mean(A, dtype=np.float64) / rank)
    return (W * scale).astype(A.dtype, copy=False), (H * scale).astype(A.dtype, copy=False)


def check_data(A) -> np.ndarray:
    """Return ``A`` as a float array fit for NMF, or raise ``ValueError`` saying what is wrong with it."""
    A = np.asarray(A)
    if A.dtype.kind not in "biuf":
        raise ValueError(f"A must hold real numbers, got an array of dtype {A.dtype}")
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D matrix (m x n), got an array of shape {A.shape}")
    if A.size == 0:
        raise ValueError(f"A is empty (shape {A.shape}): it needs at least one row and one column")
    A = A.astype(np.float32 if A.dtype == np.float32 else np.float64, copy=False)
    _check_non_negative("A", A)
    if not np.any(A):
        raise ValueError("A is all zeros: its only factorization is W H = 0, there is nothing to fit")
    return A


def _check_non_negative(name: str, X: np.ndarray) -> None:
    finite = np.isfinite(X)
    if not finite.all():
        n_nan = int(np.isnan(X).sum())
        n_inf = X.size - int(finite.sum()) - n_nan
        raise ValueError(
            f"{name} has {n_nan} NaN and {n_inf} infinite entries; all entries must be finite"
        )
    negative = X < 0
    if negative.any():
        raise ValueError(
            f"{name} has {int(negative.sum())} negative entries (minimum {X.min():.6g}); "
            f"NMF needs every entry >= 0"
        )


def _check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _check_init(init, A: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        W0, H0 = init
    except (TypeError, ValueError):
        raise ValueError("init must be a pair (W0, H0) of arrays") from None
    (m, n), dtype = A.shape, A.dtype
    factors = []
    for name, X, shape in (("W0", W0, (m, rank)), ("H0", H0, (rank, n))):
        X = np.array(X, dtype=dtype, copy=True)  # a copy: the solvers update in place
        if X.shape != shape:
            raise ValueError(
                f"init {name} must have shape {shape} for A of shape {A.shape} and rank {rank}, "
                f"got {X.shape}"
            )
        _check_non_negative(f"init {name}", X)
        if not np.any(X):
            raise ValueError(
                f"init {name} is all zeros: the multiplicative updates keep zero entries at zero, so the "
                f"factors could never leave W H = 0 (spec Task 1c); start from positive entries"
            )
        factors.append(X)
    return factors[0], factors[1]


class _ErrorTracker:
    """``||A - W H||_F`` from the products an iteration already computed, accumulated in float64.

    ``||A - WH||^2 = ||A||^2 - 2 <A H^T, W> + <W^T W, H H^T>`` costs O((m + d) d) given the products. When
    the result is below ``CANCELLATION_GUARD * ||A||^2`` it has lost too many digits, and the exact norm is
    computed instead.
    """

    def __init__(self, A: np.ndarray):
        self.A = A
        A64 = A.astype(np.float64, copy=False).ravel()
        self.norm2 = float(A64 @ A64)
        self.floor = CANCELLATION_GUARD[A.dtype] * self.norm2

    def error(self, W: np.ndarray, H: np.ndarray, products: Products) -> float:
        cross = _inner(products.AHt, W)
        gram = _inner(products.WtW, products.HHt)
        squared = self.norm2 - 2.0 * cross + gram
        if squared < self.floor:
            return self.exact(W, H)
        return float(np.sqrt(squared))

    def exact(self, W: np.ndarray, H: np.ndarray) -> float:
        return float(np.linalg.norm((self.A - W @ H).astype(np.float64, copy=False)))


def _inner(X: np.ndarray, Y: np.ndarray) -> float:
    """The Frobenius inner product ``<X, Y>`` accumulated in float64."""
    return float(np.vdot(X.astype(np.float64, copy=False), Y.astype(np.float64, copy=False)))
