"""NMF update rules, one generator per solver.

A solver takes the data ``A`` (m x n) and the current factors ``W`` (m x d) and ``H`` (d x n), updates the
factors **in place** one iteration at a time, and after each iteration yields the :class:`Products` it
computed on the way. :func:`nmf_lab.nmf.fit_nmf` turns those products into the exact error
``||A - W H||_F`` without ever forming the m x n residual.

To add a solver, write a generator with the signature of :func:`multiplicative_updates` and register it in
:data:`SOLVERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Products:
    """The small products an iteration leaves behind, all taken at the new factors.

    ``AHt = A H^T`` (m x d), ``HHt = H H^T`` (d x d), ``WtW = W^T W`` (d x d), where ``AHt`` and ``HHt`` use
    the new ``H`` and ``WtW`` the new ``W``. With them ``||A - WH||_F^2 = ||A||_F^2 - 2 <AHt, W> +
    <WtW, HHt>``.
    """

    AHt: np.ndarray
    HHt: np.ndarray
    WtW: np.ndarray


Solver = Callable[..., Iterator[Products]]


def multiplicative_updates(
    A: np.ndarray, W: np.ndarray, H: np.ndarray, *, delta: float
) -> Iterator[Products]:
    """Lee and Seung's multiplicative updates, Algorithm 1 of the spec (equations 12 and 13).

    Each iteration updates H first, then W with the new H::

        H <- H * (W^T A) / (W^T W H + delta)
        W <- W * (A H^T) / (W H H^T + delta)

    ``W^T W H`` is computed as ``(W^T W) H`` and ``W H H^T`` as ``W (H H^T)``: the same numbers, at the
    cost of two d x d Gram matrices instead of two extra products with m x n matrices.
    """
    WtW = W.T @ W
    while True:
        H *= (W.T @ A) / (WtW @ H + delta)
        AHt = A @ H.T
        HHt = H @ H.T
        W *= AHt / (W @ HHt + delta)
        WtW = W.T @ W
        yield Products(AHt=AHt, HHt=HHt, WtW=WtW)


SOLVERS: dict[str, Solver] = {
    "mu": multiplicative_updates,
}
"""Solvers by the name ``fit_nmf(..., solver=name)`` knows them by."""
