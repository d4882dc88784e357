"""Initial factors for :func:`nmf_lab.core.nmf.fit_nmf`: the random guess of the spec and NNDSVD.

Shapes follow the spec: ``A`` is m x n with one sample (image) per column, ``A ~ W H`` with ``W`` m x d and
``H`` d x n. scikit-learn's ``X`` is n_samples x n_features, so our ``A`` is its ``X.T``, and its factors
are ours transposed: ``W_sklearn = H.T``, ``H_sklearn = W.T``. NNDSVD is symmetric in the two factors, so
the variants below give exactly scikit-learn's numbers up to that transposition (and its randomized SVD).

``init`` names (:data:`INITS`):

``"random"``
    The spec's contract (:func:`random_init`): ``rng = np.random.default_rng(seed)``,
    ``W0 = rng.uniform(0, 1, size=(m, d))``, then ``H0 = rng.uniform(0, 1, size=(d, n))``, both times
    ``sqrt(mean(A) / d)``. Any rank.
``"nndsvd"``
    Nonnegative double SVD (Boutsidis & Gallopoulos 2008) from the exact thin SVD of ``A``; entries below
    :data:`NNDSVD_EPS` are set to zero (sparse factors). Deterministic. Needs ``d <= min(m, n)``.
``"nndsvda"``
    ``"nndsvd"`` with its zeros replaced by ``mean(A)``. Deterministic.
``"nndsvdar"``
    ``"nndsvd"`` with its zeros replaced by ``|mean(A) * z / 100|``, ``z`` standard normal from
    ``np.random.default_rng(seed)`` (W's zeros first, then H's, each in C order).

Reference:
    C. Boutsidis, E. Gallopoulos. SVD based initialization: A head start for nonnegative matrix
    factorization. Pattern Recognition 41(4), 1350-1362, 2008.
"""

from __future__ import annotations

import numpy as np

from nmf_lab.core.validation import check_data, check_int, check_mask

__all__ = ["INITS", "NNDSVD_EPS", "initial_factors", "random_init"]

INITS = ("random", "nndsvd", "nndsvda", "nndsvdar")
"""The names :func:`initial_factors` (and ``fit_nmf(..., init=name)``) accept."""

NNDSVD_EPS = 1e-6
"""NNDSVD entries below this are set to zero, scikit-learn's ``eps`` (an absolute threshold, as there)."""


