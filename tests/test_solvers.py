"""Every built-in solver against the contract of fit_nmf: non-negative iterates, exact recovery of an exactly
factorizable matrix, an error curve that is exact for every reported iterate (and monotone where its registry
entry says so), the stopping rules, float32 factors, and clear errors for bad arguments. Then the registry
itself: the built-in entries and their options, solvers registered in-process, and solvers installed through
the entry-point group ``nmf_lab.solvers``, found by the real importlib.metadata."""

from __future__ import annotations

import re
import sys
import textwrap

import numpy as np
import pytest

from nmf_lab import fit_nmf, random_init
from nmf_lab.core import solvers
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.problems import DenseProblem, component_floor
from nmf_lab.core.solvers import Option, Products, Solver, get_solver, register_solver, solver_names
from nmf_lab.data.toy import MOVIE_RATINGS, TOY_MATRICES

BUILT_INS = ("ahals", "ahals_extrapolated", "hals", "mu")
ALL = [name for name in solver_names() if name in BUILT_INS]
MONOTONE = [name for name in ALL if get_solver(name).monotone]
NON_MONOTONE = [name for name in ALL if not get_solver(name).monotone]
HALS_FAMILY = [name for name in ALL if name != "mu"]


def start(name, A, W, H, **options):
    """The update generator of the solver ``name`` on ``(A, W, H)`` (the dense problem of A), its options
    resolved by its entry."""
    solver = get_solver(name)
    return solver.update(DenseProblem(A), W, H, **solver.resolve_options(options))


def random_nonnegative(shape, seed):
    return np.random.default_rng(seed).uniform(0, 1, size=shape)


def rank_5_matrix(m=20, n=15):
    """An exactly factorizable m x n matrix, W H with d = 5 and strictly positive, well-conditioned factors
    (a dominant entry per row of W and per column of H), so that even "mu" recovers the 20 x 15 one to 1e-7
    in ~1500 iterations (it needs far more on plain uniform factors)."""
    rng = np.random.default_rng(10)
    W = 0.2 * rng.uniform(size=(m, 5))
    W[np.arange(m), np.arange(m) % 5] += 1
    H = 0.2 * rng.uniform(size=(5, n))
    H[np.arange(n) % 5, np.arange(n)] += 1
    return W @ H


def with_zero_rows_and_columns():
    """A random matrix with two all-zero rows and one all-zero column (transparent pixels, blank images)."""
    A = random_nonnegative((25, 18), seed=4)
    A[[3, 11]] = 0
    A[:, 7] = 0
    return A


RECOVERY_ITERATIONS = {"mu": 10_000}
"""Iterations for the recovery test: "mu" needs ~1500, the HALS solvers < 100 (the default is 1000)."""


def exact_errors(A, iterates):
    """``||A - W_k H_k||_F`` of each iterate, computed from scratch in float64."""
    return np.array([np.linalg.norm(A - W.astype(np.float64) @ H.astype(np.float64)) for W, H in iterates])


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("make_A", [lambda: random_nonnegative((30, 20), seed=1), with_zero_rows_and_columns])
def test_every_iterate_is_non_negative(name, make_A):
    A = make_A()
    W, H = random_init(A, 4, seed=2)
    steps = start(name, A, W, H)
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
    "make_A, rank, max_iter, rtol",
    [
        (rank_5_matrix, 5, 300, 1e-15),
        (with_zero_rows_and_columns, 4, 200, 1e-15),
        (lambda: random_nonnegative((9, 40), seed=6), 3, 200, 1e-15),
        (lambda: rank_5_matrix(60, 40), 5, 300, 1e-6),
        (lambda: random_nonnegative((50, 30), seed=6), 4, 200, 1e-6),
    ],
)
def test_errors_match_the_exact_norm_at_every_reported_iterate(probe, name, make_A, rank, max_iter, rtol):
    """Up to nmf_lab.core.problems.EXACT_SIZE entries (the first three cases) errors[k] is the exact norm itself; above
    it (60 x 40, 50 x 30) it is the product formula, within a relative 1e-6 of ||A - W_k H_k||_F, down to the
    ~1e-10 the HALS solvers reach on the rank-5 matrix (where the formula cancels and the exact norm takes
    over)."""
    A = make_A()
    probe_name, iterates = probe(name)
    result = fit_nmf(A, rank, solver=probe_name, seed=3, max_iter=max_iter)
    W0, H0 = random_init(A, rank, seed=3)
    exact = exact_errors(A, [(W0, H0), *iterates])
    assert result.errors.shape == exact.shape == (max_iter + 1,)
    np.testing.assert_allclose(result.errors, exact, rtol=rtol, atol=0)
    assert np.linalg.norm(A - result.W @ result.H) == pytest.approx(result.final_error, rel=max(rtol, 1e-12))


