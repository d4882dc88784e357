"""Every solver in nmf_lab.solvers against the contract of fit_nmf: non-negative iterates, exact recovery of
an exactly factorizable matrix, an error curve that is exact for every reported iterate (and monotone where
the solver promises it), the stopping rules, float32 factors, and clear errors for bad arguments."""

from __future__ import annotations

import re

import numpy as np
import pytest

import nmf_lab.nmf
from nmf_lab import fit_nmf, random_init
from nmf_lab.solvers import NON_MONOTONE, SOLVERS, component_floor

ALL = sorted(SOLVERS)
MONOTONE = [name for name in ALL if name not in NON_MONOTONE]
HALS_FAMILY = [name for name in ALL if name != "mu"]


def random_nonnegative(shape, seed):
    return np.random.default_rng(seed).uniform(0, 1, size=shape)


def rank_5_matrix():
    """An exactly factorizable 20 x 15 matrix, W H with d = 5 and strictly positive, well-conditioned factors
    (a dominant entry per row of W and per column of H), so that even "mu" recovers it to 1e-7 in ~1500
    iterations (it needs far more on plain uniform factors)."""
    rng = np.random.default_rng(10)
    W = 0.2 * rng.uniform(size=(20, 5))
    W[np.arange(20), np.arange(20) % 5] += 1
    H = 0.2 * rng.uniform(size=(5, 15))
    H[np.arange(15) % 5, np.arange(15)] += 1
    return W @ H


def with_zero_rows_and_columns():
    """A random matrix with two all-zero rows and one all-zero column (transparent pixels, blank images)."""
    A = random_nonnegative((25, 18), seed=4)
    A[[3, 11]] = 0
    A[:, 7] = 0
    return A


RECOVERY_ITERATIONS = {"mu": 10_000}
"""Iterations for the recovery test: "mu" needs ~1500, the HALS solvers < 100 (the default is 1000)."""


def record_iterates(monkeypatch, name):
    """Register a solver "probe" that runs ``name`` inside fit_nmf and records ``||A - W_k H_k||_F``, computed
    from scratch, for every iterate the solver reports; the error fit_nmf sends back is passed through."""
    exact = []

    def probe(A, W, H, *, delta):
        steps = SOLVERS[name](A, W, H, delta=delta)
        error = None
        while True:
            products = steps.send(error)  # send(None) starts the generator like next()
            exact.append(np.linalg.norm(A - W.astype(np.float64) @ H.astype(np.float64)))
            error = yield products

    monkeypatch.setitem(SOLVERS, "probe", probe)
    if name in NON_MONOTONE:
        monkeypatch.setattr(nmf_lab.nmf, "NON_MONOTONE", NON_MONOTONE | {"probe"})
    return exact


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("make_A", [lambda: random_nonnegative((30, 20), seed=1), with_zero_rows_and_columns])
def test_every_iterate_is_non_negative(name, make_A):
    A = make_A()
    W, H = random_init(A, 4, seed=2)
    steps = SOLVERS[name](A, W, H, delta=1e-9)
    for _ in range(100):
        next(steps)
        assert W.min() >= 0 and H.min() >= 0
        assert np.isfinite(W).all() and np.isfinite(H).all()
    result = fit_nmf(A, 4, solver=name, max_iter=100, seed=2)
    assert result.W.min() >= 0 and result.H.min() >= 0


@pytest.mark.parametrize("name", ALL)
def test_exact_recovery_of_a_rank_5_matrix(name):
    A = rank_5_matrix()
    result = fit_nmf(A, 5, solver=name, seed=1, max_iter=RECOVERY_ITERATIONS.get(name, 1000))
    assert result.final_error < 1e-6 * np.linalg.norm(A)
    assert np.linalg.norm(A - result.W @ result.H) < 1e-6 * np.linalg.norm(A)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "make_A, rank, max_iter",
    [
        (rank_5_matrix, 5, 300),
        (with_zero_rows_and_columns, 4, 200),
        (lambda: random_nonnegative((9, 40), seed=6), 3, 200),
    ],
)
def test_errors_match_the_exact_norm_at_every_reported_iterate(monkeypatch, name, make_A, rank, max_iter):
    """errors[k] within a relative 1e-6 of ||A - W_k H_k||_F for every k, down to the ~1e-10 the HALS
    solvers reach on the rank-5 matrix (where the cheap formula cancels and the exact norm takes over)."""
    A = make_A()
    exact = record_iterates(monkeypatch, name)
    result = fit_nmf(A, rank, solver="probe", seed=3, max_iter=max_iter)
    W0, H0 = random_init(A, rank, seed=3)
    exact = np.array([np.linalg.norm(A - W0 @ H0), *exact])
    assert result.errors.shape == exact.shape == (max_iter + 1,)
    np.testing.assert_allclose(result.errors, exact, rtol=1e-6, atol=0)
    assert np.linalg.norm(A - result.W @ result.H) == pytest.approx(result.final_error, rel=1e-6)


