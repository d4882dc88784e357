"""One pass over A per iteration: the proposed change to the solvers' interface, and the blocked side of it.

With the core's interface a solver asks for ``W^T A`` (H's subproblem) and, after its H half-step, for
``A H^T`` (W's): on a blocked A these are two passes over the data per iteration. MPI-FAUN (Kannan, Ballard &
Park 2016) makes it one: the H half-step splits by columns (with W fixed, column block j of H depends on
``W^T A_j`` and ``W^T W`` only), so the task of block j can compute ``C_j = W^T A_j``, update ``H_j``, and
return ``A_j H_j^T`` (and the new ``H_j``) at once; the W half-step needs only the sum over blocks.

The proposal: one problem method, with an in-memory default that is exactly today's two calls::

    sub_W = problem.update_and_cross(W, H, step)
        # == sub = problem.least_squares(W); step(sub, H); return problem.T.least_squares(H.T)

where ``step(sub, H_j)`` is the solver's H half-step on one column block, in place, given the block's
subproblem (``sub.C`` is ``C_j``, ``sub.G = W^T W``). A solver whose H half-step is column-separable
(``mu``; ``hals`` with one pass; ``ahals`` with the inner stopping rule applied per block) is written on it;
the others keep the two calls. :func:`update_and_cross` is the default, :class:`OnePassProblem` the blocked
implementation, and :func:`onepass_mu` / :func:`onepass_hals` are ``mu`` and ``hals`` written on it: the
same iterates as :mod:`nmf_lab.core.solvers` (the error of each iterate comes from W's side, ``||A||^2 -
2 <A H^T, W> + <H H^T, W^T W>``, no extra pass). For ``ahals`` the inner rule (stop the passes once a pass
moves H by at most ``inner_tol`` times the first did) is global over H today; per block it is the same rule
on each block's own subproblem, a different (still monotone) iterate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dask
import numpy as np

from nmf_lab.core.least_squares import DenseLeastSquares
from nmf_lab.core.nmf import iterate
from nmf_lab.core.problems import Report, Side
from nmf_lab.core.solvers import MU_OPTIONS, Solver
from nmf_lab.core.solvers.hals import rebalance, start
from nmf_lab.core.solvers.mu import multiplicative_step
from nmf_lab.distributed.problem import BlockedPart, BlockedProblem, block_data, compute, initial_factors

__all__ = ["ONE_PASS_SOLVERS", "OnePassProblem", "fit_one_pass", "onepass_hals", "onepass_mu", "update_and_cross"]

Step = Callable[[DenseLeastSquares, np.ndarray], None]


def update_and_cross(problem, W: np.ndarray, H: np.ndarray, step: Step):
    """The default (any in-memory problem): H's subproblem at W, the H half-step on all of H, then W's
    subproblem at the new H. A problem that can do better (:class:`OnePassProblem`) has the method."""
    method = getattr(problem, "update_and_cross", None)
    if method is not None:
        return method(W, H, step)
    sub = problem.least_squares(W)
    step(sub, H)
    return problem.T.least_squares(H.T)


def _one_pass_task(a, W, rows, nonzero_rows, nonzero_cols, H_j, step, dtype, mask=None, fill=None):
    """Block j: ``C_j = W^T A_j``, the H half-step on ``H_j``, then ``A_j H_j^T``; returns (H_j, A_j H_j^T)."""
    a = block_data(a, dtype, mask, fill)
    a_rows = a if rows is None else a[rows]
    C_j = (W if rows is None else W[rows]).T @ a_rows
    part = BlockedPart(a.shape, nonzero_rows, nonzero_cols, None)
    H_j = np.array(H_j, copy=True)
    step(DenseLeastSquares(W, part, C_j), H_j)
    return H_j, a_rows @ H_j.T


class OnePassProblem(BlockedProblem):
    """:class:`BlockedProblem` with :meth:`update_and_cross`: one pass over the blocks per iteration."""

    passes = 0  # passes over A so far (counted per instance once set)

    def update_and_cross(self, W: np.ndarray, H: np.ndarray, step: Step) -> DenseLeastSquares:
        """In one pass, block by block: ``C_j = W^T A_j``, ``step`` on ``H_j`` (H is updated in place), and
        ``A_j H_j^T``; returns W's subproblem at the new H (``C = (sum_j A_j H_j^T)^T``, ``G = H H^T``)."""
        part = self.part
        rows = None if part.all_rows else part.rows
        W_d = dask.delayed(W, pure=True)
        task = dask.delayed(_one_pass_task, pure=True, nout=2)
        tasks = []
        for j, block in enumerate(self.blocks):
            cols, H_j = part.nonzero_cols[self.slices[j]], np.ascontiguousarray(H[:, self.slices[j]])
            tasks.append(
                task(block, W_d, rows, part.nonzero_rows, cols, H_j, step, self.compute_dtype, *self._masked(j))
            )
        results = compute(tasks)
        self.passes += 1
        total = None
        for j, (H_j, partial) in enumerate(results):
            H[:, self.slices[j]] = H_j
            total = partial.copy() if total is None else total + partial
        transposed = self.T.part
        if transposed.all_cols:
            C = np.ascontiguousarray(total.T)
        else:
            C = np.zeros((H.shape[0], transposed.shape[1]), dtype=total.dtype)
            C[:, transposed.cols] = total.T
        sub = DenseLeastSquares(H.T, transposed, C)
        sub.version = self.shared.version
        return sub

    def least_squares(self, F, *, C=None, keep=False):
        if C is None:
            self.passes += 1
        return super().least_squares(F, C=C, keep=keep)


