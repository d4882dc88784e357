"""The half-step of every NMF solver: non-negative least squares for one factor with the other fixed.

With ``F`` (K x d) fixed, the unknown ``X`` (d x N, K x N data ``B``, mask ``M`` or none) solves::

    min_{X >= floor}  ||M * (B - F X)||_F^2 / 2

For H: ``F = W``, ``B = A``, ``X = H``. For W: the same on the transposed problem, ``F = H^T``, ``B = A^T``,
``X = W^T``: one piece of code serves both factors. A subproblem is built by a problem
(:mod:`nmf_lab.core.problems`) and offers what the update rules need:

- ``C = F^T (M * B)`` (d x N), the numerators;
- ``gram_times(X)``: ``G_j x_j`` for every column j, with ``G = F^T F`` shared by every column without a
  mask and ``G_j = F^T diag(m_j) F`` with one (the denominators of the multiplicative updates);
- ``passes(X, floor, ...)``: exact coordinate descent over the rows of ``X`` (HALS), in place;
- ``quadratic(X) = sum_j x_j^T G_j x_j``, i.e. ``||M * (F X)||^2``;
- ``mu_terms(X)``: the numerator and denominator of the multiplicative update, ``(C, G X)``, and ``G X``;
- ``gradient(X)``: ``G X - C``, the gradient of the objective below over 2.

A penalty (:mod:`nmf_lab.core.penalties`) wraps a subproblem: ``passes`` take its ``C`` and a ``ridge`` added
to the diagonal of every ``G_j``. A β-divergence (:mod:`nmf_lab.core.losses`) has subproblems of its own
with ``mu_terms`` and ``gradient`` only.

The objective at ``X`` is then ``||M * B||^2 - 2 <C, X> + quadratic(X)`` (:func:`squared_error`).
"""

from __future__ import annotations

import contextlib

import numpy as np

_GRAM_BUDGET = 1 << 23
"""Entries (8M: 64 MB in float64) of each large temporary of the masked passes: the per-column Gram matrices
of a block of columns (d x d x block) and the pairwise products of a chunk of the inner dimension."""

_GRAM_CACHE = 4 * _GRAM_BUDGET
"""Up to this many entries (d^2 N) the masked Gram matrices are kept between calls (W fixed: transform)."""


def inner(X: np.ndarray, Y: np.ndarray) -> float:
    """The Frobenius inner product ``<X, Y>`` accumulated in float64."""
    return float(np.vdot(X.astype(np.float64, copy=False), Y.astype(np.float64, copy=False)))


class Part:
    """The rows and columns of a K x N matrix ``B`` that are not all zero, and the matrix on them.

    A zero column j of ``B`` makes column j of ``C`` zero and its optimum ``x_j`` the floor, whatever F is;
    a zero row adds nothing to ``C``. Image data has many (679 of the 1728 rows of the CryptoPunks matrix
    are transparent in every image), so the products and the passes leave them out: exact, and cheaper in
    proportion. ``B`` is copied once when it has zero rows or columns; :attr:`T` is the same part of ``B^T``.
    """

    def __init__(self, B: np.ndarray, *, every_row: bool = False, every_col: bool = False):
        """``every_row`` / ``every_col``: keep all rows / columns (where the other factor is not at the floor
        on them, or where the data change)."""
        self.shape = B.shape
        self.nonzero_rows = np.ones(B.shape[0], dtype=bool) if every_row else B.any(axis=1)
        self.nonzero_cols = np.ones(B.shape[1], dtype=bool) if every_col else B.any(axis=0)
        self._index()
        self.B = B if self.all_rows and self.all_cols else np.ascontiguousarray(B[self.rows][:, self.cols])
        self.full, self.T = B, None

    def _index(self) -> None:
        self.all_rows, self.all_cols = bool(self.nonzero_rows.all()), bool(self.nonzero_cols.all())
        self.rows = slice(None) if self.all_rows else np.flatnonzero(self.nonzero_rows)
        self.cols = slice(None) if self.all_cols else np.flatnonzero(self.nonzero_cols)

    def transposed(self) -> Part:
        """The same part of ``B^T``, its matrix a transposed view (no copy)."""
        if self.T is None:
            other = object.__new__(Part)
            other.shape, other.B, other.full, other.T = self.shape[::-1], self.B.T, self.full.T, self
            other.nonzero_rows, other.nonzero_cols = self.nonzero_cols, self.nonzero_rows
            other._index()
            self.T = other
        return self.T

    def cross(self, F: np.ndarray) -> np.ndarray:
        """``F^T B`` (d x N), zero on the zero columns."""
        if self.B.flags.f_contiguous and not self.B.flags.c_contiguous:  # B^T of a C-ordered matrix
            product = (self.B.T @ F[self.rows]).T  # (A H^T)^T: much faster here than H A^T
        else:
            product = F[self.rows].T @ self.B
        if self.all_cols:
            return np.ascontiguousarray(product)
        full = np.zeros((F.shape[1], self.shape[1]), dtype=product.dtype)
        full[:, self.cols] = product
        return full


