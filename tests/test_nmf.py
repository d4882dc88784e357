"""The NMF core against theory (spec Task 1a-1g, section 2.2) and an independent reading of Algorithm 1."""

from __future__ import annotations

import re

import numpy as np
import pytest

import nmf_lab
from nmf_lab import fit_nmf, numerical_rank, random_init, truncated_svd, truncation_errors
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.problems import DenseProblem
from nmf_lab.core.solvers import get_solver
from nmf_lab.data.toy import MOVIE_RATINGS, TOY_MATRICES


def multiplicative_updates(A, W, H, delta):
    """The registered "mu" update generator (Algorithm 1), in place on ``W`` and ``H``."""
    return get_solver("mu").update(DenseProblem(A), W, H, delta=delta)


def naive_algorithm_1(A, W, H, delta, max_iter):
    """Algorithm 1 written as literally as the spec prints it, with the full residual for the error."""
    W, H = W.copy(), H.copy()
    errors = [np.linalg.norm(A - W @ H, "fro")]
    for _ in range(max_iter):
        H = H * (W.T @ A) / (W.T @ W @ H + delta)
        W = W * (A @ H.T) / (W @ H @ H.T + delta)
        errors.append(np.linalg.norm(A - W @ H, "fro"))
    return W, H, np.array(errors)


def random_nonnegative(shape, seed):
    return np.random.default_rng(seed).uniform(0, 1, size=shape)


@pytest.mark.parametrize("shape, rank", [((6, 6), 2), ((30, 20), 4), ((7, 40), 3)])
def test_mu_matches_a_literal_reading_of_algorithm_1(shape, rank):
    A = random_nonnegative(shape, seed=1)
    W0, H0 = random_init(A, rank, seed=3)
    result = fit_nmf(A, rank, init=(W0, H0), max_iter=200, delta=1e-9)
    W, H, errors = naive_algorithm_1(A, W0, H0, 1e-9, 200)
    np.testing.assert_allclose(result.W, W, rtol=1e-9)
    np.testing.assert_allclose(result.H, H, rtol=1e-9)
    np.testing.assert_allclose(result.errors, errors, rtol=1e-9)


def test_random_init_follows_the_documented_contract():
    A = random_nonnegative((5, 7), seed=0)
    rng = np.random.default_rng(42)
    scale = np.sqrt(A.mean() / 3)
    W0, H0 = random_init(A, 3, seed=42)
    np.testing.assert_array_equal(W0, rng.uniform(0, 1, size=(5, 3)) * scale)
    np.testing.assert_array_equal(H0, rng.uniform(0, 1, size=(3, 7)) * scale)
    result = fit_nmf(A, 3, seed=42, max_iter=0)
    np.testing.assert_array_equal(result.W, W0)
    assert result.errors.shape == (1,) and result.n_iter == 0


@pytest.mark.parametrize("name", sorted(TOY_MATRICES))
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_iterates_stay_non_negative(name, rank):
    """Task 1a: positive starts and a non-negative A keep every iterate non-negative."""
    A = TOY_MATRICES[name]
    W, H = random_init(A, rank, seed=0)
    steps = multiplicative_updates(A, W, H, delta=1e-9)
    for _ in range(300):
        next(steps)
        assert W.min() >= 0 and H.min() >= 0


def test_h_is_a_fixed_point_when_wh_equals_a():
    """Task 1b: with WH = A the update ratio (W^T A) / (W^T W H) is all ones, so H does not move."""
    rng = np.random.default_rng(7)
    W, H = rng.uniform(0.5, 2, size=(8, 3)), rng.uniform(0.5, 2, size=(3, 9))
    A = W @ H
    np.testing.assert_allclose((W.T @ A) / (W.T @ W @ H), 1.0, rtol=1e-12)
    result = fit_nmf(A, 3, init=(W, H), max_iter=5, delta=0.0)
    np.testing.assert_allclose(result.H, H, rtol=1e-12)
    np.testing.assert_allclose(result.W, W, rtol=1e-12)
    assert result.final_error < 1e-12 * np.linalg.norm(A)


