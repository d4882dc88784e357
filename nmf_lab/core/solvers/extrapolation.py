"""Accelerated HALS with extrapolation and restarts (Ang & Gillis 2019, "E-A-HALS"), on any problem.

Beside the accepted iterates ``(W_k, H_k)`` the method keeps extrapolated points ``(Wy, Hy)``, the starting
points of the next half-steps. With ``U`` the passes of accelerated HALS (:mod:`.hals`), one iteration is::

    H_new = U(Hy; subproblem at Wy)                       update H at the extrapolated W
    Hy    = max(eps0, H_new + beta (H_new - H_k))         extrapolate, project
    W_new = U(Wy; subproblem at Hy)                       update W at the extrapolated H
    Wy    = W_new + beta (W_new - W_k)                    extrapolate (not projected)
    e     = error of (W_new, Hy)                          the iterate reported

and then: if ``e`` rose, restart from the accepted iterate (``Wy = W_k``, ``Hy = H_k``; the cap on beta falls
to the previous beta, ``beta <- beta / eta``); otherwise accept ``(W_new, H_new)``, ``beta <- min(cap, gamma
beta)``, ``cap <- min(1, gamma_bar cap)``. The error curve is not monotone (a rise triggers a restart): the
driver returns the best reported iterate. The error that decides a restart is the one the driver sends back.

``Wy^T A = W_new^T A + beta (W_new^T A - W_k^T A)`` is linear in the W's, so on a problem whose data do not
change (dense, exact mask) extrapolation costs no product beyond those of an iteration. On the imputed
problem the data are refilled at ``(Wy, Hy)`` before every iteration, and the reported iterate's error is
measured exactly (one product more). When a component needs rebalancing every point, accepted, new and
extrapolated, gets the same rescaling, which keeps the extrapolation exact. With W fixed there is nothing to
extrapolate: the iteration is accelerated HALS's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from nmf_lab.core.problems import Report, Side
from nmf_lab.core.solvers.hals import accelerated_hals, rebalance, start, sweep_budget


class Momentum:
    """The extrapolation weight beta and its cap: it grows after accepted steps and shrinks after a restart."""

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


def extrapolate(new: np.ndarray, accepted: np.ndarray, beta: float, out: np.ndarray) -> np.ndarray:
    """``out <- new + beta (new - accepted)``; returns ``out``."""
    np.subtract(new, accepted, out=out)
    out *= beta
    out += new
    return out


def extrapolated_hals(
    problem,
    W: np.ndarray,
    H: np.ndarray,
    *,
    alpha: float,
    inner_tol: float,
    beta0: float,
    eta: float,
    gamma: float,
    gamma_bar: float,
    update_W: bool = True,
) -> Iterator[Report]:
    """E-A-HALS (module docstring). W and H hold ``Wy`` and ``Hy`` between iterations, and ``(W_new, Hy)``
    when a report is yielded."""
    if not update_W:
        yield from accelerated_hals(problem, W, H, alpha=alpha, inner_tol=inner_tol, update_W=False)
        return
    floor = problem.floor(W.shape[1])
    sub = start(problem, W, H, floor, True)
    sweeps_H, sweeps_W = sweep_budget(problem, W.shape[1], alpha)
    W_acc, H_acc, C_acc = W.copy(), H.copy(), sub.C  # the accepted iterate (W_k, H_k) and W_k^T A
    H_new = np.empty_like(H)
    momentum = Momentum(beta0, eta, gamma, gamma_bar)
    previous_error = np.inf
    while True:
        sub.passes(H, floor, max_sweeps=sweeps_H, inner_tol=inner_tol)
        np.copyto(H_new, H)
        np.maximum(extrapolate(H_new, H_acc, momentum.beta, out=H), floor, out=H)  # H <- Hy
        sub_W = problem.T.least_squares(H.T)
        GW = sub_W.passes(W.T, floor, max_sweeps=sweeps_W, inner_tol=inner_tol, want_GX=True)  # W <- W_new
        sub_new = problem.least_squares(W)  # at W_new: its C = W_new^T A serves the next Wy^T A
        report = Report(H=Side(sub_new, H), W=Side(sub_W, W.T, GW)) if problem.static else Report()
        error = yield report
        if error is None:
            error = problem.error(W, H, report)
        C_new = sub_new.C
        scale = rebalance(W, H, problem, floor, others_W=(W_acc,), others_H=(H_new, H_acc))
        if scale is not None:  # the same rescaling of every point keeps the extrapolation exact
            C_new, C_acc = C_new * scale[:, None], C_acc * scale[:, None]
        if error > previous_error:  # restart from the accepted iterate
            np.copyto(W, W_acc)
            np.copyto(H, H_acc)
            C_y = C_acc
            momentum.restart()
        else:  # accept (W_new, H_new); W <- Wy, while H already holds Hy
            W_new = W.copy()
            extrapolate(W_new, W_acc, momentum.beta, out=W)
            W_acc = W_new
            C_y = extrapolate(C_new, C_acc, momentum.beta, out=np.empty_like(C_new))
            C_acc = C_new
            H_acc, H_new = H_new, H_acc
            momentum.accept()
        previous_error = error
        sub = problem.least_squares(W) if problem.refresh(W, H) else problem.least_squares(W, C=C_y)
