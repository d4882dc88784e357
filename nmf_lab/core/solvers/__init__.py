"""NMF solvers: the registry and the built-in update rules, each written once against the problem interface.

The built-in solvers (:func:`solver_names` lists every registered one):

``"mu"``
    Lee & Seung's multiplicative updates, Algorithm 1 of the spec (:mod:`.mu`). Option ``delta``. The only
    built-in solver for the β-divergence losses (Févotte & Idier's updates, :mod:`nmf_lab.core.losses`).
``"hals"``
    Hierarchical alternating least squares: one exact pass over the rows of H, then over the columns of W
    (:mod:`.hals`). No options.
``"ahals"``
    Accelerated HALS: several passes per half-step, as long as they pay. Options ``alpha``, ``inner_tol``.
``"ahals_extrapolated"``
    Accelerated HALS with extrapolation and restarts, the fastest here (:mod:`.extrapolation`). Its error
    may rise (``monotone=False``): ``fit_nmf`` returns its best iterate. Options ``alpha``, ``inner_tol``,
    ``beta0``, ``eta``, ``gamma``, ``gamma_bar``.

Each fits every problem kind (:mod:`nmf_lab.core.problems`: dense, exact mask, imputed mask), takes the L1/L2
penalties (:mod:`nmf_lab.core.penalties`) and can hold W fixed (``transform``). ``get_solver(name).options``
describes each option; ``fit_nmf(A, d, solver=name, **options)`` sets them. :mod:`.registry` tells how to
add a solver, in-process or from an installed package.

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

import math
from collections.abc import Callable

from nmf_lab.core.solvers.extrapolation import extrapolated_hals
from nmf_lab.core.solvers.hals import accelerated_hals, hals
from nmf_lab.core.solvers.mu import multiplicative_updates
from nmf_lab.core.solvers.registry import Option, Products, Solver, get_solver, register_solver, solver_names

__all__ = ["BUILT_IN", "Option", "Products", "Solver", "get_solver", "register_solver", "solver_names"]


def _finite_at_least(low: float) -> Callable[[float], bool]:
    return lambda value: math.isfinite(value) and value >= low


AHALS_OPTIONS = {
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

EXTRAPOLATION_OPTIONS = {
    **AHALS_OPTIONS,
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

MU_OPTIONS = {
    "delta": Option(
        1e-9,
        _finite_at_least(0.0),
        "a finite number >= 0",
        "added to each denominator (the spec suggests 1e-9..1e-6)",
    )
}
"""The option of ``mu``."""

BUILT_IN = tuple(
    Solver(name=name, update=update, monotone=monotone, options=options, summary=summary, problems=True,
           beta_losses=name == "mu")  # the β-divergences: mu only (the HALS family minimises squares)
    for name, update, monotone, options, summary in (
        ("mu", multiplicative_updates, True, MU_OPTIONS,
         "multiplicative updates (Algorithm 1): H <- H * (W^T A) / (W^T W H + delta), then W alike"),
        ("hals", hals, True, {},
         "HALS: one exact coordinate-descent pass over the rows of H, then over the columns of W"),
        ("ahals", accelerated_hals, True, AHALS_OPTIONS,
         "accelerated HALS: several passes over H, then over W, per pair of products with A"),
        ("ahals_extrapolated", extrapolated_hals, False, EXTRAPOLATION_OPTIONS,
         "accelerated HALS with extrapolation and restarts; its error may rise, its best iterate is kept"),
    )
)  # fmt: skip
"""The built-in entries, registered when this package is imported."""

for _solver in BUILT_IN:
    register_solver(_solver)
del _solver
