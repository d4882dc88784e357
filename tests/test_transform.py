"""Projection onto a fixed basis (nmf_lab.core.transform): NNLS column by column, against scipy.optimize.nnls."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.optimize import nnls

from nmf_lab import fit_nmf
from nmf_lab.core.nmf import NMFResult
from nmf_lab.core.solvers import solver_names
from nmf_lab.core.transform import TRANSFORM_SOLVERS, transform

BUILT_IN_SOLVERS = ("mu", "hals", "ahals", "ahals_extrapolated")


def problem(m, d, n, seed, *, sparse_fit=True):
    """A random non-negative basis and data that the basis does not fit exactly, so that the NNLS solutions
    have zeros (some columns of A lie outside the cone of W)."""
    rng = np.random.default_rng(seed)
    W = rng.uniform(0, 1, (m, d))
    if sparse_fit:
        H_true = rng.uniform(0, 1, (d, n)) * (rng.uniform(0, 1, (d, n)) < 0.5)
        A = W @ H_true + 0.3 * rng.uniform(0, 1, (m, n))
    else:
        A = rng.uniform(0, 1, (m, n))
    return A, W


def nnls_columns(A, W, mask=None):
    """scipy's NNLS of every column (on the observed rows of the column with a mask): H and the residuals."""
    H, residuals = np.zeros((W.shape[1], A.shape[1])), np.zeros(A.shape[1])
    for j in range(A.shape[1]):
        rows = slice(None) if mask is None else mask[:, j]
        H[:, j], residuals[j] = nnls(W[rows], A[rows, j], maxiter=100 * W.shape[1])
    return H, residuals


def column_residuals(A, W, H, mask=None):
    R = A - W @ H
    if mask is not None:
        R = np.where(mask, R, 0.0)
    return np.linalg.norm(R, axis=0)


def assert_objective_matches_nnls(A, W, H, mask=None, rtol=1e-6):
    """Column by column, our residual is within ``rtol`` (relative) of scipy's optimal one (of the norm of
    the column where the optimum is ~0, an exact fit)."""
    _, optimal = nnls_columns(A, W, mask)
    ours = column_residuals(A, W, H, mask)
    norms = np.linalg.norm(np.where(mask, A, 0) if mask is not None else A, axis=0)
    scale = np.where(optimal >= 1e-6 * norms, optimal, norms)
    excess = (ours - optimal) / scale
    assert excess.max() <= rtol, f"worst column {excess.argmax()}: relative excess {excess.max():.3g}"
    assert excess.min() >= -1e-9  # nothing beats the optimum


def projected_gradient_norms(A, W, H, mask=None):
    """Per column, ``||grad^P f_j(h_j)||`` of ``f_j = ||m_j ∘ (a_j - W h_j)||^2 / 2``, written out."""
    M = np.ones(A.shape) if mask is None else mask.astype(float)
    gradient = W.T @ (M * (W @ H - A))
    gradient[(H <= 0) & (gradient >= 0)] = 0
    return np.linalg.norm(gradient, axis=0)


# ----------------------------------------------------------------------------------------------------------
# Agreement with scipy.optimize.nnls
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "m, d, n, seed", [(20, 5, 30, 0), (30, 8, 25, 1), (12, 12, 20, 2), (50, 3, 40, 3), (40, 20, 10, 5)]
)
def test_hals_agrees_with_nnls_column_by_column(m, d, n, seed):
    A, W = problem(m, d, n, seed)
    result = transform(A, W)
    assert result.stop_reason == "tol"
    assert_objective_matches_nnls(A, W, result.H, rtol=1e-6)
    H_ref, _ = nnls_columns(A, W)  # full column rank: a unique solution, the same coefficients and zeros
    assert (H_ref == 0).any()
    np.testing.assert_allclose(result.H, H_ref, atol=1e-6 * np.abs(H_ref).max())
    np.testing.assert_array_equal(result.H == 0, H_ref == 0)  # HALS and the subspace steps reach exact zeros


