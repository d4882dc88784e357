"""NMF update rules, one generator per solver.

A solver takes the data ``A`` (m x n) and the current factors ``W`` (m x d) and ``H`` (d x n), updates the
factors **in place** one iteration at a time, and after each iteration yields the :class:`Products` it
computed on the way, taken at the iterate ``(W, H)`` then held by the two arrays. :func:`nmf_lab.nmf.fit_nmf`
turns those products into the error ``||A - W H||_F`` (and, with a tolerance, the projected gradient)
without ever forming an m x n matrix, and sends the error back into the generator
(``error = yield products``). A solver may use that error (the extrapolated solver restarts on it) or
ignore it; driven by plain ``next()`` it receives ``None``.

Solvers by name (:data:`SOLVERS`):

``"mu"``
    Lee & Seung's multiplicative updates, Algorithm 1 of the spec (:func:`multiplicative_updates`).
``"hals"``
    Hierarchical alternating least squares (Cichocki & Phan 2009): one exact pass over the rows of H,
    then over the columns of W (:func:`hals`).
``"ahals"``
    Accelerated HALS (Gillis & Glineur 2012): several passes over H, then over W, reusing the products of
    the iteration, as long as they pay (:func:`accelerated_hals`).
``"ahals_extrapolated"``
    Accelerated HALS with extrapolation and restarts (Ang & Gillis 2019), the fastest here
    (:func:`extrapolated_hals`). Its error may rise, so it is in :data:`NON_MONOTONE`.

References:
    D. D. Lee, H. S. Seung. Algorithms for non-negative matrix factorization. NIPS 13, 2001.
    A. Cichocki, A.-H. Phan. Fast local algorithms for large scale nonnegative matrix and tensor
    factorizations. IEICE Trans. Fundamentals E92-A(3), 2009.
    N. Gillis, F. Glineur. Accelerated multiplicative updates and hierarchical ALS algorithms for
    nonnegative matrix factorization. Neural Computation 24(4), 2012.
    A. M. S. Ang, N. Gillis. Accelerating nonnegative matrix factorization algorithms using extrapolation.
    Neural Computation 31(2), 2019.

To add a solver, write a generator with the signature of :func:`multiplicative_updates` and register it in
:data:`SOLVERS` (and in :data:`NON_MONOTONE` if its error may rise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Products:
    """The products an iteration leaves behind, all taken at the iterate ``(W, H)`` it yields with.

    ``AHt = A H^T`` (m x d), ``HHt = H H^T`` (d x d), ``WtW = W^T W`` (d x d), ``WtA = W^T A`` (d x n).
    With them::

        ||A - WH||_F^2 = ||A||_F^2 - 2 <AHt, W> + <WtW, HHt>
        grad_W f = W HHt - AHt,   grad_H f = WtW H - WtA        (f = ||A - WH||_F^2 / 2)

    ``WtA`` is the product the next H update needs, so computing it at the end of an iteration rather than
    at the start of the next one costs nothing (one product in the whole run, the last).
    """

    AHt: np.ndarray
    HHt: np.ndarray
    WtW: np.ndarray
    WtA: np.ndarray


Solver = Callable[..., Iterator[Products]]


# --------------------------------------------------------------------------------------------------------
# Multiplicative updates
# --------------------------------------------------------------------------------------------------------


def multiplicative_updates(
    A: np.ndarray, W: np.ndarray, H: np.ndarray, *, delta: float
) -> Iterator[Products]:
    """Lee and Seung's multiplicative updates, Algorithm 1 of the spec (equations 12 and 13).

    Each iteration updates H first, then W with the new H::

        H <- H * (W^T A) / (W^T W H + delta)
        W <- W * (A H^T) / (W H H^T + delta)

    ``W^T W H`` is computed as ``(W^T W) H`` and ``W H H^T`` as ``W (H H^T)``: the same numbers, at the
    cost of two d x d Gram matrices instead of two extra products with m x n matrices. Per iteration the
    work is the two products ``W^T A`` and ``A H^T`` (2mnd flops each) plus O((m + n) d^2); the quotients
    are formed in place in the buffer of the denominator.
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