@pytest.mark.parametrize("name", MONOTONE)
@pytest.mark.parametrize("shape, rank, seed", [((30, 20), 4, 0), ((12, 50), 7, 1), ((60, 15), 2, 2), ((50, 40), 5, 3)])
def test_error_never_increases(name, shape, rank, seed):
    """Each HALS pass minimises the error exactly over one row or column (and "mu" satisfies equation 17), so
    the only rises allowed are rounding of the tracked error: the exact norm (up to 1024 entries) carries
    about eps ||A||; ||A||^2 - 2<AH^T, W> + <W^T W, HH^T> (the 50 x 40 case) an absolute error of about
    sqrt(n) eps ||A||^2, i.e. below ~1e-12 ||A|| in the error wherever it is used (above 3e-4 ||A||, see
    nmf_lab.core.problems.CANCELLATION_GUARD). 1e-10 ||A|| is a safe bound on both, and far below any real rise (the
    extrapolated solver's are ~1e-3)."""
    A = random_nonnegative(shape, seed=seed + 20)
    result = fit_nmf(A, rank, solver=name, seed=seed, max_iter=300)
    assert np.all(np.diff(result.errors) <= 1e-10 * np.linalg.norm(A))
    assert result.errors[-1] < result.errors[0]
    assert result.best_iter == result.n_iter == 300


@pytest.mark.parametrize("name", NON_MONOTONE)
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


# --------------------------------------------------------------------------------------------------------
# Exact error curves on the toy matrices
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "A, rank",
    [
        (TOY_MATRICES["A1"], 2),
        (TOY_MATRICES["A2"], 1),
        (TOY_MATRICES["A3"], 2),
        (TOY_MATRICES["A4"], 3),
        (MOVIE_RATINGS, 2),
    ],
    ids=["A1-2", "A2-1", "A3-2", "A4-3", "movies-2"],
)
def test_toy_error_curves_are_the_exact_norm(probe, name, A, rank):
    """On the toy matrices every errors[k] is ||A - W_k H_k||_F to rounding of the last bit, also where the
    error falls to ~1e-9 and for the extrapolated solver, whose restarts depend on the errors sent back. The
    product formula ||A||^2 - 2<AH^T, W> + <W^T W, HH^T>, evaluated on the same iterates, misses that."""
    probe_name, iterates = probe(name)
    result = fit_nmf(A, rank, solver=probe_name, seed=0, max_iter=300)
    W0, H0 = random_init(A, rank, seed=0)
    iterates = [(W0, H0), *iterates]
    exact = exact_errors(A, iterates)
    np.testing.assert_allclose(result.errors, exact, rtol=1e-15, atol=0)
    squared = [np.sum(A * A) - 2 * np.vdot(A @ H.T, W) + np.vdot(W.T @ W, H @ H.T) for W, H in iterates]
    formula, nonzero = np.sqrt(np.maximum(squared, 0.0)), exact > 0  # some solvers reach 0 exactly on A3
    assert np.max(np.abs(formula - exact)[nonzero] / exact[nonzero]) > 1e-15


# --------------------------------------------------------------------------------------------------------
# The registry: the built-in entries
# --------------------------------------------------------------------------------------------------------


