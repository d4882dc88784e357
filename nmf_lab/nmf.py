"""Non-negative matrix factorization ``A ~ W H`` (spec section 2.3): the entry point :func:`fit_nmf`.

Shapes follow the spec: ``A`` is m x n with one sample (image) per column, ``W`` is m x d, ``H`` is d x n.
Every input is validated here, at the boundary; the solvers in :mod:`nmf_lab.solvers` assume valid input.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nmf_lab.solvers import NON_MONOTONE, SOLVERS, Products, component_floor

CANCELLATION_GUARD = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-3}
"""Below ``guard * ||A||_F^2`` the cheap squared error loses digits to cancellation, and the exact norm
``||A - WH||_F`` is computed instead. With float64 this keeps every ``errors[k]`` within a relative 1e-6 of
the exact norm (the rounding of the cheap formula is about ``100 eps ||A||_F^2``)."""

STOP_REASONS = ("max_iter", "tol", "time_limit", "callback")
"""Why :func:`fit_nmf` stopped: see :attr:`NMFResult.stop_reason`."""


@dataclass(frozen=True)
class NMFResult:
    """The outcome of :func:`fit_nmf`.

    Attributes:
        W: m x d basis matrix (its columns are the basis vectors, e.g. basis images), non-negative.
        H: d x n coefficient matrix (column i holds the weights of sample i), non-negative.
        errors: float64 array of length ``n_iter + 1``; ``errors[k] = ||A - W_k H_k||_F`` at the iterate the
            solver reported after k iterations, ``errors[0]`` at the initial guess (for
            ``"ahals_extrapolated"`` the iterate is ``(W_k, Hy_k)``, see :func:`fit_nmf`).
        n_iter: the number of iterations done.
        solver: the name of the solver that produced the factors.
        stop_reason: why the run stopped, one of :data:`STOP_REASONS`: ``"max_iter"`` (``n_iter ==
            max_iter``), ``"tol"`` (the projected gradient fell to ``tol`` times its initial value),
            ``"time_limit"`` or ``"callback"`` (the callback returned True).
        best_iter: the k of the returned factors, ``W, H = W_k, H_k``: ``n_iter`` (the last iterate) for
            every solver whose error never increases, the iterate with the smallest error for the
            solvers in :data:`nmf_lab.solvers.NON_MONOTONE`.
        times: float64 array of length ``n_iter + 1``; ``times[k]`` is the wall-clock seconds from the start
            of the run (after validation and the initial guess) until ``errors[k]`` was known.
    """

    W: np.ndarray
    H: np.ndarray
    errors: np.ndarray
    n_iter: int
    solver: str
    stop_reason: str = "max_iter"
    best_iter: int | None = None
    times: np.ndarray | None = None

    def __post_init__(self):
        if self.best_iter is None:
            object.__setattr__(self, "best_iter", self.n_iter)

    @property
    def final_error(self) -> float:
        """``||A - W H||_F`` at the returned factors, ``errors[best_iter]``."""
        return float(self.errors[self.best_iter])


def fit_nmf(
    A,
    rank: int,
    *,
    solver: str = "mu",
    max_iter: int = 1000,
    delta: float = 1e-9,
    seed: int = 0,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    dtype=None,
    tol: float = 0.0,
    time_limit: float | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
) -> NMFResult:
    """Factorize a non-negative m x n matrix ``A`` into ``W`` (m x d) times ``H`` (d x n), d = ``rank``.

    Args:
        A: non-negative, finite, non-empty 2-D array of real numbers (integers included).
        rank: the number of components d, a positive integer (it may exceed min(m, n)).
        solver: the update rule, a name in :data:`nmf_lab.solvers.SOLVERS`: ``"mu"`` (Algorithm 1),
            ``"hals"``, ``"ahals"`` (accelerated HALS) or ``"ahals_extrapolated"`` (accelerated HALS with
            extrapolation and restarts, the fastest); see :mod:`nmf_lab.solvers`.
        max_iter: the largest number of iterations, >= 0.
        delta: the safe-division constant added to each denominator of ``"mu"``, >= 0 (the spec suggests
            1e-9..1e-6). The HALS solvers do not divide by anything that can vanish and ignore it.
        seed: seed of the random initial guess (ignored when ``init`` is given), an integer >= 0.
        init: optional ``(W0, H0)``, the initial factors (m x d and d x n, non-negative, finite, neither all
            zero). They are copied, never modified.
        dtype: the dtype of the factors and of the products: ``None`` (float32 if ``A`` is float32, else
            float64), ``"float32"`` or ``"float64"`` (NumPy dtypes too). ``A`` is converted to it (the
            errors measure the distance to that converted ``A``); the errors are accumulated in float64
            either way. float32 halves the time per iteration at about 1e-4 relative accuracy.
        tol: stop once the projected gradient is small, ``||grad^P f(W_k, H_k)||_F <= tol *
            ||grad^P f(W_0, H_0)||_F`` (Lin 2007; Kim & Park 2008), a finite number >= 0; 0 (the default)
            never stops on it. See below.
        time_limit: stop once the run has taken ``time_limit`` seconds, a number > 0, or ``None`` (the
            default) for no limit. It is checked after each iteration, so the last one may overrun it.
        callback: optional ``callback(k, errors[k])``, called after each iteration (e.g. a progress bar).
            Returning True stops the run there, with ``stop_reason`` ``"callback"`` (e.g. a target error).

    The random initial guess is the contract of :func:`random_init`: ``rng = np.random.default_rng(seed)``,
    ``W0 = rng.uniform(0, 1, size=(m, d))``, then ``H0 = rng.uniform(0, 1, size=(d, n))``, both multiplied by
    ``sqrt(mean(A) / d)``.

    The stopping rule. With ``f = ||A - WH||_F^2 / 2``, ``grad_W f = W (H H^T) - A H^T`` and
    ``grad_H f = (W^T W) H - W^T A`` come from the products each iteration computes anyway (O((m + n) d^2)
    more work). The projected gradient keeps the entries where the factor is above its lower bound or the
    gradient is negative (a step into the feasible set would lower f); entries at the bound with a
    non-negative gradient are optimal and count as zero. The bound is the floor of the HALS solvers
    (:func:`nmf_lab.solvers.component_floor`, ``eps * sqrt(mean(A) / d)``). The test is made at the initial
    guess (as given, before any rescaling by a solver) and after every iteration; ``"mu"`` approaches
    zero entries only slowly, so it can take long to meet a small ``tol`` (Lin 2007). In float32 the
    gradient carries rounding of about 1e-6 relative, so ``tol`` much below 1e-5 may never be met.

    Returns:
        An :class:`NMFResult` with ``n_iter`` the iterations done, ``stop_reason``, ``errors`` and ``times``
        of length ``n_iter + 1``. ``errors`` is tracked from the products each iteration computes anyway,
        accumulated in float64; the exact ``||A - W_k H_k||_F`` is used wherever that formula would cancel.
        For the solvers whose error never increases, ``W, H`` are the last iterate (``best_iter ==
        n_iter``). ``"ahals_extrapolated"`` reports after iteration k the pair ``(W_k, Hy_k)`` of its latest
        W update and the extrapolated, projected H that update was fitted to, and ``errors[k]`` is exactly
        ``||A - W_k Hy_k||_F``; the curve may rise (a rise makes the solver restart), and ``W, H`` are the
        reported iterate with the smallest error, ``errors[best_iter] == min(errors)``.

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
    A = A.astype(_check_dtype(dtype, A), copy=False)
    if not _is_real(tol) or not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0 (0 turns the stopping rule off), got {tol!r}")
    if time_limit is not None and (not _is_real(time_limit) or not time_limit > 0):
        raise ValueError(f"time_limit must be None or a number of seconds > 0, got {time_limit!r}")
    if init is None:
        W, H = _random_init(A, rank, seed)
    else:
        W, H = _check_init(init, A, rank)

    start = time.perf_counter()
    tracker = _ErrorTracker(A)
    errors = [tracker.initial(W, H)]
    if tol > 0:
        gradient = _ProjectedGradient(A, rank)
        gradient_norm = gradient.norm(W, H, _products(A, W, H))
        threshold = tol * gradient_norm
    times = [time.perf_counter() - start]

    def stop_reason(k: int) -> str | None:
        if tol > 0 and gradient_norm <= threshold:
            return "tol"
        if time_limit is not None and times[k] >= time_limit:
            return "time_limit"
        return "max_iter" if k == max_iter else None

    keep_best = solver in NON_MONOTONE  # else the last iterate is returned, best_iter = n_iter
    best_iter = 0
    best_W, best_H = (W.copy(), H.copy()) if keep_best else (W, H)
    steps = SOLVERS[solver](A, W, H, delta=float(delta))
    k, reason = 0, stop_reason(0)
    while reason is None:
        products = next(steps) if k == 0 else steps.send(errors[k])
        k += 1
        errors.append(tracker.error(W, H, products))
        times.append(time.perf_counter() - start)
        if keep_best and errors[k] <= errors[best_iter]:
            best_iter = k
            np.copyto(best_W, W)
            np.copyto(best_H, H)
        if tol > 0:
            gradient_norm = gradient.norm(W, H, products)
        reason = stop_reason(k)
        if callback is not None and callback(k, errors[k]) and reason is None:
            reason = "callback"
    steps.close()
    if not keep_best:
        best_iter = k
    return NMFResult(
        W=best_W,
        H=best_H,
        errors=np.array(errors, dtype=np.float64),
        n_iter=k,
        solver=solver,
        stop_reason=reason,
        best_iter=best_iter,
        times=np.array(times, dtype=np.float64),
    )


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


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_dtype(dtype, A: np.ndarray) -> np.dtype:
    """The dtype of the factors: ``A``'s own (float32 or float64) for None, else float32 or float64."""
    if dtype is None:
        return A.dtype
    try:
        resolved = np.dtype(dtype)
    except (TypeError, ValueError):
        resolved = None  # not a dtype at all (comparing None with a dtype would mean float64)
    if resolved is None or resolved.type not in (np.float32, np.float64):
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
    return resolved


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
        self.norm2 = float(np.einsum("ij,ij->", A, A, dtype=np.float64))  # no float64 copy of A
        self.floor = CANCELLATION_GUARD[A.dtype] * self.norm2

    def initial(self, W: np.ndarray, H: np.ndarray) -> float:
        """The error at the initial guess, from the one product ``A H^T`` (the exact norm would need two
        m x n temporaries: ten times slower on first use)."""
        return self._error(W, H, self.A @ H.T, H @ H.T, W.T @ W)

    def error(self, W: np.ndarray, H: np.ndarray, products: Products) -> float:
        return self._error(W, H, products.AHt, products.HHt, products.WtW)

    def _error(
        self, W: np.ndarray, H: np.ndarray, AHt: np.ndarray, HHt: np.ndarray, WtW: np.ndarray
    ) -> float:
        cross = _inner(AHt, W)
        gram = _inner(WtW, HHt)
        squared = self.norm2 - 2.0 * cross + gram
        if squared < self.floor:
            return self.exact(W, H)
        return float(np.sqrt(squared))

    def exact(self, W: np.ndarray, H: np.ndarray) -> float:
        return float(np.linalg.norm((self.A - W @ H).astype(np.float64, copy=False)))


