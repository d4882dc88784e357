"""Fitting with missing entries: ``fit_nmf(A, d, mask=M)`` minimises ``||M * (A - W H)||_F``.

Every solver against independent references: weighted multiplicative updates and exact masked coordinate
descent written out from their formulas, recovery of an exactly factorizable matrix with 30 % of its entries
missing (the fill of the missing entries included), invariance to whatever sits outside the mask, the
unmasked results for an all-True mask, tracked errors that are the exact masked norm at every iterate, the
stopping rules, the random initial guess's scale, validation, and the protocol for plug-in solvers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nmf_lab import fit_nmf, random_init
from nmf_lab.core.problems import EXACT_SIZE, DenseProblem, MaskedProblem, component_floor
from nmf_lab.core.solvers import Option, Products, Solver, get_solver, solver_names
from nmf_lab.core.validation import check_data, check_mask

BUILT_INS = ["mu", "hals", "ahals", "ahals_extrapolated"]
MONOTONE = [name for name in BUILT_INS if get_solver(name).monotone]


def random_nonnegative(shape, seed):
    return np.random.default_rng(seed).uniform(0, 1, size=shape)


def random_mask(shape, missing, seed):
    """A mask with about ``missing`` of the entries False and at least one True in every row and column."""
    mask = np.random.default_rng(seed).uniform(size=shape) >= missing
    assert mask.any(axis=0).all() and mask.any(axis=1).all()
    return mask


def rank_5_matrix(m=30, n=24):
    """An exactly factorizable m x n matrix W* H*, d = 5, with strictly positive, well-conditioned factors
    (a dominant entry per row of W* and per column of H*; as in test_solvers)."""
    rng = np.random.default_rng(10)
    W = 0.2 * rng.uniform(size=(m, 5))
    W[np.arange(m), np.arange(m) % 5] += 1
    H = 0.2 * rng.uniform(size=(5, n))
    H[np.arange(n) % 5, np.arange(n)] += 1
    return W @ H


def masked_norm(A, mask, W, H):
    """``||M * (A - W H)||_F`` from scratch in float64, the unobserved entries of A (maybe NaN) left out."""
    residual = np.where(mask, A, 0.0) - W.astype(np.float64) @ H.astype(np.float64)
    return float(np.linalg.norm(residual[mask]))


# --------------------------------------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------------------------------------


def weighted_mu(A, M, W, H, delta, max_iter):
    """The weighted multiplicative updates written from the formula: H first, then W with the new H."""
    A, M = np.where(M, A, 0.0), M.astype(np.float64)
    W, H = W.copy(), H.copy()
    errors = [np.linalg.norm(M * (A - W @ H))]
    for _ in range(max_iter):
        H = H * (W.T @ (M * A)) / (W.T @ (M * (W @ H)) + delta)
        W = W * ((M * A) @ H.T) / ((M * (W @ H)) @ H.T + delta)
        errors.append(np.linalg.norm(M * (A - W @ H)))
    return W, H, np.array(errors)


def masked_hals(A, M, W, H, rank, max_iter):
    """Masked HALS written from its formula, one coordinate at a time on the residual: after the start (W and
    H raised to the floor, rows of W and columns of H for zero rows and columns of M * A put at it, then
    scaled by sqrt(<M * A, WH> / ||M * WH||^2) each; errors[0] is taken before it, at the initial guess as
    given), every iteration sets for
    k = 1..d ``h_kj = max(eps0, sum_i m_ij w_ik r_ij / sum_i m_ij w_ik^2)``, r the residual without
    component k, then the columns of W alike. eps0 = eps * sqrt(mean of the observed entries / d)."""
    A, M = np.where(M, A, 0.0), M.astype(np.float64)
    errors = [np.linalg.norm(M * (A - W @ H))]  # at the initial guess as given
    floor = np.finfo(np.float64).eps * np.sqrt(A.sum() / M.sum() / rank)
    zero_rows, zero_cols = ~A.any(axis=1), ~A.any(axis=0)

    def clamp(W, H):
        W, H = np.maximum(W, floor), np.maximum(H, floor)
        W[zero_rows], H[:, zero_cols] = floor, floor  # their exact optimum, whatever the other factor
        return W, H

    W, H = clamp(W, H)
    scale = np.sqrt(np.sum(A * (W @ H)) / np.sum((M * (W @ H)) ** 2))
    W, H = clamp(W * scale, H * scale)
    for _ in range(max_iter):
        for k in range(rank):
            R = M * (A - W @ H + np.outer(W[:, k], H[k]))
            H[k] = np.maximum(floor, (W[:, k] @ R) / (W[:, k] ** 2 @ M))
        for k in range(rank):
            R = M * (A - W @ H + np.outer(W[:, k], H[k]))
            W[:, k] = np.maximum(floor, (R @ H[k]) / (M @ H[k] ** 2))
        errors.append(np.linalg.norm(M * (A - W @ H)))
    return W, H, np.array(errors)


@pytest.mark.parametrize("shape, rank, missing", [((6, 6), 2, 0.3), ((30, 20), 4, 0.3), ((40, 30), 3, 0.5)])
def test_mu_is_the_weighted_multiplicative_update_of_the_formula(shape, rank, missing):
    """(40, 30) has more than EXACT_SIZE entries: its errors come from the product formula."""
    A, M = random_nonnegative(shape, seed=1), random_mask(shape, missing, seed=2)
    W0, H0 = random_init(A, rank, seed=3)
    result = fit_nmf(np.where(M, A, np.nan), rank, mask=M, init=(W0, H0), max_iter=100, delta=1e-9)
    W, H, errors = weighted_mu(A, M, W0, H0, 1e-9, 100)
    np.testing.assert_allclose(result.W, W, rtol=1e-12)
    np.testing.assert_allclose(result.H, H, rtol=1e-12)
    np.testing.assert_allclose(result.errors, errors, rtol=1e-12)
    unmasked = fit_nmf(A, rank, init=(W0, H0), max_iter=100)
    assert not np.allclose(unmasked.W, W, rtol=1e-3)  # the mask matters


@pytest.mark.parametrize("name", ["hals", "ahals"])
@pytest.mark.parametrize("with_zeros", [False, True], ids=["positive", "zero-rows-and-columns"])
def test_the_hals_solvers_are_exact_masked_coordinate_descent(name, with_zeros):
    """hals does one pass of the reference per update; ahals with alpha = 0 is hals. With all-zero observed
    rows and columns the solver skips them (at the floor) and adds their floor terms to the Gram matrices in
    closed form; the reference does every row alike."""
    A, M = random_nonnegative((25, 18), seed=4), random_mask((25, 18), 0.3, seed=5)
    if with_zeros:
        A[[3, 11]] = 0
        A[:, 7] = 0
    W0, H0 = random_init(A, 4, seed=6)
    options = {"alpha": 0.0} if name == "ahals" else {}
    result = fit_nmf(np.where(M, A, np.nan), 4, mask=M, solver=name, init=(W0, H0), max_iter=60, **options)
    W, H, errors = masked_hals(A, M, W0, H0, 4, 60)
    np.testing.assert_allclose(result.errors, errors, rtol=1e-10)
    np.testing.assert_allclose(result.W, W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.H, H, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------------------
# Recovery with 30 % missing
# --------------------------------------------------------------------------------------------------------


def exactly_missing(shape, missing, seed):
    """A mask with exactly ``round(missing * size)`` entries False, drawn uniformly."""
    mask = np.ones(shape, dtype=bool)
    mask.flat[np.random.default_rng(seed).permutation(mask.size)[: round(missing * mask.size)]] = False
    assert mask.any(axis=0).all() and mask.any(axis=1).all()
    return mask


RECOVERY = {"mu": 20_000, "hals": 2000, "ahals": 1000, "ahals_extrapolated": 500}
"""Iterations for the recovery test; measured on these masks, the masked error falls below 1e-4 relative
after 1000-2600 (mu), 63-69 (hals), 50-76 (ahals) and 21-54 (ahals_extrapolated) iterations."""

FILL_BOUND = {"mu": 1e-7, "hals": 1e-12, "ahals": 1e-12, "ahals_extrapolated": 1e-12}
"""Bounds on the relative error of the fill of the missing entries, ``||(A - WH)[~M]|| / ||A[~M]||``;
measured: mu 1.7e-9 to 4.1e-9 (masked error ~7e-10), the HALS solvers at most 8.9e-16 (rounding)."""


@pytest.mark.parametrize(
    "name, mask_seed",
    [(name, seed) for name in BUILT_INS for seed in ((101,) if name == "mu" else (101, 102))],  # mu: 20,000 its
)
def test_every_solver_recovers_an_exactly_factorizable_matrix_with_30_percent_missing(name, mask_seed):
    """A = W* H* (30 x 24, d = 5) with 30 % of its entries missing (NaN there): every solver fits the observed
    entries to below 1e-4 relative, and W H fills in the missing ones with the true values."""
    A = rank_5_matrix()
    M = exactly_missing(A.shape, 0.3, seed=mask_seed)
    result = fit_nmf(np.where(M, A, np.nan), 5, mask=M, solver=name, seed=1, max_iter=RECOVERY[name])
    WH = result.W @ result.H
    observed, missing = np.linalg.norm(A[M]), np.linalg.norm(A[~M])
    assert result.final_error < 1e-4 * observed
    assert masked_norm(A, M, result.W, result.H) < 1e-4 * observed
    assert np.linalg.norm((A - WH)[~M]) < FILL_BOUND[name] * missing


# --------------------------------------------------------------------------------------------------------
# What the mask means
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILT_INS)
@pytest.mark.parametrize("shape", [(12, 9), (50, 40)], ids=["exact-errors", "tracked-errors"])
@pytest.mark.parametrize("init", ["random", "nndsvda"])
def test_entries_outside_the_mask_change_nothing(name, shape, init):
    A, M = random_nonnegative(shape, seed=7), random_mask(shape, 0.3, seed=8)
    runs = []
    for outside in (0.0, np.nan, np.inf, -5.0, 1e6):
        B = np.where(M, A, outside)
        runs.append(fit_nmf(B, 3, mask=M, solver=name, init=init, seed=2, max_iter=40))
    for run in runs[1:]:
        np.testing.assert_array_equal(run.W, runs[0].W)
        np.testing.assert_array_equal(run.H, runs[0].H)
        np.testing.assert_array_equal(run.errors, runs[0].errors)
    assert np.isfinite(runs[0].W).all() and np.isfinite(runs[0].H).all()


@pytest.mark.parametrize("name", BUILT_INS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_all_true_mask_gives_the_unmasked_fit(name, dtype):
    A = random_nonnegative((40, 30), seed=9)
    plain = fit_nmf(A, 4, solver=name, seed=1, max_iter=50, dtype=dtype)
    masked = fit_nmf(A, 4, mask=np.ones(A.shape, dtype=bool), solver=name, seed=1, max_iter=50, dtype=dtype)
    np.testing.assert_array_equal(masked.W, plain.W)
    np.testing.assert_array_equal(masked.H, plain.H)
    np.testing.assert_array_equal(masked.errors, plain.errors)


@pytest.mark.parametrize("name", BUILT_INS)
def test_the_masked_algorithm_with_every_entry_observed_is_the_unmasked_one(name):
    """fit_nmf hands an all-True mask over as None; the masked problem itself, driven directly with an
    all-True mask, gives the same iterates up to rounding (its products are taken differently)."""
    A = random_nonnegative((40, 30), seed=10)
    entry, ones = get_solver(name), np.ones(A.shape, dtype=bool)
    options = entry.resolve_options({})
    W1, H1 = random_init(A, 4, seed=1)
    W2, H2 = W1.copy(), H1.copy()
    plain = entry.update(DenseProblem(A), W1, H1, **options)
    masked = entry.update(MaskedProblem(A, ones), W2, H2, **options)
    for _ in range(30):
        next(plain)
        next(masked)
    np.testing.assert_allclose(W2, W1, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(H2, H1, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("name", BUILT_INS)
@pytest.mark.parametrize(
    "make_A, rank, rtol",
    [
        (lambda: random_nonnegative((9, 12), seed=11), 3, 1e-14),
        (lambda: rank_5_matrix(), 5, 1e-14),
        (lambda: random_nonnegative((50, 40), seed=12), 4, 1e-6),
        (lambda: rank_5_matrix(60, 40), 5, 1e-6),
    ],
    ids=["9x12", "rank5-30x24", "50x40", "rank5-60x40"],
)
def test_tracked_errors_are_the_exact_masked_norm_at_every_iterate(probe, name, make_A, rank, rtol):
    """Up to EXACT_SIZE entries every error is the exact masked norm; above, the product formula, within a
    relative 1e-6 down to where it cancels (the rank-5 matrix is fitted to ~1e-12) and the exact norm takes
    over."""
    A = make_A()
    M = random_mask(A.shape, 0.3, seed=13)
    probe_name, iterates = probe(name)
    result = fit_nmf(np.where(M, A, np.nan), rank, mask=M, solver=probe_name, seed=3, max_iter=300)
    W0, H0 = random_init(np.where(M, A, 0.0), rank, seed=3)  # scaled below: only its shape and seed matter
    scale = np.sqrt(A[M].mean() / np.where(M, A, 0.0).mean())
    exact = [masked_norm(A, M, W0 * scale, H0 * scale)] + [masked_norm(A, M, W, H) for W, H in iterates]
    assert (A.size > EXACT_SIZE) == (rtol > 1e-14)
    np.testing.assert_allclose(result.errors, exact, rtol=rtol, atol=0)
    assert masked_norm(A, M, result.W, result.H) == pytest.approx(result.final_error, rel=max(rtol, 1e-12))


@pytest.mark.parametrize("name", MONOTONE)
@pytest.mark.parametrize("shape, rank, seed", [((30, 20), 4, 0), ((12, 50), 3, 1), ((50, 40), 5, 2)])
def test_the_masked_error_never_increases_for_the_monotone_solvers(name, shape, rank, seed):
    A, M = random_nonnegative(shape, seed=seed + 20), random_mask(shape, 0.3, seed=seed + 30)
    result = fit_nmf(A, rank, mask=M, solver=name, seed=seed, max_iter=300)
    assert np.all(np.diff(result.errors) <= 1e-10 * np.linalg.norm(A[M]))
    assert result.errors[-1] < result.errors[0]


def test_the_extrapolated_solver_returns_its_best_masked_iterate():
    A, M = random_nonnegative((40, 30), seed=3), random_mask((40, 30), 0.3, seed=4)
    result = fit_nmf(A, 4, mask=M, solver="ahals_extrapolated", seed=2, max_iter=300)
    assert np.any(np.diff(result.errors) > 1e-6 * result.errors[0]), "this case should exercise a restart"
    assert result.errors[result.best_iter] == result.errors.min() == result.final_error
    assert masked_norm(A, M, result.W, result.H) == pytest.approx(result.final_error, rel=1e-9)


# --------------------------------------------------------------------------------------------------------
# Stopping rules, dtypes, the initial guess
# --------------------------------------------------------------------------------------------------------


def masked_projected_gradient(A, M, W, H, floor):
    """``||grad^P f||_F`` for ``f = ||M * (A - WH)||^2 / 2``, from scratch."""
    R = np.where(M, W @ H - A, 0.0)
    grad_W, grad_H = R @ H.T, W.T @ R
    grad_W[np.less_equal(W, floor) & (grad_W >= 0)] = 0  # at the bound with a non-negative gradient
    grad_H[np.less_equal(H, floor) & (grad_H >= 0)] = 0
    return np.sqrt(np.sum(grad_W**2) + np.sum(grad_H**2))


@pytest.mark.parametrize("name", BUILT_INS)
def test_tolerance_stops_on_the_masked_projected_gradient(probe, name):
    A = rank_5_matrix()
    M = random_mask(A.shape, 0.3, seed=102)
    probe_name, iterates = probe(name)
    tol = 1e-4
    result = fit_nmf(A, 5, mask=M, solver=probe_name, seed=1, max_iter=20_000, tol=tol)
    assert result.stop_reason == "tol" and result.n_iter < 20_000
    floor = component_floor(np.where(M, A, 0.0), 5, M)
    W0, H0 = random_init(A, 5, seed=1)
    W0, H0 = W0 * np.sqrt(A[M].mean() / A.mean()), H0 * np.sqrt(A[M].mean() / A.mean())
    initial = masked_projected_gradient(A, M, W0, H0, floor)
    gradients = [masked_projected_gradient(A, M, W, H, floor) for W, H in iterates]
    assert gradients[-1] <= tol * initial * (1 + 1e-6)
    assert all(g > tol * initial * (1 - 1e-6) for g in gradients[:-1])


@pytest.mark.parametrize("name", BUILT_INS)
def test_time_limit_stops_a_masked_run(name):
    A, M = random_nonnegative((40, 30), seed=0), random_mask((40, 30), 0.3, seed=1)
    result = fit_nmf(A, 4, mask=M, solver=name, max_iter=10**9, time_limit=0.05)
    assert result.stop_reason == "time_limit" and result.times[-1] >= 0.05


@pytest.mark.parametrize("name", BUILT_INS)
def test_float32_masked_fit_stays_float32_near_the_float64_one(name):
    A, M = random_nonnegative((40, 30), seed=3), random_mask((40, 30), 0.3, seed=5)
    result64 = fit_nmf(A, 4, mask=M, solver=name, seed=2, max_iter=100)
    result32 = fit_nmf(A, 4, mask=M, solver=name, seed=2, max_iter=100, dtype="float32")
    assert result32.W.dtype == result32.H.dtype == np.float32
    assert result32.final_error == pytest.approx(result64.final_error, rel=1e-4)


def test_the_random_initial_guess_scales_by_the_mean_of_the_observed_entries():
    A = random_nonnegative((8, 10), seed=0)
    M = random_mask(A.shape, 0.3, seed=1)
    A[~M] = 100.0  # would dominate mean(A)
    rng = np.random.default_rng(42)
    scale = np.sqrt(A[M].mean() / 3)
    result = fit_nmf(A, 3, mask=M, seed=42, max_iter=0)
    np.testing.assert_allclose(result.W, rng.uniform(0, 1, size=(8, 3)) * scale, rtol=1e-15)
    np.testing.assert_allclose(result.H, rng.uniform(0, 1, size=(3, 10)) * scale, rtol=1e-15)
    assert result.errors[0] == pytest.approx(masked_norm(A, M, result.W, result.H), rel=1e-14)


# --------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------

GOOD = np.array([[1.0, 2.0, 0.5], [0.0, 3.0, 1.0]])
OBSERVED = np.array([[True, False, True], [True, True, False]])


@pytest.mark.parametrize(
    "A, mask, message",
    [
        (
            np.array([[1.0, np.nan, 1.0], [np.nan, 1.0, 1.0]]),
            OBSERVED,
            "A has 1 NaN and 0 infinite entries inside the mask",
        ),
        (
            np.array([[1.0, 1.0, np.inf], [1.0, 1.0, 1.0]]),
            OBSERVED,
            "A has 0 NaN and 1 infinite entries inside the mask",
        ),
        (-GOOD, OBSERVED, "A has 3 negative entries inside the mask (minimum -3); NMF needs every entry inside the"),
        (np.where(OBSERVED, 0.0, 5.0), OBSERVED, "A is all zeros on the observed entries (the mask)"),
        (
            GOOD,
            OBSERVED.astype(int),
            "mask must be a NumPy array of dtype bool (True where A is observed), got dtype int64",
        ),
        (GOOD, OBSERVED.astype(float), "got dtype float64; convert 0/1 values with mask.astype(bool)"),
        (GOOD, OBSERVED.tolist(), "mask must be None or a NumPy array of dtype bool, got list"),
        (GOOD, OBSERVED.T, "mask must have the shape of A, (2, 3), got (3, 2)"),
        (GOOD, OBSERVED[:1], "mask must have the shape of A, (2, 3), got (1, 3)"),
        (
            GOOD,
            np.array([[True, True, True], [False, False, False]]),
            "mask leaves 1 row of A with no observed entry (row indices 1); every row and every column needs",
        ),
        (
            GOOD,
            np.array([[True, False, False], [True, False, True]]),
            "mask leaves 1 column of A with no observed entry (column indices 1)",
        ),
        (
            np.ones((3, 8)),
            np.eye(3, 8, dtype=bool),
            "mask leaves 5 columns of A with no observed entry (column indices 3, 4, 5, 6, 7)",
        ),
        (
            np.ones((9, 2)),
            np.eye(9, 2, dtype=bool),
            "mask leaves 7 rows of A with no observed entry (row indices 2, 3, 4, 5, 6, ...)",
        ),
    ],
)
def test_a_bad_mask_or_bad_observed_data_raises_a_clear_error(A, mask, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_nmf(A, 1, mask=mask)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_data(A, mask)


def test_check_data_zeroes_the_unobserved_entries_in_a_copy():
    A = np.array([[1.0, np.nan, 2.0], [3.0, 4.0, -1.0]])
    before = A.copy()
    checked = check_data(A, OBSERVED)
    np.testing.assert_array_equal(checked, [[1.0, 0.0, 2.0], [3.0, 4.0, 0.0]])
    np.testing.assert_array_equal(A, before)  # NaN compares equal in assert_array_equal
    assert check_mask(None, (2, 3)) is None
    assert check_mask(OBSERVED, (2, 3)) is OBSERVED
    assert check_data(GOOD) is GOOD  # no mask: no copy, as before
    assert check_data(np.float32(GOOD), None).dtype == np.float32


# --------------------------------------------------------------------------------------------------------
# The protocol: solvers declare whether they support masks
# --------------------------------------------------------------------------------------------------------


def mu_without_masks(A, W, H, *, delta):
    """A plug-in written before masks: no ``mask`` parameter."""
    while True:
        H *= (W.T @ A) / (W.T @ W @ H + delta)
        W *= (A @ H.T) / (W @ H @ H.T + delta)
        yield Products(AHt=A @ H.T, HHt=H @ H.T, WtW=W.T @ W, WtA=W.T @ A)


def test_a_solver_without_mask_support_is_refused_a_mask_and_still_runs_without_one(registered):
    entry = Solver(
        name="test-no-masks",
        update=mu_without_masks,
        monotone=True,
        options={"delta": Option(1e-9, lambda value: value >= 0, "a number >= 0", "added to the denominators")},
        summary="multiplicative updates that know nothing of masks",
    )
    name = registered(entry)
    assert entry.supports_mask is False
    mu = get_solver("mu")
    with_masks = registered(
        Solver(
            name="test-with-masks",
            update=mu.update,
            monotone=True,
            options=mu.options,
            summary="mu, renamed",
            supports_mask=True,
        )
    )
    A = random_nonnegative((10, 8), seed=0)
    refusal = re.escape(f"solver '{name}' does not support masks (its registry entry has supports_mask=False); ")
    for mask in (random_mask(A.shape, 0.3, seed=1), np.ones(A.shape, dtype=bool)):
        with pytest.raises(ValueError, match=refusal + "solvers that do: ") as refused:
            fit_nmf(A, 2, solver=name, mask=mask)
        listed = re.search("solvers that do: ([^;]*)", str(refused.value)).group(1).split(", ")
        # In order, the built-ins and the plug-in that take masks, not the one that does not (a study may have
        # registered more: denoise_best's hals_em).
        assert listed == sorted(listed) and name not in listed
        assert {"ahals", "ahals_extrapolated", "hals", "mu", with_masks} <= set(listed)
        assert set(listed) <= set(solver_names()) and all(get_solver(solver).supports_mask for solver in listed)
    result = fit_nmf(A, 2, solver=name, max_iter=20)
    np.testing.assert_allclose(result.errors, fit_nmf(A, 2, max_iter=20).errors, rtol=1e-12)


def test_the_built_in_solvers_support_masks_and_the_flag_is_checked():
    assert all(get_solver(name).supports_mask for name in BUILT_INS)
    with pytest.raises(TypeError, match="supports_mask must be True or False"):
        Solver(name="bad", update=mu_without_masks, monotone=True, summary="bad", supports_mask="yes")