# --------------------------------------------------------------------------------------------------------
# Hierarchical alternating least squares
# --------------------------------------------------------------------------------------------------------


def component_floor(A: np.ndarray, rank: int) -> float:
    """The floor ``eps0`` that the HALS solvers keep every entry of W and H at or above.

    ``eps0 = eps * sqrt(mean(A) / d)``: the machine epsilon of ``A``'s dtype at the scale of an entry of the
    initial guess (spec 2.4), so the floor scales with the data and its contribution to ``W H`` is at
    rounding level. Entries equal to the floor are the ones "at the bound" for the projected gradient.
    """
    scale = np.sqrt(np.mean(A, dtype=np.float64) / rank)
    return float(A.dtype.type(np.finfo(A.dtype).eps * scale))


def hals_sweep(
    X: np.ndarray, G_off: np.ndarray, C_scaled: np.ndarray, floor: float, work: np.ndarray
) -> None:
    """One pass of exact coordinate minimisation over the rows of ``X`` (d x N), in place.

    For ``min_{X >= floor} ||B - F X||_F^2`` with ``G = F^T F`` (d x d) and ``C = F^T B`` (d x N), the best
    row k with the other rows fixed has the closed form::

        x_k <- max(floor, (c_k - sum_{j != k} g_kj x_j) / g_kk)

    taken for k = 1..d in turn, each with the rows before it already new (Gauss-Seidel). The caller passes
    ``G_off = g_kj / g_kk`` with a zero diagonal and ``C_scaled = c_k / g_kk`` (see :func:`hals_inner`), so
    a row costs one vector-matrix product with X and two passes over N numbers (``work``, a buffer of N).
    For H: ``X = H``, ``F = W`` (``G = W^T W``, ``C = W^T A``). For W: ``X = W^T``, ``F = H^T``
    (``G = H H^T``, ``C = (A H^T)^T``).
    """
    for k in range(X.shape[0]):
        np.dot(G_off[k], X, out=work)
        np.subtract(C_scaled[k], work, out=work)
        np.maximum(work, floor, out=X[k])