@pytest.mark.parametrize("which", ["W0", "H0"])
def test_all_zero_init_is_rejected(which):
    """Task 1c: zero entries stay zero under multiplicative updates, so a zero start never moves."""
    A = TOY_MATRICES["A2"]
    W0, H0 = np.ones((3, 1)), np.ones((1, 2))
    init = (np.zeros_like(W0), H0) if which == "W0" else (W0, np.zeros_like(H0))
    with pytest.raises(ValueError, match=f"init {which} is all zeros.*never leave"):
        fit_nmf(A, 1, init=init)


@pytest.mark.parametrize("seed", range(8))
def test_a1_with_one_component_has_error_one_for_every_seed(seed):
    """Task 1d: I has singular values (1, 1); every rank-1 approximation is at distance >= 1, and NMF
    reaches that bound."""
    result = fit_nmf(TOY_MATRICES["A1"], 1, seed=seed)
    assert result.final_error == pytest.approx(1.0, abs=1e-9)
    assert result.errors.min() >= 1.0 - 1e-12


@pytest.mark.parametrize("shape", [(4, 4), (20, 30), (60, 15)])
@pytest.mark.parametrize("rank", [1, 2, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_error_never_increases(shape, rank, seed):
    """Equation 17. The tracked error is exact to about 1e-12 relative, so that is the only rise allowed."""
    A = random_nonnegative(shape, seed=seed + 10)
    errors = fit_nmf(A, rank, seed=seed, max_iter=500).errors
    assert np.all(np.diff(errors) <= 1e-12 * errors[0])
    assert errors[-1] < errors[0]


@pytest.mark.parametrize("shape, rank", [((30, 20), 4), ((12, 50), 7)])
def test_nmf_error_is_bounded_below_by_the_truncated_svd(shape, rank):
    """Eckart-Young: no rank-d matrix, NMF included, is closer to A than the truncated SVD."""
    A = random_nonnegative(shape, seed=5)
    bound = np.linalg.norm(A - truncated_svd(A, rank))
    assert fit_nmf(A, rank, max_iter=300).errors.min() >= bound * (1 - 1e-12)


@pytest.mark.parametrize(
    "A, rank, reaches",
    [
        (TOY_MATRICES["A3"], 2, 1e-8),
        (TOY_MATRICES["A3"], 3, 1e-8),
        (TOY_MATRICES["A1"], 2, 1e-8),
        (TOY_MATRICES["A4"], 3, 1e-2),
        (TOY_MATRICES["A2"], 1, 1.0),
        (MOVIE_RATINGS, 2, 3.0),
    ],
    ids=["A3-2", "A3-3", "A1-2", "A4-3", "A2-1", "movies-2"],
)
def test_toy_error_curves_are_exact(A, rank, reaches):
    """On a toy matrix every errors[k] is ||A - W_k H_k||_F to the last bit or so (relative 1e-15), also where
    it falls to ~1e-9; the iterates come from an independent run of the same updates. The product formula
    ||A||^2 - 2<W^T A, H> + <W^T W H, H> on the same iterates is further off than that."""
    result = fit_nmf(A, rank, seed=0, max_iter=1000)
    W, H = random_init(A, rank, seed=0)
    exact, formula = [np.linalg.norm(A - W @ H)], [np.nan]
    steps = multiplicative_updates(A, W, H, delta=1e-9)
    for _ in range(1000):
        side = next(steps).H  # H's subproblem at the new W: C = W^T A and G H = W^T W H
        exact.append(np.linalg.norm(A - W @ H))
        squared = np.sum(A * A) - 2 * np.vdot(side.sub.C, H) + np.vdot(side.GX, H)
        formula.append(np.sqrt(max(squared, 0.0)))
    exact, formula = np.array(exact), np.array(formula)
    assert exact[-1] < reaches
    np.testing.assert_allclose(result.errors, exact, rtol=1e-15, atol=0)
    assert np.nanmax(np.abs(formula - exact) / exact) > 1e-15


def test_float32_stays_float32_and_integers_become_float64():
    A = random_nonnegative((20, 10), seed=0)
    result32 = fit_nmf(A.astype(np.float32), 3, max_iter=50)
    assert result32.W.dtype == np.float32 and result32.H.dtype == np.float32
    assert result32.errors.dtype == np.float64
    result64 = fit_nmf(A, 3, max_iter=50)
    np.testing.assert_allclose(result32.errors, result64.errors, rtol=1e-4)
    counts = fit_nmf(np.array([[1, 2], [3, 4]], dtype=np.int64), 1, max_iter=10)
    assert counts.W.dtype == np.float64 and counts.H.dtype == np.float64


@pytest.mark.parametrize("init", ["random", "nndsvd", "nndsvda", "nndsvdar", None])
def test_init_names_start_from_their_initial_factors(init):
    """A named init starts from nmf_lab.core.inits.initial_factors (with fit_nmf's seed); None means "random"."""
    from nmf_lab.core.inits import initial_factors

    A = random_nonnegative((9, 7), seed=4)
    W0, H0 = initial_factors(A, 3, init or "random", seed=5)
    start = fit_nmf(A, 3, init=init, seed=5, max_iter=0)
    np.testing.assert_array_equal(start.W, W0)
    np.testing.assert_array_equal(start.H, H0)
    np.testing.assert_array_equal(
        fit_nmf(A, 3, init=init, seed=5, max_iter=30).W, fit_nmf(A, 3, init=(W0, H0), max_iter=30).W
    )


def test_custom_init_is_not_modified():
    A = random_nonnegative((6, 5), seed=0)
    W0, H0 = random_init(A, 2, seed=1)
    W_copy, H_copy = W0.copy(), H0.copy()
    result = fit_nmf(A, 2, init=(W0, H0), max_iter=20)
    np.testing.assert_array_equal(W0, W_copy)
    np.testing.assert_array_equal(H0, H_copy)
    assert not np.array_equal(result.W, W0)


GOOD = np.ones((3, 2))


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((np.array([[1.0, -0.5], [-2.0, 1.0]]), 1), {}, "2 negative entries (minimum -2)"),
        ((np.array([[1.0, np.nan], [np.inf, 1.0]]), 1), {}, "1 NaN and 1 infinite entries"),
        ((np.ones(3), 1), {}, "2-D matrix (m x n), got an array of shape (3,)"),
        ((np.ones((2, 2, 2)), 1), {}, "got an array of shape (2, 2, 2)"),
        ((np.ones((0, 3)), 1), {}, "A is empty (shape (0, 3))"),
        ((np.array([["a"]]), 1), {}, "real numbers"),
        ((np.zeros((2, 2)), 1), {}, "A is all zeros"),
        ((GOOD, 0), {}, "rank must be a positive integer, got 0"),
        ((GOOD, 1.5), {}, "rank must be a positive integer, got 1.5"),
        ((GOOD, True), {}, "rank must be a positive integer, got True"),
        ((GOOD, 1), {"max_iter": -1}, "max_iter must be an integer >= 0, got -1"),
        ((GOOD, 1), {"delta": -1e-9}, "delta=-1e-09: a finite number >= 0"),
        ((GOOD, 1), {"delta": True}, "delta=True: a finite number >= 0"),
        ((GOOD, 1), {"solver": "hals", "delta": 1e-9}, "solver 'hals' has no option 'delta'; it has no options"),
        ((GOOD, 1), {"max_iters": 5}, "solver 'mu' has no option 'max_iters'; its options are delta"),
        ((GOOD, 1), {"seed": -3}, "seed must be an integer >= 0, got -3"),
        ((GOOD, 1), {"solver": "newton"}, "unknown solver 'newton'; known solvers: "),
        ((GOOD, 1), {"init": (np.ones((3, 2)), np.ones((1, 2)))}, "init W0 must have shape (3, 1)"),
        ((GOOD, 1), {"init": (np.ones((3, 1)), np.ones((2, 2)))}, "init H0 must have shape (1, 2)"),
        ((GOOD, 1), {"init": (-np.ones((3, 1)), np.ones((1, 2)))}, "init W0 has 3 negative entries"),
        (
            (GOOD, 1),
            {"init": np.ones(3)},
            "init must be one of random, nndsvd, nndsvda, nndsvdar or a pair (W0, H0) of arrays, got",
        ),
        ((GOOD, 1), {"init": "svd"}, "unknown init 'svd'; known inits: random, nndsvd, nndsvda, nndsvdar"),
        ((GOOD, 3), {"init": "nndsvd"}, "init='nndsvd' needs rank <= min(m, n) = 2"),
    ],
)
def test_bad_input_raises_a_clear_error(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_nmf(*args, **kwargs)


def test_unknown_solver_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"known solvers: .*\bmu\b"):
        fit_nmf(GOOD, 1, solver="newton")