def _products(A: np.ndarray, W: np.ndarray, H: np.ndarray) -> Products:
    """The :class:`Products` of an iterate computed from scratch (two products with ``A``)."""
    return Products(AHt=A @ H.T, HHt=H @ H.T, WtW=W.T @ W, WtA=W.T @ A)


class _ProjectedGradient:
    """``||grad^P f(W, H)||_F`` for ``f = ||A - WH||_F^2 / 2`` from the products (Lin 2007).

    ``grad_W = W (H H^T) - A H^T`` (m x d) and ``grad_H = (W^T W) H - W^T A`` (d x n) cost O((m + n) d^2)
    given the products. An entry counts unless its factor entry is at the lower bound (the HALS floor,
    :func:`nmf_lab.solvers.component_floor`) and its gradient is >= 0.
    """

    def __init__(self, A: np.ndarray, rank: int):
        self.floor = component_floor(A, rank)

    def norm(self, W: np.ndarray, H: np.ndarray, products: Products) -> float:
        grad_W = W @ products.HHt
        grad_W -= products.AHt
        grad_H = products.WtW @ H
        grad_H -= products.WtA
        return math.sqrt(self._projected_squared(W, grad_W) + self._projected_squared(H, grad_H))

    def _projected_squared(self, X: np.ndarray, gradient: np.ndarray) -> float:
        gradient[(X <= self.floor) & (gradient >= 0)] = 0
        return _inner(gradient, gradient)


def _inner(X: np.ndarray, Y: np.ndarray) -> float:
    """The Frobenius inner product ``<X, Y>`` accumulated in float64."""
    return float(np.vdot(X.astype(np.float64, copy=False), Y.astype(np.float64, copy=False)))
