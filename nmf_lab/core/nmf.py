"""Non-negative matrix factorization ``A ~ W H`` (spec section 2.3): the entry point :func:`fit_nmf`.

Shapes follow the spec: ``A`` is m x n with one sample (image) per column, ``W`` is m x d, ``H`` is d x n.
Every input is validated here, at the boundary; the solvers in :mod:`nmf_lab.core.solvers` assume valid input.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nmf_lab.core.inits import INITS, initial_factors
from nmf_lab.core.solvers import Products, component_floor, get_solver, solver_names
from nmf_lab.core.validation import (
    check_data,
    check_dtype,
    check_int,
    check_mask,
    check_matrix,
    check_non_negative,
    is_real,
)

EXACT_SIZE = 1024
"""Up to this many entries in ``A`` (m n), every error is the exact norm ``||A - W H||_F`` (see
:class:`_ErrorTracker`)."""

CANCELLATION_GUARD = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-3}
"""Above :data:`EXACT_SIZE`, below ``guard * ||A||_F^2`` the cheap squared error loses digits to cancellation,
and the exact norm ``||A - WH||_F`` is computed instead. With float64 this keeps every ``errors[k]`` within a
relative 1e-6 of the exact norm (the rounding of the cheap formula is about ``100 eps ||A||_F^2``)."""


@dataclass(frozen=True)
class NMFResult:
    """The outcome of :func:`fit_nmf`.

    Attributes:
        W: m x d basis matrix (its columns are the basis vectors, e.g. basis images), non-negative.
        H: d x n coefficient matrix (column i holds the weights of sample i), non-negative.
        errors: float64 array of length ``n_iter + 1``; ``errors[k] = ||A - W_k H_k||_F`` (with a mask
            ``M``, ``||M * (A - W_k H_k)||_F``) at the iterate the solver reported after k iterations,
            ``errors[0]`` at the initial guess (for ``"ahals_extrapolated"`` the iterate is ``(W_k, Hy_k)``,
            see :func:`fit_nmf`).
        n_iter: the number of iterations done.
        solver: the name of the solver that produced the factors.
        stop_reason: why the run stopped: ``"max_iter"`` (``n_iter == max_iter``), ``"tol"`` (the projected
            gradient fell to ``tol`` times its initial value), ``"time_limit"`` or ``"callback"`` (the
            callback returned True).
        best_iter: the k of the returned factors, ``W, H = W_k, H_k``: ``n_iter`` (the last iterate) for
            every solver whose error never increases, the iterate with the smallest error for a solver
            whose registry entry is not ``monotone`` (``get_solver(solver).monotone``).
        times: float64 array of length ``n_iter + 1``; ``times[k]`` is the wall-clock seconds from the start
            of the run (after validation and the initial guess) until ``errors[k]`` was known.
        options: the solver's options the run used, every one (``Solver.resolve_options``): what the factors came from.
    """

    W: np.ndarray
    H: np.ndarray
    errors: np.ndarray
    n_iter: int
    solver: str
    stop_reason: str = "max_iter"
    best_iter: int | None = None
    times: np.ndarray | None = None
    options: dict[str, float | int] = field(default_factory=dict)

    def __post_init__(self):
        if self.best_iter is None:
            object.__setattr__(self, "best_iter", self.n_iter)

    @property
    def final_error(self) -> float:
        """``||A - W H||_F`` (masked: ``||M * (A - W H)||_F``) at the returned factors, ``errors[best_iter]``."""
        return float(self.errors[self.best_iter])


def fit_nmf(
    A,
    rank: int,
    *,
    mask: np.ndarray | None = None,
    solver: str = "mu",
    max_iter: int = 1000,
    seed: int = 0,
    init: str | tuple[np.ndarray, np.ndarray] | None = "random",
    dtype=None,
    tol: float = 0.0,
    time_limit: float | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
    **options: float | int,
) -> NMFResult:
    """Factorize a non-negative m x n matrix ``A`` into ``W`` (m x d) times ``H`` (d x n), d = ``rank``.

    Args:
        A: non-negative, finite, non-empty 2-D array of real numbers (integers included); with a ``mask``
            this holds for the observed entries only, the others may be anything (NaN included).
        rank: the number of components d, a positive integer (it may exceed min(m, n)).
        mask: ``None`` (every entry observed, the default) or a NumPy bool array of ``A``'s shape, True
            where ``A`` is observed, with at least one True in every row and every column
            (:func:`check_mask`). The fit then minimises ``||M * (A - W H)||_F``: the entries outside the
            mask are ignored (changing them changes nothing), and ``W H`` fills them in. Every built-in
            solver supports masks (:mod:`nmf_lab.core.solvers` describes each one's masked algorithm); a solver
            whose registry entry has ``supports_mask=False`` is refused a mask, even an all-True one. An
            all-True mask is treated as ``None``: the result is the unmasked one, bit for bit.
        solver: the update rule, a registered name (:func:`nmf_lab.core.solvers.solver_names`): ``"mu"``
            (Algorithm 1), ``"hals"``, ``"ahals"`` (accelerated HALS) or ``"ahals_extrapolated"`` (accelerated
            HALS with extrapolation and restarts, the fastest), or a plug-in; see :mod:`nmf_lab.core.solvers`.
        max_iter: the largest number of iterations, >= 0.
        seed: seed of the initial guess of ``"random"`` and ``"nndsvdar"`` (ignored by the other inits and
            when ``init`` is a pair), an integer >= 0.
        init: the initial factors: a name of :data:`nmf_lab.core.inits.INITS`, ``"random"`` (the default, see
            below), ``"nndsvd"``, ``"nndsvda"`` or ``"nndsvdar"`` (:func:`nmf_lab.core.inits.initial_factors`,
            given the mask), or a pair ``(W0, H0)`` (m x d and d x n, non-negative, finite, neither all
            zero), copied, never modified. ``None`` means ``"random"``, as it did before names existed.
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
        **options: the solver's own options, the rest at their defaults (``get_solver(solver).options``
            describes them): ``delta`` for ``"mu"``, the safe-division constant added to each denominator
            (default 1e-9; the spec suggests 1e-9..1e-6); none for ``"hals"``; ``alpha`` and ``inner_tol``
            for ``"ahals"``; those and ``beta0``, ``eta``, ``gamma``, ``gamma_bar`` for
            ``"ahals_extrapolated"``. E.g. ``fit_nmf(A, 8, delta=1e-6)``,
            ``fit_nmf(A, 8, solver="ahals", alpha=1.0)``.

    The random initial guess is the contract of :func:`nmf_lab.core.inits.random_init`: ``rng =
    np.random.default_rng(seed)``, ``W0 = rng.uniform(0, 1, size=(m, d))``, then ``H0 = rng.uniform(0, 1,
    size=(d, n))``, both multiplied by ``sqrt(mean(A) / d)``; with a mask ``mean(A)`` is the mean of the
    observed entries.

    The stopping rule. With ``f = ||A - WH||_F^2 / 2``, ``grad_W f = W (H H^T) - A H^T`` and
    ``grad_H f = (W^T W) H - W^T A`` come from the products each iteration computes anyway (O((m + n) d^2)
    more work). The projected gradient keeps the entries where the factor is above its lower bound or the
    gradient is negative (a step into the feasible set would lower f); entries at the bound with a
    non-negative gradient are optimal and count as zero. The bound is the floor of the HALS solvers
    (:func:`nmf_lab.core.solvers.component_floor`, ``eps * sqrt(mean(A) / d)``). The test is made at the initial
    guess (as given, before any rescaling by a solver) and after every iteration; ``"mu"`` approaches
    zero entries only slowly, so it can take long to meet a small ``tol`` (Lin 2007). In float32 the
    gradient carries rounding of about 1e-6 relative, so ``tol`` much below 1e-5 may never be met. With a
    mask, ``f = ||M * (A - WH)||_F^2 / 2``, ``grad_W f = (M * WH) H^T - (M * A) H^T`` and ``grad_H f =
    W^T (M * WH) - W^T (M * A)``, and the mean in the bound is over the observed entries; the products a
    masked solver does not yield at the iterate (:class:`nmf_lab.core.solvers.Products`: ``mu`` lacks
    ``(M * WH) H^T``, the HALS solvers ``W^T (M * WH)``) are computed afresh, two more products with m x n
    matrices per iteration, only when ``tol > 0``.

    Returns:
        An :class:`NMFResult` with ``n_iter`` the iterations done, ``stop_reason``, ``errors`` and ``times``
        of length ``n_iter + 1``. ``errors`` is the exact ``||A - W_k H_k||_F`` for a small ``A`` (at most
        :data:`EXACT_SIZE` entries, e.g. the spec's toy matrices); for a larger one it is tracked from the
        products each iteration computes anyway, accumulated in float64, and the exact norm is used wherever
        that formula would cancel. With a mask the same holds for ``||M * (A - W_k H_k)||_F``
        (:class:`_MaskedErrorTracker`).
        For the solvers whose error never increases, ``W, H`` are the last iterate (``best_iter ==
        n_iter``). ``"ahals_extrapolated"`` reports after iteration k the pair ``(W_k, Hy_k)`` of its latest
        W update and the extrapolated, projected H that update was fitted to, and ``errors[k]`` is exactly
        ``||A - W_k Hy_k||_F``; the curve may rise (a rise makes the solver restart), and ``W, H`` are the
        reported iterate with the smallest error, ``errors[best_iter] == min(errors)``.

    Raises:
        ValueError: for any invalid argument, with a message naming the value and what is valid; for an
            option the solver does not have, naming it and the solver's options; for an invalid option
            value, :class:`nmf_lab.core.errors.InvalidOption` (a ValueError) naming the option; for a mask given
            to a solver that does not support masks.
    """
    A = check_matrix(A)
    mask = check_mask(mask, A.shape)
    rank = check_int("rank", rank, minimum=1)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    entry = get_solver(solver)
    if mask is not None and not entry.supports_mask:
        supporting = [name for name in solver_names() if get_solver(name).supports_mask]
        raise ValueError(
            f"solver {solver!r} does not support masks (its registry entry has supports_mask=False); "
            f"solvers that do: {', '.join(supporting)}"
        )
    options = entry.resolve_options(options)
    seed = check_int("seed", seed, minimum=0)
    if mask is not None and mask.all():
        mask = None  # every entry observed: the unmasked fit, bit for bit
    A = check_data(A, mask)
    A = A.astype(check_dtype(dtype, A.dtype), copy=False)
    if not is_real(tol) or not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0 (0 turns the stopping rule off), got {tol!r}")
    if time_limit is not None and (not is_real(time_limit) or not time_limit > 0):
        raise ValueError(f"time_limit must be None or a number of seconds > 0, got {time_limit!r}")
    if init is None or isinstance(init, str):
        W, H = initial_factors(A, rank, "random" if init is None else init, seed, mask)
    else:
        W, H = _check_init(init, A, rank)

    start = time.perf_counter()
    tracker = _ErrorTracker(A) if mask is None else _MaskedErrorTracker(A, mask)
    errors = [tracker.initial(W, H)]
    if tol > 0:
        gradient = _ProjectedGradient(A, rank, mask)
        gradient_norm = gradient.norm(W, H, None)
        threshold = tol * gradient_norm
    times = [time.perf_counter() - start]

    def stop_reason(k: int) -> str | None:
        if tol > 0 and gradient_norm <= threshold:
            return "tol"
        if time_limit is not None and times[k] >= time_limit:
            return "time_limit"
        return "max_iter" if k == max_iter else None

    keep_best = not entry.monotone  # else the last iterate is returned, best_iter = n_iter
    best_iter = 0
    best_W, best_H = (W.copy(), H.copy()) if keep_best else (W, H)
    steps = entry.update(A, W, H, mask=mask, **options) if entry.supports_mask else entry.update(A, W, H, **options)
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
        options=options,
    )


def _check_init(init, A: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        W0, H0 = init
    except (TypeError, ValueError):
        raise ValueError(f"init must be one of {', '.join(INITS)} or a pair (W0, H0) of arrays, got {init!r}") from None
    (m, n), dtype = A.shape, A.dtype
    factors = []
    for name, X, shape in (("W0", W0, (m, rank)), ("H0", H0, (rank, n))):
        X = np.array(X, dtype=dtype, copy=True)  # a copy: the solvers update in place
        if X.shape != shape:
            raise ValueError(
                f"init {name} must have shape {shape} for A of shape {A.shape} and rank {rank}, got {X.shape}"
            )
        check_non_negative(f"init {name}", X)
        if not np.any(X):
            raise ValueError(
                f"init {name} is all zeros: the multiplicative updates keep zero entries at zero, so the "
                f"factors could never leave W H = 0 (spec Task 1c); start from positive entries"
            )
        factors.append(X)
    return factors[0], factors[1]


class _ErrorTracker:
    """``||A - W H||_F`` at every iterate, accumulated in float64.

    Small ``A`` (at most :data:`EXACT_SIZE` entries): the exact norm ``||A - W H||_F`` every time. Larger
    ``A``: from the products the iteration already computed, ``||A - WH||^2 = ||A||^2 - 2 <A H^T, W> +
    <W^T W, H H^T>`` in O((m + d) d), against 2mnd flops and an m x n temporary for the exact norm. That
    formula carries a rounding of about ``100 eps ||A||^2`` in the square (~1e-14 relative in the error
    where it is used); below ``CANCELLATION_GUARD * ||A||^2`` it has lost too many digits, and the exact
    norm is computed instead.

    The size rule: the exact norm wherever it costs about as little as the formula. Both pay the fixed price
    of a few NumPy calls (~2 us) until ``m n`` reaches about a thousand; beyond that the exact norm adds ``2mnd +
    3mn`` flops and two m x n temporaries, at least as much as one of an iteration's two products ``W^T A``,
    ``A H^T`` whatever the shape, so a rule relative to ``(m + n) d`` would not help. Measured on a 2-core
    x86-64 with OpenBLAS, float64, uniform random A (one error computation; the median time per iteration
    of ``fit_nmf``, cheap -> exact tracking, a few % being noise)::

        A            d   one error: cheap   exact    an iteration of mu         of ahals_extrapolated
        3 x 3        2              2.1 us  2.8 us   12.5 -> 13.2 us (+5%)      59 -> 60 us (+2%)
        6 x 6        2              2.1 us  2.6 us   12.6 -> 13.2 us (+5%)      57 -> 60 us (+6%)
        32 x 32      4              2.1 us  3.6 us   13.5 -> 14.9 us (+10%)     130 -> 129 us (0%)
        100 x 100   10              2.2 us   13 us     28 -> 38 us (+37%)       308 -> 317 us (+3%)
        1728 x 500  64               16 us  3.2 ms    3.2 -> 6.4 ms (+101%)    17.3 -> 22.9 ms (+32%)

    Hence ``EXACT_SIZE = 1024`` (32 x 32): up to it the exact norm costs at most ~1.5 us more per iteration,
    and the toy matrices of the spec (at most 6 x 6) get exact curves for < 1 us.
    """

    def __init__(self, A: np.ndarray):
        self.A = A
        self.always_exact = A.size <= EXACT_SIZE
        self.norm2 = float(np.einsum("ij,ij->", A, A, dtype=np.float64))  # no float64 copy of A
        self.floor = CANCELLATION_GUARD[A.dtype] * self.norm2

    def initial(self, W: np.ndarray, H: np.ndarray) -> float:
        """The error at the initial guess; for a large ``A`` from the one product ``A H^T`` (the exact norm
        would need two m x n temporaries: ten times slower on first use)."""
        if self.always_exact:
            return self.exact(W, H)
        return self._from_products(W, H, self.A @ H.T, H @ H.T, W.T @ W)

    def error(self, W: np.ndarray, H: np.ndarray, products: Products) -> float:
        """The error at the iterate ``(W, H)`` that ``products`` were taken at."""
        if self.always_exact:
            return self.exact(W, H)
        return self._from_products(W, H, products.AHt, products.HHt, products.WtW)

    def _from_products(self, W: np.ndarray, H: np.ndarray, AHt: np.ndarray, HHt: np.ndarray, WtW: np.ndarray) -> float:
        squared = self.norm2 - 2.0 * _inner(AHt, W) + _inner(WtW, HHt)
        if squared < self.floor:
            return self.exact(W, H)
        return float(np.sqrt(squared))

    def exact(self, W: np.ndarray, H: np.ndarray) -> float:
        """``||A - W H||_F``, the residual formed in the dtype of the factors and summed in float64."""
        return float(np.linalg.norm((self.A - W @ H).astype(np.float64, copy=False)))


class _MaskedErrorTracker:
    """``||M * (A - W H)||_F`` at every iterate, accumulated in float64 (``A`` is 0 outside the mask ``M``).

    As :class:`_ErrorTracker`, with the products of a masked iteration (:class:`nmf_lab.core.solvers.Products`):
    ``||M * (A - WH)||^2 = ||M * A||^2 - 2 <W^T A, H> + <W^T P, H>`` (``P = M * WH``) from ``WtA`` and
    ``WtP``, or ``= ||M * A||^2 - 2 <A H^T, W> + <P H^T, W>`` from ``AHt`` and ``PHt``, in O((m + n) d);
    the exact norm (one product ``W H`` and three passes over m x n numbers) up to :data:`EXACT_SIZE`
    entries, below ``CANCELLATION_GUARD * ||M * A||^2``, and when a solver yields neither pair.
    """

    def __init__(self, A: np.ndarray, mask: np.ndarray):
        self.A, self.mask = A, mask
        self.always_exact = A.size <= EXACT_SIZE
        self.norm2 = float(np.einsum("ij,ij->", A, A, dtype=np.float64))
        self.floor = CANCELLATION_GUARD[A.dtype] * self.norm2

    def initial(self, W: np.ndarray, H: np.ndarray) -> float:
        """The error at the initial guess: the exact norm (cheaper here than the products of a pair)."""
        return self.exact(W, H)

    def error(self, W: np.ndarray, H: np.ndarray, products: Products) -> float:
        """The error at the iterate ``(W, H)`` that ``products`` were taken at."""
        if self.always_exact:
            return self.exact(W, H)
        if products.WtA is not None and products.WtP is not None:
            cross, fit = _inner(products.WtA, H), _inner(products.WtP, H)
        elif products.AHt is not None and products.PHt is not None:
            cross, fit = _inner(products.AHt, W), _inner(products.PHt, W)
        else:
            return self.exact(W, H)
        squared = self.norm2 - 2.0 * cross + fit
        if squared < self.floor:
            return self.exact(W, H)
        return float(np.sqrt(squared))

    def exact(self, W: np.ndarray, H: np.ndarray) -> float:
        """``||M * (A - W H)||_F``, the residual formed in the dtype of the factors and summed in float64."""
        residual = W @ H
        np.subtract(self.A, residual, out=residual)
        np.multiply(residual, self.mask, out=residual)
        return float(np.linalg.norm(residual.astype(np.float64, copy=False)))


def _products(A: np.ndarray, W: np.ndarray, H: np.ndarray) -> Products:
    """The :class:`Products` of an iterate computed from scratch (two products with ``A``)."""
    return Products(AHt=A @ H.T, HHt=H @ H.T, WtW=W.T @ W, WtA=W.T @ A)


class _ProjectedGradient:
    """``||grad^P f(W, H)||_F`` for ``f = ||A - WH||_F^2 / 2`` from the products (Lin 2007).

    ``grad_W = W (H H^T) - A H^T`` (m x d) and ``grad_H = (W^T W) H - W^T A`` (d x n) cost O((m + n) d^2)
    given the products. An entry counts unless its factor entry is at the lower bound (the HALS floor,
    :func:`nmf_lab.core.solvers.component_floor`) and its gradient is >= 0. With a mask, ``f = ||M * (A -
    WH)||_F^2 / 2``, ``grad_W = P H^T - A H^T`` and ``grad_H = W^T P - W^T A`` with ``P = M * WH``; the
    products the solver did not yield are computed here (``P`` once, then the missing products with it).
    """

    def __init__(self, A: np.ndarray, rank: int, mask: np.ndarray | None = None):
        self.A, self.mask = A, mask
        self.floor = component_floor(A, rank, mask)

    def norm(self, W: np.ndarray, H: np.ndarray, products: Products | None) -> float:
        """The norm at ``(W, H)``, from the ``products`` taken there (None: computed from scratch)."""
        if self.mask is not None:
            grad_W, grad_H = self._masked_gradient(W, H, products)
        else:
            if products is None:
                products = _products(self.A, W, H)
            grad_W = W @ products.HHt
            grad_W -= products.AHt
            grad_H = products.WtW @ H
            grad_H -= products.WtA
        return math.sqrt(self._projected_squared(W, grad_W) + self._projected_squared(H, grad_H))

    def _masked_gradient(self, W: np.ndarray, H: np.ndarray, products: Products | None) -> tuple[np.ndarray, ...]:
        A = self.A
        if products is None:
            WtA = WtP = AHt = PHt = None
        else:
            WtA, WtP, AHt, PHt = products.WtA, products.WtP, products.AHt, products.PHt
        if WtP is None or PHt is None:
            P = W @ H
            np.multiply(P, self.mask, out=P)
            WtP = W.T @ P if WtP is None else WtP
            PHt = P @ H.T if PHt is None else PHt
        grad_W = PHt - (A @ H.T if AHt is None else AHt)
        grad_H = WtP - (W.T @ A if WtA is None else WtA)
        return grad_W, grad_H

    def _projected_squared(self, factor: np.ndarray, gradient: np.ndarray) -> float:
        gradient[(factor <= self.floor) & (gradient >= 0)] = 0
        return _inner(gradient, gradient)


def _inner(X: np.ndarray, Y: np.ndarray) -> float:
    """The Frobenius inner product ``<X, Y>`` accumulated in float64."""
    return float(np.vdot(X.astype(np.float64, copy=False), Y.astype(np.float64, copy=False)))