def test_the_built_in_solvers_are_registered_with_their_options():
    assert set(BUILT_INS) <= set(solver_names()) and solver_names() == sorted(solver_names())
    defaults = {name: {key: option.default for key, option in get_solver(name).options.items()} for name in ALL}
    assert defaults == {
        "mu": {"delta": 1e-9},
        "hals": {},
        "ahals": {"alpha": 0.5, "inner_tol": 0.1},
        "ahals_extrapolated": {
            "alpha": 0.5,
            "inner_tol": 0.1,
            "beta0": 0.5,
            "eta": 1.5,
            "gamma": 1.01,
            "gamma_bar": 1.005,
        },
    }
    assert NON_MONOTONE == ["ahals_extrapolated"]
    for name in ALL:
        entry = get_solver(name)
        assert entry.name == name and entry.summary and "\n" not in entry.summary
        assert all(option.valid_text and option.help for option in entry.options.values())
    with pytest.raises(TypeError):
        get_solver("mu").options["delta"] = Option(1.0, lambda value: True, "anything", "a replacement")


def test_the_solvers_package_exports_the_registry_and_the_built_ins():
    expected = {"BUILT_IN", "Option", "Products", "Solver", "get_solver", "register_solver", "solver_names"}
    assert set(solvers.__all__) == expected
    assert all(hasattr(solvers, name) for name in expected)
    assert [entry.name for entry in solvers.BUILT_IN] == ["mu", "hals", "ahals", "ahals_extrapolated"]
    assert all(get_solver(entry.name) is entry and entry.problems for entry in solvers.BUILT_IN)
    assert not hasattr(solvers, "SOLVERS") and not hasattr(solvers, "NON_MONOTONE")


@pytest.mark.parametrize("name", ALL)
def test_the_monotone_flag_of_each_entry_matches_its_behaviour(name):
    """A monotone solver never raises the error beyond rounding (1e-10 ||A||, see test_error_never_increases),
    on small problems (exact norm) and larger ones (product formula); the others do rise, by far more."""
    largest_rise = 0.0
    for seed, shape in enumerate([(40, 30), (12, 50), (60, 45)]):
        A = random_nonnegative(shape, seed=seed + 30)
        errors = fit_nmf(A, 4, solver=name, seed=seed, max_iter=300).errors
        largest_rise = max(largest_rise, np.max(np.diff(errors)) / np.linalg.norm(A))
    if get_solver(name).monotone:
        assert largest_rise <= 1e-10
    else:
        assert largest_rise > 1e-6


# --------------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------------


def test_options_are_filled_in_with_their_defaults_and_converted():
    entry = get_solver("ahals_extrapolated")
    resolved = entry.resolve_options({"alpha": 1, "gamma": np.float32(1.25)})
    assert resolved == {"alpha": 1.0, "inner_tol": 0.1, "beta0": 0.5, "eta": 1.5, "gamma": 1.25, "gamma_bar": 1.005}
    assert all(type(value) is float for value in resolved.values())
    assert get_solver("hals").resolve_options({}) == {}
    A = random_nonnegative((10, 8), seed=0)
    assert fit_nmf(A, 2, max_iter=3).options == {"delta": 1e-9}
    assert fit_nmf(A, 2, solver="ahals", max_iter=3, alpha=2).options == {"alpha": 2.0, "inner_tol": 0.1}


@pytest.mark.parametrize("inner_tol", [0.0, 0.5])
def test_ahals_with_alpha_zero_is_hals(inner_tol):
    """alpha = 0 gives ahals a budget of 1 + floor(0 * rho) = 1 pass per update: plain HALS, bit for bit, and
    with a single pass inner_tol plays no part."""
    A = with_zero_rows_and_columns()
    hals = fit_nmf(A, 4, solver="hals", seed=1, max_iter=100)
    ahals = fit_nmf(A, 4, solver="ahals", seed=1, max_iter=100, alpha=0.0, inner_tol=inner_tol)
    np.testing.assert_array_equal(ahals.errors, hals.errors)
    np.testing.assert_array_equal(ahals.W, hals.W)
    np.testing.assert_array_equal(ahals.H, hals.H)
    assert not np.array_equal(fit_nmf(A, 4, solver="ahals", seed=1, max_iter=100).errors, hals.errors)


