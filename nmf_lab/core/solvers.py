"""NMF update rules and their registry: one :class:`Solver` entry per update rule.

A solver's ``update(A, W, H, **options)`` takes the data ``A`` (m x n) and the current factors ``W`` (m x d)
and ``H`` (d x n), updates the factors **in place** one iteration at a time, and after each iteration yields
the :class:`Products` it computed on the way, taken at the iterate ``(W, H)`` then held by the two arrays.
:func:`nmf_lab.core.nmf.fit_nmf` turns those products into the error ``||A - W H||_F`` (and, with a tolerance,
the projected gradient) without ever forming an m x n matrix, and sends the error back into the generator
(``error = yield products``). A solver may use that error (the extrapolated solver restarts on it) or
ignore it; driven by plain ``next()`` it receives ``None``.

Missing entries. A solver whose entry has ``supports_mask=True`` is called ``update(A, W, H, mask=M,
**options)``: ``M`` is None (every entry observed: the unmasked algorithm, bit for bit) or an m x n bool
array, True where ``A`` is observed, with a True in every row and column; ``A`` is then 0 outside the mask
(never NaN). The solver minimises ``||M * (A - W H)||_F`` and yields the masked :class:`Products` (the
products with ``M * (W H)`` replace the Gram matrices). A solver with ``supports_mask=False`` (the default,
so that solvers written before masks keep working) is called as before and ``fit_nmf`` refuses a mask for it.

The built-in solvers (:func:`solver_names` lists every registered one; all of them support masks):

``"mu"``
    Lee & Seung's multiplicative updates, Algorithm 1 of the spec. Option ``delta``. With a mask, the
    weighted updates ``H <- H * (W^T (M * A)) / (W^T (M * (WH)) + delta)``, then W alike
    (:func:`_masked_multiplicative_updates`): Lee & Seung's auxiliary function holds for 0/1 weights, so
    the error does not increase (with ``delta = 0``); three times the products of an unmasked iteration.
``"hals"``
    Hierarchical alternating least squares (Cichocki & Phan 2009): one exact pass over the rows of H,
    then over the columns of W. No options. With a mask, exact coordinate minimisation over the observed
    entries, ``h_kj <- max(eps0, sum_i m_ij w_ik r_ij / sum_i m_ij w_ik^2)`` with ``r`` the residual
    without component k (:func:`_masked_hals_inner`, from one Gram matrix per column): each step
    minimises the masked objective exactly over one row, so the error never increases; the Gram matrices
    cost about d / 4 times the products of an unmasked iteration.
``"ahals"``
    Accelerated HALS (Gillis & Glineur 2012): several passes over H, then over W, reusing the products of
    the iteration, as long as they pay. Options ``alpha``, ``inner_tol``. With a mask, the passes of the
    masked ``"hals"``, several per pair of Gram computations (:func:`_masked_accelerated_hals`).
``"ahals_extrapolated"``
    Accelerated HALS with extrapolation and restarts (Ang & Gillis 2019), the fastest here. Its error may
    rise (``monotone=False``): ``fit_nmf`` returns its best iterate. Options ``alpha``, ``inner_tol``,
    ``beta0``, ``eta``, ``gamma``, ``gamma_bar``. With a mask, the same extrapolation and restarts around
    the masked ``"ahals"`` updates (:func:`_masked_extrapolated_hals`).

``get_solver(name).options`` describes each option (default, what is valid, what it does);
``fit_nmf(A, d, solver=name, **options)`` sets them.

Adding a solver. Describe it with a :class:`Solver` (its ``update`` generator follows the protocol above)
and register it. In-process, e.g. in a notebook or a test, call :func:`register_solver`::

    register_solver(Solver(name="pgd", update=projected_gradient, monotone=False, summary="...",
                           options={"step": Option(1e-3, lambda s: s > 0, "a number > 0", "the step")}))

From an installed package, declare the solver in the entry-point group ``nmf_lab.core.solvers`` of its
``pyproject.toml``; the entry point's name must be the solver's name, its object a :class:`Solver`::

    [project]
    name = "my-nmf-solvers"
    dependencies = ["nmf-lab"]
    [project.entry-points."nmf_lab.core.solvers"]
    pgd = "my_nmf_solvers:PGD"        # PGD = Solver(name="pgd", ...) in my_nmf_solvers.py

Once the package is installed, ``fit_nmf(A, d, solver="pgd")`` and ``nmf-lab solver=pgd`` find it. The
entry points are loaded lazily, once: the first time the registry is asked for a name it lacks, or for
the list of names. A name that is registered already is an error, as is an entry point whose name differs
from its solver's.

References:
    D. D. Lee, H. S. Seung. Algorithms for non-negative matrix factorization. NIPS 13, 2001.
    A. Cichocki, A.-H. Phan. Fast local algorithms for large scale nonnegative matrix and tensor
    factorizations. IEICE Trans. Fundamentals E92-A(3), 2009.
    N. Gillis, F. Glineur. Accelerated multiplicative updates and hierarchical ALS algorithms for
    nonnegative matrix factorization. Neural Computation 24(4), 2012.
    A. M. S. Ang, N. Gillis. Accelerating nonnegative matrix factorization algorithms using extrapolation.
    Neural Computation 31(2), 2019.
"""

from __future__ import annotations

import importlib.metadata
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from nmf_lab.core.errors import InvalidOption

__all__ = ["Option", "Products", "Solver", "component_floor", "get_solver", "register_solver", "solver_names"]


@dataclass(frozen=True)
class Products:
    """The products an iteration leaves behind, all taken at the iterate ``(W, H)`` it yields with.

    ``AHt = A H^T`` (m x d), ``HHt = H H^T`` (d x d), ``WtW = W^T W`` (d x d), ``WtA = W^T A`` (d x n).
    With them::

        ||A - WH||_F^2 = ||A||_F^2 - 2 <AHt, W> + <WtW, HHt>
        grad_W f = W HHt - AHt,   grad_H f = WtW H - WtA        (f = ||A - WH||_F^2 / 2)

    ``WtA`` is the product the next H update needs, so computing it at the end of an iteration rather than
    at the start of the next one costs nothing (one product in the whole run, the last).

    With a mask ``M`` (True where ``A`` is observed) the solver receives ``A`` with the unobserved entries
    set to 0, so ``AHt = A H^T`` and ``WtA = W^T A`` are the products with ``M * A``; ``HHt`` and ``WtW`` play
    no part (they may be None), and their role is taken by the products with ``P = M * (W H)``, the fit on
    the observed entries: ``WtP = W^T P`` (d x n) and ``PHt = P H^T`` (m x d). With them::

        ||M * (A - WH)||_F^2 = ||M * A||_F^2 - 2 <WtA, H> + <WtP, H>  =  ||M * A||_F^2 - 2 <AHt, W> + <PHt, W>
        grad_W f = PHt - AHt,     grad_H f = WtP - WtA             (f = ||M * (A - WH)||_F^2 / 2)

    A masked solver gives what it computed anyway at the iterate and None for the rest: the error needs one
    pair, ``(WtA, WtP)`` or ``(AHt, PHt)`` (else ``fit_nmf`` computes the exact masked norm), and the
    stopping rule all four (``fit_nmf`` computes the missing ones from scratch, only when ``tol > 0``).
    """

    AHt: np.ndarray | None
    HHt: np.ndarray | None
    WtW: np.ndarray | None
    WtA: np.ndarray | None
    WtP: np.ndarray | None = None
    PHt: np.ndarray | None = None