def test_hals_agrees_with_nnls_for_an_ill_conditioned_basis():
    """Nearly parallel basis vectors (cond(W^T W) ~ 1e5): coordinate descent alone crawls (13% above the
    optimum after 2000 passes); the subspace steps reach the NNLS solution."""
    rng = np.random.default_rng(20)
    W = rng.uniform(0, 1, (40, 1)) + 0.02 * rng.uniform(0, 1, (40, 5))
    A = W @ (rng.uniform(0, 1, (5, 30)) * (rng.uniform(0, 1, (5, 30)) < 0.6)) + 0.05 * rng.uniform(0, 1, (40, 30))
    assert np.linalg.cond(W.T @ W) > 1e5
    result = transform(A, W)
    assert result.stop_reason == "tol" and result.n_iter < 200
    assert_objective_matches_nnls(A, W, result.H, rtol=1e-9)


def test_hals_agrees_with_nnls_for_an_ill_conditioned_basis_under_a_mask():
    rng = np.random.default_rng(20)
    W = rng.uniform(0, 1, (40, 1)) + 0.02 * rng.uniform(0, 1, (40, 5))
    A = W @ (rng.uniform(0, 1, (5, 30)) * (rng.uniform(0, 1, (5, 30)) < 0.6)) + 0.05 * rng.uniform(0, 1, (40, 30))
    mask = random_mask(A.shape, 0.7, 3)
    result = transform(A, W, mask=mask)
    assert result.stop_reason == "tol" and result.n_iter < 200
    assert_objective_matches_nnls(A, W, result.H, mask=mask, rtol=1e-9)


def test_duplicate_basis_vectors():
    """A repeated column of W makes some G_FF exactly singular (those subspace solves are rejected); the
    objective still reaches the optimum."""
    A, W = problem(30, 5, 40, seed=3)
    W = np.hstack([W, W[:, :2]])
    result = transform(A, W)
    assert result.stop_reason == "tol"
    assert np.isfinite(result.H).all()
    assert_objective_matches_nnls(A, W, result.H, rtol=1e-6)