def hals_sweep(X: np.ndarray, G_off: np.ndarray, C_scaled: np.ndarray, floor: float, work: np.ndarray) -> None:
    """One pass of exact coordinate minimisation over the rows of ``X`` (d x N) with one shared Gram matrix.

    The best row k with the others fixed is ``x_k <- max(floor, (c_k - sum_{l != k} g_kl x_l) / g_kk)``,
    taken for k = 1..d in turn (Gauss-Seidel); ``G_off = g_kl / g_kk`` with a zero diagonal and ``C_scaled =
    c_k / g_kk``. A row costs one vector-matrix product and two passes over N numbers (``work``).
    """
    for k in range(X.shape[0]):
        np.dot(G_off[k], X, out=work)
        np.subtract(C_scaled[k], work, out=work)
        np.maximum(work, floor, out=X[k])


def repeat_passes(X: np.ndarray, one_pass, max_sweeps: int, inner_tol: float) -> int:
    """Up to ``max_sweeps`` calls of ``one_pass()`` on ``X``; stop once a pass moves ``X`` by at most
    ``inner_tol`` times the first did (Gillis & Glineur 2012). Returns the number of passes."""
    if max_sweeps == 1:
        one_pass()
        return 1
    before = np.empty_like(X)
    first_move = 0.0
    for sweep in range(1, max_sweeps + 1):
        np.copyto(before, X)
        one_pass()
        before -= X
        move = float(np.vdot(before, before))
        if sweep == 1:
            first_move = move
        elif move <= inner_tol**2 * first_move:
            break
    return sweep


SUPPORT_ROUNDS = 4
"""A support step solves up to 4 times, dropping the negative entries from the support each time."""

SUPPORT_BATCH = 512
"""The columns of one batch of d x d solves in :func:`solve_on_support`."""


