"""Non-negative matrix factorization ``A ~ W H`` (spec section 2.3): the entry point :func:`fit_nmf`.

Shapes follow the spec: ``A`` is m x n with one sample (image) per column, ``W`` is m x d, ``H`` is d x n.
Every input is validated here, at the boundary; the solvers in :mod:`nmf_lab.core.solvers` assume valid input.
:func:`iterate` is the one loop every fit runs, :func:`nmf_lab.core.transform.transform` (W held fixed) too.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nmf_lab.core.inits import INITS, initial_factors
from nmf_lab.core.losses import LOSSES, BetaProblem, loss_name, objective_text
from nmf_lab.core.penalties import PenalizedProblem, penalty_weights
from nmf_lab.core.problems import MISSING, Report, Side, make_problem
from nmf_lab.core.solvers import Solver, get_solver, solver_names
from nmf_lab.core.validation import (
    check_data,
    check_dtype,
    check_int,
    check_mask,
    check_matrix,
    check_non_negative,
    check_real,
    is_real,
)


@dataclass(frozen=True)
class NMFResult:
    """The outcome of :func:`fit_nmf`.

    Attributes:
        W: m x d basis matrix (its columns are the basis vectors, e.g. basis images), non-negative.
        H: d x n coefficient matrix (column i holds the weights of sample i), non-negative.
        errors: float64 array of length ``n_iter + 1``; ``errors[k] = ||A - W_k H_k||_F`` (with a mask
            ``M``, ``||M * (A - W_k H_k)||_F``) at the iterate the solver reported after k iterations,
            ``errors[0]`` at the initial guess (for ``"ahals_extrapolated"`` the iterate is ``(W_k, Hy_k)``,
            see :func:`fit_nmf`). With another loss or a penalty it is the objective minimised, as
            :attr:`objective` says: for a β-divergence ``D_β(A | W_k H_k)`` (summed over the observed
            entries) plus the penalty; for the Frobenius loss with a penalty ``sqrt(||M * (A - W_k H_k)||_F^2
            + 2 penalty)`` (scikit-learn's objective is half its square).
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
        loss: the loss minimised: ``"frobenius"``, ``"kl"``, ``"is"`` or ``"beta=<β>"``.
        penalized: whether an L1/L2 penalty was part of the objective.
        objective: what ``errors`` holds, in words (e.g. ``"KL divergence D(A | W H) + penalty"``).
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
    loss: str = "frobenius"
    penalized: bool = False
    objective: str = "||M * (A - W H)||_F"

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
    missing: str = "exact",
    solver: str = "mu",
    max_iter: int = 1000,
    seed: int = 0,
    init: str | tuple[np.ndarray, np.ndarray] | None = "random",
    dtype=None,
    tol: float = 0.0,
    time_limit: float | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
    on_iterate: Callable[[int, np.ndarray, np.ndarray], bool | None] | None = None,
    loss: str | float = "frobenius",
    alpha_W: float = 0.0,
    alpha_H: float | str = "same",
    l1_ratio: float = 0.0,
    **options: float | int,
) -> NMFResult:
    """Factorize a non-negative m x n matrix ``A`` into ``W`` (m x d) times ``H`` (d x n), d = ``rank``.

    Args:
        A: non-negative, finite, non-empty 2-D array of real numbers (integers included); with a ``mask``
            this holds for the observed entries only, the others may be anything (NaN included). An array
            of another library with an installed backend (entry-point group :data:`ARRAY_BACKENDS`, named
            after the array type's package) is fitted by it without being read into memory: a Dask array by
            :func:`nmf_lab.distributed.fit_blocked` (column blocks, on the active Dask client or Dask's
            default scheduler).
        rank: the number of components d, a positive integer (it may exceed min(m, n)).
        mask: ``None`` (every entry observed, the default) or a NumPy bool array of ``A``'s shape, True
            where ``A`` is observed, with at least one True in every row and every column
            (:func:`nmf_lab.core.validation.check_mask`). The fit then minimises ``||M * (A - W H)||_F``: the
            entries outside the mask are ignored (changing them changes nothing), and ``W H`` fills them in.
            Every built-in solver takes masks (:mod:`nmf_lab.core.problems`); a plug-in solver whose registry
            entry has ``supports_mask=False`` is refused a mask with ``missing="exact"``, even an all-True one. An
            all-True mask is treated as ``None``: the result is the unmasked one, bit for bit.
        missing: how a masked fit treats the hidden entries (:mod:`nmf_lab.core.problems`): ``"exact"`` (the
            default) minimises ``||M * (A - W H)||_F`` with the weighted updates; ``"impute"`` minimises the
            same objective by imputation (EM): before each iteration the hidden entries are set to the current
            ``W H`` and the solver's unmasked iteration runs on the filled matrix, about 1.5 unmasked
            iterations' time against 3 (``mu``) to d / 4 (HALS) for ``"exact"``. Every solver takes both.
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
        on_iterate: optional ``on_iterate(k, W, H)`` after each iteration, with the reported iterate (the
            solver's own arrays: read them, copy what you keep, never modify them), e.g. to score a
            checkpoint on held-out data without restarting the fit. Returning True stops the run as
            ``callback`` does.
        loss: the loss minimised (:mod:`nmf_lab.core.losses`): ``"frobenius"`` (the default, ``||M * (A -
            W H)||_F^2 / 2``), ``"kl"`` (generalized Kullback–Leibler, β = 1: count data), ``"is"``
            (Itakura–Saito, β = 0) or any finite real β (scikit-learn's names ``"kullback-leibler"`` and
            ``"itakura-saito"`` too); summed over the observed entries with a mask. Any loss but Frobenius
            needs a solver that fits β-divergences (``"mu"``, Févotte & Idier's updates; the HALS family is
            refused) and ``missing="exact"``; for β <= 0 every observed entry of ``A`` must be > 0
            (``d_β(0 | p)`` is infinite there; the error says how many are not, as scikit-learn does).
        alpha_W, alpha_H, l1_ratio: L1/L2 penalties with scikit-learn's meaning (:mod:`nmf_lab.core.penalties`):
            ``alpha_W * n * (l1_ratio |W|_1 + (1 - l1_ratio) ||W||_F^2 / 2) + alpha_H * m * (l1_ratio |H|_1 +
            (1 - l1_ratio) ||H||_F^2 / 2)`` is added to the loss (A is m x n; scikit-learn's
            ``non_negative_factorization(A, ...)`` minimises the same with A's rows as its samples).
            ``alpha_W`` >= 0 (default 0: no penalty), ``alpha_H`` >= 0 or ``"same"`` (the default: alpha_W),
            ``l1_ratio`` in [0, 1]. Every solver on problems takes them (the HALS passes solve the penalized
            coordinate problems exactly; the penalized HALS solvers do not rescale the initial guess).
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
    (:func:`nmf_lab.core.problems.component_floor`, ``eps * sqrt(mean(A) / d)``). The test is made at the initial
    guess (as given, before any rescaling by a solver) and after every iteration; ``"mu"`` approaches
    zero entries only slowly, so it can take long to meet a small ``tol`` (Lin 2007). In float32 the
    gradient carries rounding of about 1e-6 relative, so ``tol`` much below 1e-5 may never be met. With a
    mask, ``f = ||M * (A - WH)||_F^2 / 2``, ``grad_W f = (M * WH) H^T - (M * A) H^T`` and ``grad_H f =
    W^T (M * WH) - W^T (M * A)``, and the mean in the bound is over the observed entries; the products a
    solver did not leave at the iterate (with an exact mask: ``mu`` lacks ``(M * WH) H^T``, the HALS
    solvers ``W^T (M * WH)``) are computed afresh, only when ``tol > 0``.

    Returns:
        An :class:`NMFResult` with ``n_iter`` the iterations done, ``stop_reason``, ``errors`` and ``times``
        of length ``n_iter + 1``. ``errors`` is the exact ``||A - W_k H_k||_F`` for a small ``A`` (at most
        :data:`EXACT_SIZE` entries, e.g. the spec's toy matrices); for a larger one it is tracked from the
        products each iteration computes anyway, accumulated in float64, and the exact norm is used wherever
        that formula would cancel (:meth:`nmf_lab.core.problems.DenseProblem.error`). With a mask the same
        holds for ``||M * (A - W_k H_k)||_F``. Every factor and error is finite (a quotient 0 / 0 of ``mu``
        with ``delta = 0`` keeps the entry's value).
        For the solvers whose error never increases, ``W, H`` are the last iterate (``best_iter ==
        n_iter``). ``"ahals_extrapolated"`` reports after iteration k the pair ``(W_k, Hy_k)`` of its latest
        W update and the extrapolated, projected H that update was fitted to, and ``errors[k]`` is exactly
        ``||A - W_k Hy_k||_F``; the curve may rise (a rise makes the solver restart), and ``W, H`` are the
        reported iterate with the smallest error, ``errors[best_iter] == min(errors)``.

    Raises:
        ValueError: for any invalid argument, with a message naming the value and what is valid; for an
            option the solver does not have, naming it and the solver's options; for an invalid option
            value, :class:`nmf_lab.core.errors.InvalidOption` (a ValueError) naming the option; for a mask given
            to a solver that does not support masks, or an unknown ``missing``.
    """
    backend = array_backend(A)
    if backend is not None:
        return backend(A, rank, mask=mask, missing=missing, solver=solver, max_iter=max_iter, seed=seed, init=init,
                       dtype=dtype, tol=tol, time_limit=time_limit, callback=callback, on_iterate=on_iterate,
                       loss=loss, alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio, **options)  # fmt: skip
    A = check_matrix(A)
    mask = check_mask(mask, A.shape)
    rank = check_int("rank", rank, minimum=1)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    entry = get_solver(solver)
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {', '.join(map(repr, MISSING))}, got {missing!r}")
    if mask is not None and missing == "exact" and not entry.supports_mask:
        supporting = [name for name in solver_names() if get_solver(name).supports_mask]
        raise ValueError(
            f"solver {solver!r} does not support masks (its registry entry has supports_mask=False); "
            f"solvers that do: {', '.join(supporting)}; or fit by imputation with missing='impute'"
        )
    options = entry.resolve_options(options)
    seed = check_int("seed", seed, minimum=0)
    if mask is not None and mask.all():
        mask = None  # every entry observed: the unmasked fit, bit for bit
    A = check_data(A, mask)
    A = A.astype(check_dtype(dtype, A.dtype), copy=False)
    tol, time_limit = _check_stopping(tol, time_limit)
    if init is None or isinstance(init, str):
        W, H = initial_factors(A, rank, "random" if init is None else init, seed, mask)
    else:
        W, H = _check_init(init, A, rank)
    beta, weights = _check_objective(entry, A, mask, missing, loss, alpha_W, alpha_H, l1_ratio)
    problem = make_problem(A, mask, missing) if beta == 2 else BetaProblem(A, beta, mask)
    if weights[0] or weights[1]:
        problem = PenalizedProblem(problem, *weights)
    result = iterate(
        problem,
        W,
        H,
        entry,
        options,
        max_iter=max_iter,
        tol=tol,
        time_limit=time_limit,
        callback=callback,
        on_iterate=on_iterate,
    )
    penalized = bool(weights[0] or weights[1])
    return dataclasses.replace(
        result, loss=loss_name(beta), penalized=penalized, objective=objective_text(beta, penalized)
    )