def test_hals_approaches_nnls_for_a_rank_deficient_basis():
    """More basis vectors than rows (d > m): the solution is not unique, the subspace steps do not apply,
    and coordinate descent needs many passes; the objective still reaches the optimum."""
    A, W = problem(6, 9, 15, seed=4)
    result = transform(A, W, max_iter=20_000)
    assert result.stop_reason == "tol"
    assert_objective_matches_nnls(A, W, result.H, rtol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_hals_agrees_with_nnls_on_data_without_structure(seed):
    A, W = problem(25, 7, 40, seed, sparse_fit=False)
    result = transform(A, W)
    assert (nnls_columns(A, W)[0] == 0).mean() > 0.1  # plenty of active constraints
    assert_objective_matches_nnls(A, W, result.H, rtol=1e-6)


def test_mu_agrees_with_nnls_given_enough_iterations():
    A, W = problem(20, 5, 30, seed=6)
    result = transform(A, W, solver="mu", max_iter=5000, tol=0)
    assert result.n_iter == 5000 and result.stop_reason == "max_iter"
    assert_objective_matches_nnls(A, W, result.H, rtol=1e-5)


def test_an_exact_fit_is_found():
    rng = np.random.default_rng(7)
    W = rng.uniform(0, 1, (30, 5))
    H_true = rng.uniform(0, 1, (5, 8))
    H_true[1, :4] = 0
    result = transform(W @ H_true, W)
    np.testing.assert_allclose(result.H, H_true, atol=1e-6)
    assert result.errors[-1] <= 1e-6 * np.linalg.norm(W @ H_true)


@pytest.mark.parametrize("solver", TRANSFORM_SOLVERS)
def test_tol_is_met_by_every_column(solver):
    """Each column's projected gradient ends at most tol times its value at the documented start, the best
    non-negative multiple of the all-ones vector. (For "mu" a solution without zeros, which it can reach.)"""
    rng = np.random.default_rng(8)
    if solver == "hals":
        A, W = problem(20, 6, 30, seed=8)
        tol = 1e-7
    else:
        W = rng.uniform(0, 1, (20, 6))
        A = W @ rng.uniform(0.5, 1.5, (6, 30)) + 0.01 * rng.uniform(0, 1, (20, 30))
        tol = 1e-4
    result = transform(A, W, solver=solver, tol=tol, max_iter=100_000)
    assert result.stop_reason == "tol"
    G, C = W.T @ W, W.T @ A
    H0 = np.ones((6, 1)) * (np.maximum(C.sum(axis=0), 0) / G.sum())
    start = projected_gradient_norms(A, W, H0)
    end = projected_gradient_norms(A, W, result.H)
    assert (end <= tol * start * (1 + 1e-6)).all()
    # Not vacuous: one iteration fewer, some column had not met tol yet (the rule stopped the run, not an exact fit).
    earlier = transform(A, W, solver=solver, tol=tol, max_iter=result.n_iter - 1)
    assert (projected_gradient_norms(A, W, earlier.H) > tol * start).any()
    np.testing.assert_allclose(result.errors[0], np.linalg.norm(A - W @ H0), rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------------------


def random_mask(shape, observed, seed):
    return np.random.default_rng(seed).uniform(0, 1, shape) < observed


@pytest.mark.parametrize("m, d, n, observed, seed", [(20, 5, 30, 0.7, 0), (30, 8, 25, 0.5, 1), (40, 4, 20, 0.9, 2)])
def test_with_a_mask_hals_agrees_with_nnls_on_the_observed_rows(m, d, n, observed, seed):
    A, W = problem(m, d, n, seed)
    mask = random_mask(A.shape, observed, seed + 10)
    A_missing = np.where(mask, A, np.nan)  # unobserved entries may be anything, NaN included
    result = transform(A_missing, W, mask=mask)
    assert result.stop_reason == "tol"
    assert_objective_matches_nnls(A, W, result.H, mask=mask, rtol=1e-6)
    np.testing.assert_allclose(result.H, transform(np.where(mask, A, 1e6), W, mask=mask).H, rtol=1e-12, atol=0)


def test_with_a_mask_mu_agrees_with_nnls_given_enough_iterations():
    A, W = problem(20, 5, 30, seed=3)
    mask = random_mask(A.shape, 0.7, 4)
    result = transform(A, W, mask=mask, solver="mu", max_iter=5000, tol=0)
    assert_objective_matches_nnls(A, W, result.H, mask=mask, rtol=1e-5)


def test_an_all_true_mask_is_no_mask():
    A, W = problem(15, 4, 12, seed=5)
    plain = transform(A, W)
    masked = transform(A, W, mask=np.ones(A.shape, dtype=bool))
    np.testing.assert_array_equal(masked.H, plain.H)
    np.testing.assert_array_equal(masked.errors, plain.errors)


def test_undetermined_coefficients_under_a_mask_are_zero():
    A, W = problem(12, 4, 6, seed=6)
    mask = np.ones(A.shape, dtype=bool)
    W[:6, 2] = 0.0  # basis vector 2 lives on rows 6.. only
    mask[6:, 0] = False  # sample 0 observes rows 0..5 only: its coefficient 2 is undetermined
    mask[:, 1] = False  # sample 1 observes nothing: every coefficient is undetermined
    result = transform(A, W, mask=mask)
    assert result.H[2, 0] == 0
    assert (result.H[:, 1] == 0).all()
    others = [0, 1, 3]
    h, _ = nnls(W[:6][:, others], A[:6, 0])
    np.testing.assert_allclose(result.H[others, 0], h, atol=1e-6)


def test_a_single_image_with_missing_pixels():
    A, W = problem(30, 5, 1, seed=9)
    a = A[:, 0].copy()
    mask = np.ones(30, dtype=bool)
    mask[10:20] = False
    a[~mask] = np.nan
    result = transform(a, W, mask=mask)
    assert result.H.shape == (5, 1)
    h, residual = nnls(W[mask], A[mask, 0])
    np.testing.assert_allclose(result.H[:, 0], h, atol=1e-6)
    np.testing.assert_allclose(result.errors[-1], residual, rtol=1e-9)


# ----------------------------------------------------------------------------------------------------------
# Sizes and sources of W
# ----------------------------------------------------------------------------------------------------------


def test_one_image_as_a_1d_array_is_one_column():
    A, W = problem(25, 6, 4, seed=10)
    single = transform(A[:, 2], W)
    assert single.H.shape == (6, 1)
    np.testing.assert_allclose(single.H[:, 0], nnls(W, A[:, 2])[0], atol=1e-6)
    np.testing.assert_allclose(single.H[:, 0], transform(A[:, 2:3], W).H[:, 0], rtol=1e-12, atol=0)


def test_thousands_of_columns():
    A, W = problem(100, 12, 3000, seed=11)
    result = transform(A, W)
    assert result.H.shape == (12, 3000) and result.stop_reason == "tol"
    sample = np.random.default_rng(0).choice(3000, 60, replace=False)
    assert_objective_matches_nnls(A[:, sample], W, result.H[:, sample], rtol=1e-6)
    # the columns are independent problems: a subset alone gives the same coefficients
    np.testing.assert_allclose(transform(A[:, sample], W).H, result.H[:, sample], atol=1e-6 * result.H.max())


@pytest.mark.parametrize("solver", BUILT_IN_SOLVERS)
def test_a_basis_from_fit_nmf_with_each_solver(solver):
    assert solver in solver_names()
    rng = np.random.default_rng(12)
    A = rng.uniform(0, 1, (30, 6)) @ rng.uniform(0, 1, (6, 50)) + 0.05 * rng.uniform(0, 1, (30, 50))
    fit = fit_nmf(A, 6, solver=solver, max_iter=200)
    result = transform(A, fit.W)
    assert result.errors[-1] <= fit.final_error * (1 + 1e-9)  # H is optimal for that W
    assert_objective_matches_nnls(A, fit.W, result.H, rtol=1e-6)
    new = rng.uniform(0, 1, (30, 6)) @ rng.uniform(0, 1, (6, 7))  # unseen samples
    assert_objective_matches_nnls(new, fit.W, transform(new, fit.W).H, rtol=1e-6)


def test_a_basis_logged_as_float32_npy(tmp_path):
    rng = np.random.default_rng(13)
    A = rng.uniform(0, 1, (40, 5)) @ rng.uniform(0, 1, (5, 60))
    fit = fit_nmf(A.astype(np.float32), 5, solver="hals", max_iter=100)
    np.save(tmp_path / "W.npy", fit.W)
    W = np.load(tmp_path / "W.npy")
    assert W.dtype == np.float32
    W64 = W.astype(np.float64)
    result = transform(A, W)  # float64 data: computed in float64
    assert result.H.dtype == np.float64 and result.W.dtype == np.float64
    np.testing.assert_array_equal(result.W, W64)
    assert_objective_matches_nnls(A, W64, result.H, rtol=1e-6)
    single = transform(A.astype(np.float32), W)  # both float32: computed in float32
    assert single.H.dtype == np.float32
    assert_objective_matches_nnls(A, W64, single.H.astype(np.float64), rtol=1e-4)
    assert transform(A.astype(np.float32), W, dtype="float64").H.dtype == np.float64


@pytest.mark.parametrize("solver", TRANSFORM_SOLVERS)
def test_w_and_a_new_are_not_modified(solver):
    A, W = problem(20, 5, 10, seed=14)
    mask = random_mask(A.shape, 0.8, 0)
    for kwargs in ({}, {"mask": mask}):
        W_before, A_before = W.copy(), A.copy()
        W.setflags(write=False)
        result = transform(A, W, solver=solver, **kwargs)
        W.setflags(write=True)
        np.testing.assert_array_equal(W, W_before)
        np.testing.assert_array_equal(A, A_before)
        np.testing.assert_array_equal(result.W, W)
        assert result.W is not W


# ----------------------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", TRANSFORM_SOLVERS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(10, 8), (60, 200)], ids=["small", "large"])  # exact norm / from products
def test_errors_are_the_norm_of_the_masked_residual_at_each_iterate(solver, masked, shape):
    A, W = problem(shape[0], 4, shape[1], seed=15)
    mask = random_mask(A.shape, 0.75, 1) if masked else None
    M = mask if masked else np.ones(A.shape, dtype=bool)
    full = transform(A, W, solver=solver, mask=mask, max_iter=12, tol=0)
    assert full.n_iter == 12 and full.errors.shape == full.times.shape == (13,)
    for k in (0, 1, 5, 12):
        H_k = transform(A, W, solver=solver, mask=mask, max_iter=k, tol=0).H  # deterministic: the k-th iterate
        expected = np.sqrt(sum((A[i, j] - W[i] @ H_k[:, j]) ** 2 for i, j in zip(*np.nonzero(M))))
        np.testing.assert_allclose(full.errors[k], expected, rtol=1e-10)
    assert (np.diff(full.errors) <= 1e-12 * full.errors[0]).all()  # never increases
    assert (np.diff(full.times) >= 0).all()


def test_the_result_is_an_nmf_result():
    A, W = problem(15, 4, 9, seed=16)
    result = transform(A, W, max_iter=7, tol=0)
    assert isinstance(result, NMFResult)
    assert result.solver == "hals" and result.stop_reason == "max_iter" and result.n_iter == 7
    assert result.best_iter == 7 and result.final_error == result.errors[-1]
    assert result.H.shape == (4, 9) and (result.H >= 0).all()
    assert result.options == {}
    assert transform(A, W, max_iter=0).n_iter == 0


def test_zero_samples_get_zero_coefficients():
    A, W = problem(15, 4, 6, seed=17)
    A[:, 3] = 0.0
    result = transform(A, W)
    assert (result.H[:, 3] == 0).all()
    assert (transform(np.zeros((15, 2)), W).H == 0).all()


@pytest.mark.parametrize("solver", TRANSFORM_SOLVERS)
def test_an_all_zero_column_of_w_gets_coefficient_zero(solver):
    A, W = problem(20, 5, 12, seed=18)
    W[:, 1] = 0.0
    result = transform(A, W, solver=solver, max_iter=5000)
    assert (result.H[1] == 0).all()
    others = [0, 2, 3, 4]
    assert_objective_matches_nnls(A, W[:, others], result.H[others], rtol=1e-6 if solver == "hals" else 1e-4)


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------


def test_shapes_that_do_not_agree_are_named():
    A, W = problem(20, 5, 10, seed=0)
    with pytest.raises(ValueError, match=re.escape("A_new of shape (19, 10) and W of shape (20, 5) do not agree")):
        transform(A[:19], W)
    with pytest.raises(ValueError, match=re.escape("A_new of shape (21,) and W of shape (20, 5)")):
        transform(np.ones(21), W)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda W: W.__setitem__((0, 0), -0.5), "W has 1 negative entries"),
        (lambda W: W.__setitem__((2, 1), np.nan), "W has 1 NaN and 0 infinite entries"),
        (lambda W: W.__setitem__((2, 1), np.inf), "W has 0 NaN and 1 infinite entries"),
        (lambda W: W.__setitem__(slice(None), 0.0), "W is all zeros"),
    ],
)
def test_an_invalid_w_is_an_error(change, message):
    A, W = problem(20, 5, 10, seed=0)
    change(W)
    with pytest.raises(ValueError, match=re.escape(message)):
        transform(A, W)