def initial_factors(
    A: np.ndarray, rank: int, init: str = "random", seed: int = 0, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The initial ``(W0, H0)`` (m x d, d x n) of the method ``init``, in the dtype of the factors of ``A``.

    Args:
        A: m x n, non-negative and finite on its observed entries; checked as :func:`nmf_lab.fit_nmf` checks
            it (:func:`nmf_lab.core.validation.check_data`: a ValueError names NaN, negative entries, a wrong shape).
        rank: d, a positive integer; at most ``min(m, n)`` for the NNDSVD variants.
        init: one of :data:`INITS`.
        seed: an integer >= 0, used by ``"random"`` and ``"nndsvdar"``, ignored by the others.
        mask: None, or a boolean m x n array, True where ``A`` is observed. ``"random"`` then scales by the
            mean of the observed entries (no mask or an all-True mask: bit for bit the unmasked contract);
            the NNDSVD variants take the SVD of ``A`` with its unobserved entries set to the mean of the
            observed ones, and that mean is the fill of ``"nndsvda"``/``"nndsvdar"``.

    Raises:
        ValueError: for an invalid ``A`` or ``mask``, an unknown ``init`` (listing :data:`INITS`), an invalid
            ``rank`` or ``seed``, or a rank above ``min(m, n)`` with an NNDSVD variant.
    """

    if not isinstance(init, str) or init not in INITS:
        raise ValueError(f"unknown init {init!r}; known inits: {', '.join(INITS)} (or a pair (W0, H0))")
    rank = check_int("rank", rank, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    A = check_data(A, mask)  # A is public input here too: the same checks as fit_nmf
    mask = check_mask(mask, A.shape)
    if mask is not None and mask.all():
        mask = None
    if init == "random":
        return _random_init(A, rank, seed, mask)
    return _nndsvd(A, rank, variant=init, seed=seed, mask=mask)


def random_init(A: np.ndarray, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The random initial guess of Algorithm 1, in the dtype of the factors of ``A``.

    ``rng = np.random.default_rng(seed)``; ``W0 = rng.uniform(0, 1, size=(m, d))``, then
    ``H0 = rng.uniform(0, 1, size=(d, n))``; both are multiplied by ``sqrt(mean(A) / d)`` so that ``W0 H0``
    has the scale of ``A``.
    """

    A = check_data(A)
    return _random_init(A, check_int("rank", rank, minimum=1), check_int("seed", seed, minimum=0))


def _random_init(A: np.ndarray, rank: int, seed: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`random_init` of a validated ``A``; with a ``mask`` (not all True) the mean is over its True entries."""
    m, n = A.shape
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.0, 1.0, size=(m, rank))
    H = rng.uniform(0.0, 1.0, size=(rank, n))
    mean = _mean(A, mask)
    scale = np.sqrt(mean / rank)
    return (W * scale).astype(A.dtype, copy=False), (H * scale).astype(A.dtype, copy=False)


def _mean(A: np.ndarray, mask: np.ndarray | None) -> np.float64:
    """The mean of ``A`` (of its observed entries with a mask), accumulated in float64."""
    if mask is None:
        return np.mean(A, dtype=np.float64)
    return np.mean(A, dtype=np.float64, where=mask)


def _nndsvd(
    A: np.ndarray, rank: int, *, variant: str = "nndsvd", seed: int = 0, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVD (Boutsidis & Gallopoulos 2008) of a validated m x n ``A``: ``(W0, H0)``, m x d and d x n.

    With the exact thin SVD ``A = U diag(s) V^T`` (``np.linalg.svd(A, full_matrices=False)``, in float64):
    ``w_1 = sqrt(s_1) |u_1|``, ``h_1 = sqrt(s_1) |v_1|``; for j = 2..d, with ``x = u_j``, ``y = v_j``, their
    positive parts ``x+, y+`` and the magnitudes of their negative parts ``x-, y-``: if
    ``||x+|| ||y+|| > ||x-|| ||y-||`` then ``(p, q, sigma) = (x+, y+, ||x+|| ||y+||)``, else
    ``(x-, y-, ||x-|| ||y-||)``; ``w_j = sqrt(s_j sigma) p / ||p||``, ``h_j = sqrt(s_j sigma) q / ||q||``
    (zero when sigma is 0, where scikit-learn would divide by zero). Entries below :data:`NNDSVD_EPS` are
    set to 0 and then, by ``variant``: ``"nndsvd"`` keeps the zeros, ``"nndsvda"`` sets them to
    ``mean(A)``, ``"nndsvdar"`` to ``|mean(A) z / 100|`` with ``z`` standard normal drawn from
    ``np.random.default_rng(seed)``, first for W's zeros, then for H's, each in C order. With a ``mask``
    the SVD is of ``A`` with its unobserved entries set to the mean of the observed ones, and ``mean(A)``
    is that mean. The factors are returned in ``A``'s dtype.

    Raises:
        ValueError: if ``rank > min(m, n)`` (there are only min(m, n) singular triplets).
    """
    m, n = A.shape
    if rank > min(m, n):
        raise ValueError(
            f"init={variant!r} needs rank <= min(m, n) = {min(m, n)} for A of shape {A.shape}, got rank {rank}: "
            f"there are only {min(m, n)} singular vectors; init='random' allows any rank"
        )
    if variant not in INITS[1:]:
        raise ValueError(f"unknown NNDSVD variant {variant!r}; known: {', '.join(INITS[1:])}")
    mean = float(_mean(A, mask))
    X = A.astype(np.float64, copy=True) if mask is not None else A.astype(np.float64, copy=False)
    if mask is not None:
        X[~mask] = mean
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    W = np.zeros((m, rank))
    H = np.zeros((rank, n))
    W[:, 0] = np.sqrt(s[0]) * np.abs(U[:, 0])
    H[0] = np.sqrt(s[0]) * np.abs(Vt[0])
    for j in range(1, rank):
        x, y = U[:, j], Vt[j]
        x_p, y_p = np.maximum(x, 0), np.maximum(y, 0)
        x_n, y_n = np.abs(np.minimum(x, 0)), np.abs(np.minimum(y, 0))
        x_p_norm, y_p_norm = np.linalg.norm(x_p), np.linalg.norm(y_p)
        x_n_norm, y_n_norm = np.linalg.norm(x_n), np.linalg.norm(y_n)
        m_p, m_n = x_p_norm * y_p_norm, x_n_norm * y_n_norm
        if m_p > m_n:
            p, q, p_norm, q_norm, sigma = x_p, y_p, x_p_norm, y_p_norm, m_p
        else:
            p, q, p_norm, q_norm, sigma = x_n, y_n, x_n_norm, y_n_norm, m_n
        if sigma > 0:  # sigma = 0 only for a zero singular value: leave the component at zero
            scale = np.sqrt(s[j] * sigma)
            W[:, j] = scale * (p / p_norm)
            H[j] = scale * (q / q_norm)
    W[W < NNDSVD_EPS] = 0
    H[H < NNDSVD_EPS] = 0
    if variant == "nndsvda":
        W[W == 0] = mean
        H[H == 0] = mean
    elif variant == "nndsvdar":
        rng = np.random.default_rng(seed)
        W_zero, H_zero = W == 0, H == 0
        W[W_zero] = np.abs(mean * rng.standard_normal(int(W_zero.sum())) / 100)
        H[H_zero] = np.abs(mean * rng.standard_normal(int(H_zero.sum())) / 100)
    return W.astype(A.dtype, copy=False), H.astype(A.dtype, copy=False)
