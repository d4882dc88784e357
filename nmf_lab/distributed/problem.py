"""The blocked problem: ``A`` (m x n) as column blocks of a Dask array, the products computed block by block.

:class:`BlockedProblem` has the interface of :class:`nmf_lab.core.problems.DenseProblem` (and, with a mask,
of :class:`~nmf_lab.core.problems.ImputedProblem`), so every solver of :mod:`nmf_lab.core.solvers` runs on
it unchanged through :func:`nmf_lab.core.nmf.iterate`. ``A`` never comes to the client; what does is small:

    problem.least_squares(W)        C = W^T A = [W^T A_1, ..., W^T A_p]      one task per block, d x n_j each
    problem.T.least_squares(H.T)    C = (A H^T)^T = (sum_j A_j H_j^T)^T     one task per block, m x d each

and the Gram matrices ``W^T W``, ``H H^T`` are formed on the client from the factors (W is m x d, H is d x n:
for n = 10^6 and d = 64, H is 256 MB in float32). One pass over the blocks computes ``||A||^2``, the mean,
the all-zero rows and columns (the :class:`~nmf_lab.core.least_squares.Part` of the in-memory problem) and
checks the data, once. The error of every iterate comes from the products
(``||A||^2 - 2 <C, X> + quadratic``, :meth:`DenseProblem.error`), with no extra pass.

One pass per iteration (the communication pattern of MPI-FAUN, Kannan, Ballard & Park 2016): a solver asks
for H's half-step and W's products as one call, :meth:`BlockedProblem.update_and_cross`. With W fixed, column
block j of H depends only on ``W^T A_j`` and ``W^T W``, so block j's task computes ``C_j = W^T A_j``, runs the
solver's H half-step on ``H_j`` and returns the new ``H_j`` with ``A_j H_j^T``; W's subproblem needs only the
sum over blocks. The solver leaves the next H subproblem to that call (:meth:`next_least_squares` is None)
and the error of the iterate comes from W's side, so an iteration of mu, hals (and ahals with a fixed number
of passes) reads A once: the same iterates as in memory. Where the step is not column-separable (ahals's
inner stopping rule is global over H), with the imputed mask (the error needs H's side of the new fill), and
after a rebalancing, it is two passes.

Every task is a pure function of its block of ``A`` (read from the store) and of factors sent with it: a
worker that dies costs a rerun of its tasks, never a different result. The tasks run wherever
``dask.compute`` sends them: the active ``distributed`` client if there is one, else Dask's default
scheduler.

The imputed mask, blocked: the mask is a Dask bool array with ``A``'s chunks; :meth:`refresh` keeps the
iterate ``(W, H)`` it fills at (no pass), and each task fills its block, ``A_j`` with the hidden entries set
to ``W H_j``, before its product; ``||filled A||^2`` comes from the same tasks.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings

import dask
import dask.array as da
import numpy as np

from nmf_lab.core.least_squares import DenseLeastSquares
from nmf_lab.core.nmf import iterate
from nmf_lab.core.problems import DenseProblem, update_and_cross
from nmf_lab.core.solvers import get_solver
from nmf_lab.core.transform import transform
from nmf_lab.core.validation import check_dtype, check_int

__all__ = ["BlockedProblem", "column_blocks", "fit_blocked", "fit_dask_array", "read_pass", "transform_blocked"]


def column_blocks(A) -> da.Array:
    """``A`` (a Dask array, or anything ``da.asarray`` takes) as a 2-D Dask array whose chunks are column
    blocks (one chunk along the rows)."""
    A = A if isinstance(A, da.Array) else da.asarray(A)
    if A.ndim != 2 or 0 in A.shape:
        raise ValueError(f"A must be a non-empty 2-D matrix (m x n), got shape {A.shape}")
    if A.dtype.kind not in "biuf":
        raise ValueError(f"A must hold real numbers, got dtype {A.dtype}")
    return A if len(A.chunks[0]) == 1 else A.rechunk({0: -1})


# ---------------------------------------------------------------- the tasks: pure functions of one block


def block_data(a, dtype, mask=None, fill=None):
    """Block ``a`` in the computation's dtype, 0 outside the mask; with ``fill = (W, H_j)`` the hidden
    entries set to ``W H_j``."""
    a = np.asarray(a).astype(dtype, copy=False)
    if mask is not None:
        mask = np.asarray(mask)
        a = np.where(mask, a, 0).astype(dtype, copy=False)
        if fill is not None:
            W, H_j = fill
            np.copyto(a, W @ H_j, where=~mask)
    return a


def _stats(a, dtype, mask=None):
    """What one pass learns of a block: sum of squares, sum (float64), observed count, its non-zero rows
    and columns, and its non-finite and negative entries (inside the mask)."""
    observed = None if mask is None else np.asarray(mask)
    a = block_data(a, dtype, observed)
    finite = np.isfinite(a)
    bad, negative = int(a.size - finite.sum()), int((a < 0).sum())
    safe = np.where(finite, a, 0)
    count = a.size if observed is None else int(observed.sum())
    empty_rows = None if observed is None else observed.any(axis=1)
    empty_cols = None if observed is None else observed.any(axis=0)
    return (
        float(np.einsum("ij,ij->", safe, safe, dtype=np.float64)),
        float(np.sum(safe, dtype=np.float64)),
        count,
        safe.any(axis=1),
        safe.any(axis=0),
        bad,
        negative,
        empty_rows,
        empty_cols,
    )


def _cross_H(a, W_rows, rows, dtype, mask=None, fill=None):
    """``W^T A_j`` (d x n_j) from the non-zero rows, and ``||A_j||^2`` when the block is filled."""
    a = block_data(a, dtype, mask, fill)
    product = W_rows.T @ (a if rows is None else a[rows])
    norm2 = float(np.einsum("ij,ij->", a, a, dtype=np.float64)) if fill is not None else None
    return product, norm2


def _cross_W(a, H_j, rows, dtype, mask=None, fill=None):
    """``A_j H_j^T`` (m' x d) on the non-zero rows."""
    a = block_data(a, dtype, mask, fill)
    return (a if rows is None else a[rows]) @ H_j.T


def _update_and_cross(a, W, rows, nonzero_rows, nonzero_cols, H_j, step, dtype):
    """Block j in one pass: ``C_j = W^T A_j``, ``step`` on ``H_j`` (a copy), then ``A_j H_j^T``; returns
    ``(H_j, A_j H_j^T)`` (the product on the non-zero rows)."""
    a = block_data(a, dtype)
    a_rows = a if rows is None else a[rows]
    C_j = (W if rows is None else W[rows]).T @ a_rows
    H_j = np.array(H_j, copy=True)
    step(DenseLeastSquares(W, BlockedPart(a.shape, nonzero_rows, nonzero_cols, None), C_j), H_j)
    return H_j, a_rows @ H_j.T


def _filled_norm2(a, dtype, mask, fill):
    """``||filled A_j||^2`` (float64)."""
    a = block_data(a, dtype, mask, fill)
    return float(np.einsum("ij,ij->", a, a, dtype=np.float64))


def _squared_residual(a, W, H_j, dtype, mask=None):
    """``||M_j * (A_j - W H_j)||^2`` (float64), the residual formed in the factors' dtype."""
    observed = None if mask is None else np.asarray(mask)
    a = block_data(a, dtype, observed)
    residual = W @ H_j
    np.subtract(a, residual, out=residual)
    if observed is not None:
        np.multiply(residual, observed, out=residual)
    residual = residual.astype(np.float64, copy=False)
    return float(np.einsum("ij,ij->", residual, residual))


def compute(tasks) -> tuple:
    """``dask.compute(*tasks)`` on the current scheduler. The factors' blocks travel inside the graph (tens of
    MB for a million columns), not scattered to workers: a worker that dies then loses nothing that a rerun
    of its tasks cannot rebuild, so Dask's warning about a large graph is expected here and silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        return dask.compute(*tasks)


# ---------------------------------------------------------------- the problem


class _Shape:
    """What the solvers read of a part's matrix: its shape (:func:`nmf_lab.core.solvers.hals.sweep_budget`)."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape


class _Columns:
    """``part.full`` of the blocked problem: ``full[:, columns]`` reads those columns of ``A`` (in the
    computation's dtype) from the blocks; only the exact support step of a transform asks for it."""

    def __init__(self, problem: BlockedProblem):
        self.problem = problem

    def __getitem__(self, key):
        rows, columns = key
        p = self.problem
        block = p.blocks_array[:, columns]
        if p.mask_array is not None:
            block = da.where(p.mask_array[:, columns], block, 0)
        return np.asarray(block.compute()).astype(p.dtype, copy=False)[rows]


class BlockedPart:
    """The :class:`~nmf_lab.core.least_squares.Part` of a blocked ``A``: its all-zero rows and columns (known
    from the first pass) without its matrix, which stays in the blocks."""

    def __init__(self, shape, nonzero_rows: np.ndarray, nonzero_cols: np.ndarray, full):
        self.shape, self.nonzero_rows, self.nonzero_cols, self.full, self.T = (
            shape,
            nonzero_rows,
            nonzero_cols,
            full,
            None,
        )
        self._index()

    def _index(self) -> None:
        self.all_rows, self.all_cols = bool(self.nonzero_rows.all()), bool(self.nonzero_cols.all())
        self.rows = slice(None) if self.all_rows else np.flatnonzero(self.nonzero_rows)
        self.cols = slice(None) if self.all_cols else np.flatnonzero(self.nonzero_cols)
        self.B = _Shape((int(self.nonzero_rows.sum()), int(self.nonzero_cols.sum())))

    def transposed(self) -> BlockedPart:
        if self.T is None:
            other = object.__new__(BlockedPart)
            other.shape, other.full, other.T = self.shape[::-1], None, self
            other.nonzero_rows, other.nonzero_cols = self.nonzero_cols, self.nonzero_rows
            other._index()
            self.T = other
        return self.T


class _BlockedShared:
    """What a blocked problem and its transposed view share: ``||A||^2`` (of the filled matrix, computed by
    the next pass after a :meth:`~BlockedProblem.refresh`), the data's version and the fill's iterate."""

    def __init__(self, norm2: float, compute_norm2):
        self._norm2, self.version, self.fill, self._compute = norm2, 0, None, compute_norm2
        self.passes = 1  # passes over A so far: the first one, then those of the products

    @property
    def norm2(self) -> float:
        if self._norm2 is None:
            self._norm2 = self._compute()
        return self._norm2

    @norm2.setter
    def norm2(self, value) -> None:
        self._norm2 = value


class BlockedProblem(DenseProblem):
    """``min ||A - W H||_F`` (or, with a ``mask``, ``min ||M * (A - W H)||_F`` by imputation) for ``A`` a Dask
    array of column blocks (e.g. ``da.from_zarr``). The computation's ``dtype``: None (float32 for a float32
    ``A``, else float64), ``"float32"`` or ``"float64"``; each block is converted inside its task.

    The error of :meth:`DenseProblem.error` applies as it is: from the products of the reported sides, the
    exact norm (one more pass) only near cancellation or when no side is usable."""

    def __init__(self, A, *, mask=None, dtype=None):
        A = column_blocks(A)
        self.blocks_array = A
        self.compute_dtype = check_dtype(dtype, np.float32 if A.dtype == np.float32 else np.float64)
        if mask is not None:
            mask = column_blocks(mask)
            if mask.shape != A.shape or mask.dtype != np.bool_:
                raise ValueError(f"mask must be a bool array of A's shape {A.shape}, got {mask.dtype} {mask.shape}")
            mask = mask.rechunk(A.chunks)
        self.mask_array = mask
        self.blocks = list(A.to_delayed()[0])
        self.mask_blocks = None if mask is None else list(mask.to_delayed()[0])
        bounds = np.cumsum((0, *A.chunks[1]))
        self.slices = [slice(int(start), int(stop)) for start, stop in itertools.pairwise(bounds)]
        self.static = mask is None
        self.kind = "dense" if mask is None else "imputed mask"
        self._transposed = False
        self._first_pass()

    # -- the first pass: the norm, the mean, the zero rows and columns, the checks

    def _first_pass(self) -> None:
        dtype = self.compute_dtype
        tasks = [
            dask.delayed(_stats, pure=True)(block, dtype, *self._mask_of(j)) for j, block in enumerate(self.blocks)
        ]
        stats = compute(tasks)
        bad, negative = sum(s[5] for s in stats), sum(s[6] for s in stats)
        where = " inside the mask" if self.mask_array is not None else ""
        if bad:
            raise ValueError(f"A has {bad} NaN or infinite entries{where}; all entries{where} must be finite")
        if negative:
            raise ValueError(f"A has {negative} negative entries{where}; NMF needs every entry{where} >= 0")
        norm2 = math.fsum(s[0] for s in stats)
        self.total, self.count = math.fsum(s[1] for s in stats), sum(s[2] for s in stats)
        if self.total == 0:
            raise ValueError("A is all zeros" + (" on the observed entries" if where else "") + ": nothing to fit")
        if self.mask_array is not None:
            rows = np.logical_or.reduce([s[7] for s in stats])
            cols = np.concatenate([s[8] for s in stats])
            if not rows.all() or not cols.all():
                raise ValueError("the mask leaves a row or column of A with no observed entry; every row and "
                                 "every column needs at least one True")  # fmt: skip
            nonzero_rows, nonzero_cols = np.ones(self.shape[0], bool), np.ones(self.shape[1], bool)  # the fill
        else:
            nonzero_rows = np.logical_or.reduce([s[3] for s in stats])
            nonzero_cols = np.concatenate([s[4] for s in stats])
        self.part = BlockedPart(self.blocks_array.shape, nonzero_rows, nonzero_cols, _Columns(self))
        self.shared = _BlockedShared(norm2, self._filled_norm2)
        self._T = None

    def _mask_of(self, j: int) -> tuple:
        return () if self.mask_blocks is None else (self.mask_blocks[j],)

    # -- what the core reads

    @property
    def A(self):
        return self.blocks_array.T if self._transposed else self.blocks_array

    @property
    def shape(self) -> tuple[int, int]:
        return self.A.shape

    @property
    def dtype(self) -> np.dtype:
        return self.compute_dtype

    @property
    def mean(self) -> float:
        """The mean of ``A`` (of its observed entries, with a mask), in float64."""
        return self.total / self.count

    @property
    def T(self) -> BlockedProblem:
        """The problem of ``A^T`` (W^T's subproblems), sharing this one's blocks and state."""
        if self._T is None:
            other = object.__new__(BlockedProblem)
            other.__dict__.update(self.__dict__)
            other.part, other._transposed, other._T = self.part.transposed(), not self._transposed, self
            self._T = other
        return self._T

    def floor(self, rank: int) -> float:
        """:func:`nmf_lab.core.problems.component_floor` of ``A``: ``eps * sqrt(mean / d)`` in its dtype."""
        dtype = self.compute_dtype
        return float(dtype.type(np.finfo(dtype).eps * np.sqrt(self.mean / rank)))

    def refresh(self, W: np.ndarray, H: np.ndarray) -> bool:
        """With a mask: the hidden entries are to be ``W H`` (no pass: each task fills its block); True."""
        if self.mask_array is None:
            return False
        if self._transposed:
            W, H = H.T, W.T
        W = W.copy()
        self.shared.fill = (W, H.copy(), dask.delayed(W, pure=True))  # W goes to the workers once per pass
        self.shared.norm2 = None  # computed by the next pass over the filled blocks
        self.shared.version += 1
        return True

    def _fill_of(self, j: int):
        fill = self.shared.fill
        return None if fill is None else (fill[2], np.ascontiguousarray(fill[1][:, self.slices[j]]))

    def least_squares(self, F: np.ndarray, *, C: np.ndarray | None = None, keep: bool = False) -> DenseLeastSquares:
        """The subproblem of ``X`` with ``F`` fixed: ``C = F^T A`` (one pass over the blocks) unless given."""
        if C is None:
            C = self._cross_W(F) if self._transposed else self._cross_H(F)
        sub = DenseLeastSquares(F, self.part, C)
        sub.version = self.shared.version
        return sub

    def _cross_H(self, W: np.ndarray) -> np.ndarray:
        part = self.part
        rows = None if part.all_rows else part.rows
        W_rows = dask.delayed(np.ascontiguousarray(W[part.rows]), pure=True)
        tasks = [
            dask.delayed(_cross_H, pure=True, nout=2)(block, W_rows, rows, self.compute_dtype, *self._masked(j))
            for j, block in enumerate(self.blocks)
        ]
        results = self._pass(tasks)
        if self.shared.fill is not None:
            self.shared.norm2 = math.fsum(norm2 for _, norm2 in results)
        return np.concatenate([product for product, _ in results], axis=1)

    def _cross_W(self, Ht: np.ndarray) -> np.ndarray:
        part = self.part  # the transposed part: its columns are A's rows
        rows = None if part.all_cols else part.cols
        H = Ht.T
        tasks = [
            dask.delayed(_cross_W, pure=True)(
                block, np.ascontiguousarray(H[:, self.slices[j]]), rows, self.compute_dtype, *self._masked(j)
            )
            for j, block in enumerate(self.blocks)
        ]
        return self._sum_of_crosses(self._pass(tasks), part, H.shape[0])

    @staticmethod
    def _sum_of_crosses(partials, part, d: int) -> np.ndarray:
        """``C = (sum_j A_j H_j^T)^T`` (d x m) from the blocks' products on the non-zero rows of ``A``."""
        total = partials[0].copy()
        for partial in partials[1:]:
            total += partial
        if part.all_cols:
            return np.ascontiguousarray(total.T)
        C = np.zeros((d, part.shape[1]), dtype=total.dtype)
        C[:, part.cols] = total.T
        return C

    def _pass(self, tasks) -> tuple:
        """The results of one pass over the blocks (counted in ``shared.passes``)."""
        self.shared.passes += 1
        return compute(tasks)

    def next_least_squares(self, F: np.ndarray):
        """None where the next :meth:`update_and_cross` computes H's subproblem in its pass (no mask, not the
        transposed view), else :meth:`least_squares`."""
        return None if self.static and not self._transposed else self.least_squares(F)

    def update_and_cross(self, W: np.ndarray, H: np.ndarray, step, sub=None, *, columnwise: bool = True):
        """:func:`nmf_lab.core.problems.update_and_cross` in one pass over the blocks when H's subproblem is
        left to it (``sub`` None), ``step`` is ``columnwise`` and there is no mask: block j's task computes
        ``W^T A_j``, runs ``step`` on ``H_j`` and returns it with ``A_j H_j^T``; H is updated in place and W's
        subproblem (``C`` the sum of the blocks' products, ``G = H H^T``) returned. Else the two products."""
        if sub is not None or not columnwise or not self.static or self._transposed:
            return update_and_cross(self, W, H, step, sub)
        part = self.part
        rows = None if part.all_rows else part.rows
        W_d = dask.delayed(W, pure=True)
        task = dask.delayed(_update_and_cross, pure=True, nout=2)
        tasks = [
            task(block, W_d, rows, part.nonzero_rows, part.nonzero_cols[self.slices[j]],
                 np.ascontiguousarray(H[:, self.slices[j]]), step, self.compute_dtype)
            for j, block in enumerate(self.blocks)
        ]  # fmt: skip
        results = self._pass(tasks)
        for j, (H_j, _) in enumerate(results):
            H[:, self.slices[j]] = H_j
        C = self._sum_of_crosses([partial for _, partial in results], self.T.part, H.shape[0])
        sub_W = DenseLeastSquares(H.T, self.T.part, C)
        sub_W.version = self.shared.version
        return sub_W

    def _masked(self, j: int) -> tuple:
        if self.mask_blocks is None:
            return ()
        return (self.mask_blocks[j], self._fill_of(j))

    def _filled_norm2(self) -> float:
        tasks = [
            dask.delayed(_filled_norm2, pure=True)(block, self.compute_dtype, *self._masked(j))
            for j, block in enumerate(self.blocks)
        ]
        return math.fsum(self._pass(tasks))

    def exact_error(self, W: np.ndarray, H: np.ndarray) -> float:
        """``||A - W H||_F`` (with a mask ``||M * (A - W H)||_F`` on the observed entries): one pass."""
        if self._transposed:
            W, H = H.T, W.T
        W_d = dask.delayed(W, pure=True)
        tasks = [
            dask.delayed(_squared_residual, pure=True)(
                block, W_d, np.ascontiguousarray(H[:, self.slices[j]]), self.compute_dtype, *self._mask_of(j)
            )
            for j, block in enumerate(self.blocks)
        ]
        return math.sqrt(math.fsum(self._pass(tasks)))


# ---------------------------------------------------------------- entries


def initial_factors(problem: BlockedProblem, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The random initial guess of :func:`nmf_lab.core.inits.random_init` (the spec's contract) from the
    mean the first pass found: ``W0 = rng.uniform(0, 1, (m, d))``, then ``H0 = rng.uniform(0, 1, (d, n))``,
    both times ``sqrt(mean / d)``, in the computation's dtype."""
    m, n = problem.shape
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.0, 1.0, size=(m, rank))
    H = rng.uniform(0.0, 1.0, size=(rank, n))
    scale = np.sqrt(np.float64(problem.mean) / rank)
    return (W * scale).astype(problem.dtype, copy=False), (H * scale).astype(problem.dtype, copy=False)


def fit_blocked(
    A,
    rank: int,
    *,
    mask=None,
    solver: str = "mu",
    max_iter: int = 1000,
    seed: int = 0,
    init="random",
    dtype=None,
    tol: float = 0.0,
    time_limit: float | None = None,
    callback=None,
    on_iterate=None,
    **options,
):
    """:func:`nmf_lab.core.nmf.fit_nmf` for ``A`` a Dask array of column blocks (anything ``da.asarray`` takes),
    on the active Dask client or Dask's default scheduler: the core's own loop
    (:func:`nmf_lab.core.nmf.iterate`) on a :class:`BlockedProblem`. The arguments are ``fit_nmf``'s; the
    ``mask`` is a Dask (or NumPy) bool array of ``A``'s shape, fitted by imputation (``missing="impute"``;
    the exact masked updates need one Gram matrix per column and are not blocked); ``init`` is ``"random"``
    or a pair ``(W0, H0)``. Returns an :class:`~nmf_lab.core.nmf.NMFResult` (``H`` d x n on the client)."""
    rank = check_int("rank", rank, minimum=1)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    entry = get_solver(solver)
    if not entry.problems:
        raise ValueError(f"solver {solver!r} is written on arrays, not problems: it cannot run on blocks")
    options = entry.resolve_options(options)
    problem = BlockedProblem(A, mask=mask, dtype=dtype)
    if isinstance(init, str) or init is None:
        if init not in (None, "random"):
            raise ValueError(f"a blocked fit starts from init='random' or a pair (W0, H0), got {init!r}")
        W, H = initial_factors(problem, rank, seed)
    else:
        W0, H0 = init
        W, H = np.array(W0, dtype=problem.dtype), np.array(H0, dtype=problem.dtype)
        if W.shape != (problem.shape[0], rank) or H.shape != (rank, problem.shape[1]):
            raise ValueError(f"init must be (m x d, d x n) for A of shape {problem.shape}, got {W.shape}, {H.shape}")
    if tol < 0 or not math.isfinite(tol):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return iterate(problem, W, H, entry, options, max_iter=max_iter, tol=tol, time_limit=time_limit, callback=callback,
                   on_iterate=on_iterate)  # fmt: skip


def fit_dask_array(A, rank: int, *, mask=None, missing: str = "exact", loss="frobenius", alpha_W=0.0, alpha_H="same",
                   l1_ratio=0.0, **options):  # fmt: skip
    """:func:`nmf_lab.fit_nmf` of a Dask array (the entry point ``dask`` of
    :data:`nmf_lab.core.nmf.ARRAY_BACKENDS`): :func:`fit_blocked`, which fits the Frobenius loss without a
    penalty, a mask by imputation; anything else is refused, naming what a blocked fit takes."""
    if not (str(loss).lower() == "frobenius" or (not isinstance(loss, str) and loss == 2)):
        raise ValueError(f"a blocked fit (A is a Dask array) minimises the Frobenius loss only, not loss={loss!r}")
    if alpha_W or (alpha_H not in ("same", 0, 0.0)):
        raise ValueError(f"a blocked fit (A is a Dask array) takes no penalty, got alpha_W={alpha_W!r}, "
                         f"alpha_H={alpha_H!r}")  # fmt: skip
    if mask is not None and missing != "impute":
        raise ValueError(f"a blocked fit (A is a Dask array) fits a mask by imputation: pass missing='impute', "
                         f"got missing={missing!r}")  # fmt: skip
    return fit_blocked(A, rank, mask=mask, **options)


def _touch(a) -> int:
    return int(np.asarray(a).shape[1])


def read_pass(A) -> float:
    """Seconds of one pass that reads (and decompresses) every column block of ``A`` and does nothing else: the
    floor of a pass over the data on the current scheduler."""
    A = column_blocks(A)
    start = time.perf_counter()
    dask.compute(*[dask.delayed(_touch, pure=False)(block) for block in A.to_delayed()[0]])
    return time.perf_counter() - start


def transform_blocked(A_new, W: np.ndarray, **options) -> da.Array:
    """The coefficients ``H`` (d x n, a lazy Dask array with ``A_new``'s column blocks) of :func:`transform`
    applied to each column block of ``A_new``: the problem splits into one NNLS problem per column, so
    each block's task gives exactly its columns of the in-memory transform. ``options``: those of
    :func:`nmf_lab.core.transform.transform` (solver, max_iter, tol, dtype)."""
    A_new = column_blocks(A_new)
    W = np.asarray(W)
    dtype = check_dtype(options.get("dtype"), np.float32 if A_new.dtype == W.dtype == np.float32 else np.float64)
    return A_new.map_blocks(
        lambda a: transform(a, W, **options).H,
        chunks=((W.shape[1],), A_new.chunks[1]),
        dtype=dtype,
    )