@pytest.mark.parametrize("name", MONOTONE)
@pytest.mark.parametrize("shape, rank, seed", [((30, 20), 4, 0), ((12, 50), 7, 1), ((60, 15), 2, 2)])
def test_error_never_increases(name, shape, rank, seed):
    """Each HALS pass minimises the error exactly over one row or column (and "mu" satisfies equation 17), so
    the only rises allowed are rounding of the tracked error: ||A||^2 - 2<AH^T, W> + <W^T W, HH^T> carries
    an absolute error of about sqrt(n) eps ||A||^2, i.e. below ~1e-12 ||A|| in the error wherever it is used
    (above 3e-4 ||A||, see CANCELLATION_GUARD), and the exact norm about eps ||A||. 1e-10 ||A|| is a safe
    bound on both, and far below any real rise (the extrapolated solver's are ~1e-3)."""
    A = random_nonnegative(shape, seed=seed + 20)
    result = fit_nmf(A, rank, solver=name, seed=seed, max_iter=300)
    assert np.all(np.diff(result.errors) <= 1e-10 * np.linalg.norm(A))
    assert result.errors[-1] < result.errors[0]
    assert result.best_iter == result.n_iter == 300


@pytest.mark.parametrize("name", sorted(NON_MONOTONE))
def test_extrapolated_solver_returns_its_best_iterate_and_says_so(name):
    A = random_nonnegative((40, 30), seed=3)
    result = fit_nmf(A, 4, solver=name, seed=2, max_iter=300)
    errors = result.errors
    assert np.any(np.diff(errors) > 1e-6 * errors[0]), "this case should exercise a restart"
    assert result.best_iter < result.n_iter
    assert errors[result.best_iter] == errors.min() == result.final_error
    assert np.linalg.norm(A - result.W @ result.H) == pytest.approx(result.final_error, rel=1e-9)


@pytest.mark.parametrize("name", ALL)
def test_tolerance_stops_early_and_says_so(name):
    A = rank_5_matrix()
    max_iter = 20_000
    result = fit_nmf(A, 5, solver=name, seed=1, max_iter=max_iter, tol=1e-4)
    assert result.stop_reason == "tol"
    assert result.n_iter < max_iter
    assert len(result.errors) == len(result.times) == result.n_iter + 1
    assert result.final_error < 1e-2 * np.linalg.norm(A)


@pytest.mark.parametrize("name", ALL)
def test_time_limit_stops_and_says_so(name):
    A = random_nonnegative((40, 30), seed=0)
    result = fit_nmf(A, 4, solver=name, max_iter=10**9, time_limit=0.05)
    assert result.stop_reason == "time_limit"
    assert len(result.errors) == len(result.times) == result.n_iter + 1
    assert result.times[-1] >= 0.05  # it stops after the iteration that passed the limit, not before
    assert result.n_iter == 0 or result.times[-2] < 0.05
    assert np.all(np.diff(result.times) >= 0)


def test_without_a_stopping_rule_the_run_goes_to_max_iter():
    result = fit_nmf(random_nonnegative((10, 8), seed=0), 2, max_iter=7)
    assert result.stop_reason == "max_iter" and result.n_iter == 7 and result.best_iter == 7


def test_a_tolerance_of_one_stops_at_the_initial_guess():
    result = fit_nmf(random_nonnegative((10, 8), seed=0), 2, max_iter=50, tol=1.0)
    assert result.stop_reason == "tol" and result.n_iter == 0 and result.errors.shape == (1,)


