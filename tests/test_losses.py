"""β-divergence losses and L1/L2 penalties, matched against scikit-learn's ``non_negative_factorization``.

scikit-learn's multiplicative updates take W, then H; nmf-lab's take H, then W. On ``A^T`` with the factors
swapped, nmf-lab's H-then-W is scikit-learn's W-then-H on ``A``: there the two agree iterate for iterate, to
rounding, which checks the updates themselves (with Févotte & Idier's exponent) and the penalties' scaling.
In the natural orientation the two update orders follow different paths from the same start; there
nmf-lab's objective after the same iterations is below or within 1 % of scikit-learn's.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.decomposition import non_negative_factorization
from sklearn.decomposition._nmf import _beta_divergence

from nmf_lab import fit_nmf
from nmf_lab.core.losses import Divergence

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
PENALTIES = [0.0, 0.5, 1.0]  # l1_ratio, with alpha 0.1
SHAPE, RANK = (30, 20), 4


def planted(seed: int = 0, shape=SHAPE, rank: int = RANK):
    """A positive matrix of rank ``rank`` plus 5 % multiplicative noise, and a random start."""
    rng = np.random.default_rng(seed)
    m, n = shape
    A = rng.uniform(0.1, 1, (m, rank)) @ rng.uniform(0.1, 1, (rank, n)) * rng.uniform(0.95, 1.05, (m, n))
    return A, rng.uniform(0.1, 1, (m, rank)), rng.uniform(0.1, 1, (rank, n))


def sklearn_fit(A, W0, H0, iterations, solver="mu", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        W, H, _ = non_negative_factorization(
            A, W=W0.copy(), H=H0.copy(), n_components=W0.shape[1], init="custom", solver=solver,
            max_iter=iterations, tol=0.0, **kwargs,
        )  # fmt: skip
    return W, H


def penalty(A, W, H, alpha, l1_ratio):
    """scikit-learn's penalty for ``A`` (m samples, n features), alpha_H = alpha_W = alpha."""
    (m, n), l2 = A.shape, 1.0 - l1_ratio
    return alpha * (n * (l1_ratio * W.sum() + l2 * (W**2).sum() / 2) + m * (l1_ratio * H.sum() + l2 * (H**2).sum() / 2))


def objective(A, W, H, beta, alpha=0.0, l1_ratio=0.0):
    """scikit-learn's objective: its β-divergence (half the squared norm for β = 2) plus the penalty."""
    return _beta_divergence(A, W, H, beta) + penalty(A, W, H, alpha, l1_ratio)


def as_objective(result, beta):
    """nmf-lab's logged error as scikit-learn's objective (for β = 2 the error is sqrt(2 objective))."""
    return result.errors**2 / 2 if beta == 2 else result.errors


@pytest.mark.parametrize("beta", BETAS)
def test_each_update_is_scikit_learns_to_rounding(beta):
    A, W0, H0 = planted()
    W, H = sklearn_fit(A, W0, H0, 30, beta_loss=beta)
    ours = fit_nmf(A.T, RANK, init=(H0.T, W0.T), loss=beta, max_iter=30, delta=0.0)
    np.testing.assert_allclose(ours.W, H.T, rtol=1e-8)
    np.testing.assert_allclose(ours.H, W.T, rtol=1e-8)


@pytest.mark.parametrize("l1_ratio", PENALTIES)
@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_the_penalties_are_scikit_learns_with_its_scaling(beta, l1_ratio):
    """On A^T scikit-learn's W is our H: its alpha_W (scaled by A's n features) is our alpha_H there."""
    A, W0, H0 = planted(1, shape=(30, 12))
    W, H = sklearn_fit(A, W0, H0, 30, beta_loss=beta, alpha_W=0.1, alpha_H=0.3, l1_ratio=l1_ratio)
    ours = fit_nmf(
        A.T, RANK, init=(H0.T, W0.T), loss=beta, max_iter=30, delta=0.0, alpha_W=0.3, alpha_H=0.1, l1_ratio=l1_ratio
    )
    np.testing.assert_allclose(ours.W, H.T, rtol=1e-7, atol=1e-12 * H.max())  # a dead component: 1e-288 or 0
    np.testing.assert_allclose(ours.H, W.T, rtol=1e-7, atol=1e-12 * W.max())