# --------------------------------------------------------------------------------------------------------
# Registry entries
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option of a solver: its default, what values are valid, and what it does.

    The default's type sets the option's type: a float option takes any real number but a bool (an int is
    converted to float), an int option any integer but a bool. ``valid`` is a predicate on the converted
    value; ``valid_text`` says in words what it accepts, type included ("a finite number >= 0").
    """

    default: float | int
    valid: Callable[[float | int], bool]
    valid_text: str
    help: str

    def __post_init__(self):
        if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
            raise TypeError(f"an option's default must be a float or an int, got {self.default!r}")
        if not self.valid(self.default):
            raise ValueError(f"the default {self.default!r} is not valid: it must be {self.valid_text}")

    def check(self, name: str, value) -> float | int:
        """``value`` converted to the option's type; :class:`InvalidOption` if it is not valid."""
        kind = numbers.Real if isinstance(self.default, float) else numbers.Integral
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidOption(name, value, self.valid_text)
        try:
            converted = float(value) if kind is numbers.Real else int(value)
        except OverflowError:  # an integer too large for a float
            raise InvalidOption(name, value, self.valid_text) from None
        if not self.valid(converted):
            raise InvalidOption(name, value, self.valid_text)
        return converted


@dataclass(frozen=True, kw_only=True, eq=False)
class Solver:
    """The registry entry of one update rule, built with keywords; two entries are equal only if identical.

    Attributes:
        name: the name ``fit_nmf(..., solver=name)`` knows it by.
        update: the generator function ``update(A, W, H, **options)`` of the protocol in the module
            docstring; it receives every option of ``options``, resolved, and nothing else.
        monotone: True if the error never increases from one iteration to the next; False if it may rise,
            and :func:`nmf_lab.core.nmf.fit_nmf` then returns the iterate with the smallest error.
        options: the solver's own options by name (read-only).
        summary: how it updates, in one line.
        supports_mask: True if ``update`` fits with missing entries: it is then called as ``update(A, W, H,
            mask=M, **options)``, ``M`` None (every entry observed) or an m x n bool array (True where ``A``
            is observed, every row and column with at least one True; ``A`` is 0 elsewhere), and minimises
            ``||M * (A - W H)||_F``, yielding the masked :class:`Products`. False (the default, so that
            solvers written before masks keep working): called without ``mask``, and ``fit_nmf`` refuses a
            mask for it.
    """

    name: str
    update: Callable[..., Iterator[Products]]
    monotone: bool
    options: Mapping[str, Option] = field(default_factory=dict)
    summary: str
    supports_mask: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a solver's name must be a non-empty string, got {self.name!r}")
        if not callable(self.update):
            raise TypeError(f"solver {self.name!r}: update must be a generator function, got {self.update!r}")
        if not isinstance(self.monotone, bool):
            raise TypeError(f"solver {self.name!r}: monotone must be True or False, got {self.monotone!r}")
        if not isinstance(self.supports_mask, bool):
            raise TypeError(f"solver {self.name!r}: supports_mask must be True or False, got {self.supports_mask!r}")
        for key, option in self.options.items():
            if not isinstance(option, Option):
                raise TypeError(f"solver {self.name!r}: option {key!r} must be an Option, got {option!r}")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def resolve_options(self, given: Mapping[str, object]) -> dict[str, float | int]:
        """Every option of the solver: the valid ``given`` values, converted, and the defaults for the rest.

        Raises ``ValueError`` for a name the solver has no option of (listing those it has), and
        :class:`~nmf_lab.core.errors.InvalidOption` for a value that is not valid.
        """
        unknown = [key for key in given if key not in self.options]
        if unknown:
            has = f"its options are {', '.join(self.options)}" if self.options else "it has no options"
            raise ValueError(f"solver {self.name!r} has no option {', '.join(map(repr, unknown))}; {has}")
        return {
            key: option.check(key, given[key]) if key in given else option.default
            for key, option in self.options.items()
        }


# --------------------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------------------

_ENTRY_POINT_GROUP = "nmf_lab.core.solvers"
_REGISTRY: dict[str, Solver] = {}
_FROM_ENTRY_POINTS: set[str] = set()  # the names loaded from entry points
_entry_points_loaded = False


def register_solver(solver: Solver, *, replace: bool = False) -> None:
    """Add ``solver`` to the registry under ``solver.name``; a name already taken is a ``ValueError``
    unless ``replace`` is True. For use in-process (a notebook, a test); an installed package declares
    its solvers as entry points instead (module docstring)."""
    if not isinstance(solver, Solver):
        raise TypeError(f"register_solver takes a nmf_lab.core.solvers.Solver, got {solver!r}")
    if solver.name in _REGISTRY and not replace:
        raise ValueError(f"a solver named {solver.name!r} is registered already; pass replace=True to replace it")
    _REGISTRY[solver.name] = solver


def get_solver(name: str) -> Solver:
    """The registry entry of the solver called ``name``; a ``ValueError`` listing the known solvers if
    there is none."""
    if isinstance(name, str) and name not in _REGISTRY:
        _load_entry_points()
    solver = _REGISTRY.get(name) if isinstance(name, str) else None
    if solver is None:
        raise ValueError(f"unknown solver {name!r}; known solvers: {', '.join(solver_names())}")
    return solver


def solver_names() -> list[str]:
    """The names of every registered solver, built-in, registered in-process or installed, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _load_entry_points() -> None:
    """Register the solvers of the entry-point group ``nmf_lab.core.solvers``, once. All or none: an entry point
    that does not name a :class:`Solver` of its own name, or takes a name already registered, is an error
    and registers nothing (the next lookup tries again)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    found: dict[str, Solver] = {}
    for entry_point in importlib.metadata.entry_points(group=_ENTRY_POINT_GROUP):
        dist = getattr(entry_point, "dist", None)
        where = f"entry point {entry_point.name} = {entry_point.value!r} of group {_ENTRY_POINT_GROUP!r}"
        where += f" (distribution {dist.name})" if dist is not None else ""
        solver = entry_point.load()
        if not isinstance(solver, Solver):
            raise TypeError(f"{where} must name a nmf_lab.core.solvers.Solver, got {type(solver).__name__}")
        if solver.name != entry_point.name:
            raise ValueError(
                f"{where} names a Solver called {solver.name!r}: the entry point's name must be the solver's name"
            )
        if found.get(solver.name, _REGISTRY.get(solver.name, solver)) is not solver:
            raise ValueError(f"{where}: a different solver named {solver.name!r} is registered already")
        found[solver.name] = solver
    _REGISTRY.update(found)
    _FROM_ENTRY_POINTS.update(found)
    _entry_points_loaded = True


def _unregister(name: str) -> None:
    """Remove the solver ``name`` from the registry (tests clean up with it)."""
    del _REGISTRY[name]
    _FROM_ENTRY_POINTS.discard(name)


def _forget_entry_points() -> None:
    """Remove the solvers loaded from entry points; the registry looks for entry points again when next
    asked (tests that install an entry point use it)."""
    global _entry_points_loaded
    for name in _FROM_ENTRY_POINTS:
        _REGISTRY.pop(name, None)
    _FROM_ENTRY_POINTS.clear()
    _entry_points_loaded = False


# --------------------------------------------------------------------------------------------------------
# Multiplicative updates
# --------------------------------------------------------------------------------------------------------


def _multiplicative_updates(
    A: np.ndarray, W: np.ndarray, H: np.ndarray, *, delta: float, mask: np.ndarray | None = None
) -> Iterator[Products]:
    """Lee and Seung's multiplicative updates, Algorithm 1 of the spec; with a ``mask``, the weighted ones
    (:func:`_masked_multiplicative_updates`)."""
    if mask is not None:
        return _masked_multiplicative_updates(A, W, H, delta=delta, mask=mask)
    return _plain_multiplicative_updates(A, W, H, delta=delta)