ARRAY_BACKENDS = "nmf_lab.arrays"
"""The entry-point group of fits for arrays that are not NumPy's: an entry point named after the top-level package
of the array's type (``dask`` for ``dask.array.Array``) names a function with :func:`fit_nmf`'s signature. nmf-lab
declares ``dask = nmf_lab.distributed.problem:fit_dask_array``."""


def array_backend(A) -> Callable | None:
    """The fit an installed backend offers for ``A``'s array type (:data:`ARRAY_BACKENDS`), or None (NumPy
    arrays, lists, and types no backend names, which :func:`fit_nmf` reads with ``np.asarray``)."""
    if isinstance(A, (np.ndarray, list, tuple)):
        return None
    package = type(A).__module__.partition(".")[0]
    for entry_point in importlib.metadata.entry_points(group=ARRAY_BACKENDS, name=package):
        return entry_point.load()
    return None


def _check_objective(entry: Solver, A, mask, missing: str, loss, alpha_W, alpha_H, l1_ratio):
    """β of ``loss`` and the penalty weights ``(W's, H's)``, checked against the solver and the data."""
    if isinstance(loss, str) and loss.lower() in LOSSES:
        beta = LOSSES[loss.lower()]
    elif is_real(loss, finite=True):
        beta = float(loss)
    else:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))} or a finite real beta, got {loss!r}")
    alpha_W = check_real("alpha_W", alpha_W, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
    if isinstance(alpha_H, str) and alpha_H == "same":
        alpha_H = alpha_W
    alpha_H = check_real("alpha_H", alpha_H, lambda v: math.isfinite(v) and v >= 0, "'same' or a finite number >= 0")
    l1_ratio = check_real("l1_ratio", l1_ratio, lambda v: 0 <= v <= 1, "a number in [0, 1]")
    weights = penalty_weights(A.shape, alpha_W, alpha_H, l1_ratio)
    if (weights[0] or weights[1]) and not entry.problems:
        raise ValueError(f"solver {entry.name!r} is written on arrays, not problems: it cannot take a penalty")
    if beta == 2:
        return beta, weights
    if not entry.beta_losses:
        takes = [name for name in solver_names() if get_solver(name).beta_losses]
        raise ValueError(
            f"solver {entry.name!r} minimises the Frobenius loss only, not loss={loss!r}; "
            f"solvers that fit beta-divergences: {', '.join(takes)}"
        )
    if mask is not None and missing != "exact":
        raise ValueError(
            f"missing={missing!r} is for the Frobenius loss; with loss={loss!r} use missing='exact': the weighted "
            f"updates cost no more than the unmasked ones there (one product more for 'kl')"
        )
    if beta <= 0:
        zeros = int(np.count_nonzero(A == 0) - (0 if mask is None else np.count_nonzero(~mask)))
        if zeros:
            raise ValueError(
                f"loss={loss!r} (beta = {beta:g} <= 0) needs A > 0 on every observed entry (d(0 | p) is "
                f"infinite for beta <= 0), but {zeros} observed entries of A are 0; add a small value to A "
                f"or use a loss with beta > 0 (e.g. 'kl')"
            )
    return beta, weights


def iterate(
    problem,
    W: np.ndarray,
    H: np.ndarray,
    entry: Solver,
    options: dict,
    *,
    max_iter: int,
    tol: float = 0.0,
    time_limit: float | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
    on_iterate: Callable[[int, np.ndarray, np.ndarray], bool | None] | None = None,
    update_W: bool = True,
) -> NMFResult:
    """The loop every fit runs: the solver ``entry``'s iterations on ``problem`` from ``(W, H)`` (updated in
    place), the error of every iterate, the stopping rules, the best iterate of a solver that is not
    monotone. ``update_W=False`` holds W fixed (transform): the projected-gradient rule then applies to each
    column of H, an independent problem, and the run stops once every column meets it."""
    start = time.perf_counter()
    errors = [problem.error(W, H, Report(H=Side(problem.least_squares(W), H)) if problem.kind == "dense" else None)]
    if tol > 0:
        problem.refresh(W, H)  # the imputed problem's gradient is the masked one only once filled at (W, H)
        gradient = ProjectedGradient(problem, problem.floor(W.shape[1]) if update_W else 0.0, update_W)
        threshold = tol * gradient.norm(W, H, None)
        gradient_norm = threshold / tol
    times = [time.perf_counter() - start]

    def stop_reason(k: int) -> str | None:
        if tol > 0 and np.all(gradient_norm <= threshold):
            return "tol"
        if time_limit is not None and times[k] >= time_limit:
            return "time_limit"
        return "max_iter" if k == max_iter else None

    keep_best = not entry.monotone  # else the last iterate is returned, best_iter = n_iter
    best_iter = 0
    best_W, best_H = (W.copy(), H.copy()) if keep_best else (W, H)
    steps = _steps(entry, problem, W, H, options, update_W)
    k, reason = 0, stop_reason(0)
    while reason is None:
        report = next(steps) if k == 0 else steps.send(errors[k])
        k += 1
        errors.append(problem.error(W, H, report))
        times.append(time.perf_counter() - start)
        if keep_best and errors[k] <= errors[best_iter]:
            best_iter = k
            np.copyto(best_W, W)
            np.copyto(best_H, H)
        if tol > 0:
            gradient_norm = gradient.norm(W, H, report)
        reason = stop_reason(k)
        stop = callback is not None and callback(k, errors[k])
        stop = (on_iterate is not None and on_iterate(k, W, H)) or stop
        if stop and reason is None:
            reason = "callback"
    steps.close()
    if not keep_best:
        best_iter = k
    return NMFResult(
        W=best_W,
        H=best_H,
        errors=np.array(errors, dtype=np.float64),
        n_iter=k,
        solver=entry.name,
        stop_reason=reason,
        best_iter=best_iter,
        times=np.array(times, dtype=np.float64),
        options=options,
    )


def _steps(entry: Solver, problem, W: np.ndarray, H: np.ndarray, options: dict, update_W: bool):
    """The solver's generator of iterations on ``problem``; a solver of the array protocol (written before
    problems) is driven on the arrays, with the exact error measured by ``problem.error``."""
    if entry.problems:
        return entry.update(problem, W, H, update_W=update_W, **options)
    if not update_W:
        raise ValueError(f"solver {entry.name!r} cannot hold W fixed: it is written on arrays, not problems")
    return _array_protocol(entry, problem, W, H, options)


def _array_protocol(entry: Solver, problem, W: np.ndarray, H: np.ndarray, options: dict):
    if problem.kind == "imputed mask":  # one iteration of the unmasked solver on the matrix filled at (W, H)
        while True:
            problem.refresh(W, H)
            steps = entry.update(problem.A, W, H, **options)
            next(steps)
            steps.close()
            yield Report()
    masked = {"mask": problem.mask} if problem.kind == "exact mask" else {}
    steps = entry.update(problem.A, W, H, **masked, **options)
    next(steps)
    while True:
        yield Report()
        next(steps)


def _check_stopping(tol, time_limit) -> tuple[float, float | None]:
    if not is_real(tol, finite=True) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0 (0 turns the stopping rule off), got {tol!r}")
    if time_limit is not None and (not is_real(time_limit) or not time_limit > 0):
        raise ValueError(f"time_limit must be None or a number of seconds > 0, got {time_limit!r}")
    return float(tol), time_limit


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


class ProjectedGradient:
    """``||grad^P f(W, H)||_F`` for ``f = ||M * (A - WH)||_F^2 / 2`` from the subproblems (Lin 2007).

    The gradient of H's half is ``G H - C`` (``grad_H f = W^T (M * WH) - W^T (M * A)``), W's alike on the
    transposed problem; the sides a solver reported at the iterate are used, the missing ones are computed
    (only when ``tol > 0``). An entry counts unless its factor entry is at the lower bound (the HALS floor,
    0 with W fixed) and its gradient is >= 0. With W fixed the norm is per column of H (an array).
    """

    def __init__(self, problem, floor: float, update_W: bool):
        self.problem, self.floor, self.update_W = problem, floor, update_W

    def norm(self, W: np.ndarray, H: np.ndarray, report: Report | None):
        squares = self._squares(self.problem, W, H, report.H if report else None)
        if not self.update_W:
            return np.sqrt(squares)
        squares_W = self._squares(self.problem.T, H.T, W.T, report.W if report else None)
        return math.sqrt(float(squares.sum()) + float(squares_W.sum()))

    def _squares(self, problem, F: np.ndarray, X: np.ndarray, side: Side | None) -> np.ndarray:
        """Per column of ``X``, the squared projected gradient of its half (float64)."""
        if side is None or side.sub.version != problem.shared.version:
            side = Side(problem.least_squares(F), X)
        gradient = side.sub.gradient(X, side.GX)
        gradient[(self.floor >= X) & (gradient >= 0)] = 0
        return np.einsum("kj,kj->j", gradient, gradient, dtype=np.float64)
