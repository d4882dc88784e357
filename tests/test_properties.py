"""No silent NaN: the properties scikit-learn's own NMF tests check, over random problems of every shape.

For every solver, problem kind (dense, exact mask, imputed mask), dtype and start, on random matrices
that are 1 x n, m x 1, tall, wide, dense or mostly zeros: the factors and the errors are finite, the factors
are non-negative, and ``errors[k]`` is ``||M * (A - W_k H_k)||_F`` at the iterate the solver reported
(computed here from scratch in float64).
"""

from __future__ import annotations

import numpy as np
import pytest

from nmf_lab import fit_nmf
from nmf_lab.core.solvers import Solver, get_solver

SOLVERS = ["mu", "hals", "ahals", "ahals_extrapolated"]
SHAPES = [(1, 9), (12, 1), (40, 6), (5, 50), (30, 30)]


def random_problem(seed: int):
    """A random matrix (shape, sparsity, dtype), a mask or None, a rank, a start and mu's delta."""
    rng = np.random.default_rng(seed)
    m, n = SHAPES[seed % len(SHAPES)]
    sparsity = rng.choice([0.0, 0.5, 0.9])
    A = rng.uniform(0, 1, (m, n)) * (rng.uniform(0, 1, (m, n)) >= sparsity)
    A.flat[rng.integers(A.size)] = 1.0  # never all zero
    dtype = np.float32 if rng.uniform() < 0.3 else np.float64
    mask = None
    if rng.uniform() < 0.6 and min(m, n) > 1:
        mask = rng.uniform(0, 1, (m, n)) < 0.7
        mask[np.arange(m), rng.integers(n, size=m)] = True  # every row and column observed somewhere
        mask[rng.integers(m, size=n), np.arange(n)] = True
        mask[np.unravel_index(np.argmax(A), A.shape)] = True
        if not np.any(A[mask]):
            mask = None
    rank = int(rng.integers(1, 6))
    init = "random" if rank > min(m, n) else rng.choice(["random", "nndsvd", "nndsvda", "nndsvdar"])
    return A.astype(dtype), mask, rank, str(init), float(rng.choice([0.0, 1e-9]))


@pytest.fixture
def recording(registered):
    """``recording(name)``: a solver that runs ``name`` and records a copy of every iterate it reports."""

    def make(name):
        inner, iterates = get_solver(name), []

        def update(problem, W, H, **options):
            steps = inner.update(problem, W, H, **options)
            error = None
            while True:
                report = steps.send(error)
                iterates.append((W.astype(np.float64), H.astype(np.float64)))
                error = yield report

        entry = Solver(
            name=f"recording-{name}",
            update=update,
            monotone=inner.monotone,
            options=inner.options,
            summary="records its iterates",
            problems=True,
        )
        return registered(entry), iterates

    return make


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_fit_is_finite_and_its_errors_are_the_masked_norm(recording, solver, seed):
    A, mask, rank, init, delta = random_problem(seed)
    name, iterates = recording(solver)
    options = {"delta": delta} if solver == "mu" else {}
    observed = np.ones(A.shape, dtype=bool) if mask is None else mask
    for missing in ("exact", "impute") if mask is not None else ("exact",):
        iterates.clear()
        result = fit_nmf(A, rank, solver=name, mask=mask, missing=missing, init=init, seed=seed, max_iter=25, **options)
        assert np.isfinite(result.W).all() and np.isfinite(result.H).all() and np.isfinite(result.errors).all()
        assert (result.W >= 0).all() and (result.H >= 0).all()
        exact = [np.linalg.norm(observed * (A - W @ H)) for W, H in iterates]
        rtol = 1e-3 if A.dtype == np.float32 else 1e-6
        np.testing.assert_allclose(result.errors[1:], exact, rtol=rtol, atol=rtol * np.linalg.norm(observed * A))


def test_mu_without_delta_on_an_exact_low_rank_matrix_with_many_zeros_stays_finite_and_never_rises():
    """The case a new user met: ``mu`` with ``delta = 0`` gave NaN factors and errors (0 / 0), silently."""
    rng = np.random.default_rng(0)
    W = rng.uniform(0, 1, (15, 5)) * (rng.uniform(0, 1, (15, 5)) < 0.4)
    H = rng.uniform(0, 1, (5, 10)) * (rng.uniform(0, 1, (5, 10)) < 0.4)
    X = W @ H
    assert (X == 0).mean() > 0.5
    result = fit_nmf(X, 5, solver="mu", delta=0.0, max_iter=2000)
    assert np.isfinite(result.W).all() and np.isfinite(result.H).all() and np.isfinite(result.errors).all()
    assert (np.diff(result.errors) <= 1e-12 * result.errors[0]).all()  # Lee & Seung: it never increases
    assert result.errors[-1] < 0.05 * result.errors[0]
    np.testing.assert_allclose(result.final_error, np.linalg.norm(X - result.W @ result.H), rtol=1e-9)