def solve_on_support(sub, X: np.ndarray, columns: np.ndarray) -> bool:
    """Replace each of the ``columns`` (bool over X's columns) of ``X`` by the exact least-squares fit on its
    support ``F = {k: x_k > 0}``, where that is non-negative and fits at least as well; in place. Returns
    whether any column changed.

    ``x_F = G_FF^{-1} c_F`` and ``x = 0`` off F: one batched d x d solve per column, of ``G_j`` with its rows
    and columns off F replaced by the identity; a negative entry leaves F and the solve is repeated (up to
    :data:`SUPPORT_ROUNDS` times). A feasible ``x`` is the best point supported in F, so at least as good as
    ``x_j``; it is taken if its residual, computed exactly, is not larger (this also rejects the ``x`` of a
    singular ``G_FF``). Once F is the optimal support this is the NNLS solution up to rounding.
    """
    d = X.shape[0]
    diagonal = np.arange(d)
    changed = False
    candidates = np.flatnonzero(columns & sub.part.nonzero_cols)
    for chunk in np.array_split(candidates, -(-candidates.size // SUPPORT_BATCH)):
        support = (X[:, chunk] > 0).T  # b x d
        K = sub.column_grams(chunk)
        K *= support[:, :, None] & support[:, None, :]
        K[:, diagonal, diagonal] += ~support
        rhs = np.where(support, sub.C[:, chunk].T, 0)[:, :, None]
        x = _solve(K, rhs)  # b x d
        for _ in range(SUPPORT_ROUNDS - 1):  # drop the negative entries from F and solve again
            negative = x < 0
            redo = np.flatnonzero(negative.any(axis=1) & np.isfinite(x).all(axis=1))
            if redo.size == 0:
                break
            drop = negative[redo]
            K_redo, rhs_redo = K[redo], rhs[redo]
            K_redo[drop] = 0  # rows, then columns, of the dropped entries: identity
            K_redo.transpose(0, 2, 1)[drop] = 0
            K_redo[:, diagonal, diagonal] += drop
            rhs_redo[drop] = 0
            K[redo], rhs[redo] = K_redo, rhs_redo
            x[redo] = _solve(K_redo, rhs_redo)
        x = x.T
        fits = np.isfinite(x).all(axis=0) & (x >= 0).all(axis=0)
        if fits.any():
            chunk, x = chunk[fits], x[:, fits]
            better = sub.column_squares(x, chunk) <= sub.column_squares(X[:, chunk], chunk)
            X[:, chunk[better]] = x[:, better]
            changed = changed or bool(better.any())
    return changed


def _solve(K: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``K_i^{-1} rhs_i`` for a stack of b x d x d matrices and b x d x 1 right-hand sides, b x d; NaN for the
    exactly singular ones."""
    try:
        return np.linalg.solve(K, rhs)[:, :, 0]
    except np.linalg.LinAlgError:  # one singular matrix fails the whole stack: one by one
        x = np.full(rhs.shape[:2], np.nan, dtype=rhs.dtype)
        for i in range(K.shape[0]):
            with contextlib.suppress(np.linalg.LinAlgError):
                x[i] = np.linalg.solve(K[i], rhs[i])[:, 0]
        return x


class DenseLeastSquares:
    """The subproblem without a mask: every column shares ``G = F^T F``."""

    def __init__(self, F: np.ndarray, part: Part, C: np.ndarray | None = None):
        self.F, self.part = F, part
        self.C = part.cross(F) if C is None else C
        self.G = F.T @ F

    exponent = 1.0  # of the multiplicative update's ratio

    def gram_times(self, X: np.ndarray) -> np.ndarray:
        return self.G @ X

    def quadratic(self, X: np.ndarray, GX: np.ndarray | None = None) -> float:
        return inner(GX, X) if GX is not None else inner(self.G, X @ X.T)

    def mu_terms(self, X: np.ndarray):
        """The multiplicative update's numerator and denominator, ``(C, G X)``, and ``G X`` (for the error)."""
        GX = self.gram_times(X)
        return self.C, GX, GX

    def gradient(self, X: np.ndarray, GX: np.ndarray | None = None) -> np.ndarray:
        """``G X - C`` (a new array); ``GX``: ``G X`` if the caller has it."""
        return (self.gram_times(X) if GX is None else GX) - self.C

    def passes(self, X, floor: float, *, max_sweeps=1, inner_tol=0.0, want_GX=False, C=None, ridge=0.0):
        """Coordinate passes over the rows of ``X`` on the non-zero columns of ``B``, in place (the others sit
        at the floor, their optimum); returns ``(G + ridge I) X`` at the end if ``want_GX``. ``C``: the
        numerators if not this subproblem's (a penalty's ``C - l1``), ``ridge``: added to the diagonal of G."""
        part, G = self.part, self.G
        diagonal = np.maximum(np.diagonal(G) + ridge, np.finfo(G.dtype).tiny)[:, None]
        G_off = G / diagonal
        np.fill_diagonal(G_off, 0)
        C = self.C if C is None else C
        C = C if part.all_cols else C[:, part.cols]
        C_scaled = C / diagonal
        copy = not (part.all_cols and X.flags.c_contiguous)
        Xp = np.ascontiguousarray(X[:, part.cols]) if copy else X
        work = np.empty(Xp.shape[1], dtype=X.dtype)
        repeat_passes(Xp, lambda: hals_sweep(Xp, G_off, C_scaled, floor, work), max_sweeps, inner_tol)
        if copy:
            X[:, part.cols] = Xp
        if not want_GX:
            return None
        GX = self.G @ X
        if ridge:
            GX += ridge * X
        return GX

    def solve_on_support(self, X: np.ndarray, columns: np.ndarray) -> bool:
        return solve_on_support(self, X, columns)

    def column_grams(self, columns: np.ndarray) -> np.ndarray:
        """``G_j`` of the ``columns`` (b x d x d, a new array)."""
        return np.repeat(self.G[None], columns.size, axis=0)

    def column_squares(self, X_columns: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``||b_j - F x_j||^2`` (float64) of the ``columns``, ``X_columns`` their coefficients, exactly."""
        residual = self.part.full[:, columns] - self.F @ X_columns
        return np.einsum("ij,ij->j", residual, residual, dtype=np.float64)


def pair_index(d: int) -> np.ndarray:
    """For every ``(k, l)`` of a d x d matrix in row-major order, the index of its pair in
    ``np.triu_indices(d)`` order: ``packed[index]`` unpacks d (d + 1) / 2 symmetric entries."""
    ks, ls = np.triu_indices(d)
    position = np.empty((d, d), dtype=np.intp)
    position[ks, ls] = np.arange(ks.size)
    position[ls, ks] = np.arange(ks.size)
    return position.ravel()


def even_parts(total: int, largest: int) -> list[slice]:
    """``range(total)`` cut into the fewest slices of at most ``largest`` (>= 1) items, of nearly equal size."""
    count = -(-total // max(1, largest))
    size = -(-total // count)
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def pair_products(F: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The products ``f_k * f_l`` of the rows of ``F`` (d x K) for the pairs ``k <= l``, into ``out``."""
    d, start = F.shape[0], 0
    for k in range(d):
        np.multiply(F[k], F[k:], out=out[start : start + d - k])
        start += d - k
    return out


class MaskedLeastSquares:
    """The subproblem with a mask: column j has its own ``G_j = F^T diag(m_j) F``.

    The numerators come from the non-zero part of ``M * B`` (:class:`Part`). Column j's passes set, for
    k = 1..d, ``x_kj <- max(floor, (c_kj - sum_{l != k} (G_j)_kl x_lj) / (G_j)_kk)``: exact minimisation of
    the masked objective over one row, so it never increases. The Grams of a block of columns come from one
    product of the pairwise products ``f_k * f_l`` (d (d + 1) / 2 x K) with the mask: ``K d^2`` flops per
    column, the cost of masked HALS (about d / 4 times the two products of an unmasked iteration), in blocks
    and chunks of at most :data:`_GRAM_BUDGET` entries. The rows of ``F`` for zero rows of ``M * B`` sit at
    the floor (their optimum, kept there by the other half-step): their part of ``G_j`` is added in closed
    form, ``floor^2 * (observed entries there) * 1 1^T``.
    """

    def __init__(self, F, part: Part, mask: np.ndarray, M_part: np.ndarray, extra, *, C=None, keep=False):
        """``mask``: K x N bool; ``M_part``: the mask on the non-zero part as 0/1 numbers; ``extra``: None or
        ``floor^2`` times the observed entries of each non-zero column in the zero rows of B."""
        self.F, self.part, self.mask, self.M_part, self.extra = F, part, mask, M_part, extra
        self.C = part.cross(F) if C is None else C
        self.keep = keep
        self.grams = None  # the per-column Gram matrices of the non-zero columns, when kept

    exponent = 1.0
    mu_terms, gradient = DenseLeastSquares.mu_terms, DenseLeastSquares.gradient

    def observed_fit(self, X: np.ndarray) -> tuple[np.ndarray, bool]:
        """``M * (F X)`` (K x N), or its transpose (and True) when the mask is a transposed view (W's
        subproblem): the fit is then formed as ``W H`` in the data's own order, where masking is one pass."""
        if self.mask.flags.c_contiguous or not self.mask.T.flags.c_contiguous:
            P = self.F @ X
            np.multiply(P, self.mask, out=P)
            return P, False
        P = X.T @ self.F.T
        np.multiply(P, self.mask.T, out=P)
        return P, True

    def gram_times(self, X: np.ndarray) -> np.ndarray:
        """``F^T (M * (F X))``: two products with K x N matrices."""
        P, transposed = self.observed_fit(X)
        return (P @ self.F).T if transposed else self.F.T @ P

    def quadratic(self, X: np.ndarray, GX: np.ndarray | None = None) -> float:
        if GX is not None:
            return inner(GX, X)
        P, _ = self.observed_fit(X)
        return inner(P, P)

    def passes(self, X, floor: float, *, max_sweeps=1, inner_tol=0.0, want_GX=False, C=None, ridge=0.0):
        """Exact masked coordinate passes over the non-zero columns of ``X``, in place; returns ``(G_j + ridge
        I) x_j`` of every column at the end if ``want_GX`` (0 on the zero columns, where it is of order
        floor^2). ``C`` and ``ridge`` as for :meth:`DenseLeastSquares.passes`."""
        part = self.part
        Xp = np.ascontiguousarray(X[:, part.cols])
        Fp = np.ascontiguousarray(self.F[part.rows].T)
        C = self.C if C is None else C
        C = C if part.all_cols else C[:, part.cols]
        d, N = Xp.shape
        if self.grams is None and self.keep and d * d * N <= _GRAM_CACHE:
            self.grams = self._scaled_grams(Fp, slice(0, N), ridge)  # F fixed (transform): the same every call
        blocks = [slice(0, N)] if self.grams is not None else even_parts(N, _GRAM_BUDGET // (d * d))
        GX = np.zeros_like(X) if want_GX else None
        for cols in blocks:
            G, diagonal = self.grams if self.grams is not None else self._scaled_grams(Fp, cols, ridge)
            Xb, C_scaled = Xp[:, cols], C[:, cols] / diagonal
            out = np.empty(Xb.shape[1], dtype=X.dtype)

            def one_pass(G=G, Xb=Xb, C_scaled=C_scaled, out=out):
                for k in range(d):
                    np.einsum("lj,lj->j", G[k], Xb, out=out)
                    np.subtract(C_scaled[k], out, out=out)
                    np.maximum(out, floor, out=Xb[k])

            repeat_passes(Xb, one_pass, max_sweeps, inner_tol)
            if GX is not None:  # G_j x_j = g_kk (x_kj + sum_{l != k} (g_kl / g_kk) x_lj)
                block_GX = np.einsum("klj,lj->kj", G, Xb)
                block_GX += Xb
                block_GX *= diagonal
                if part.all_cols:
                    GX[:, cols] = block_GX
                else:
                    GX[:, part.cols[cols]] = block_GX
        X[:, part.cols] = Xp
        return GX

    def solve_on_support(self, X: np.ndarray, columns: np.ndarray) -> bool:
        return solve_on_support(self, X, columns)

    def column_grams(self, columns: np.ndarray) -> np.ndarray:
        """``G_j = sum_i m_ij f_i f_i^T`` of the ``columns`` (b x d x d, a new array)."""
        F = self.F
        d = F.shape[1]
        ks, ls = np.triu_indices(d)
        packed = (F[:, ks] * F[:, ls]).T @ self.mask[:, columns].astype(F.dtype)  # d(d+1)/2 x b
        return np.moveaxis(packed[pair_index(d)].reshape(d, d, columns.size), 2, 0).copy()

    def column_squares(self, X_columns: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``||m_j * (b_j - F x_j)||^2`` (float64) of the ``columns``, exactly."""
        residual = self.part.full[:, columns] - self.F @ X_columns
        residual *= self.mask[:, columns]
        return np.einsum("ij,ij->j", residual, residual, dtype=np.float64)

    def _scaled_grams(self, Fp: np.ndarray, cols: slice, ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``G_j + ridge I`` of the non-zero columns ``cols``, divided by their diagonals with the diagonal set
        to 0 (d x d x b), and the diagonals (d x b)."""
        d, K = Fp.shape
        Mt = self.M_part
        n_pairs = d * (d + 1) // 2
        size = cols.stop - cols.start
        chunks = even_parts(K, _GRAM_BUDGET // n_pairs)
        if len(chunks) == 1:
            packed = pair_products(Fp, np.empty((n_pairs, K), dtype=Fp.dtype)) @ Mt[:, cols]
        else:
            packed = np.zeros((n_pairs, size), dtype=Fp.dtype)
            Z = np.empty((n_pairs, chunks[0].stop), dtype=Fp.dtype)
            for chunk in chunks:
                packed += pair_products(Fp[:, chunk], Z[:, : chunk.stop - chunk.start]) @ Mt[chunk, cols]
        G = packed[pair_index(d)].reshape(d, d, size)
        if self.extra is not None:
            G += self.extra[cols]
        diag = np.arange(d)
        diagonal = np.maximum(G[diag, diag] + ridge, np.finfo(Fp.dtype).tiny)  # (d, b)
        G /= diagonal[:, None, :]
        G[diag, diag] = 0
        return G, diagonal