def onepass_mu(problem, W: np.ndarray, H: np.ndarray, *, delta: float, update_W: bool = True) -> Iterator[Report]:
    """``mu`` (:func:`nmf_lab.core.solvers.mu.multiplicative_updates`) on :func:`update_and_cross`: the same
    iterates, one pass per iteration on a :class:`OnePassProblem`."""
    if not update_W:
        raise ValueError("with W fixed there is one product with A in all: use the core's mu")

    def step(sub, H_j):
        multiplicative_step(H_j, sub.C, sub.gram_times(H_j), delta)

    problem.refresh(W, H)
    while True:
        sub_W = update_and_cross(problem, W, H, step)
        multiplicative_step(W.T, sub_W.C, sub_W.gram_times(W.T), delta)
        problem.refresh(W, H)
        yield Report(W=Side(sub_W, W.T))


def onepass_hals(problem, W: np.ndarray, H: np.ndarray, *, update_W: bool = True) -> Iterator[Report]:
    """``hals`` (:func:`nmf_lab.core.solvers.hals.hals`) on :func:`update_and_cross`: the same iterates, one
    pass per iteration on a :class:`OnePassProblem` (after the start's rescaling, which needs one)."""
    if not update_W:
        raise ValueError("with W fixed there is one product with A in all: use the core's hals")
    floor = problem.floor(W.shape[1])
    start(problem, W, H, floor, True)

    def step(sub, H_j):
        sub.passes(H_j, floor)

    while True:
        sub_W = update_and_cross(problem, W, H, step)
        GW = sub_W.passes(W.T, floor, want_GX=True)
        side_W = Side(sub_W, W.T, GW) if rebalance(W, H, problem, floor) is None else None
        problem.refresh(W, H)
        yield Report(W=side_W)


ONE_PASS_SOLVERS = {
    "mu": Solver(name="mu", update=onepass_mu, monotone=True, options=MU_OPTIONS, problems=True,
                 summary="mu on update_and_cross: one pass over A per iteration"),
    "hals": Solver(name="hals", update=onepass_hals, monotone=True, options={}, problems=True,
                   summary="hals on update_and_cross: one pass over A per iteration"),
}  # fmt: skip
"""The solvers written on the proposed interface (not registered: the core's ``mu`` and ``hals`` are these
once the core has :func:`update_and_cross`)."""


def fit_one_pass(A, rank: int, *, solver: str = "hals", max_iter: int = 100, seed: int = 0, dtype=None, **options):
    """:func:`nmf_lab.distributed.fit_blocked` with one pass over A per iteration (``mu`` or ``hals``); returns
    the :class:`~nmf_lab.core.nmf.NMFResult` and the problem (its ``passes`` counts the passes made)."""
    if solver not in ONE_PASS_SOLVERS:
        raise ValueError(f"one-pass solvers: {', '.join(ONE_PASS_SOLVERS)}; got {solver!r}")
    entry = ONE_PASS_SOLVERS[solver]
    problem = OnePassProblem(A, dtype=dtype)
    problem.passes = 1  # the first pass: the norm, the mean, the zero rows and columns
    W, H = initial_factors(problem, rank, seed)
    result = iterate(problem, W, H, entry, entry.resolve_options(options), max_iter=max_iter)
    return result, problem