@pytest.mark.parametrize(
    "name, base, changed",
    [
        ("mu", {}, {"delta": 1e-3}),
        ("ahals", {}, {"alpha": 2.0}),
        ("ahals", {}, {"inner_tol": 0.5}),
        ("ahals_extrapolated", {}, {"alpha": 2.0}),
        ("ahals_extrapolated", {}, {"inner_tol": 0.5}),
        ("ahals_extrapolated", {}, {"beta0": 0.9}),
        ("ahals_extrapolated", {}, {"eta": 3.0}),
        ("ahals_extrapolated", {}, {"gamma": 1.1}),
        ("ahals_extrapolated", {"gamma": 1.3}, {"gamma_bar": 1.05}),  # the cap on beta matters once reached
    ],
)
def test_every_option_reaches_its_solver(name, base, changed):
    A = random_nonnegative((40, 30), seed=3)
    before = fit_nmf(A, 4, solver=name, seed=2, max_iter=100, **base)
    after = fit_nmf(A, 4, solver=name, seed=2, max_iter=100, **base, **changed)
    assert not np.array_equal(before.errors, after.errors)
    assert after.options == {**before.options, **changed}


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("hals", {"delta": 1e-9}, "solver 'hals' has no option 'delta'; it has no options"),
        ("ahals", {"delta": 1e-9}, "solver 'ahals' has no option 'delta'; its options are alpha, inner_tol"),
        ("mu", {"alpha": 1.0, "beta": 2}, "solver 'mu' has no option 'alpha', 'beta'; its options are delta"),
        ("ahals_extrapolated", {"max_iters": 5}, "its options are alpha, inner_tol, beta0, eta, gamma, gamma_bar"),
    ],
)
def test_an_unknown_option_names_itself_and_the_valid_ones(name, options, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        fit_nmf(np.ones((3, 2)), 1, solver=name, **options)
    assert not isinstance(info.value, InvalidOption)


@pytest.mark.parametrize(
    "name, key, value, valid",
    [
        ("mu", "delta", True, "a finite number >= 0"),
        ("mu", "delta", -1e-9, "a finite number >= 0"),
        ("mu", "delta", float("nan"), "a finite number >= 0"),
        ("mu", "delta", "1e-9", "a finite number >= 0"),
        ("ahals", "alpha", -1, "a finite number >= 0"),
        ("ahals", "alpha", float("inf"), "a finite number >= 0"),
        ("ahals", "inner_tol", 1.0, "a number in [0, 1)"),
        ("ahals_extrapolated", "beta0", 1.5, "a number in [0, 1]"),
        ("ahals_extrapolated", "eta", 1.0, "a finite number > 1"),
        ("ahals_extrapolated", "gamma", 0.99, "a finite number >= 1"),
        ("ahals_extrapolated", "gamma_bar", None, "a finite number >= 1"),
    ],
)
def test_an_invalid_option_value_is_an_invalid_option_naming_it(name, key, value, valid):
    with pytest.raises(InvalidOption) as info:
        fit_nmf(np.ones((3, 2)), 1, solver=name, **{key: value})
    assert (info.value.key, info.value.valid) == (key, valid)
    assert str(info.value).startswith(f"{key}=")


def test_the_type_of_an_option_is_the_type_of_its_default():
    count = Option(3, lambda value: value >= 1, "an integer >= 1", "how many")
    assert count.check("count", np.int64(2)) == 2 and type(count.check("count", np.int64(2))) is int
    for bad in (2.0, True, "2", 0):
        with pytest.raises(InvalidOption, match=re.escape(f"count={bad!r}: an integer >= 1")):
            count.check("count", bad)
    scale = Option(1.0, lambda value: value > 0, "a number > 0", "how much")
    assert type(scale.check("scale", 2)) is float
    with pytest.raises(InvalidOption):
        scale.check("scale", False)
    with pytest.raises(ValueError, match=re.escape("default 0.0 is not valid")):
        Option(0.0, lambda value: value > 0, "a number > 0", "how much")
    with pytest.raises(TypeError):
        Option(True, lambda value: True, "a bool", "no bool options")


# --------------------------------------------------------------------------------------------------------
# Registering a solver in-process
# --------------------------------------------------------------------------------------------------------


def mu_with_fixed_h(A, W, H, *, delta):
    """Multiplicative updates of W alone, H held: ``W <- W * (A H^T) / (W H H^T + delta)``."""
    AHt, HHt = A @ H.T, H @ H.T
    while True:
        W *= AHt / (W @ HHt + delta)
        yield Products(AHt=AHt, HHt=HHt, WtW=W.T @ W, WtA=W.T @ A)


MU_FIXED_H = Solver(
    name="test-mu-fixed-h",
    update=mu_with_fixed_h,
    monotone=True,
    options={"delta": Option(0.0, lambda value: value >= 0, "a number >= 0", "added to the denominator")},
    summary="multiplicative updates of W with H held",
)


def test_a_solver_registered_in_process_runs_through_fit_nmf(registered):
    name = registered(MU_FIXED_H)
    assert name in solver_names() and get_solver(name) is MU_FIXED_H
    A = random_nonnegative((12, 9), seed=4)
    W0, H0 = random_init(A, 3, seed=5)
    result = fit_nmf(A, 3, solver=name, init=(W0, H0), max_iter=40, delta=1e-6)

    W, errors = W0.copy(), [np.linalg.norm(A - W0 @ H0)]  # the same update, written out independently
    for _ in range(40):
        W = W * (A @ H0.T) / (W @ H0 @ H0.T + 1e-6)
        errors.append(np.linalg.norm(A - W @ H0))
    np.testing.assert_allclose(result.errors, errors, rtol=1e-12)  # W (H H^T) against (W H) H^T: rounding
    np.testing.assert_allclose(result.W, W, rtol=1e-12)
    np.testing.assert_array_equal(result.H, H0)
    assert result.solver == name and result.options == {"delta": 1e-6}
    with pytest.raises(InvalidOption, match=re.escape("delta=-1.0: a number >= 0")):
        fit_nmf(A, 3, solver=name, delta=-1.0)


def test_a_name_is_registered_once_unless_replaced(registered):
    name = registered(MU_FIXED_H)
    other = Solver(name=name, update=mu_with_fixed_h, monotone=False, summary="the same, kept at its best")
    with pytest.raises(ValueError, match=f"a solver named '{name}' is registered already; pass replace=True"):
        register_solver(other)
    assert get_solver(name) is MU_FIXED_H
    registered(other, replace=True)
    assert get_solver(name) is other
    with pytest.raises(ValueError, match="a solver named 'mu' is registered already"):
        register_solver(Solver(name="mu", update=mu_with_fixed_h, monotone=True, summary="an impostor"))
    assert get_solver("mu").update is not mu_with_fixed_h
    with pytest.raises(TypeError, match=re.escape("register_solver takes a nmf_lab.core.solvers.Solver")):
        register_solver(mu_with_fixed_h)


@pytest.mark.parametrize("name", ["newton", "", None, 3])
def test_an_unknown_solver_is_an_error_listing_the_known_ones(name):
    with pytest.raises(ValueError, match=re.escape(f"unknown solver {name!r}; known solvers: ahals, ")):
        get_solver(name)


def test_a_malformed_registry_entry_is_refused():
    with pytest.raises(TypeError, match="option 'delta' must be an Option"):
        Solver(name="bad", update=mu_with_fixed_h, monotone=True, options={"delta": 1e-9}, summary="bad")
    with pytest.raises(TypeError, match="monotone must be True or False"):
        Solver(name="bad", update=mu_with_fixed_h, monotone="yes", summary="bad")
    with pytest.raises(ValueError, match="a solver's name must be a non-empty string"):
        Solver(name="", update=mu_with_fixed_h, monotone=True, summary="bad")


# --------------------------------------------------------------------------------------------------------
# Solvers installed through the entry-point group nmf_lab.solvers
# --------------------------------------------------------------------------------------------------------


PLUGIN_MODULE = """
from nmf_lab.core.solvers import Solver, get_solver

SOLVER = Solver(
    name="{solver_name}",
    update=get_solver("mu").update,
    monotone=True,
    options=get_solver("mu").options,
    summary="Algorithm 1 again, installed as a plug-in",
    problems=True,
)
"""


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(dist, module, solver_name, entry_points)``: a real installed distribution in a folder put on
    sys.path (``DIST-0.0.dist-info`` with METADATA and entry_points.txt, plus ``MODULE.py`` defining a
    Solver ``SOLVER`` called ``solver_name``). The registry forgets its entry points before and after the
    test, and the modules are unloaded, so no other test sees them."""
    solvers.registry._forget_entry_points()
    modules = []

    def install(dist, module, solver_name, entry_points):
        site = tmp_path / dist
        info = site / f"{dist}-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0\n")
        lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[nmf_lab.solvers]\n{lines}")
        (site / f"{module}.py").write_text(textwrap.dedent(PLUGIN_MODULE.format(solver_name=solver_name)))
        modules.append(module)
        monkeypatch.syspath_prepend(str(site))

    yield install
    solvers.registry._forget_entry_points()
    for module in modules:
        sys.modules.pop(module, None)


def test_an_installed_entry_point_solver_is_found_and_runs(install):
    install("mytest-dist", "mytestpkg", "mytest", {"mytest": "mytestpkg:SOLVER"})
    get_solver("mu")  # a name the registry has: the entry points are not loaded yet
    assert "mytestpkg" not in sys.modules
    entry = get_solver("mytest")
    assert entry is sys.modules["mytestpkg"].SOLVER and "mytest" in solver_names()
    A = random_nonnegative((8, 6), seed=0)
    result = fit_nmf(A, 2, solver="mytest", max_iter=50)
    np.testing.assert_array_equal(result.errors, fit_nmf(A, 2, solver="mu", max_iter=50).errors)
    assert result.solver == "mytest" and result.options == {"delta": 1e-9}


def test_entry_points_are_loaded_once(install):
    install("first-dist", "firstpkg", "first", {"first": "firstpkg:SOLVER"})
    assert "first" in solver_names()
    install("second-dist", "secondpkg", "second", {"second": "secondpkg:SOLVER"})
    with pytest.raises(ValueError, match="unknown solver 'second'"):
        get_solver("second")
    assert "secondpkg" not in sys.modules


def test_an_entry_point_named_unlike_its_solver_is_a_clear_error(install):
    install("misnamed-dist", "misnamedpkg", "mytest2", {"othername": "misnamedpkg:SOLVER"})
    message = (
        "entry point othername = 'misnamedpkg:SOLVER' of group 'nmf_lab.solvers' (distribution misnamed-dist) "
        "names a Solver called 'mytest2': the entry point's name must be the solver's name"
    )
    for _ in range(2):  # nothing is registered, and the next lookup says so again
        with pytest.raises(ValueError, match=re.escape(message)):
            solver_names()
    with pytest.raises(ValueError, match=re.escape(message)):
        get_solver("mytest2")
    assert get_solver("mu").name == "mu"


def test_an_entry_point_must_name_a_solver_and_a_free_name(install):
    install("clash-dist", "clashpkg", "mu", {"mu": "clashpkg:SOLVER"})
    with pytest.raises(ValueError, match=r"entry point mu = .*: a different solver named 'mu' is registered already"):
        solver_names()
    solvers.registry._forget_entry_points()
    install("odd-dist", "oddpkg", "odd", {"odd": "oddpkg:get_solver"})
    with pytest.raises(TypeError, match=r"entry point odd = .* must name a nmf_lab.core.solvers.Solver, got function"):
        get_solver("odd")