@pytest.mark.parametrize("delta", [-1.0, float("inf"), "1e-9", True])
def test_a_bad_delta_is_an_invalid_option(delta):
    with pytest.raises(InvalidOption) as info:
        fit_nmf(GOOD, 1, solver="mu", delta=delta)
    assert info.value.key == "delta"


def test_delta_is_the_safe_division_constant_of_mu():
    """fit_nmf(A, d, solver="mu", max_iter=..., delta=..., seed=...) keeps working, delta reaching the updates:
    the run matches the literal Algorithm 1 with that delta, and differs from the default 1e-9."""
    A = random_nonnegative((8, 7), seed=2)
    result = fit_nmf(A, 3, solver="mu", max_iter=50, delta=1e-2, seed=0)
    _, _, errors = naive_algorithm_1(A, *random_init(A, 3, seed=0), 1e-2, 50)
    np.testing.assert_allclose(result.errors, errors, rtol=1e-12)
    assert result.options == {"delta": 1e-2}
    assert not np.allclose(fit_nmf(A, 3, max_iter=50, seed=0).errors, errors, rtol=1e-6)


def test_the_package_exports_the_registry_api():
    assert sorted(nmf_lab.__all__) == sorted(
        [
            "fit_nmf",
            "NMFResult",
            "random_init",
            "truncated_svd",
            "truncation_errors",
            "numerical_rank",
            "Solver",
            "Option",
            "register_solver",
            "solver_names",
            "transform",
            "INITS",
            "initial_factors",
        ]
    )
    assert all(hasattr(nmf_lab, name) for name in nmf_lab.__all__)
    assert not hasattr(nmf_lab, "SOLVERS")


