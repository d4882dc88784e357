"""Initial factors (nmf_lab.core.inits): the random contract, and NNDSVD against the paper and scikit-learn."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.linalg

from nmf_lab.core import inits
from nmf_lab.core.inits import INITS, NNDSVD_EPS, initial_factors, random_init

SVD_INITS = ("nndsvd", "nndsvda", "nndsvdar")


def random_nonnegative(shape, seed):
    return np.random.default_rng(seed).uniform(0, 1, size=shape)


def paper_nndsvd(A, rank):
    """NNDSVD as Boutsidis & Gallopoulos (2008, Table 1) print it, with scikit-learn's truncation of entries
    below 1e-6 to zero; the SVD from LAPACK's gesvd (numpy uses gesdd), loops where the paper has them."""
    U, s, Vt = scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesvd")
    m, n = A.shape
    W, H = np.zeros((m, rank)), np.zeros((rank, n))
    W[:, 0] = np.sqrt(s[0]) * np.abs(U[:, 0])
    H[0, :] = np.sqrt(s[0]) * np.abs(Vt[0, :])
    for j in range(1, rank):
        x, y = U[:, j], Vt[j, :]
        xp = np.array([max(v, 0.0) for v in x])
        yp = np.array([max(v, 0.0) for v in y])
        xn = np.array([max(-v, 0.0) for v in x])
        yn = np.array([max(-v, 0.0) for v in y])
        mp = np.sqrt(sum(xp**2)) * np.sqrt(sum(yp**2))
        mn = np.sqrt(sum(xn**2)) * np.sqrt(sum(yn**2))
        if mp > mn:
            u, v, sigma = xp / np.sqrt(sum(xp**2)), yp / np.sqrt(sum(yp**2)), mp
        else:
            u, v, sigma = xn / np.sqrt(sum(xn**2)), yn / np.sqrt(sum(yn**2)), mn
        W[:, j] = np.sqrt(s[j] * sigma) * u
        H[j, :] = np.sqrt(s[j] * sigma) * v
    for X in (W, H):
        for index in np.ndindex(X.shape):
            if X[index] < 1e-6:
                X[index] = 0.0
    return W, H


def relative(X, Y):
    return np.linalg.norm(X - Y) / np.linalg.norm(Y)


# ----------------------------------------------------------------------------------------------------------
# "random": the spec's contract
# ----------------------------------------------------------------------------------------------------------


def test_random_is_the_spec_contract_bit_for_bit():
    A = random_nonnegative((9, 13), seed=0)
    rng = np.random.default_rng(7)
    W_expected = rng.uniform(0, 1, size=(9, 4)) * np.sqrt(np.mean(A, dtype=np.float64) / 4)
    H_expected = rng.uniform(0, 1, size=(4, 13)) * np.sqrt(np.mean(A, dtype=np.float64) / 4)
    for W0, H0 in (
        initial_factors(A, 4, "random", seed=7),
        initial_factors(A, 4, seed=7),  # the default
        initial_factors(A, 4, "random", seed=7, mask=np.ones(A.shape, dtype=bool)),
        random_init(A, 4, 7),
    ):
        np.testing.assert_array_equal(W0, W_expected)
        np.testing.assert_array_equal(H0, H_expected)


def test_random_keeps_float32():
    A = random_nonnegative((6, 5), seed=1).astype(np.float32)
    W0, H0 = initial_factors(A, 3, "random", seed=2)
    assert W0.dtype == H0.dtype == np.float32
    rng = np.random.default_rng(2)
    scale = np.sqrt(np.mean(A, dtype=np.float64) / 3)
    np.testing.assert_array_equal(W0, (rng.uniform(0, 1, size=(6, 3)) * scale).astype(np.float32))


def test_random_with_a_mask_scales_by_the_mean_of_the_observed_entries():
    A = random_nonnegative((8, 10), seed=3)
    mask = random_nonnegative((8, 10), seed=4) < 0.6
    mask[:, 0] = mask[0, :] = True  # every row and column observed somewhere
    A[~mask] = 0.0  # as fit_nmf passes it: unobserved entries are 0
    observed_mean = sum(A[i, j] for i in range(8) for j in range(10) if mask[i, j]) / mask.sum()
    assert observed_mean > 1.2 * A.mean()  # the zeros would pull a plain mean down
    W0, H0 = initial_factors(A, 3, "random", seed=5, mask=mask)
    rng = np.random.default_rng(5)
    np.testing.assert_allclose(W0, rng.uniform(0, 1, size=(8, 3)) * np.sqrt(observed_mean / 3), rtol=1e-14)
    np.testing.assert_allclose(H0, rng.uniform(0, 1, size=(3, 10)) * np.sqrt(observed_mean / 3), rtol=1e-14)


