"""Lee and Seung's multiplicative updates, Algorithm 1 of the spec (equations 12 and 13), on any problem.

Written on the subproblem's ``mu_terms(X)``: ``X <- X * (numerator / (denominator + delta))^exponent``. For
the Frobenius loss below they are ``(C, G X)`` with exponent 1; a penalty adds ``l1 + l2 X`` to the
denominator (:mod:`nmf_lab.core.penalties`); a β-divergence has its own terms and Févotte & Idier's exponent
(:mod:`nmf_lab.core.losses`).

Each iteration updates H, then W with the new H (the W update is the H update of the transposed problem)::

    H <- H * C / (G H + delta)      C = W^T (M * A),   G H = W^T (M * (W H))   (without a mask: (W^T W) H)
    W <- W * (A H^T) / (W H H^T + delta)                   alike, on the transposed problem

Without a mask ``W^T W H`` is computed as ``(W^T W) H``: two d x d Gram matrices instead of two products
with m x n matrices, so an iteration is the two products ``W^T A`` and ``A H^T``. With a mask the weighted
updates need ``M * (W H)`` twice: six products (three times the unmasked iteration). With ``delta = 0`` the
error never increases (Lee & Seung; with 0/1 weights too, Blondel, Ho & Van Dooren 2008), and ``0 / 0`` keeps
the entry's value: an entry whose numerator and denominator both vanish (a whole column of H at zero, say)
stays where it is instead of becoming NaN; entries that fall below the smallest normal number are set to 0
(subnormal arithmetic is slow, and a multiplicative update cannot bring a zero back). ``delta > 0`` keeps
every quotient finite, but the step is then a descent step only while the error is well above ``delta``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from nmf_lab.core.problems import Report, Side


def multiplicative_step(X: np.ndarray, C: np.ndarray, GX: np.ndarray, delta: float, exponent: float = 1.0) -> None:
    """``X <- X * (C / (G X + delta))^exponent`` in place (``GX`` is not modified); with ``delta = 0`` a zero
    denominator keeps the entry and subnormal results become 0."""
    ratio = GX + delta  # the denominator, then the quotient, in one new buffer
    if delta > 0:
        np.divide(C, ratio, out=ratio)
    else:
        positive = ratio > 0
        np.divide(C, ratio, out=ratio, where=positive)
        ratio[~positive] = 1
    if exponent != 1:
        np.power(ratio, exponent, out=ratio)
    X *= ratio
    if delta == 0:
        X[np.finfo(X.dtype).tiny > X] = 0


def multiplicative_updates(problem, W: np.ndarray, H: np.ndarray, *, delta: float, update_W: bool = True) -> Iterator:
    """The multiplicative updates of the module docstring; yields a :class:`Report` whose H side carries
    ``G H`` at the new iterate, the denominator of the next H update (so the error costs nothing more). The
    H update and W's products are one :meth:`update_and_cross` (one pass over blocked data, where the next
    H subproblem is left to it and the error comes from W's side)."""
    terms = None  # H's update terms at the current iterate, when computed for the report

    def step(sub, X):
        nonlocal terms
        numerator, denominator, _ = sub.mu_terms(X) if terms is None else terms
        terms = None
        multiplicative_step(X, numerator, denominator, delta, sub.exponent)

    problem.refresh(W, H)
    sub = problem.least_squares(W, keep=not update_W)
    terms = sub.mu_terms(H)
    while True:
        side_W = None
        if update_W:
            sub_W = problem.update_and_cross(W, H, step, sub)
            step(sub_W, W.T)
            side_W = Side(sub_W, W.T)
            sub = problem.least_squares(W) if problem.refresh(W, H) else problem.next_least_squares(W)
        else:
            step(sub, H)
            if problem.refresh(W, H):
                sub = problem.least_squares(W, keep=True)
        terms = None if sub is None else sub.mu_terms(H)
        yield Report(H=Side(sub, H, terms[2])) if sub is not None else Report(W=side_W)