@pytest.mark.slow
@pytest.mark.parametrize("beta", BETAS)
def test_in_its_own_update_order_the_objective_reached_shows_no_bias_against_scikit_learns(beta):
    """Updating H first instead of W first takes another path from the same start: on one problem nmf-lab's
    objective after 200 iterations may be some percent above or below scikit-learn's (down to 0.91 and up to
    1.55 times, a different local minimum, on these ten), so the check is over ten problems: the median ratio
    is within 2 % (in scikit-learn's order the two agree to rounding, above)."""
    ratios = []
    for seed in range(10):
        A, W0, H0 = planted(seed)
        W, H = sklearn_fit(A, W0, H0, 200, beta_loss=beta)
        ours = fit_nmf(A, RANK, init=(W0, H0), loss=beta, max_iter=200)
        ratios.append(as_objective(ours, beta)[-1] / objective(A, W, H, beta))
    assert np.median(ratios) <= 1.02


@pytest.mark.parametrize("l1_ratio", PENALTIES)
@pytest.mark.parametrize("solver", ["mu", "hals", "ahals"])
def test_the_penalized_objective_reached_is_below_or_within_one_percent_of_scikit_learns(solver, l1_ratio):
    """mu against scikit-learn's mu, the HALS solvers against its coordinate descent (cd)."""
    A, W0, H0 = planted(3)
    W, H = sklearn_fit(A, W0, H0, 200, solver="mu" if solver == "mu" else "cd", alpha_W=0.1, l1_ratio=l1_ratio)
    ours = fit_nmf(A, RANK, init=(W0, H0), solver=solver, max_iter=200, alpha_W=0.1, l1_ratio=l1_ratio)
    assert as_objective(ours, 2)[-1] <= 1.01 * objective(A, W, H, 2, 0.1, l1_ratio)


@pytest.mark.parametrize("l1_ratio", [None, *PENALTIES])
@pytest.mark.parametrize("beta", BETAS)
def test_the_logged_objective_is_scikit_learns_of_the_same_factors(beta, l1_ratio):
    A, W0, H0 = planted(4)
    alpha = 0.0 if l1_ratio is None else 0.1
    ours = fit_nmf(A, RANK, init=(W0, H0), loss=beta, max_iter=20, alpha_W=alpha, l1_ratio=l1_ratio or 0.0)
    expected = objective(A, ours.W, ours.H, beta, alpha, l1_ratio or 0.0)
    np.testing.assert_allclose(as_objective(ours, beta)[-1], expected, rtol=1e-10)
    assert ours.penalized == (alpha > 0)
    assert ours.loss == {0.0: "is", 1.0: "kl", 2.0: "frobenius"}.get(beta, f"beta={beta:g}")


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    "solver, beta, l1_ratio",
    [("mu", beta, None) for beta in BETAS]
    + [("mu", beta, r) for beta in (0.5, 1.0, 2.0) for r in PENALTIES]
    + [(s, 2.0, r) for s in ("hals", "ahals") for r in PENALTIES],
)
def test_every_iteration_lowers_the_penalized_objective(solver, beta, l1_ratio, masked):
    """scikit-learn's test_nmf_decreasing, for every loss and penalty, with a mask too; each logged value
    is the objective of that iterate computed here from scratch (over the observed entries)."""
    rng = np.random.default_rng(5)
    A = np.abs(rng.standard_normal((20, 15))) + 0.01
    mask = rng.uniform(size=A.shape) < 0.7 if masked else None
    if masked:
        mask[:, 0] = mask[0] = True
    alpha = 0.0 if l1_ratio is None else 0.5
    iterates = []
    result = fit_nmf(
        A, 5, mask=mask, solver=solver, loss=beta, max_iter=40, seed=1, alpha_W=alpha, l1_ratio=l1_ratio or 0.0,
        callback=lambda k, error: iterates.append(error) and None,
    )  # fmt: skip
    assert (np.diff(result.errors) <= 1e-12 * result.errors[0]).all()
    observed = np.ones(A.shape, dtype=bool) if mask is None else mask
    D = Divergence(np.where(observed, A, 0), beta, mask)(result.W @ result.H) if beta != 2 else None
    loss = np.linalg.norm(observed * (A - result.W @ result.H)) ** 2 / 2 if beta == 2 else D
    expected = loss + penalty(A, result.W, result.H, alpha, l1_ratio or 0.0)
    np.testing.assert_allclose(as_objective(result, beta)[-1], expected, rtol=1e-9)


def test_an_entry_of_1e_323_gives_the_divergence_of_0():
    """scikit-learn's underflow regression test, for the divergence nmf-lab logs."""
    rng = np.random.RandomState(0)
    X = np.abs(rng.randn(10, 2)) * 10
    W = np.abs(rng.randn(10, 2)) * 10
    H = np.abs(rng.randn(2, 2))
    for beta in (1.0, 0.5, 1.5, 3.0):
        X[0, 0] = 0
        reference = fit_nmf(X, 2, init=(W, H), loss=beta, max_iter=0).errors[0]
        np.testing.assert_allclose(reference, _beta_divergence(X, W, H, beta), rtol=1e-12)
        X[0, 0] = 1e-323
        assert fit_nmf(X, 2, init=(W, H), loss=beta, max_iter=0).errors[0] == pytest.approx(reference, rel=1e-15)


