"""Behaviour kept: every built-in solver's whole error curve, with and without a mask, from the random and the
nndsvda starts, on a few small fixed problems, and ``transform``'s coefficients, against the results the code
gave before the core was rewritten (recorded in ``tests/snapshots/core.npz`` by commit "Snapshot tests ...").

The error curves agree to rounding: relative 1e-9 at the last iterate and along the curve. ``transform`` now
iterates every column until all have met the tolerance (before, each converged column was frozen where it
met it), so its coefficients agree to the tolerance (1e-7), not to rounding: on the problem with zero rows
and columns they differ by up to 9e-8 of the largest, every column fitting at least as well as recorded.
Regenerate only on purpose: ``NMF_LAB_WRITE_SNAPSHOTS=1 pytest tests/test_snapshots.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nmf_lab import fit_nmf, transform

SNAPSHOT = Path(__file__).parent / "snapshots" / "core.npz"
SOLVERS = ["mu", "hals", "ahals", "ahals_extrapolated"]
INITS = ["random", "nndsvda"]
ITERATIONS = 40


def problem(name: str) -> tuple[np.ndarray, int]:
    """A small fixed problem: the matrix and its d."""
    rng = np.random.default_rng(7)
    if name == "tiny":  # 30 entries: every error is the exact norm
        return rng.uniform(0, 1, (6, 5)), 3
    if name == "low_rank":  # 40 x 60, rank 5 plus noise: the cheap error formula
        return rng.uniform(0, 1, (40, 5)) @ rng.uniform(0, 1, (5, 60)) + 0.01 * rng.uniform(0, 1, (40, 60)), 5
    if name == "zeros":  # 36 x 50 with zero rows and columns (the HALS solvers skip them), sparse
        A = rng.uniform(0, 1, (36, 50)) * (rng.uniform(0, 1, (36, 50)) < 0.6)
        A[[3, 17, 30]] = 0
        A[:, [0, 9, 41]] = 0
        return A, 6
    raise ValueError(name)


PROBLEMS = ["tiny", "low_rank", "zeros"]


def mask_of(A: np.ndarray) -> np.ndarray:
    mask = np.random.default_rng(11).uniform(0, 1, A.shape) < 0.7
    mask[:, 0] = mask[0] = True  # every row and column observed somewhere
    return mask


def cases():
    for name in PROBLEMS:
        for solver in SOLVERS:
            for init in INITS:
                for masked in (False, True):
                    yield f"{name}-{solver}-{init}-{'masked' if masked else 'dense'}", name, solver, init, masked


def fit(name, solver, init, masked):
    A, d = problem(name)
    return fit_nmf(A, d, solver=solver, init=init, seed=3, max_iter=ITERATIONS, mask=mask_of(A) if masked else None)


def projections(name: str, masked: bool) -> np.ndarray:
    A, d = problem(name)
    W = fit_nmf(A, d, solver="hals", seed=1, max_iter=60).W
    return transform(A, W, mask=mask_of(A) if masked else None).H


def record() -> dict[str, np.ndarray]:
    recorded = {key: fit(*case).errors for key, *case in cases()}
    recorded |= {f"transform-{n}-{m}": projections(n, m) for n in PROBLEMS for m in (False, True)}
    return recorded


if os.environ.get("NMF_LAB_WRITE_SNAPSHOTS") == "1":  # pragma: no cover - run on purpose only
    SNAPSHOT.parent.mkdir(exist_ok=True)
    np.savez_compressed(SNAPSHOT, **record())


@pytest.fixture(scope="module")
def snapshot():
    with np.load(SNAPSHOT) as stored:
        return dict(stored)


@pytest.mark.parametrize(("key", "name", "solver", "init", "masked"), list(cases()), ids=[c[0] for c in cases()])
def test_the_error_curve_is_the_one_recorded(snapshot, key, name, solver, init, masked):
    errors = fit(name, solver, init, masked).errors
    recorded = snapshot[key]
    assert errors.shape == recorded.shape
    np.testing.assert_allclose(errors[-1], recorded[-1], rtol=1e-9)
    np.testing.assert_allclose(errors, recorded, rtol=1e-9)


@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("masked", [False, True])
def test_transform_gives_the_coefficients_recorded(snapshot, name, masked):
    recorded = snapshot[f"transform-{name}-{masked}"]
    H = projections(name, masked)
    np.testing.assert_allclose(H, recorded, rtol=0, atol=1e-6 * recorded.max())
    A, d = problem(name)
    W = fit_nmf(A, d, solver="hals", seed=1, max_iter=60).W
    M = mask_of(A) if masked else np.ones(A.shape, dtype=bool)
    now, then = (np.linalg.norm(M * (A - W @ X), axis=0) for X in (H, recorded))
    assert (now <= then * (1 + 1e-9) + 1e-15).all()
