"""No silent NaN: the properties scikit-learn's own NMF tests check, over random problems of every shape.

For every solver, problem kind (dense, exact mask, imputed mask), loss (every β for mu), penalty, dtype and
start, on random matrices that are 1 x n, m x 1, tall, wide, dense or mostly zeros: the factors and the errors
are finite, the factors are non-negative, and ``errors[k]`` is the objective (``||M * (A - W_k H_k)||_F``
without a loss or penalty) at the iterate the solver reported (computed here from scratch in float64).
"""

from __future__ import annotations

import numpy as np
import pytest

from nmf_lab import fit_nmf
from nmf_lab.core.solvers import get_solver

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


def random_objective(seed: int, solver: str, A: np.ndarray):
    """A loss (any β for mu, Frobenius for the HALS family) and penalties, drawn apart from the problem; for
    β <= 0 the data are lifted above 0."""
    rng = np.random.default_rng(1000 + seed)
    beta = float(rng.choice([2.0, 2.0, 1.0, 0.0, 0.5, 1.5, 3.0])) if get_solver(solver).beta_losses else 2.0
    penalties = {}
    if rng.uniform() < 0.5:
        penalties = {"alpha_W": float(rng.choice([0.01, 0.1])), "l1_ratio": float(rng.choice([0.0, 0.5, 1.0]))}
        penalties["alpha_H"] = float(rng.choice([0.0, penalties["alpha_W"]]))
    return beta, penalties, (A + A.dtype.type(0.01) if beta <= 0 else A)


def objective(A, observed, W, H, beta, penalties) -> float:
    """What ``errors`` holds, from scratch in float64: the β-divergence (or the norm) plus the penalty."""
    A, P = A[observed].astype(np.float64), (W @ H)[observed]
    if beta == 2:
        loss = np.sum((A - P) ** 2) / 2
    elif beta == 1:
        loss = np.sum(np.where(A > 0, A * np.log(np.where(A > 0, A, 1) / np.where(A > 0, P, 1)), 0) - A + P)
    elif beta == 0:
        loss = np.sum(A / P - np.log(A / P) - 1)
    else:
        cross = np.where(A > 0, A * np.where(A > 0, P, 1) ** (beta - 1), 0)  # 0 where a = 0, even if p = 0
        loss = np.sum(A**beta + (beta - 1) * P**beta - beta * cross) / (beta * (beta - 1))
    (m, n), l1 = observed.shape, penalties.get("l1_ratio", 0.0)
    for X, alpha, scale in ((W, penalties.get("alpha_W", 0.0), n), (H, penalties.get("alpha_H", 0.0), m)):
        loss += alpha * scale * (l1 * X.sum() + (1 - l1) * (X**2).sum() / 2)
    return float(np.sqrt(2 * loss) if beta == 2 else loss)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_fit_is_finite_and_its_errors_are_the_masked_objective(probe, solver, seed):
    """With a loss and penalties drawn too (:func:`random_objective`): ``errors[k]`` is the objective
    minimised, ``||M * (A - W_k H_k)||_F`` for the Frobenius loss without a penalty."""
    A, mask, rank, init, delta = random_problem(seed)
    beta, penalties, A = random_objective(seed, solver, A)
    name, iterates = probe(solver)
    options = {"delta": delta} if solver == "mu" else {}
    observed = np.ones(A.shape, dtype=bool) if mask is None else mask
    for missing in ("exact", "impute") if mask is not None and beta == 2 else ("exact",):
        iterates.clear()
        result = fit_nmf(
            A, rank, solver=name, mask=mask, missing=missing, init=init, seed=seed, max_iter=25, loss=beta,
            **penalties, **options,
        )  # fmt: skip
        assert np.isfinite(result.W).all() and np.isfinite(result.H).all() and np.isfinite(result.errors).all()
        assert (result.W >= 0).all() and (result.H >= 0).all()
        exact = [objective(A, observed, W, H, beta, penalties) for W, H in iterates]
        rtol = 1e-3 if A.dtype == np.float32 else 1e-6
        scale = np.linalg.norm(observed * A) if beta == 2 and not penalties else result.errors[0]
        np.testing.assert_allclose(result.errors[1:], exact, rtol=rtol, atol=rtol * scale)


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