def _plain_multiplicative_updates(A: np.ndarray, W: np.ndarray, H: np.ndarray, *, delta: float) -> Iterator[Products]:
    """Lee and Seung's multiplicative updates, Algorithm 1 of the spec (equations 12 and 13).

    Each iteration updates H first, then W with the new H::

        H <- H * (W^T A) / (W^T W H + delta)
        W <- W * (A H^T) / (W H H^T + delta)

    ``W^T W H`` is computed as ``(W^T W) H`` and ``W H H^T`` as ``W (H H^T)``: the same numbers, at the
    cost of two d x d Gram matrices instead of two extra products with m x n matrices. Per iteration the
    work is the two products ``W^T A`` and ``A H^T`` (2mnd flops each) plus O((m + n) d^2); the quotients
    are formed in place in the buffer of the denominator.

    With ``delta = 0`` the error never increases (Lee & Seung's theorem). ``delta > 0`` keeps the quotients
    finite, but the step is then a descent step only while the error is well above ``delta``: on the spec's
    toy matrices the error, once near 1e-9, can rise by about 1e-12. The registry counts ``mu`` as monotone
    (it returns its last iterate, as Algorithm 1 does).
    """
    WtA = W.T @ A
    WtW = W.T @ W
    while True:
        ratio = WtW @ H  # d x n: the denominator, then the quotient, in one buffer
        ratio += delta
        np.divide(WtA, ratio, out=ratio)
        H *= ratio
        AHt = A @ H.T
        HHt = H @ H.T
        ratio = W @ HHt  # m x d
        ratio += delta
        np.divide(AHt, ratio, out=ratio)
        W *= ratio
        WtW = W.T @ W
        WtA = W.T @ A
        yield Products(AHt=AHt, HHt=HHt, WtW=WtW, WtA=WtA)


def _masked_multiplicative_updates(
    A: np.ndarray, W: np.ndarray, H: np.ndarray, *, delta: float, mask: np.ndarray
) -> Iterator[Products]:
    """The weighted multiplicative updates for ``min ||M * (A - WH)||_F`` (``A`` is 0 outside the mask ``M``).

    Algorithm 1 with the fit ``W H`` replaced by its observed part ``P = M * (W H)``: H first, then W with
    the new H, delta in the denominators::

        H <- H * (W^T (M * A)) / (W^T (M * (W H)) + delta)
        W <- W * ((M * A) H^T) / ((M * (W H)) H^T + delta)

    With ``delta = 0`` the error never increases: Lee & Seung's auxiliary-function proof carries over with
    ``W^T diag(m_j) W`` (column j's mask on the diagonal) in place of ``W^T W`` (Blondel, Ho & Van Dooren,
    weighted NMF, 2008); with ``delta > 0`` as for ``mu``, and the registry entry is the same.

    Cost. An iteration computes two fits ``W H`` (at ``(W_k, H_k)`` and ``(W_k, H_{k+1})``: the order of
    Algorithm 1 leaves no fit to share), each masked in place in one m x n buffer, and four products with
    m x n matrices (``W^T (M * A)``, ``W^T P``, ``(M * A) H^T``, ``P H^T``): six 2mnd-flop products against
    the two of ``mu``, so about three times its time per iteration (3.3x measured at 1728 x 10000, d = 64;
    in-cache blocking, a float mask and stacked products measured no faster). ``W^T (M * A)`` and ``W^T P``
    at the new iterate are computed at the end of the iteration (the next H update needs them) and yielded,
    so the masked error costs O(nd).
    """
    P = np.empty_like(A)  # M * (W H), formed in place

    def observed_fit() -> np.ndarray:
        np.matmul(W, H, out=P)
        np.multiply(P, mask, out=P)
        return P

    WtA = W.T @ A
    WtP = W.T @ observed_fit()
    while True:
        ratio = WtP + delta  # d x n: the denominator, then the quotient (WtP itself was yielded)
        np.divide(WtA, ratio, out=ratio)
        H *= ratio
        AHt = A @ H.T
        ratio = observed_fit() @ H.T  # m x d, at (W_k, H_{k+1})
        ratio += delta
        np.divide(AHt, ratio, out=ratio)
        W *= ratio
        WtA = W.T @ A
        WtP = W.T @ observed_fit()
        yield Products(AHt=AHt, HHt=None, WtW=None, WtA=WtA, WtP=WtP)


# --------------------------------------------------------------------------------------------------------
# Hierarchical alternating least squares
# --------------------------------------------------------------------------------------------------------


def component_floor(A: np.ndarray, rank: int, mask: np.ndarray | None = None) -> float:
    """The floor ``eps0`` that the HALS solvers keep every entry of W and H at or above.

    ``eps0 = eps * sqrt(mean(A) / d)``: the machine epsilon of ``A``'s dtype at the scale of an entry of the
    initial guess (spec 2.4), so the floor scales with the data and its contribution to ``W H`` is at
    rounding level. Entries equal to the floor are the ones "at the bound" for the projected gradient.
    With a ``mask`` (``A`` being 0 outside it) the mean is taken over the observed entries, as for the
    random initial guess.
    """
    # with a mask, A is 0 outside it
    mean = np.mean(A, dtype=np.float64) if mask is None else np.sum(A, dtype=np.float64) / np.count_nonzero(mask)
    scale = np.sqrt(mean / rank)
    return float(A.dtype.type(np.finfo(A.dtype).eps * scale))


def _hals_sweep(X: np.ndarray, G_off: np.ndarray, C_scaled: np.ndarray, floor: float, work: np.ndarray) -> None:
    """One pass of exact coordinate minimisation over the rows of ``X`` (d x N), in place.

    For ``min_{X >= floor} ||B - F X||_F^2`` with ``G = F^T F`` (d x d) and ``C = F^T B`` (d x N), the best
    row k with the other rows fixed has the closed form::

        x_k <- max(floor, (c_k - sum_{j != k} g_kj x_j) / g_kk)

    taken for k = 1..d in turn, each with the rows before it already new (Gauss-Seidel). The caller passes
    ``G_off = g_kj / g_kk`` with a zero diagonal and ``C_scaled = c_k / g_kk`` (see :func:`_hals_inner`), so
    a row costs one vector-matrix product with X and two passes over N numbers (``work``, a buffer of N).
    For H: ``X = H``, ``F = W`` (``G = W^T W``, ``C = W^T A``). For W: ``X = W^T``, ``F = H^T``
    (``G = H H^T``, ``C = (A H^T)^T``).
    """
    for k in range(X.shape[0]):
        np.dot(G_off[k], X, out=work)
        np.subtract(C_scaled[k], work, out=work)
        np.maximum(work, floor, out=X[k])


def _hals_inner(X: np.ndarray, G: np.ndarray, C: np.ndarray, floor: float, *, max_sweeps: int, inner_tol: float) -> int:
    """Up to ``max_sweeps`` :func:`_hals_sweep` passes over ``X`` with the same ``G`` and ``C``; returns
    the number done.

    The stopping rule of Gillis & Glineur (2012): stop once a pass moves ``X`` by
    ``||X_l - X_{l-1}||_F <= inner_tol * ||X_1 - X_0||_F``, when further passes pay less than a fresh pair
    of products would. ``g_kk = ||f_k||^2 >= floor^2 > 0`` since the factor is at or above the floor;
    ``tiny`` only guards against underflow.
    """
    diagonal = np.maximum(np.diagonal(G), np.finfo(G.dtype).tiny)[:, None]
    G_off = G / diagonal
    np.fill_diagonal(G_off, 0)
    C_scaled = C / diagonal
    work = np.empty(X.shape[1], dtype=X.dtype)
    if max_sweeps == 1:
        _hals_sweep(X, G_off, C_scaled, floor, work)
        return 1
    before = np.empty_like(X)
    first_move = 0.0
    for sweep in range(1, max_sweeps + 1):
        np.copyto(before, X)
        _hals_sweep(X, G_off, C_scaled, floor, work)
        before -= X
        move = float(np.vdot(before, before))
        if sweep == 1:
            first_move = move
        elif move <= inner_tol**2 * first_move:
            break
    return sweep


_BALANCE_LIMIT = 1e4
"""A component is rebalanced when ``||h_k|| / ||w_k||`` leaves ``[1 / _BALANCE_LIMIT, _BALANCE_LIMIT]``."""


