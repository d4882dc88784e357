"""Choosing d by cross-validation over held-out entries (nmf_lab.core.rank_selection) and the rank_cv study."""

from __future__ import annotations

import numpy as np
import pytest

from nmf_lab.core.rank_selection import cross_validate_rank, heldout_error, heldout_folds, select_rank


def low_rank_plus_noise(seed=1, shape=(60, 80), rank=4, sigma=0.1):
    """A = max(W H + sigma E, 0): a non-negative rank-``rank`` matrix plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    W, H = rng.uniform(size=(shape[0], rank)), rng.uniform(size=(rank, shape[1]))
    return np.maximum(W @ H + sigma * rng.standard_normal(shape), 0.0)


FAST = {"solver": "mu", "max_iter": 300}


@pytest.mark.parametrize("seed", [1, 2])
def test_cross_validation_finds_the_true_rank_of_a_noisy_low_rank_matrix(seed):
    sigma = 0.1
    A = low_rank_plus_noise(seed, sigma=sigma)
    selection = cross_validate_rank(A, [6, 2, 3, 4, 5], folds=3, value_range=None, **FAST)
    np.testing.assert_array_equal(selection.ranks, [2, 3, 4, 5, 6])
    assert selection.rank == selection.best_rank == 4
    assert selection.chosen_by("one_se") == 4
    assert selection.chosen_by("one_se_largest") in (4, 5)  # the richest d within one s.e.: never below 4
    # At the true rank the prediction error is the noise (a little more: W and H are estimated from 90 %
    # of the entries; clipping at 0 removes a little): about sigma.
    at_true = selection.mean[selection.ranks == 4][0]
    assert 0.9 * sigma < at_true < 1.2 * sigma
    assert selection.fold_errors.shape == (3, 5) and selection.folds == 3
    np.testing.assert_allclose(selection.mean, selection.fold_errors.mean(axis=0))
    np.testing.assert_allclose(selection.standard_error, selection.fold_errors.std(axis=0, ddof=1) / np.sqrt(3))


def test_folds_are_disjoint_seeded_within_the_candidates_and_of_the_requested_size():
    rng = np.random.default_rng(0)
    candidates = rng.uniform(size=(30, 40)) < 0.4
    folds = heldout_folds((30, 40), 4, 0.2, candidates=candidates, seed=7)
    assert folds.shape == (4, 30, 40) and folds.dtype == bool
    assert (folds.sum(axis=0) <= 1).all()  # disjoint
    assert not (folds & ~candidates).any()  # only candidates are held out
    assert (folds.sum(axis=(1, 2)) == round(0.2 * candidates.sum())).all()
    np.testing.assert_array_equal(folds, heldout_folds((30, 40), 4, 0.2, candidates=candidates, seed=7))
    assert not np.array_equal(folds, heldout_folds((30, 40), 4, 0.2, candidates=candidates, seed=8))


def test_the_fits_of_a_fold_never_see_its_held_out_entries():
    """Changing the entries fold 0 holds out (to values far outside the data) leaves fold 0's fits bit for bit
    the same; fold 1, which observes them, fits differently."""
    A = low_rank_plus_noise(3, shape=(30, 40))
    hidden = heldout_folds(A.shape, 2, 0.2, seed=5)[0]
    B = A.copy()
    B[hidden] = 50.0

    def factors_of(matrix):
        seen = {}
        cross_validate_rank(
            matrix, [3], folds=2, holdout=0.2, fold_seed=5, on_fit=lambda k, d, r, e: seen.update({k: r}), **FAST
        )
        return seen

    fits_A, fits_B = factors_of(A), factors_of(B)
    np.testing.assert_array_equal(fits_A[0].W, fits_B[0].W)
    np.testing.assert_array_equal(fits_A[0].H, fits_B[0].H)
    assert not np.allclose(fits_A[1].W @ fits_A[1].H, fits_B[1].W @ fits_B[1].H)


def test_heldout_error_is_the_clipped_rmse_over_the_held_out_entries():
    A = np.array([[0.2, 0.4], [0.6, 0.8]])
    X = np.array([[1.7, 0.0], [0.6, -0.5]])
    heldout = np.array([[True, False], [True, True]])
    # clipped predictions 1.0, 0.6, 0.0: residuals -0.8, 0, 0.8
    assert heldout_error(A, X, heldout) == pytest.approx(np.sqrt((0.64 + 0 + 0.64) / 3))
    assert heldout_error(A, X, heldout, None) == pytest.approx(np.sqrt((1.5**2 + 0 + 1.3**2) / 3))


def test_the_rules_choose_the_minimum_or_the_smallest_d_within_one_standard_error():
    ranks = [8, 16, 32, 64]
    mean = np.array([0.30, 0.21, 0.20, 0.25])
    assert select_rank(ranks, mean, np.full(4, 0.02), "min") == 32
    assert select_rank(ranks, mean, np.full(4, 0.02), "one_se") == 16  # 0.21 <= 0.20 + 0.02
    assert select_rank(ranks, mean, np.full(4, 0.005), "one_se") == 32
    assert select_rank(ranks, mean, np.full(4, 0.02), "one_se_largest") == 32  # 0.25 > 0.20 + 0.02
    assert select_rank(ranks, mean, np.full(4, 0.05), "one_se_largest") == 64
    assert select_rank(ranks, mean, np.full(4, 0.05), "one_se") == 16
    with pytest.raises(ValueError, match="rule must be one of min, one_se, one_se_largest"):
        select_rank(ranks, mean, np.zeros(4), "median")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"folds": 1}, "folds must be an integer >= 2"),
        ({"folds": 4, "holdout": 0.3}, r"folds \* holdout <= 1"),
        ({"holdout": 0.0}, "holdout must be a fraction"),
        ({"rule": "best"}, "rule must be one of min, one_se, one_se_largest"),
        ({"ranks": []}, "ranks must be a non-empty list"),
        ({"ranks": [2, 2]}, "distinct integers"),
        ({"ranks": [0, 3]}, "integers >= 1"),
        ({"value_range": (1.0, 0.0)}, "value_range must be None or"),
        ({"candidates": np.ones((3, 3))}, "candidates must be None or a bool array"),
    ],
)
def test_bad_arguments_are_named_before_any_fit(kwargs, message):
    A = low_rank_plus_noise(shape=(20, 20))
    kwargs = {"ranks": [2, 3], **kwargs}
    with pytest.raises(ValueError, match=message):
        cross_validate_rank(A, kwargs.pop("ranks"), **kwargs, **FAST)


def test_a_fold_that_would_hide_a_whole_row_is_refused():
    """A 10 x 1 matrix: every row has one entry, so any held-out entry empties its row."""
    with pytest.raises(ValueError, match=r"fold 0 holds out every entry of rows \[\d"):
        heldout_folds((10, 1), 2, 0.5)


# --- the rank_cv study ---------------------------------------------------------------------------------------


@pytest.mark.slow  # a whole job with its figures: about 3 s
def test_rank_cv_chooses_d_from_the_noisy_digits_and_scores_the_choice(run_study, client):
    from mlflow.entities import RunStatus

    from nmf_lab.core.metrics import psnr
    from nmf_lab.core.noise import add_noise
    from nmf_lab.data.digits import Digits

    run = run_study(
        "experiment=rank_cv",
        "data=digits",
        "data.n_images=120",
        "rank_cv.ranks=[12,2,5]",
        "solver.max_iter=30",
        "noise.seed=3",
    )
    assert run.status == RunStatus.to_string(RunStatus.FINISHED)
    m, run_id = run.metrics, run.run_id
    A = Digits(n_images=120).load().matrix()
    A_noisy = add_noise(A, 0.1, seed=3)
    assert m["cv_rank"] in (2, 5, 12) and m["oracle_rank"] in (2, 5, 12)
    assert m["psnr_loss"] == pytest.approx(m["psnr_oracle"] - m["psnr_cv"]) and m["psnr_loss"] >= 0
    W, H = run.factors()  # the fit of all entries at the chosen d
    assert W.shape == (64, m["cv_rank"])
    assert m["psnr_cv"] == pytest.approx(psnr(A, W.astype(np.float64) @ H.astype(np.float64)), rel=1e-6)
    assert m["psnr_noisy"] == pytest.approx(psnr(A, A_noisy))
    fold_errors = run.array("arrays/fold_errors.npy")
    assert fold_errors.shape == (3, 3)  # 3 folds x the grid 2, 5, 12
    heldout = client.get_metric_history(run_id, "heldout_error")
    np.testing.assert_allclose([p.value for p in sorted(heldout, key=lambda p: p.step)], fold_errors.mean(axis=0))
    assert sorted(p.step for p in heldout) == [2, 5, 12]
    psnr_by_rank = {p.step: p.value for p in client.get_metric_history(run_id, "psnr_by_rank")}
    assert max(psnr_by_rank.values()) == pytest.approx(m["psnr_oracle"])
    assert psnr_by_rank[m["oracle_rank"]] == pytest.approx(m["psnr_oracle"])
    assert {"figures/rank_cv.png", "figures/original_noisy_denoised.png", "tables/rank_cv.md"} <= set(run.paths())


@pytest.mark.parametrize(
    "override, key",
    [
        ("rank_cv.folds=1", "rank_cv.folds"),
        ("rank_cv.holdout=0.5", "rank_cv.holdout"),
        ("rank_cv.rule=mean", "rank_cv.rule"),
    ],
)
def test_a_bad_cross_validation_setting_stops_before_any_run(run_job, client, experiment_name, override, key):
    from nmf_lab.harness.config import ConfigError

    with pytest.raises(ConfigError, match=rf"invalid config value {key}="):
        run_job("experiment=rank_cv", "data=digits", override, f"tracking.experiment={experiment_name}")
    assert client.get_experiment_by_name(experiment_name) is None