def test_random_allows_any_rank():
    A = random_nonnegative((3, 4), seed=0)
    W0, H0 = initial_factors(A, 10, "random")
    assert W0.shape == (3, 10) and H0.shape == (10, 4)


# ----------------------------------------------------------------------------------------------------------
# NNDSVD against the paper
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, rank", [((30, 20), 5), ((12, 40), 12), ((25, 25), 1), ((50, 8), 8)])
def test_nndsvd_equals_the_paper(shape, rank):
    A = random_nonnegative(shape, seed=sum(shape) + rank)
    W_ref, H_ref = paper_nndsvd(A, rank)
    W0, H0 = initial_factors(A, rank, "nndsvd")
    np.testing.assert_allclose(W0, W_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(H0, H_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(W0 == 0, W_ref == 0)  # nndsvd keeps its zeros (sparse factors)
    np.testing.assert_array_equal(H0 == 0, H_ref == 0)
    assert rank == 1 or (W0 == 0).any()


@pytest.mark.parametrize("shape, rank", [((30, 20), 5), ((12, 40), 12)])
def test_nndsvda_fills_the_zeros_with_the_mean(shape, rank):
    A = random_nonnegative(shape, seed=11)
    W_ref, H_ref = paper_nndsvd(A, rank)
    W0, H0 = initial_factors(A, rank, "nndsvda")
    for X, X_ref in ((W0, W_ref), (H0, H_ref)):
        zero = X_ref == 0
        assert zero.any()
        np.testing.assert_allclose(X[zero], A.mean(), rtol=1e-14)
        np.testing.assert_allclose(X[~zero], X_ref[~zero], rtol=1e-10, atol=1e-12)


def test_nndsvdar_fills_the_zeros_with_small_seeded_noise():
    A = random_nonnegative((60, 50), seed=12)
    rank = 20
    W_ref, H_ref = paper_nndsvd(A, rank)
    W0, H0 = initial_factors(A, rank, "nndsvdar", seed=3)
    fills = []
    for X, X_ref in ((W0, W_ref), (H0, H_ref)):
        zero = X_ref == 0
        np.testing.assert_allclose(X[~zero], X_ref[~zero], rtol=1e-10, atol=1e-12)
        assert (X[zero] > 0).all()
        fills.append(X[zero])
    # the documented draw: |mean(A) z / 100|, z ~ N(0, 1) from default_rng(seed), W's zeros first, C order
    rng = np.random.default_rng(3)
    for fill in fills:
        np.testing.assert_allclose(fill, np.abs(A.mean() * rng.standard_normal(fill.size) / 100), rtol=1e-14)
    # and its statistics: E|z| = sqrt(2 / pi), every fill far below the entries of the SVD part
    every = np.concatenate(fills)
    assert every.size > 200
    assert abs(every.mean() / (A.mean() / 100 * np.sqrt(2 / np.pi)) - 1) < 0.15
    assert every.max() < 0.06 * A.mean()


def test_deterministic_variants_ignore_the_seed_and_nndsvdar_uses_it():
    A = random_nonnegative((20, 15), seed=5)
    for init in ("nndsvd", "nndsvda"):
        first, other = initial_factors(A, 6, init, seed=0), initial_factors(A, 6, init, seed=123)
        np.testing.assert_array_equal(first[0], other[0])
        np.testing.assert_array_equal(first[1], other[1])
    same = initial_factors(A, 6, "nndsvdar", seed=4), initial_factors(A, 6, "nndsvdar", seed=4)
    np.testing.assert_array_equal(same[0][0], same[1][0])
    np.testing.assert_array_equal(same[0][1], same[1][1])
    other = initial_factors(A, 6, "nndsvdar", seed=5)
    assert not np.array_equal(same[0][1], other[1])
    deterministic = initial_factors(A, 6, "nndsvd")
    nonzero = deterministic[1] > 0
    np.testing.assert_array_equal(other[1][nonzero], deterministic[1][nonzero])  # only the fill moves


@pytest.mark.parametrize("init", INITS)
def test_factors_are_non_negative_finite_and_of_the_right_shape(init):
    A = random_nonnegative((17, 23), seed=8)
    W0, H0 = initial_factors(A, 7, init, seed=1)
    assert W0.shape == (17, 7) and H0.shape == (7, 23)
    for X in (W0, H0):
        assert np.isfinite(X).all() and (X >= 0).all()
    if init != "nndsvd":
        assert (W0 > 0).all() and (H0 > 0).all()


def test_orientation_transposing_a_swaps_and_transposes_the_factors():
    A = random_nonnegative((30, 18), seed=21)
    W0, H0 = initial_factors(A, 6, "nndsvd")
    W_t, H_t = initial_factors(A.T, 6, "nndsvd")
    np.testing.assert_allclose(W_t, H0.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(H_t, W0.T, rtol=1e-10, atol=1e-12)


def test_the_first_component_is_the_leading_singular_pair():
    A = random_nonnegative((30, 18), seed=22)
    U, s, Vt = np.linalg.svd(A)
    W0, H0 = initial_factors(A, 4, "nndsvd")
    np.testing.assert_allclose(np.outer(W0[:, 0], H0[0]), s[0] * np.outer(np.abs(U[:, 0]), np.abs(Vt[0])), rtol=1e-12)


def test_float32_data_gives_float32_factors_close_to_float64():
    A = random_nonnegative((40, 30), seed=9)
    W64, H64 = initial_factors(A, 5, "nndsvda")
    W32, H32 = initial_factors(A.astype(np.float32), 5, "nndsvda")
    assert W32.dtype == H32.dtype == np.float32
    assert relative(W32, W64) < 1e-5 and relative(H32, H64) < 1e-5


def test_a_rank_deficient_matrix_gives_finite_factors():
    rng = np.random.default_rng(0)
    A = rng.uniform(0, 1, (20, 2)) @ rng.uniform(0, 1, (2, 15))  # rank 2
    for init in SVD_INITS:
        W0, H0 = initial_factors(A, 6, init)
        assert np.isfinite(W0).all() and np.isfinite(H0).all()
        np.testing.assert_allclose(W0[:, :1] @ H0[:1], paper_nndsvd(A, 1)[0] @ paper_nndsvd(A, 1)[1], rtol=1e-9)


def test_nndsvd_with_a_mask_is_nndsvd_of_the_matrix_filled_with_the_observed_mean():
    A = random_nonnegative((25, 20), seed=31)
    mask = random_nonnegative((25, 20), seed=32) < 0.7
    mask[:, 0] = mask[0, :] = True
    A[~mask] = 0.0
    observed_mean = A[mask].mean()
    filled = np.where(mask, A, observed_mean)
    for init in ("nndsvd", "nndsvda"):
        W0, H0 = initial_factors(A, 5, init, mask=mask)
        W_ref, H_ref = initial_factors(filled, 5, init)
        np.testing.assert_allclose(W0, W_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(H0, H_ref, rtol=1e-10, atol=1e-12)
    W0, _ = initial_factors(A, 5, "nndsvda", mask=mask)
    np.testing.assert_allclose(W0[paper_nndsvd(filled, 5)[0] == 0], observed_mean, rtol=1e-13)


# ----------------------------------------------------------------------------------------------------------
# Against scikit-learn (X = A.T, W_sklearn = H.T, H_sklearn = W.T)
# ----------------------------------------------------------------------------------------------------------


def low_rank_plus_noise(shape, rank, noise, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (shape[0], rank)) @ rng.uniform(0, 1, (rank, shape[1])) + noise * rng.uniform(0, 1, shape)


def digits_matrix():
    from sklearn.datasets import load_digits

    return load_digits().data.T / 16.0  # 64 pixels x 1797 images, one image per column


@pytest.mark.parametrize("init", ["nndsvd", "nndsvda"])
@pytest.mark.parametrize(
    "make, rank",
    [
        (lambda: low_rank_plus_noise((40, 30), 6, 0.01, seed=1), 6),
        (lambda: low_rank_plus_noise((25, 60), 10, 0.05, seed=2), 10),
        (digits_matrix, 5),
    ],
    ids=["low-rank-40x30", "low-rank-25x60", "digits"],
)
def test_matches_scikit_learn_with_its_randomized_svd(init, make, rank):
    """scikit-learn computes NNDSVD from a randomized SVD: on matrices whose spectrum decays (real images,
    low rank plus noise) its factors agree with ours to 1e-4. (On a flat spectrum, e.g. uniform noise, its
    trailing singular vectors are off by ~1e-3, and nndsvda then differs by more where an entry crosses the
    1e-6 truncation: the exact-SVD test below covers that case.)"""
    from sklearn.decomposition._nmf import _initialize_nmf

    A = make()
    W0, H0 = initial_factors(A, rank, init)
    W_sk, H_sk = _initialize_nmf(A.T, rank, init=init, random_state=0)
    assert W_sk.shape == H0.T.shape and H_sk.shape == W0.T.shape
    assert relative(W0, H_sk.T) < 1e-4
    assert relative(H0, W_sk.T) < 1e-4


@pytest.mark.parametrize("init", ["nndsvd", "nndsvda"])
def test_matches_scikit_learn_exactly_with_an_exact_svd(init, monkeypatch):
    import sklearn.decomposition._nmf as sk_nmf

    def exact_svd(M, n_components, **_):
        U, s, Vt = np.linalg.svd(M, full_matrices=False)
        return U[:, :n_components], s[:n_components], Vt[:n_components]

    monkeypatch.setattr(sk_nmf, "_randomized_svd", exact_svd)
    A = random_nonnegative((40, 30), seed=2)  # a flat spectrum, where the randomized SVD is off by ~1e-3
    W0, H0 = initial_factors(A, 12, init)
    W_sk, H_sk = sk_nmf._initialize_nmf(A.T, 12, init=init, random_state=0)
    np.testing.assert_allclose(W0, H_sk.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(H0, W_sk.T, rtol=1e-10, atol=1e-12)


def test_scikit_learn_eps_is_ours():
    import inspect

    from sklearn.decomposition._nmf import _initialize_nmf

    assert inspect.signature(_initialize_nmf).parameters["eps"].default == NNDSVD_EPS


# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", SVD_INITS)
def test_a_rank_above_min_m_n_is_an_error_with_an_svd_init(init):
    A = random_nonnegative((6, 4), seed=0)
    with pytest.raises(ValueError, match=r"rank <= min\(m, n\) = 4.*\(6, 4\).*got rank 5.*init='random'") as info:
        initial_factors(A, 5, init)
    assert init in str(info.value)
    initial_factors(A, 4, init)  # the largest rank allowed


@pytest.mark.parametrize("init", ["svd", "NNDSVD", "", None, 3])
def test_an_unknown_init_is_an_error_listing_the_known_ones(init):
    with pytest.raises(ValueError, match=re.escape("random, nndsvd, nndsvda, nndsvdar")):
        initial_factors(random_nonnegative((4, 4), seed=0), 2, init)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_an_invalid_seed_is_an_error(seed):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        initial_factors(random_nonnegative((4, 4), seed=0), 2, "nndsvdar", seed=seed)


@pytest.mark.parametrize("rank", [0, -2, 2.0])
def test_an_invalid_rank_is_an_error(rank):
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        initial_factors(random_nonnegative((4, 4), seed=0), rank, "nndsvd")


def test_a_mask_of_the_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="mask must have the shape of A"):
        initial_factors(random_nonnegative((4, 5), seed=0), 2, "random", mask=np.ones((5, 4), dtype=bool))


def test_the_module_exports():
    assert INITS == ("random", "nndsvd", "nndsvda", "nndsvdar")
    assert set(inits.__all__) >= {"INITS", "initial_factors", "random_init"}


@pytest.mark.parametrize(
    "A, message",
    [
        (np.array([[1.0, 2.0], [3.0, -1.0]]), "A has 1 negative entries"),
        (np.array([[1.0, np.nan], [3.0, 1.0]]), "A has 1 NaN and 0 infinite entries"),
        (np.ones(4), "A must be a 2-D matrix"),
    ],
)
def test_initial_factors_checks_a_as_fit_nmf_does(A, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        initial_factors(A, 1, "nndsvd")


def test_initial_factors_of_an_integer_matrix_are_floats():
    W, H = initial_factors(np.array([[1, 2], [3, 4]]), 1)
    assert W.dtype == H.dtype == np.float64 and W.min() > 0 and H.min() > 0