def _balancing_scale(WtW: np.ndarray, HHt: np.ndarray) -> np.ndarray | None:
    """``lambda_k = sqrt(||h_k|| / ||w_k||)`` for every k if some component is out of balance, else None.

    Rescaling ``w_k <- lambda_k w_k``, ``h_k <- h_k / lambda_k`` gives both the norm ``sqrt(||w_k|| ||h_k||)``
    and changes neither ``W H`` nor the error. The HALS updates are equivariant under it except through the
    floor, which is negligible only for components of normal scale: a component revived from the floor
    comes back with ``||w_k|| ~ eps0`` and ``||h_k|| ~ 1 / eps0`` and needs it. The norms are the diagonals
    of ``W^T W`` and ``H H^T``, so the check costs nothing.
    """
    return _balancing_scale_of_norms(np.diagonal(WtW), np.diagonal(HHt))


def _balancing_scale_of_norms(w_squared: np.ndarray, h_squared: np.ndarray) -> np.ndarray | None:
    """:func:`_balancing_scale` from the squared norms ``||w_k||^2`` and ``||h_k||^2``."""
    ratio = np.sqrt(h_squared / w_squared)
    if np.all((ratio <= _BALANCE_LIMIT) & (ratio >= 1 / _BALANCE_LIMIT)):
        return None
    return np.sqrt(ratio)


