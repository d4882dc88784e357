"""The solver registry: one :class:`Solver` entry per update rule, built-in or plug-in.

A built-in solver is written once against the problem interface (:mod:`nmf_lab.core.problems`): its
``update(problem, W, H, *, update_W=True, **options)`` is a generator that updates ``W`` (m x d) and ``H``
(d x n) **in place**, one iteration at a time, and after each iteration yields a
:class:`~nmf_lab.core.problems.Report` of the iterate the arrays then hold; the driver
(:func:`nmf_lab.core.nmf.fit_nmf`) turns it into the error and the projected gradient and sends the error back
(``error = yield report``). ``update_W=False`` holds W fixed (:func:`nmf_lab.core.transform.transform`). Every
problem kind (dense, exact mask, imputed mask) works with every such solver.

Plug-ins written before problems existed keep working: an entry with ``problems=False`` is called
``update(A, W, H, **options)`` (with ``mask=M`` if it has ``supports_mask=True``) as before, may yield
:class:`Products` (or anything), and the driver measures the exact error of every iterate itself; with
``missing="impute"`` it runs one of its iterations on the filled matrix per iteration.

Adding a solver. In-process, e.g. in a notebook or a test, call :func:`register_solver`::

    register_solver(Solver(name="pgd", update=projected_gradient, monotone=False, summary="...",
                           options={"step": Option(1e-3, lambda s: s > 0, "a number > 0", "the step")}))

From an installed package, declare the solver in the entry-point group ``nmf_lab.solvers`` of its
``pyproject.toml``; the entry point's name must be the solver's name, its object a :class:`Solver`::

    [project.entry-points."nmf_lab.solvers"]
    pgd = "my_nmf_solvers:PGD"        # PGD = Solver(name="pgd", ...) in my_nmf_solvers.py

The entry points are loaded lazily, once: the first time the registry is asked for a name it lacks, or for
the list of names. A name registered already is an error, as is an entry point whose name differs from its
solver's.
"""

from __future__ import annotations

import importlib.metadata
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from nmf_lab.core.errors import InvalidOption


@dataclass(frozen=True)
class Products:
    """What a solver of the array protocol (``problems=False``, written before problems existed) may yield:
    the products of its iteration at the iterate ``(W, H)``. The driver no longer reads them (it measures
    the exact error); the type stays so that such solvers keep working.

    ``AHt = A H^T`` (m x d), ``HHt = H H^T`` (d x d), ``WtW = W^T W`` (d x d), ``WtA = W^T A`` (d x n).
    With them::

        ||A - WH||_F^2 = ||A||_F^2 - 2 <AHt, W> + <WtW, HHt>
        grad_W f = W HHt - AHt,   grad_H f = WtW H - WtA        (f = ||A - WH||_F^2 / 2)


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
        update: the generator function of the protocol in the module docstring: ``update(problem, W, H, *,
            update_W, **options)`` if ``problems`` is True, else ``update(A, W, H, **options)``; it receives
            every option of ``options``, resolved.
        monotone: True if the error never increases from one iteration to the next; False if it may rise,
            and :func:`nmf_lab.core.nmf.fit_nmf` then returns the iterate with the smallest error.
        options: the solver's own options by name (read-only).
        summary: how it updates, in one line.
        problems: True if ``update`` is written against problems (the built-ins): it then fits every kind
            of data (masks, imputation) and can hold W fixed. False (the default): the array protocol.
        supports_mask: for the array protocol only: True if ``update`` fits with missing entries, called as
            ``update(A, W, H, mask=M, **options)`` (``M`` None or an m x n bool array, ``A`` 0 outside it)
            and minimising ``||M * (A - W H)||_F``; False (the default, so that solvers written before masks
            keep working): ``fit_nmf`` refuses it a mask with ``missing="exact"``. True for every solver on
            problems.
        beta_losses: True if ``update`` fits the β-divergence losses (:mod:`nmf_lab.core.losses`): it asks
            its subproblems only for ``mu_terms`` (the multiplicative updates). False (the default): the
            Frobenius loss only; ``fit_nmf`` refuses it another loss.
    """

    name: str
    update: Callable[..., Iterator[Products]]
    monotone: bool
    options: Mapping[str, Option] = field(default_factory=dict)
    summary: str
    supports_mask: bool = False
    problems: bool = False
    beta_losses: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a solver's name must be a non-empty string, got {self.name!r}")
        if not callable(self.update):
            raise TypeError(f"solver {self.name!r}: update must be a generator function, got {self.update!r}")
        if not isinstance(self.monotone, bool):
            raise TypeError(f"solver {self.name!r}: monotone must be True or False, got {self.monotone!r}")
        for flag in ("supports_mask", "problems", "beta_losses"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"solver {self.name!r}: {flag} must be True or False, got {getattr(self, flag)!r}")
        if self.problems:
            object.__setattr__(self, "supports_mask", True)
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

_ENTRY_POINT_GROUP = "nmf_lab.solvers"
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
    """Register the solvers of the entry-point group ``nmf_lab.solvers``, once. All or none: an entry point
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