def hals_inner(
    X: np.ndarray, G: np.ndarray, C: np.ndarray, floor: float, *, max_sweeps: int, inner_tol: float
) -> int:
    """Up to ``max_sweeps`` :func:`hals_sweep` passes over ``X`` with the same ``G`` and ``C``; returns
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
        hals_sweep(X, G_off, C_scaled, floor, work)
        return 1
    before = np.empty_like(X)
    first_move = 0.0
    for sweep in range(1, max_sweeps + 1):
        np.copyto(before, X)
        hals_sweep(X, G_off, C_scaled, floor, work)
        before -= X
        move = float(np.vdot(before, before))
        if sweep == 1:
            first_move = move
        elif move <= inner_tol**2 * first_move:
            break
    return sweep


BALANCE_LIMIT = 1e4
"""A component is rebalanced when ``||h_k|| / ||w_k||`` leaves ``[1 / BALANCE_LIMIT, BALANCE_LIMIT]``."""


def balancing_scale(WtW: np.ndarray, HHt: np.ndarray) -> np.ndarray | None:
    """``lambda_k = sqrt(||h_k|| / ||w_k||)`` for every k if some component is out of balance, else None.

    Rescaling ``w_k <- lambda_k w_k``, ``h_k <- h_k / lambda_k`` gives both the norm ``sqrt(||w_k|| ||h_k||)``
    and changes neither ``W H`` nor the error. The HALS updates are equivariant under it except through the
    floor, which is negligible only for components of normal scale: a component revived from the floor
    comes back with ``||w_k|| ~ eps0`` and ``||h_k|| ~ 1 / eps0`` and needs it. The norms are the diagonals
    of ``W^T W`` and ``H H^T``, so the check costs nothing.
    """
    ratio = np.sqrt(np.diagonal(HHt) / np.diagonal(WtW))
    if np.all((ratio <= BALANCE_LIMIT) & (ratio >= 1 / BALANCE_LIMIT)):
        return None
    return np.sqrt(ratio)


class NonzeroPart:
    """``A`` without its all-zero rows and columns: the two m x n products and the HALS updates on the rest.

    A zero row i of ``A`` adds nothing to ``W^T A`` and makes row i of ``A H^T`` zero; likewise for zero
    columns. Image data often has many (pixels transparent in every image: 679 of the 1728 rows of the
    CryptoPunks matrix), and leaving them out of the products is exact and cuts their cost in proportion.
    The matching rows of W and columns of H are at the floor, their exact optimum whatever the other factor
    is (in :func:`hals_sweep`, ``c_k = 0`` and ``sum_j g_kj x_j >= 0``), so the updates skip them too.
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
        """:func:`hals_inner` on the columns of H that meet non-zero columns of A, in place."""
        if self.all_cols:
            hals_inner(H, WtW, WtA, floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
        else:
            H_part = H[:, self.cols]
            hals_inner(H_part, WtW, WtA[:, self.cols], floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
            H[:, self.cols] = H_part

    def update_W(self, W, HHt, AHt, floor: float, *, max_sweeps: int, inner_tol: float) -> None:
        """:func:`hals_inner` on the rows of W that meet non-zero rows of A (as rows of ``W^T``), in place."""
        if self.all_rows:
            hals_inner(W.T, HHt, AHt.T, floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
        else:
            W_part_t = np.ascontiguousarray(W[self.rows].T)
            hals_inner(W_part_t, HHt, AHt[self.rows].T, floor, max_sweeps=max_sweeps, inner_tol=inner_tol)
            W[self.rows] = W_part_t.T

    def clamp_W(self, W: np.ndarray, floor: float) -> None:
        """Raise W to the floor and put its rows for zero rows of A at it, in place."""
        np.maximum(W, floor, out=W)
        W[self.zero_rows] = floor

    def clamp_H(self, H: np.ndarray, floor: float) -> None:
        """Raise H to the floor and put its columns for zero columns of A at it, in place."""
        np.maximum(H, floor, out=H)
        H[:, self.zero_cols] = floor


def inner_sweep_budget(part: NonzeroPart, d: int, alpha: float) -> tuple[int, int]:
    """Gillis & Glineur's bound on the passes per update, ``1 + floor(alpha * rho)``, for (H, W).

    ``rho`` is the cost of the products an update needs over the cost of one pass, in flops. With the
    non-zero part of A m' x n' (:class:`NonzeroPart`): for H, ``W^T A`` and ``W^T W`` (2m'n'd + 2md^2)
    against one pass over H (2nd^2), ``rho_H = 1 + (m'n' + md) / (n (d + 1))``; for W symmetrically,
    ``rho_W = 1 + (m'n' + nd) / (m (d + 1))``.
    """
    (m, n), (m_part, n_part) = part.shape, part.A.shape
    rho_H = 1 + (m_part * n_part + m * d) / (n * (d + 1))
    rho_W = 1 + (m_part * n_part + n * d) / (m * (d + 1))
    return 1 + int(alpha * rho_H), 1 + int(alpha * rho_W)


def _start_hals(
    part: NonzeroPart, W: np.ndarray, H: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Prepare the initial guess for HALS, in place; return ``W^T A`` and ``W^T W`` at it.

    Entries below the floor are raised to it, and the rows of W and columns of H for zero rows and columns
    of A are put at it (:class:`NonzeroPart`). Then ``(W, H)`` is rescaled to the best multiple of itself,
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


def _alternating_hals(
    A: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    *,
    sweeps: tuple[int, int] | None,
    alpha: float,
    inner_tol: float,
) -> Iterator[Products]:
    """HALS iterations with up to ``sweeps = (passes over H, passes over W)`` per update, by default
    Gillis & Glineur's budget for ``alpha`` (:func:`inner_sweep_budget`)."""
    part, floor = NonzeroPart(A), component_floor(A, W.shape[1])
    WtA, WtW = _start_hals(part, W, H, floor)
    sweeps_H, sweeps_W = sweeps if sweeps is not None else inner_sweep_budget(part, W.shape[1], alpha)
    while True:
        part.update_H(H, WtW, WtA, floor, max_sweeps=sweeps_H, inner_tol=inner_tol)
        AHt = part.AHt(H)
        HHt = H @ H.T
        part.update_W(W, HHt, AHt, floor, max_sweeps=sweeps_W, inner_tol=inner_tol)
        WtW = W.T @ W
        scale = balancing_scale(WtW, HHt)
        if scale is not None:  # rare: W H and the error stay, the products are taken afresh
            W *= scale
            H /= scale[:, None]
            part.clamp_W(W, floor)
            part.clamp_H(H, floor)
            AHt, HHt, WtW = part.AHt(H), H @ H.T, W.T @ W
        WtA = part.WtA(W)
        yield Products(AHt=AHt, HHt=HHt, WtW=WtW, WtA=WtA)


def hals(A: np.ndarray, W: np.ndarray, H: np.ndarray, *, delta: float = 0.0) -> Iterator[Products]:
    """Hierarchical alternating least squares (Cichocki & Phan 2009), also known as coordinate descent.

    Each iteration minimises ``||A - WH||_F`` exactly over one row of H at a time, then over one column of
    W at a time (:func:`hals_sweep`), with ``eps0`` the floor of :func:`component_floor`::

        h_k <- max(eps0, ((W^T A)_k - sum_{j != k} (W^T W)_kj h_j) / (W^T W)_kk)      k = 1..d
        w_k <- max(eps0, ((A H^T)_k - sum_{j != k} w_j (H H^T)_jk) / (H H^T)_kk)      k = 1..d

    so the error never increases. The work is the same two products as ``mu`` (``W^T A``, ``A H^T``) plus
    O((m + n) d^2); all-zero rows and columns of A are left out of the products (:class:`NonzeroPart`).
    Before the first iteration the initial guess is lifted to the floor and rescaled optimally
    (:func:`_start_hals`). ``delta`` is not used: nothing is divided by a quantity that can vanish.

    Dead components. No entry is ever zero: where the exact update of a row ``h_k`` (or column ``w_k``)
    is <= eps0, it is held at eps0. A component whose ``w_k`` is at the floor everywhere adds only
    rounding to ``W H`` and is not removed; it comes back by itself once it can lower the error. Its next
    update is ``h_k = max(eps0, 1^T R_k / (m eps0))``, ``R_k = A - sum_{j != k} w_j h_j``, so it returns on
    every column that the other components under-fit on the whole (a positive column sum of ``R_k``),
    and the following pass fits ``w_k`` to that residual. It returns with ``||w_k|| ~ eps0`` and
    ``||h_k|| ~ 1 / eps0``, and is then rebalanced (:func:`balancing_scale`) so that the floor stays
    negligible for it. Where every column sum of ``R_k`` is <= 0, it stays at the floor: with exact zeros
    instead of a floor, ``(W^T W)_kk = 0`` would divide by zero and nothing could ever revive it.
    """
    return _alternating_hals(A, W, H, sweeps=(1, 1), alpha=0.0, inner_tol=0.0)


def accelerated_hals(
    A: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    *,
    delta: float = 0.0,
    alpha: float = 0.5,
    inner_tol: float = 0.1,
) -> Iterator[Products]:
    """Accelerated HALS (Gillis & Glineur 2012): :func:`hals` with several passes per update.

    The products ``W^T A`` and ``W^T W`` cost far more than one pass over H (2mnd against 2nd^2 flops), so
    each update repeats the passes of :func:`hals_sweep` on the same products, at most
    ``1 + floor(alpha * rho)`` times (:func:`inner_sweep_budget`), and stops early once a pass moves the
    factor by less than ``inner_tol`` times the first pass did (:func:`hals_inner`). Each pass is exact
    block coordinate descent, so the error still never increases. The defaults are the paper's. ``delta``
    is not used; the floor, the start, zero rows and columns of A and dead components are as in
    :func:`hals`.
    """
    return _alternating_hals(A, W, H, sweeps=None, alpha=alpha, inner_tol=inner_tol)


def extrapolated_hals(
    A: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    *,
    delta: float = 0.0,
    alpha: float = 0.5,
    inner_tol: float = 0.1,
    beta0: float = 0.5,
    eta: float = 1.5,
    gamma: float = 1.01,
    gamma_bar: float = 1.005,
) -> Iterator[Products]:
    """Accelerated HALS with extrapolation and restarts (Ang & Gillis 2019, "E-A-HALS").

    Beside the accepted iterates ``(W_k, H_k)`` the method keeps extrapolated points ``(Wy, Hy)``, the
    starting points of the next updates. With ``U(X0; G, C)`` the :func:`hals_inner` passes of
    :func:`accelerated_hals` started at ``X0``, one iteration is::

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

    Its error curve is not monotone (a rise is what triggers a restart): :func:`nmf_lab.nmf.fit_nmf`
    returns the best reported iterate. The error that decides a restart is the one ``fit_nmf`` sends back
    (exact even near zero); with plain ``next()`` the solver uses the cheap product formula instead.
    The defaults are the papers' (alpha 0.5, inner_tol 0.1; beta0 0.5, eta 1.5, gamma 1.01, gamma_bar
    1.005 for A-HALS); on the CryptoPunks matrix others did no better. When a component needs rebalancing
    (:func:`balancing_scale`) every point, accepted, new and extrapolated, gets the same rescaling, which
    keeps the extrapolation exact. ``delta`` is not used; the floor, the start, zero rows and columns of A
    and dead components are as in :func:`hals`.
    """
    norm2 = None  # ||A||_F^2, only needed when no error is sent back
    part, floor = NonzeroPart(A), component_floor(A, W.shape[1])
    WtA, WtW = _start_hals(part, W, H, floor)
    sweeps_H, sweeps_W = inner_sweep_budget(part, W.shape[1], alpha)

    W_acc, H_acc, WtA_acc = W.copy(), H.copy(), WtA  # the accepted iterate (W_k, H_k) and W_k^T A
    WyA, WyWy = WtA, WtW  # Wy^T A and Wy^T Wy; W and H themselves hold Wy and Hy between iterations
    H_new = np.empty_like(H)
    beta, beta_prev, beta_cap = beta0, beta0, 1.0
    previous_error = np.inf

    while True:
        part.update_H(H, WyWy, WyA, floor, max_sweeps=sweeps_H, inner_tol=inner_tol)
        np.copyto(H_new, H)
        H -= H_acc  # H <- Hy = max(eps0, H_new + beta (H_new - H_k)), in place
        H *= beta
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

        scale = balancing_scale(WtW, HHt)
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
            beta_cap, beta_prev, beta = beta_prev, beta, beta / eta
        else:  # accept (W_new, H_new); W <- Wy, while H already holds Hy
            move = W - W_acc
            np.copyto(W_acc, W)
            W += beta * move
            WyA = WtA - WtA_acc  # Wy^T A = W_new^T A + beta (W_new^T A - W_k^T A)
            WyA *= beta
            WyA += WtA
            WyWy = W.T @ W
            WtA_acc = WtA
            H_acc, H_new = H_new, H_acc
            beta_prev, beta = beta, min(beta_cap, gamma * beta)
            beta_cap = min(1.0, gamma_bar * beta_cap)
        previous_error = error


def _inner(X: np.ndarray, Y: np.ndarray) -> float:
    """The Frobenius inner product ``<X, Y>`` accumulated in float64."""
    return float(np.vdot(X.astype(np.float64, copy=False), Y.astype(np.float64, copy=False)))


SOLVERS: dict[str, Solver] = {
    "mu": multiplicative_updates,
    "hals": hals,
    "ahals": accelerated_hals,
    "ahals_extrapolated": extrapolated_hals,
}
"""Solvers by the name ``fit_nmf(..., solver=name)`` knows them by."""

NON_MONOTONE: frozenset[str] = frozenset({"ahals_extrapolated"})
"""Solvers whose error may rise from one iteration to the next; ``fit_nmf`` returns their best iterate."""