def test_an_invalid_a_new_is_an_error():
    A, W = problem(20, 5, 10, seed=0)
    mask = np.ones(A.shape, dtype=bool)
    mask[3, 4] = False
    A[3, 4] = np.nan
    with pytest.raises(ValueError, match=re.escape("A_new has 1 NaN and 0 infinite entries")):
        transform(A, W)  # without the mask the NaN counts
    transform(A, W, mask=mask)  # outside the mask it does not
    A[5, 6] = np.nan
    with pytest.raises(ValueError, match=re.escape("A_new has 1 NaN and 0 infinite entries inside the mask")):
        transform(A, W, mask=mask)
    A[5, 6] = -1.0
    with pytest.raises(ValueError, match=re.escape("A_new has 1 negative entries inside the mask")):
        transform(A, W, mask=mask)
    with pytest.raises(ValueError, match="A_new must be a non-empty 1-D array"):
        transform(np.ones((20, 2, 2)), W)
    with pytest.raises(ValueError, match="A_new must hold real numbers"):
        transform(np.full((20, 2), "x"), W)


@pytest.mark.parametrize(
    "mask, message",
    [
        (np.ones((20, 10)), "mask must be None or a NumPy array of dtype bool"),
        ([[True] * 10] * 20, "mask must be None or a NumPy array of dtype bool"),
        (np.ones((10, 20), dtype=bool), re.escape("mask must have the shape of A_new, (20, 10), got (10, 20)")),
    ],
)
def test_an_invalid_mask_is_an_error(mask, message):
    A, W = problem(20, 5, 10, seed=0)
    with pytest.raises(ValueError, match=message):
        transform(A, W, mask=mask)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"solver": "ahals"}, "unknown transform solver 'ahals'; known: hals, mu"),
        ({"max_iter": -1}, "max_iter must be an integer >= 0"),
        ({"tol": -1e-3}, "tol must be a finite number >= 0"),
        ({"tol": float("nan")}, "tol must be a finite number >= 0"),
        ({"dtype": "float16"}, "dtype must be None, 'float32' or 'float64'"),
    ],
)
def test_invalid_options_are_errors(kwargs, message):
    A, W = problem(20, 5, 10, seed=0)
    with pytest.raises(ValueError, match=re.escape(message)):
        transform(A, W, **kwargs)