class _NonzeroPart:
    """``A`` without its all-zero rows and columns: the two m x n products and the HALS updates on the rest.

    A zero row i of ``A`` adds nothing to ``W^T A`` and makes row i of ``A H^T`` zero; likewise for zero
    columns. Image data often has many (pixels transparent in every image: 679 of the 1728 rows of the
    CryptoPunks matrix), and leaving them out of the products is exact and cuts their cost in proportion.
    The matching rows of W and columns of H are at the floor, their exact optimum whatever the other factor
    is (in :func:`_hals_sweep`, ``c_k = 0`` and ``sum_j g_kj x_j >= 0``), so the updates skip them too.
    ``A`` is copied once when it has zero rows or columns.
    """

    def __init__(self, A: np.ndarray):
        rows, cols = A.any(axis=1), A.any(axis=0)
        self.shape = A.shape
        self.rows = slice(None) if rows.all() else np.flatnonzero(rows)
        self.cols = slice(None) if cols.all() else np.flatnonzero(cols)
        self.zero_rows, self.zero_cols = np.flatnonzero(~rows), np.flatnonzero(~cols)
        self.all_rows, self.all_cols = isinstance(self.rows, slice), isinstance(self.cols, slice)
        self.A = A if self.all_rows and self.all_cols else np.ascontiguousarray(A[self.rows][:, self.cols])

    def WtA(self, W: np.ndarray) -> np.ndarray:
        """``W^T A``, d x n."""
        product = W[self.rows].T @ self.A
        if self.all_cols:
            return product
        full = np.zeros((W.shape[1], self.shape[1]), dtype=product.dtype)
        full[:, self.cols] = product
        return full

    def AHt(self, H: np.ndarray) -> np.ndarray:
        """``A H^T``, m x d."""
        product = self.A @ H[:, self.cols].T
        if self.all_rows:
            return product
        full = np.zeros((self.shape[0], H.shape[0]), dtype=product.dtype)
        full[self.rows] = product
        return full

    def update_H(self, H, WtW, WtA, floor: float, *, max_sweeps: int, inner_tol: float) -> None:
        """:func:`_hals_inner` on the columns of H that meet non-zero columns of A, in place."""
        if self.all_cols:
            _hals_inner(H, WtW, WtA, floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
        else:
            H_part = H[:, self.cols]
            _hals_inner(H_part, WtW, WtA[:, self.cols], floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
            H[:, self.cols] = H_part

    def update_W(self, W, HHt, AHt, floor: float, *, max_sweeps: int, inner_tol: float) -> None:
        """:func:`_hals_inner` on the rows of W that meet non-zero rows of A (as rows of ``W^T``), in place."""
        if self.all_rows:
            _hals_inner(W.T, HHt, AHt.T, floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
        else:
            W_part_t = np.ascontiguousarray(W[self.rows].T)
            _hals_inner(W_part_t, HHt, AHt[self.rows].T, floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
            W[self.rows] = W_part_t.T

    def clamp_W(self, W: np.ndarray, floor: float) -> None:
        """Raise W to the floor and put its rows for zero rows of A at it, in place."""
        np.maximum(W, floor, out=W)
        W[self.zero_rows] = floor

    def clamp_H(self, H: np.ndarray, floor: float) -> None:
        """Raise H to the floor and put its columns for zero columns of A at it, in place."""
        np.maximum(H, floor, out=H)
        H[:, self.zero_cols] = floor


def _inner_sweep_budget(part: _NonzeroPart, d: int, alpha: float) -> tuple[int, int]:
    """Gillis & Glineur's bound on the passes per update, ``1 + floor(alpha * rho)``, for (H, W).

    ``rho`` is the cost of the products an update needs over the cost of one pass, in flops. With the
    non-zero part of A m' x n' (:class:`_NonzeroPart`): for H, ``W^T A`` and ``W^T W`` (2m'n'd + 2md^2)
    against one pass over H (2nd^2), ``rho_H = 1 + (m'n' + md) / (n (d + 1))``; for W symmetrically,
    ``rho_W = 1 + (m'n' + nd) / (m (d + 1))``.
    """
    (m, n), (m_part, n_part) = part.shape, part.A.shape
    rho_H = 1 + (m_part * n_part + m * d) / (n * (d + 1))
    rho_W = 1 + (m_part * n_part + n * d) / (m * (d + 1))
    return 1 + int(alpha * rho_H), 1 + int(alpha * rho_W)


def _start_hals(part: _NonzeroPart, W: np.ndarray, H: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Prepare the initial guess for HALS, in place; return ``W^T A`` and ``W^T W`` at it.

    Entries below the floor are raised to it, and the rows of W and columns of H for zero rows and columns
    of A are put at it (:class:`_NonzeroPart`). Then ``(W, H)`` is rescaled to the best multiple of itself,
    ``alpha W H`` with ``alpha = <A, WH> / ||WH||_F^2 = <W^T A, H> / <W^T W, H H^T>`` (Gillis & Glineur
    2012), split as ``sqrt(alpha)`` on each factor. ``W^T A`` is the product the first H update needs
    anyway, so the rescaling costs O((m + n) d^2).
    """
    part.clamp_W(W, floor)
    part.clamp_H(H, floor)
    WtA = part.WtA(W)
    WtW = W.T @ W
    fit = _inner(WtA, H)
    size = _inner(WtW, H @ H.T)
    if fit > 0 and size > 0:
        root = np.sqrt(fit / size)
        for X in (W, H, WtA):
            X *= root
        part.clamp_W(W, floor)
        part.clamp_H(H, floor)
        WtW = W.T @ W
    return WtA, WtW


def _hals(A: np.ndarray, W: np.ndarray, H: np.ndarray, *, mask: np.ndarray | None = None) -> Iterator[Products]:
    """Hierarchical alternating least squares (Cichocki & Phan 2009), also known as coordinate descent.

    Each iteration minimises ``||A - WH||_F`` exactly over one row of H at a time, then over one column of
    W at a time (:func:`_hals_sweep`), with ``eps0`` the floor of :func:`component_floor`::

        h_k <- max(eps0, ((W^T A)_k - sum_{j != k} (W^T W)_kj h_j) / (W^T W)_kk)      k = 1..d
        w_k <- max(eps0, ((A H^T)_k - sum_{j != k} w_j (H H^T)_jk) / (H H^T)_kk)      k = 1..d

    so the error never increases. The work is the same two products as ``mu`` (``W^T A``, ``A H^T``) plus
    O((m + n) d^2); all-zero rows and columns of A are left out of the products (:class:`_NonzeroPart`).
    Before the first iteration the initial guess is lifted to the floor and rescaled optimally
    (:func:`_start_hals`). Nothing is divided by a quantity that can vanish. It is :func:`_accelerated_hals`
    with ``alpha = 0``: a budget of one pass per update, where ``inner_tol`` plays no part.

    Dead components. No entry is ever zero: where the exact update of a row ``h_k`` (or column ``w_k``)
    is <= eps0, it is held at eps0. A component whose ``w_k`` is at the floor everywhere adds only
    rounding to ``W H`` and is not removed; it comes back by itself once it can lower the error. Its next
    update is ``h_k = max(eps0, 1^T R_k / (m eps0))``, ``R_k = A - sum_{j != k} w_j h_j``, so it returns on
    every column that the other components under-fit on the whole (a positive column sum of ``R_k``),
    and the following pass fits ``w_k`` to that residual. It returns with ``||w_k|| ~ eps0`` and
    ``||h_k|| ~ 1 / eps0``, and is then rebalanced (:func:`_balancing_scale`) so that the floor stays
    negligible for it. Where every column sum of ``R_k`` is <= 0, it stays at the floor: with exact zeros
    instead of a floor, ``(W^T W)_kk = 0`` would divide by zero and nothing could ever revive it.

    With a ``mask``: exact coordinate minimisation of ``||M * (A - WH)||_F`` over the observed entries,
    :func:`_masked_accelerated_hals` with ``alpha = 0``.
    """
    return _accelerated_hals(A, W, H, alpha=0.0, inner_tol=0.0, mask=mask)


def _accelerated_hals(
    A: np.ndarray, W: np.ndarray, H: np.ndarray, *, alpha: float, inner_tol: float, mask: np.ndarray | None = None
) -> Iterator[Products]:
    """Accelerated HALS; with a ``mask``, :func:`_masked_accelerated_hals`."""
    if mask is not None:
        return _masked_accelerated_hals(A, W, H, mask=mask, alpha=alpha, inner_tol=inner_tol)
    return _plain_accelerated_hals(A, W, H, alpha=alpha, inner_tol=inner_tol)


def _plain_accelerated_hals(
    A: np.ndarray, W: np.ndarray, H: np.ndarray, *, alpha: float, inner_tol: float
) -> Iterator[Products]:
    """Accelerated HALS (Gillis & Glineur 2012): :func:`_hals` with several passes per update.

    The products ``W^T A`` and ``W^T W`` cost far more than one pass over H (2mnd against 2nd^2 flops), so
    each update repeats the passes of :func:`_hals_sweep` on the same products, at most
    ``1 + floor(alpha * rho)`` times (:func:`_inner_sweep_budget`), and stops early once a pass moves the
    factor by less than ``inner_tol`` times the first pass did (:func:`_hals_inner`). Each pass is exact
    block coordinate descent, so the error still never increases. The defaults (:data:`_AHALS_OPTIONS`)
    are the paper's. The floor, the start, zero rows and columns of A and dead components are as in
    :func:`_hals`.
    """
    part, floor = _NonzeroPart(A), component_floor(A, W.shape[1])
    WtA, WtW = _start_hals(part, W, H, floor)
    sweeps_H, sweeps_W = _inner_sweep_budget(part, W.shape[1], alpha)
    while True:
        part.update_H(H, WtW, WtA, floor, max_sweeps=sweeps_H, inner_tol=inner_tol)
        AHt = part.AHt(H)
        HHt = H @ H.T
        part.update_W(W, HHt, AHt, floor, max_sweeps=sweeps_W, inner_tol=inner_tol)
        WtW = W.T @ W
        scale = _balancing_scale(WtW, HHt)
        if scale is not None:  # rare: W H and the error stay, the products are taken afresh
            W *= scale
            H /= scale[:, None]
            part.clamp_W(W, floor)
            part.clamp_H(H, floor)
            AHt, HHt, WtW = part.AHt(H), H @ H.T, W.T @ W
        WtA = part.WtA(W)
        yield Products(AHt=AHt, HHt=HHt, WtW=WtW, WtA=WtA)


class _Momentum:
    """The extrapolation weight beta of Ang & Gillis (2019) and its cap: it grows after accepted steps and
    shrinks after a restart (see :func:`_plain_extrapolated_hals`)."""

    def __init__(self, beta0: float, eta: float, gamma: float, gamma_bar: float):
        self.beta, self.previous, self.cap = beta0, beta0, 1.0
        self.eta, self.gamma, self.gamma_bar = eta, gamma, gamma_bar

    def restart(self) -> None:
        """The error rose: the cap falls to the previous beta, and ``beta <- beta / eta``."""
        self.cap, self.previous, self.beta = self.previous, self.beta, self.beta / self.eta

    def accept(self) -> None:
        """An accepted step: ``beta <- min(cap, gamma beta)``, ``cap <- min(1, gamma_bar cap)``."""
        self.previous, self.beta = self.beta, min(self.cap, self.gamma * self.beta)
        self.cap = min(1.0, self.gamma_bar * self.cap)


def _accept_and_extrapolate_W(
    W: np.ndarray, W_acc: np.ndarray, WtA: np.ndarray, WtA_acc: np.ndarray, beta: float
) -> np.ndarray:
    """Accept ``W_new`` (held by ``W``): ``W_acc <- W_new`` and, in place, ``W <- Wy = W_new + beta (W_new -
    W_k)``; returns ``Wy^T A = W_new^T A + beta (W_new^T A - W_k^T A)``, linear in the W's, so no product."""
    move = W - W_acc
    np.copyto(W_acc, W)
    W += beta * move
    WyA = WtA - WtA_acc
    WyA *= beta
    WyA += WtA
    return WyA


def _extrapolated_hals(
    A: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    *,
    alpha: float,
    inner_tol: float,
    beta0: float,
    eta: float,
    gamma: float,
    gamma_bar: float,
    mask: np.ndarray | None = None,
) -> Iterator[Products]:
    """Accelerated HALS with extrapolation; with a ``mask``, :func:`_masked_extrapolated_hals`."""
    options = {"alpha": alpha, "inner_tol": inner_tol, "beta0": beta0, "eta": eta, "gamma": gamma}
    if mask is not None:
        return _masked_extrapolated_hals(A, W, H, mask=mask, gamma_bar=gamma_bar, **options)
    return _plain_extrapolated_hals(A, W, H, gamma_bar=gamma_bar, **options)


def _plain_extrapolated_hals(
    A: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    *,
    alpha: float,
    inner_tol: float,
    beta0: float,
    eta: float,
    gamma: float,
    gamma_bar: float,
) -> Iterator[Products]:
    """Accelerated HALS with extrapolation and restarts (Ang & Gillis 2019, "E-A-HALS").

    Beside the accepted iterates ``(W_k, H_k)`` the method keeps extrapolated points ``(Wy, Hy)``, the
    starting points of the next updates. With ``U(X0; G, C)`` the :func:`_hals_inner` passes of
    :func:`_accelerated_hals` started at ``X0``, one iteration is::

        H_new = U(Hy;  Wy^T Wy, Wy^T A)                       update H at the extrapolated W
        Hy    = max(eps0, H_new + beta (H_new - H_k))         extrapolate, project
        W_new = U(Wy;  Hy Hy^T, A Hy^T)                       update W at the extrapolated H
        Wy    = W_new + beta (W_new - W_k)                    extrapolate (not projected)
        e     = ||A - W_new Hy||_F                            the iterate reported: (W_new, Hy)

    and then, comparing ``e`` with the previous reported error:

    * ``e`` rose: restart from the accepted iterate, ``Wy = W_k``, ``Hy = H_k``; the cap on beta falls
      to the previous beta and ``beta <- beta / eta``;
    * otherwise accept, ``(W_{k+1}, H_{k+1}) = (W_new, H_new)``; ``beta <- min(cap, gamma beta)`` and
      ``cap <- min(1, gamma_bar cap)``.

    The reported iterate ``(W_new, Hy)`` is non-negative (both >= eps0) and its products are the ones the
    W update needs anyway, plus ``W_new^T A``. That one product serves both the error/gradient at the
    reported iterate and the next H update: ``Wy^T A = (1 + beta) W_new^T A - beta W_k^T A`` is linear in
    the W's, so extrapolation costs no product beyond the two of any iteration (``Wy^T Wy`` is d x d).

    Its error curve is not monotone (a rise is what triggers a restart): :func:`nmf_lab.core.nmf.fit_nmf`
    returns the best reported iterate. The error that decides a restart is the one ``fit_nmf`` sends back
    (exact even near zero); with plain ``next()`` the solver uses the cheap product formula instead.
    The defaults (:data:`_EXTRAPOLATION_OPTIONS`) are the papers' (alpha 0.5, inner_tol 0.1; beta0 0.5,
    eta 1.5, gamma 1.01, gamma_bar 1.005 for A-HALS); on the CryptoPunks matrix others did no better. When
    a component needs rebalancing (:func:`_balancing_scale`) every point, accepted, new and extrapolated,
    gets the same rescaling, which keeps the extrapolation exact. The floor, the start, zero rows and
    columns of A and dead components are as in :func:`_hals`.
    """
    norm2 = None  # ||A||_F^2, only needed when no error is sent back
    part, floor = _NonzeroPart(A), component_floor(A, W.shape[1])
    WtA, WtW = _start_hals(part, W, H, floor)
    sweeps_H, sweeps_W = _inner_sweep_budget(part, W.shape[1], alpha)

    W_acc, H_acc, WtA_acc = W.copy(), H.copy(), WtA  # the accepted iterate (W_k, H_k) and W_k^T A
    WyA, WyWy = WtA, WtW  # Wy^T A and Wy^T Wy; W and H themselves hold Wy and Hy between iterations
    H_new = np.empty_like(H)
    momentum = _Momentum(beta0, eta, gamma, gamma_bar)
    previous_error = np.inf

    while True:
        part.update_H(H, WyWy, WyA, floor, max_sweeps=sweeps_H, inner_tol=inner_tol)
        np.copyto(H_new, H)
        H -= H_acc  # H <- Hy = max(eps0, H_new + beta (H_new - H_k)), in place
        H *= momentum.beta
        H += H_new
        np.maximum(H, floor, out=H)
        AHt = part.AHt(H)
        HHt = H @ H.T
        part.update_W(W, HHt, AHt, floor, max_sweeps=sweeps_W, inner_tol=inner_tol)
        WtW = W.T @ W
        WtA = part.WtA(W)

        error = yield Products(AHt=AHt, HHt=HHt, WtW=WtW, WtA=WtA)
        if error is None:
            if norm2 is None:
                norm2 = float(np.einsum("ij,ij->", A, A, dtype=np.float64))
            error = np.sqrt(max(norm2 - 2 * _inner(AHt, W) + _inner(WtW, HHt), 0.0))

        scale = _balancing_scale(WtW, HHt)
        if scale is not None:  # the same rescaling of every point keeps the extrapolation exact
            for X in (W, W_acc):
                X *= scale
                part.clamp_W(X, floor)
            for X in (H, H_new, H_acc):
                X /= scale[:, None]
                part.clamp_H(X, floor)
            WtA, WtA_acc = WtA * scale[:, None], WtA_acc * scale[:, None]

        if error > previous_error:  # restart from the accepted iterate
            np.copyto(W, W_acc)
            np.copyto(H, H_acc)
            WyA, WyWy = WtA_acc, W_acc.T @ W_acc
            momentum.restart()
        else:  # accept (W_new, H_new); W <- Wy, while H already holds Hy
            WyA = _accept_and_extrapolate_W(W, W_acc, WtA, WtA_acc, momentum.beta)
            WyWy = W.T @ W
            WtA_acc = WtA
            H_acc, H_new = H_new, H_acc
            momentum.accept()
        previous_error = error


# --------------------------------------------------------------------------------------------------------
# HALS with missing entries
# --------------------------------------------------------------------------------------------------------

_GRAM_BUDGET = 1 << 23
"""Entries (8M: 64 MB in float64) of each large temporary of the masked HALS updates: the per-column Gram
matrices of a block of columns (d x d x block) and the pairwise products of a chunk of the inner dimension
(d (d + 1) / 2 x chunk)."""


def _gram_index(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs ``k <= l`` (``np.triu_indices(d)``) and, for every ``(k, l)`` in row-major order, the index of
    its pair: ``packed[full]`` unpacks d (d + 1) / 2 symmetric entries to d x d."""
    ks, ls = np.triu_indices(d)
    position = np.empty((d, d), dtype=np.intp)
    position[ks, ls] = np.arange(ks.size)
    position[ls, ks] = np.arange(ks.size)
    return ks, ls, position.ravel()


def _even_parts(total: int, largest: int) -> list[slice]:
    """``range(total)`` cut into the fewest slices of at most ``largest`` (>= 1) items, of nearly equal size."""
    count = -(-total // max(1, largest))
    size = -(-total // count)
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def _pair_products(F: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The products ``f_k * f_l`` of the rows of ``F`` (d x K) for the pairs ``k <= l`` in the order of
    ``np.triu_indices(d)``, into ``out`` (d (d + 1) / 2 x K); returns ``out``."""
    d, start = F.shape[0], 0
    for k in range(d):
        np.multiply(F[k], F[k:], out=out[start : start + d - k])
        start += d - k
    return out


def _masked_hals_inner(
    X: np.ndarray,
    F: np.ndarray,
    Mt: np.ndarray,
    C: np.ndarray,
    extra: np.ndarray | None,
    floor: float,
    *,
    max_sweeps: int,
    inner_tol: float,
    want_GX: bool = False,
) -> np.ndarray | None:
    """Exact coordinate passes over the rows of ``X`` (d x N, in place) for the masked problem
    ``min_{X >= floor} ||Mt^T * (B - F^T X)||_F^2`` whose columns are independent; returns ``G_j x_j`` for
    every column j at the final ``X`` if ``want_GX`` (else None).

    ``F`` (d x K) is the other factor, ``Mt`` (K x N) the mask as 0/1 numbers (K the inner dimension), ``C =
    F (Mt * B)`` (d x N) the numerators. Column j of ``X`` is a least-squares problem of its own, on the
    observed entries of its column of ``B``, with the Gram matrix ``G_j = sum_i Mt_ij f_i f_i^T`` (``f_i``
    column i of F). The best row k with the other rows fixed is, for every column j::

        x_kj <- max(floor, (c_kj - sum_{l != k} (G_j)_kl x_lj) / (G_j)_kk)

    i.e. ``(sum_i m_ij f_ki r_ij) / (sum_i m_ij f_ki^2)`` with ``r`` the residual without component k:
    exact minimisation of the masked objective over one row, so the objective never increases. The Grams
    of a block of columns come from one product ``Z Mt[:, block]``, ``Z`` (d (d + 1) / 2 x K) the products
    ``f_k * f_l`` of the pairs ``k <= l``: ``K d^2`` flops per column, the cost of masked HALS (``d / 4``
    times the two products of an unmasked iteration), in blocks of columns and chunks of K that keep each
    temporary within :data:`_GRAM_BUDGET` entries. ``extra`` (N,), if given, adds ``extra_j * 1 1^T`` to
    ``G_j``: the inner indices left out of ``F`` whose factor entries all sit at the floor (see
    :class:`_MaskedPart`). Each block does up to ``max_sweeps`` passes and stops early by the ``inner_tol``
    rule of :func:`_hals_inner`, applied to the block.
    """
    d, N = X.shape
    full = _gram_index(d)[2]
    n_pairs, n_inner = d * (d + 1) // 2, F.shape[1]
    blocks = _even_parts(N, _GRAM_BUDGET // (d * d))
    chunks = _even_parts(n_inner, _GRAM_BUDGET // n_pairs)
    width = blocks[0].stop
    packed_buffer = np.empty(n_pairs * width, dtype=X.dtype)  # reused: no fresh pages per block
    gram_buffer = np.empty(d * d * width, dtype=X.dtype)
    Z = np.empty((n_pairs, chunks[0].stop), dtype=X.dtype)
    if len(chunks) == 1:
        _pair_products(F, Z)
    tiny = np.finfo(X.dtype).tiny
    diag = np.arange(d)
    GX = np.empty_like(X) if want_GX else None
    work = np.empty(width, dtype=X.dtype)
    for cols in blocks:
        size = cols.stop - cols.start
        packed = packed_buffer[: n_pairs * size].reshape(n_pairs, size)
        if len(chunks) == 1:
            np.matmul(Z, Mt[:, cols], out=packed)
        else:
            packed[...] = 0
            for inner in chunks:
                Zc = _pair_products(F[:, inner], Z[:, : inner.stop - inner.start])
                packed += Zc @ Mt[inner, cols]
        G = gram_buffer[: d * d * size].reshape(d * d, size)
        np.take(packed, full, axis=0, out=G, mode="clip")  # "clip": an unbuffered out (the indices are valid)
        G = G.reshape(d, d, size)
        if extra is not None:
            G += extra[cols]
        diagonal = np.maximum(G[diag, diag], tiny)  # (d, size); >= floor^2 times the observed count
        G /= diagonal[:, None, :]  # G <- G_off: g_kl / g_kk, zero diagonal
        G[diag, diag] = 0
        C_scaled = C[:, cols] / diagonal
        Xb = X[:, cols]
        out = work[:size]
        before = np.empty_like(Xb) if max_sweeps > 1 else None
        first_move = 0.0
        for sweep in range(1, max_sweeps + 1):
            if before is not None:
                np.copyto(before, Xb)
            for k in range(d):
                np.einsum("lj,lj->j", G[k], Xb, out=out)
                np.subtract(C_scaled[k], out, out=out)
                np.maximum(out, floor, out=Xb[k])
            if before is None:
                break
            before -= Xb
            move = float(np.vdot(before, before))
            if sweep == 1:
                first_move = move
            elif move <= inner_tol**2 * first_move:
                break
        if GX is not None:  # G_j x_j = g_kk (x_kj + sum_{l != k} (g_kl / g_kk) x_lj)
            block_GX = np.einsum("klj,lj->kj", G, Xb)
            block_GX += Xb
            block_GX *= diagonal
            GX[:, cols] = block_GX
    return GX


class _MaskedPart:
    """The masked HALS updates on the non-zero part of ``A`` (:class:`_NonzeroPart`, ``A`` being 0 outside
    the mask, so a row or column of ``A`` with no non-zero observed entry counts as zero).

    The rows of W for zero rows of ``A`` are at the floor, their exact optimum whatever H is (the masked
    problem of such a row has ``c = 0``), and likewise the columns of H for zero columns: the updates skip
    them, and the Gram matrices of the other side take their part in closed form, ``floor^2 * (observed
    entries there) * 1 1^T``. The mask is kept as 0/1 numbers of ``A``'s dtype on the non-zero part (the
    Gram matrices are products with it).
    """

    def __init__(self, A: np.ndarray, mask: np.ndarray, floor: float):
        self.part = part = _NonzeroPart(A)
        self.mask = mask
        rows, cols = part.rows, part.cols
        self.M = np.ascontiguousarray(mask[rows][:, cols], dtype=A.dtype)
        floor2 = A.dtype.type(floor) ** 2
        # the Gram of column j of H gets floor^2 * (observed entries of column j in zero rows of A)
        self.col_extra = (
            None if part.all_rows else floor2 * np.count_nonzero(mask[part.zero_rows][:, cols], axis=0).astype(A.dtype)
        )
        self.row_extra = (
            None if part.all_cols else floor2 * np.count_nonzero(mask[rows][:, part.zero_cols], axis=1).astype(A.dtype)
        )

    def update_H(self, H, W, WtA, floor: float, *, max_sweeps: int, inner_tol: float) -> None:
        """Exact masked coordinate passes over the columns of H that meet non-zero columns of A, in place."""
        part = self.part
        X = H if part.all_cols else np.ascontiguousarray(H[:, part.cols])
        F = np.ascontiguousarray(W[part.rows].T)
        C = WtA if part.all_cols else WtA[:, part.cols]
        _masked_hals_inner(X, F, self.M, C, self.col_extra, floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
        if not part.all_cols:
            H[:, part.cols] = X

    def update_W(self, W, H, AHt, floor: float, *, max_sweeps: int, inner_tol: float) -> np.ndarray:
        """Exact masked coordinate passes over the rows of W that meet non-zero rows of A, in place; returns
        ``PHt = (M * (W H)) H^T`` at the new W (the rows of zero rows of A, of order floor^2, left at 0)."""
        part = self.part
        X = np.ascontiguousarray(W[part.rows].T)
        F = H if part.all_cols else np.ascontiguousarray(H[:, part.cols])
        C = AHt[part.rows].T
        GX = _masked_hals_inner(
            X, F, self.M.T, C, self.row_extra, floor, max_sweeps=max_sweeps, inner_tol=inner_tol, want_GX=True
        )
        W[part.rows] = X.T
        PHt = np.zeros_like(AHt)
        PHt[part.rows] = GX.T
        return PHt

    def observed_fit(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """``M * (W H)``, m x n, from scratch."""
        P = W @ H
        np.multiply(P, self.mask, out=P)
        return P

    def start(self, W: np.ndarray, H: np.ndarray, floor: float) -> np.ndarray:
        """:func:`_start_hals` for the masked objective, in place; returns ``W^T A`` at the start.

        The best multiple ``alpha W H`` of the initial guess has ``alpha = <A, M * WH> / ||M * WH||_F^2``.
        """
        part = self.part
        part.clamp_W(W, floor)
        part.clamp_H(H, floor)
        WtA = part.WtA(W)
        fit = _inner(WtA, H)
        P = self.observed_fit(W, H)
        size = _inner(P, P)
        if fit > 0 and size > 0:
            root = np.sqrt(fit / size)
            for X in (W, H, WtA):
                X *= root
            part.clamp_W(W, floor)
            part.clamp_H(H, floor)
        return WtA

    def rebalance(self, W, H, floor: float, others_W=(), others_H=()) -> np.ndarray | None:
        """Rebalance the components if one is out of balance (:func:`_balancing_scale`), W, H and the other
        points alike, in place; returns the scale (None if nothing was done)."""
        scale = _balancing_scale_of_norms(
            np.einsum("ik,ik->k", W, W, dtype=np.float64), np.einsum("kj,kj->k", H, H, dtype=np.float64)
        )
        if scale is None:
            return None
        scale = scale.astype(W.dtype)
        for X in (W, *others_W):
            X *= scale
            self.part.clamp_W(X, floor)
        for X in (H, *others_H):
            X /= scale[:, None]
            self.part.clamp_H(X, floor)
        return scale


def _masked_accelerated_hals(
    A: np.ndarray, W: np.ndarray, H: np.ndarray, *, mask: np.ndarray, alpha: float, inner_tol: float
) -> Iterator[Products]:
    """:func:`_accelerated_hals` (and :func:`_hals`, ``alpha = 0``) for ``min ||M * (A - WH)||_F``.

    Exact coordinate minimisation over the observed entries: each pass sets, for k = 1..d and every column
    j at once, ``h_kj <- max(eps0, (sum_i m_ij w_ik r_ij) / (sum_i m_ij w_ik^2))`` with ``r`` the residual
    without component k (:func:`_masked_hals_inner`), then the columns of W alike. Every pass minimises the
    masked objective exactly over one row of H (or column of W), so the error never increases. The masked
    Gram matrices of a half-step cost ``K d^2`` flops per column, far more than a pass, so the passes of the
    accelerated variant pay even better than unmasked; the budget ``1 + floor(alpha * rho)`` is the unmasked
    one (:func:`_inner_sweep_budget`, conservative here) and ``inner_tol`` stops each block of columns.
    The floor, the start (rescaled to ``alpha = <A, M * WH> / ||M * WH||^2``), zero rows and columns of
    ``M * A`` and dead components are as in :func:`_hals`; the norms for rebalancing are computed directly.

    Cost. Without a mask all columns share one Gram matrix; with one, each column of H (row of W) has its
    own, ``sum_i m_ij w_i w_i^T``, and computing them is the bulk of the work: about ``m' n' d^2`` flops per
    half-step (m' x n' the non-zero part of ``M * A``) against ``4 m' n' d`` for the two products of an
    unmasked iteration. Measured at 1728 x 10000, d = 64, 30 % missing: ``ahals_extrapolated`` takes about
    13 times as long per iteration as unmasked (the passes, one per Gram computation for ``hals``, add to it).
    """
    d = W.shape[1]
    floor = component_floor(A, d, mask)
    masked = _MaskedPart(A, mask, floor)
    part = masked.part
    WtA = masked.start(W, H, floor)
    sweeps_H, sweeps_W = _inner_sweep_budget(part, d, alpha)
    while True:
        masked.update_H(H, W, WtA, floor, max_sweeps=sweeps_H, inner_tol=inner_tol)
        AHt = part.AHt(H)
        PHt = masked.update_W(W, H, AHt, floor, max_sweeps=sweeps_W, inner_tol=inner_tol)
        if masked.rebalance(W, H, floor) is not None:  # rare: the products are taken afresh
            AHt, PHt = part.AHt(H), masked.observed_fit(W, H) @ H.T
        WtA = part.WtA(W)
        yield Products(AHt=AHt, HHt=None, WtW=None, WtA=WtA, PHt=PHt)


def _masked_extrapolated_hals(
    A: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    *,
    mask: np.ndarray,
    alpha: float,
    inner_tol: float,
    beta0: float,
    eta: float,
    gamma: float,
    gamma_bar: float,
) -> Iterator[Products]:
    """:func:`_extrapolated_hals` for ``min ||M * (A - WH)||_F``: the same extrapolation and restarts around
    the exact masked updates of :func:`_masked_accelerated_hals`.

    The H update at the extrapolated ``Wy`` takes the masked Gram matrices of ``Wy`` (they are quadratic in
    W, so they are computed afresh) and ``Wy^T (M * A)``, linear in W and extrapolated for free as without a
    mask. The reported iterate is ``(W_new, Hy)``; its masked error comes from ``(M * A) Hy^T`` and
    ``PHt = (M * (W_new Hy)) Hy^T``, which the W update leaves behind. As without a mask the error may rise
    (that triggers a restart) and ``fit_nmf`` returns the best reported iterate.
    """
    d = W.shape[1]
    norm2 = None  # ||M * A||_F^2, only needed when no error is sent back
    floor = component_floor(A, d, mask)
    masked = _MaskedPart(A, mask, floor)
    part = masked.part
    WtA = masked.start(W, H, floor)
    sweeps_H, sweeps_W = _inner_sweep_budget(part, d, alpha)

    W_acc, H_acc, WtA_acc = W.copy(), H.copy(), WtA  # the accepted iterate (W_k, H_k) and W_k^T A
    WyA = WtA  # W and H hold Wy and Hy between iterations
    H_new = np.empty_like(H)
    momentum = _Momentum(beta0, eta, gamma, gamma_bar)
    previous_error = np.inf

    while True:
        masked.update_H(H, W, WyA, floor, max_sweeps=sweeps_H, inner_tol=inner_tol)
        np.copyto(H_new, H)
        H -= H_acc  # H <- Hy = max(eps0, H_new + beta (H_new - H_k)), in place
        H *= momentum.beta
        H += H_new
        np.maximum(H, floor, out=H)
        AHt = part.AHt(H)
        PHt = masked.update_W(W, H, AHt, floor, max_sweeps=sweeps_W, inner_tol=inner_tol)
        WtA = part.WtA(W)

        error = yield Products(AHt=AHt, HHt=None, WtW=None, WtA=WtA, PHt=PHt)
        if error is None:
            if norm2 is None:
                norm2 = float(np.einsum("ij,ij->", A, A, dtype=np.float64))
            error = np.sqrt(max(norm2 - 2 * _inner(AHt, W) + _inner(PHt, W), 0.0))

        scale = masked.rebalance(W, H, floor, others_W=(W_acc,), others_H=(H_new, H_acc))
        if scale is not None:  # the same rescaling of every point keeps the extrapolation exact
            WtA, WtA_acc = WtA * scale[:, None], WtA_acc * scale[:, None]

        if error > previous_error:  # restart from the accepted iterate
            np.copyto(W, W_acc)
            np.copyto(H, H_acc)
            WyA = WtA_acc
            momentum.restart()
        else:  # accept (W_new, H_new); W <- Wy, while H already holds Hy
            WyA = _accept_and_extrapolate_W(W, W_acc, WtA, WtA_acc, momentum.beta)
            WtA_acc = WtA
            H_acc, H_new = H_new, H_acc
            momentum.accept()
        previous_error = error


def _inner(X: np.ndarray, Y: np.ndarray) -> float:
    """The Frobenius inner product ``<X, Y>`` accumulated in float64."""
    return float(np.vdot(X.astype(np.float64, copy=False), Y.astype(np.float64, copy=False)))


# --------------------------------------------------------------------------------------------------------
# The built-in entries
# --------------------------------------------------------------------------------------------------------


def _finite_at_least(low: float) -> Callable[[float], bool]:
    return lambda value: math.isfinite(value) and value >= low


_AHALS_OPTIONS = {
    "alpha": Option(
        0.5,
        _finite_at_least(0.0),
        "a finite number >= 0",
        "at most 1 + floor(alpha * rho) passes per update, rho = cost of its products / cost of a pass "
        "(0: one pass, plain HALS)",
    ),
    "inner_tol": Option(
        0.1,
        lambda value: 0.0 <= value < 1.0,
        "a number in [0, 1)",
        "stop the passes of an update once one moves the factor by <= inner_tol times the first did",
    ),
}
"""The options of ``ahals`` (Gillis & Glineur 2012); ``ahals_extrapolated`` has them too."""

_EXTRAPOLATION_OPTIONS = {
    **_AHALS_OPTIONS,
    "beta0": Option(0.5, lambda value: 0.0 <= value <= 1.0, "a number in [0, 1]", "the initial extrapolation weight"),
    "eta": Option(
        1.5,
        lambda value: math.isfinite(value) and value > 1.0,
        "a finite number > 1",
        "on a restart (the error rose), beta <- beta / eta",
    ),
    "gamma": Option(
        1.01, _finite_at_least(1.0), "a finite number >= 1", "on an accepted step, beta <- min(cap, gamma * beta)"
    ),
    "gamma_bar": Option(
        1.005, _finite_at_least(1.0), "a finite number >= 1", "on an accepted step, cap <- min(1, gamma_bar * cap)"
    ),
}
"""The options of ``ahals_extrapolated`` (Ang & Gillis 2019)."""

for _solver in (
    Solver(
        name="mu",
        supports_mask=True,
        update=_multiplicative_updates,
        monotone=True,
        options={
            "delta": Option(
                1e-9,
                _finite_at_least(0.0),
                "a finite number >= 0",
                "added to each denominator (the spec suggests 1e-9..1e-6)",
            )
        },
        summary="multiplicative updates (Algorithm 1): H <- H * (W^T A) / (W^T W H + delta), then W alike",
    ),
    Solver(
        name="hals",
        supports_mask=True,
        update=_hals,
        monotone=True,
        summary="HALS: one exact coordinate-descent pass over the rows of H, then over the columns of W",
    ),
    Solver(
        name="ahals",
        supports_mask=True,
        update=_accelerated_hals,
        monotone=True,
        options=_AHALS_OPTIONS,
        summary="accelerated HALS: several passes over H, then over W, per pair of products with A",
    ),
    Solver(
        name="ahals_extrapolated",
        supports_mask=True,
        update=_extrapolated_hals,
        monotone=False,
        options=_EXTRAPOLATION_OPTIONS,
        summary="accelerated HALS with extrapolation and restarts; its error may rise, its best iterate is kept",
    ),
):
    register_solver(_solver)
del _solver