@pytest.mark.parametrize("name, rank", [("A1", 2), ("A2", 2), ("A3", 2), ("A4", 3)])
def test_numerical_rank_of_the_toy_matrices(name, rank):
    """Task 1f: A3 has two equal rows (rank 2); A4 has determinant -9 (rank 3)."""
    assert numerical_rank(TOY_MATRICES[name]) == rank
    assert numerical_rank(TOY_MATRICES[name]) == np.linalg.matrix_rank(TOY_MATRICES[name])


def test_truncated_svd_is_the_best_rank_d_approximation():
    A = random_nonnegative((12, 9), seed=3)
    s = np.linalg.svd(A, compute_uv=False)
    errors = truncation_errors(A)
    assert errors[0] == pytest.approx(np.linalg.norm(A)) and errors[-1] == 0.0
    for d in range(1, 10):
        approx = truncated_svd(A, d)
        assert np.linalg.matrix_rank(approx) == d
        assert np.linalg.norm(A - approx) == pytest.approx(np.sqrt(np.sum(s[d:] ** 2)), abs=1e-10)
        assert errors[d] == pytest.approx(np.linalg.norm(A - approx), abs=1e-10)


def test_numerics_layer_imports_numpy_only():
    import subprocess
    import sys

    code = (
        "import sys, nmf_lab; "
        "heavy = [m for m in ('mlflow', 'hydra', 'matplotlib', 'PIL', 'omegaconf') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