@pytest.mark.parametrize("name", ALL)
def test_float32_gives_float32_factors_and_nearly_the_float64_error(name):
    A = random_nonnegative((40, 30), seed=3)
    result64 = fit_nmf(A, 4, solver=name, seed=2, max_iter=100)
    result32 = fit_nmf(A, 4, solver=name, seed=2, max_iter=100, dtype="float32")
    assert result32.W.dtype == result32.H.dtype == np.float32
    assert result32.errors.dtype == np.float64
    assert result32.final_error == pytest.approx(result64.final_error, rel=1e-4)


@pytest.mark.parametrize(
    "A_dtype, dtype, expected",
    [
        (np.float64, None, np.float64),
        (np.float32, None, np.float32),
        (np.int64, None, np.float64),
        (np.float64, "float32", np.float32),
        (np.float64, np.float32, np.float32),
        (np.float32, "float64", np.float64),
        (np.float32, np.dtype("float64"), np.float64),
    ],
)
def test_dtype_chooses_the_dtype_of_the_factors(A_dtype, dtype, expected):
    A = (random_nonnegative((6, 5), seed=0) * 10).astype(A_dtype)
    result = fit_nmf(A, 2, max_iter=5, dtype=dtype)
    assert result.W.dtype == result.H.dtype == expected


@pytest.mark.parametrize("name", HALS_FAMILY)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_dead_component_comes_back_where_the_residual_needs_it(name, dtype):
    """A is two disjoint rank-one blocks and W0's second column is zero: a dead component. HALS holds it at
    the floor (no division by zero); the residual of the block the first component cannot fit has positive
    column sums, so the component comes back, is rebalanced to a normal scale, and the fit is exact."""
    rng = np.random.default_rng(5)
    A = np.zeros((20, 16))
    A[:10, :8] = np.outer(rng.uniform(0.5, 1, 10), rng.uniform(0.5, 1, 8))
    A[10:, 8:] = np.outer(rng.uniform(0.5, 1, 10), rng.uniform(0.5, 1, 8))
    W0, H0 = random_init(A, 2, seed=1)
    W0[:, 1] = 0
    result = fit_nmf(A, 2, solver=name, init=(W0, H0), max_iter=100, dtype=dtype)
    assert result.final_error < (1e-6 if dtype == "float64" else 1e-5) * np.linalg.norm(A)
    w_norms, h_norms = np.linalg.norm(result.W, axis=0), np.linalg.norm(result.H, axis=1)
    assert np.all((w_norms > 0.1) & (h_norms > 0.1)), (w_norms, h_norms)


@pytest.mark.parametrize("name", HALS_FAMILY)
def test_rows_and_columns_of_zeros_in_a_are_fitted_by_the_floor(name):
    A = with_zero_rows_and_columns()
    result = fit_nmf(A, 4, solver=name, seed=0, max_iter=50)
    floor = component_floor(A, 4)
    assert np.all(result.W[[3, 11]] == floor)
    assert np.all(result.H[:, 7] == floor)
    assert result.W.min() >= floor and result.H.min() >= floor


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tol": -1e-3}, "tol must be a finite number >= 0 (0 turns the stopping rule off), got -0.001"),
        ({"tol": float("nan")}, "tol must be a finite number >= 0 (0 turns the stopping rule off), got nan"),
        ({"tol": float("inf")}, "got inf"),
        ({"tol": "1e-4"}, "tol must be a finite number >= 0 (0 turns the stopping rule off), got '1e-4'"),
        ({"tol": True}, "tol must be a finite number >= 0 (0 turns the stopping rule off), got True"),
        ({"dtype": "float16"}, "dtype must be None, 'float32' or 'float64', got 'float16'"),
        ({"dtype": np.int32}, "dtype must be None, 'float32' or 'float64', got <class 'numpy.int32'>"),
        ({"dtype": "complex128"}, "got 'complex128'"),
        ({"dtype": "banana"}, "dtype must be None, 'float32' or 'float64', got 'banana'"),
        ({"time_limit": 0}, "time_limit must be None or a number of seconds > 0, got 0"),
        ({"time_limit": -2.5}, "time_limit must be None or a number of seconds > 0, got -2.5"),
        ({"time_limit": float("nan")}, "time_limit must be None or a number of seconds > 0, got nan"),
        ({"time_limit": "10"}, "time_limit must be None or a number of seconds > 0, got '10'"),
    ],
)
def test_bad_stopping_rule_or_dtype_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_nmf(np.ones((3, 2)), 1, **kwargs)