def test_zero_entries_are_exact_for_kl_0_log_0_is_0():
    A = np.array([[0.0, 2.0], [1.0, 0.0]])
    W, H = np.ones((2, 1)), np.ones((1, 2))
    expected = 2 * np.log(2) - 2 + 1 + 0 - 1 + 1 + 1 + 1  # sum of a log(a / p) - a + p, p = 1
    assert fit_nmf(A, 1, init=(W, H), loss="kl", max_iter=0).errors[0] == pytest.approx(expected, rel=1e-14)


def test_losses_and_penalties_are_refused_with_a_clear_message_where_they_cannot_work():
    rng = np.random.default_rng(0)
    A = rng.uniform(0.1, 1, (10, 8))
    with pytest.raises(ValueError, match=r"minimises the Frobenius loss only.*fit beta-divergences: mu"):
        fit_nmf(A, 2, solver="hals", loss="kl")
    zero = A.copy()
    zero[0, 0] = 0
    for loss in ("is", -0.5, "itakura-saito"):
        with pytest.raises(ValueError, match=r"needs A > 0 on every observed entry.*1 observed entries of A are 0"):
            fit_nmf(zero, 2, loss=loss)
    mask = np.ones(A.shape, dtype=bool)
    mask[0, 0] = False
    assert np.isfinite(fit_nmf(zero, 2, loss="is", mask=mask, max_iter=5).errors).all()  # the zero is hidden
    with pytest.raises(ValueError, match="missing='impute' is for the Frobenius loss"):
        fit_nmf(zero, 2, loss="kl", mask=mask, missing="impute")
    for bad in ({"loss": "poisson"}, {"loss": float("nan")}, {"loss": True}):
        with pytest.raises(ValueError, match="loss must be one of 'frobenius', 'kl'"):
            fit_nmf(A, 2, **bad)
    for bad, key in (({"alpha_W": -1}, "alpha_W"), ({"alpha_H": "all"}, "alpha_H"), ({"l1_ratio": 1.5}, "l1_ratio")):
        with pytest.raises(ValueError, match=f"{key} must be"):
            fit_nmf(A, 2, **bad)


def test_alpha_h_same_is_alpha_w_and_zero_alpha_is_the_unpenalized_fit_bit_for_bit():
    A, W0, H0 = planted(6)
    same = fit_nmf(A, RANK, init=(W0, H0), solver="hals", alpha_W=0.2, l1_ratio=0.5, max_iter=10)
    given = fit_nmf(A, RANK, init=(W0, H0), solver="hals", alpha_W=0.2, alpha_H=0.2, l1_ratio=0.5, max_iter=10)
    np.testing.assert_array_equal(same.errors, given.errors)
    plain = fit_nmf(A, RANK, init=(W0, H0), solver="hals", max_iter=10)
    zero = fit_nmf(A, RANK, init=(W0, H0), solver="hals", alpha_W=0.0, l1_ratio=1.0, max_iter=10)
    np.testing.assert_array_equal(plain.errors, zero.errors)
    assert not zero.penalized and zero.objective == "||M * (A - W H)||_F"


@pytest.mark.parametrize("missing", ["exact", "impute"])
def test_an_l1_penalty_makes_the_factors_sparser_with_a_mask_too(missing):
    """Planted sparse factors (half their entries 0): L1 on both factors finds the zeros, every component kept."""
    rng = np.random.default_rng(7)
    W = rng.uniform(0, 1, (40, 4)) * (rng.uniform(size=(40, 4)) < 0.5)
    H = rng.uniform(0, 1, (4, 30)) * (rng.uniform(size=(4, 30)) < 0.5)
    A = W @ H + 0.05 * rng.uniform(size=(40, 30))
    mask = rng.uniform(size=A.shape) < 0.8
    kwargs = {"solver": "ahals", "max_iter": 100, "mask": mask, "missing": missing}
    plain = fit_nmf(A, 4, **kwargs)
    sparse = fit_nmf(A, 4, alpha_W=0.01, l1_ratio=1.0, **kwargs)

    def zeros(X):
        return (1e-6 * X.max() >= X).mean()

    assert zeros(sparse.H) > zeros(plain.H) + 0.3 and zeros(sparse.W) > zeros(plain.W) + 0.3
    assert (sparse.H.max(axis=1) > 1e-3 * sparse.H.max()).all()  # no component killed
