"""The best denoiser (experiment=denoise_best): its run-time choices (d and the budget from held-out curves, the
number of fits from validation images), the zero rule, the truncated-SVD baseline and the steps table, and the study
end to end on a few real punks, its metrics recomputed from what it logged and from the noisy images (the clean-optimal
d of one fit and the PSNR the chosen d loses against it, the SVD baseline and each step of the table included)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from mlflow.entities import RunStatus

from experiments.denoise_best import choose_members, denoise, steps_table, svd_method
from experiments.shared import Split
from nmf_lab import fit_nmf
from nmf_lab.core.denoiser import Denoiser
from nmf_lab.core.metrics import psnr
from nmf_lab.core.noise import add_noise
from nmf_lab.core.rank_selection import (
    RowHoldout,
    cross_validate_rank_and_budget,
    heldout_error,
    heldout_folds,
    validate_rank_and_budget,
)
from nmf_lab.core.transform import transform
from nmf_lab.data.punks import Punks

from helpers import load_array, load_text, runs_of

FINISHED = RunStatus.to_string(RunStatus.FINISHED)


def low_rank_with_holes(seed=0, shape=(60, 40), rank=4, missing=0.3):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0, 1, (shape[0], rank)) @ rng.uniform(0, 1, (rank, shape[1]))
    A += rng.uniform(0, 0.05, shape)
    mask = rng.uniform(size=shape) >= missing
    return A, mask


def test_d_and_the_budget_are_the_argmin_of_the_heldout_curves_recomputed_independently():
    A, _ = low_rank_with_holes(seed=2, shape=(50, 40), rank=3)
    A = np.clip(A + np.random.default_rng(5).normal(0, 0.15, A.shape), 0, None)  # noise to overfit
    options = {"solver": "hals", "seed": 4, "missing": "impute"}
    selection = cross_validate_rank_and_budget(
        A, [1, 3, 6], every=3, max_iter=60, patience=9, folds=2, holdout=0.2, fold_seed=1, **options
    )
    # The curves again, from the folds and fit_nmf alone: each fit continued 3 iterations at a time.
    hidden = heldout_folds(A.shape, 2, 0.2, seed=1)
    for g, d in enumerate([1, 3, 6]):
        iterations, mean = selection.curve(d)
        factors = ["random", "random"]
        for c in range(iterations.size):
            errors = []
            for k in range(2):
                fit = fit_nmf(np.where(hidden[k], 0, A), d, mask=~hidden[k], init=factors[k], max_iter=3, **options)
                factors[k] = (fit.W, fit.H)
                errors.append(heldout_error(A, fit.W @ fit.H, hidden[k]))
            assert selection.fold_errors[:, g, c] == pytest.approx(errors, rel=1e-12)
        assert iterations.tolist() == list(range(3, 3 * iterations.size + 1, 3))
        assert mean == pytest.approx(selection.fold_errors[:, g, : iterations.size].mean(axis=0), rel=1e-12)
        # A curve stops once its minimum is 9 iterations old (or at max_iter), and not before.
        best = int(np.argmin(mean))
        assert iterations[-1] - iterations[best] == 9 or iterations[-1] == 60
        assert all(iterations[c] - iterations[int(np.argmin(mean[: c + 1]))] < 9 for c in range(iterations.size - 1))
        assert np.isnan(selection.fold_errors[:, g, iterations.size :]).all()
    lowest = {d: selection.curve(d)[1].min() for d in (1, 3, 6)}
    assert selection.rank == min(lowest, key=lowest.get)
    iterations, mean = selection.curve(selection.rank)
    assert selection.budget == iterations[int(np.argmin(mean))]
    assert selection.by_rank().mean == pytest.approx([lowest[d] for d in (1, 3, 6)])


def rows_prediction_error(V, candidates, W, rows_by_fold, tol=0.01):
    """The held-out-row error of W on V recomputed from transform alone: mean over the folds of the RMSE of the
    clipped prediction of the held-out rows from the others."""
    errors = []
    for rows in rows_by_fold:
        seen = np.setdiff1d(np.arange(V.shape[0]), rows)
        P = np.clip(W[rows] @ transform(V[seen], W[seen], tol=tol).H, 0, 1)
        errors.append(np.sqrt(np.mean((V[rows] - P)[candidates[rows]] ** 2)))
    return float(np.mean(errors))


def test_d_and_the_budget_from_validation_rows_are_the_argmin_of_curves_recomputed_from_fresh_fits():
    """Each checkpoint's W is that of a fresh fit of exactly that many iterations (no restart), scored on the
    validation columns' held-out rows; d and the budget are the argmin; the W kept is the one there."""
    rng = np.random.default_rng(3)
    clean = rng.uniform(0, 1, (40, 3)) @ rng.uniform(0, 1, (3, 90)) / 3
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    train, V = noisy[:, :70], noisy[:, 70:]
    candidates = rng.uniform(size=V.shape) > 0.2
    holdout = RowHoldout.of(V, folds=2, holdout=0.2, candidates=candidates, seed=5)
    assert [rows.size for rows in holdout.rows] == [8, 8] and not set(holdout.rows[0]) & set(holdout.rows[1])
    options = {"solver": "hals", "seed": 2}
    selection, kept = validate_rank_and_budget(train, holdout, [1, 3, 8], every=4, max_iter=60, patience=12,
                                               **options)  # fmt: skip
    for d in (1, 3, 8):
        iterations, mean = selection.curve(d)
        for k, value in zip(iterations.tolist(), mean):
            W = fit_nmf(train, d, max_iter=k, **options).W
            assert value == pytest.approx(rows_prediction_error(V, candidates, W, holdout.rows), rel=1e-9)
        best = int(np.argmin(mean))
        assert iterations[-1] - iterations[best] == 12 or iterations[-1] == 60  # patience, or the end
        np.testing.assert_array_equal(kept[d], fit_nmf(train, d, max_iter=int(iterations[best]), **options).W)
    lowest = {d: selection.curve(d)[1].min() for d in (1, 3, 8)}
    assert selection.rank == min(lowest, key=lowest.get)
    iterations, mean = selection.curve(selection.rank)
    assert selection.budget == iterations[int(np.argmin(mean))]


def members_settings(**overrides):
    """The parts of a job's config that choose_members reads."""
    from types import SimpleNamespace

    from nmf_lab.harness.config import SolverConfig

    best = dict(folds=2, holdout=0.1, cv_seed=0, max_members=6, member_tol=0.05, model_tol=0.01)
    solver = SolverConfig(name="hals", max_iter=999, dtype="float64", missing="impute")  # the job's solver node
    return SimpleNamespace(denoise_best=SimpleNamespace(**{**best, **overrides}), solver=solver, seed=7, init="random")


def test_fits_are_kept_while_the_validation_error_of_their_mean_falls_by_more_than_the_tolerance(punks_sheet):
    punks = Punks(n_images=120, path=str(punks_sheet)).load()
    A_noisy, opaque = add_noise(punks.matrix(), 0.1, seed=1), punks.opaque_entries()
    split = Split.of(120, 30, 30, seed=0)
    assert not set(split.test) & set(split.train) and not set(split.validation) & set(split.train)
    assert sorted([*split.test, *split.validation, *split.train]) == list(range(120))
    V, V_opaque = A_noisy[:, split.validation], opaque[:, split.validation]
    holdout = RowHoldout.of(V, folds=2, holdout=0.1, candidates=V_opaque, seed=0)
    chosen = choose_members(A_noisy[:, split.train], holdout, 8, 10, members_settings())
    # Each fit is a fit of the training images alone (never a test or validation image), seeds 7, 8, ...
    fitted = [fit_nmf(A_noisy[:, split.train], 8, solver="hals", max_iter=10, seed=7 + k).W for k in range(6)]
    for W, again in zip(chosen.bases, fitted):
        np.testing.assert_array_equal(W, again)
    # The errors again: the validation images projected from the rows outside each held-out set.
    order = np.random.default_rng(0).permutation(1728)
    rows_by_fold = [np.sort(order[k * 173 : (k + 1) * 173]) for k in range(2)]
    for k, error in enumerate(chosen.errors, start=1):
        per_fold = []
        for rows in rows_by_fold:
            seen = np.setdiff1d(np.arange(1728), rows)
            mean = sum(W[rows] @ transform(V[seen], W[seen], tol=0.01).H for W in fitted[:k]) / k
            per_fold.append(heldout_error(V[rows], mean, V_opaque[rows]))
        assert error == pytest.approx(np.mean(per_fold), rel=1e-9)
    # The count: every kept fit beyond the first lowered the error by more than tol x the second's fall; the
    # next one (if fitted) did not.
    falls = -np.diff(chosen.errors)
    assert all(falls[: chosen.count - 1] > 0.05 * falls[0])
    assert chosen.count == 6 or falls[chosen.count - 1] <= 0.05 * falls[0]
    assert len(chosen.errors) == min(6, chosen.count + 1) and len(chosen.bases) == chosen.count
    # A tolerance no fall can beat keeps one fit; a first W given is the first member, not fitted again.
    few = choose_members(A_noisy[:, split.train], holdout, 8, 10, members_settings(member_tol=2.0, max_members=3),
                         first=fitted[0])  # fmt: skip
    assert few.count == 1 and few.bases[0] is fitted[0]


def test_the_denoisers_zero_rule_keeps_noisy_zeros_at_zero_and_survives_a_round_trip():
    rng = np.random.default_rng(0)
    W = rng.uniform(0, 1, (12, 3))
    noisy = np.clip(W @ rng.uniform(0, 1, (3, 5)) / 3, 0, 1)
    noisy[rng.uniform(size=noisy.shape) < 0.3] = 0.0
    plain = Denoiser(bases=W, image_shape=(2, 2, 3))
    zeros = Denoiser(bases=W, image_shape=(2, 2, 3), keep_zeros=True)
    X, X_zeros = plain.denoise_matrix(noisy), zeros.denoise_matrix(noisy)
    assert X[noisy == 0].any()  # the projection fills the zeros in ...
    np.testing.assert_array_equal(X_zeros, np.where(noisy > 0, X, 0.0))  # ... the zero rule clears them
    assert Denoiser.from_arrays(zeros.arrays()).keep_zeros and not Denoiser.from_arrays(plain.arrays()).keep_zeros


SMALL = (
    "data.n_images=240",
    "solver.max_iter=40",
    "denoise_best.max_members=3",
    "denoise_best.patience=10",
    "denoise_best.validation=40",
    "denoise_best.ranks=[32,48]",
    "denoise_best.first=100",
    "denoise_best.study_ranks=[16,32]",
    "denoise_best.study_iter=60",
    "denoise_best.svd_ranks=[16,32]",
)


@pytest.mark.slow
def test_denoise_best_end_to_end(run_study, client, experiment_name, punks_sheet, tmp_path):
    done = run_study(
        "experiment=denoise_best",
        *SMALL,
        "noise.seed=3",
        f"data.path={punks_sheet}",
        f"denoise_best.registered_model={experiment_name}",
    )
    run = done.run
    assert done.status == FINISHED
    m = run.data.metrics
    punks = Punks(n_images=240, path=str(punks_sheet)).load()
    A, opaque = punks.matrix(), punks.opaque_entries()
    A_noisy = add_noise(A, 0.1, seed=3)
    first = slice(0, 100)

    # The logged denoised images are what the noisy images alone give: denoise() never sees A.
    X_first = load_array(client, run.info.run_id, "arrays/denoised_first.npy", tmp_path)
    settings = logged_settings(client, run.info.run_id, tmp_path)
    np.testing.assert_array_equal(denoise(A_noisy, opaque, settings).X[:, first], X_first)
    # They obey the post-processing: in [0, 1], transparent pixels and noisy zeros at 0.
    assert X_first.min() >= 0 and X_first.max() <= 1
    assert not X_first[~opaque[:, first] | (A_noisy[:, first] == 0)].any()

    # The scores, recomputed; the denoiser beats the noisy images.
    assert m["psnr_first_500"] == pytest.approx(psnr(A[:, first], X_first, opaque[:, first]), abs=1e-9)
    assert m["psnr_noisy_first_500"] == pytest.approx(psnr(A[:, first], A_noisy[:, first], opaque[:, first]))
    assert m["psnr_first_500"] > m["psnr_noisy_first_500"] + 1.0
    # d is the grid's d with the lowest mean held-out error (rule min).
    heldout = {h.step: h.value for h in client.get_metric_history(run.info.run_id, "heldout_error")}
    assert set(heldout) == {32, 48} and m["cv_rank"] == min(heldout, key=heldout.get)
    # The budget is the argmin of the logged held-out curve at that d; the count of fits follows the logged
    # validation curve and the tolerance (issue 20, item 1).
    curve = {h.step: h.value for h in client.get_metric_history(run.info.run_id, f"heldout_error_d{m['cv_rank']:.0f}")}
    assert m["cv_iterations"] == min(curve, key=curve.get) and min(curve.values()) == heldout[m["cv_rank"]]
    by_members = [
        h.value
        for h in sorted(client.get_metric_history(run.info.run_id, "heldout_error_by_members"), key=lambda h: h.step)
    ]
    falls = -np.diff(by_members)
    count = int(m["cv_members"])
    assert all(falls[: count - 1] > 0.01 * falls[0]) and (count == 3 or falls[count - 1] <= 0.01 * falls[0])
    # The study's method, recomputed: mu on the first images alone at its clean-optimal d.
    study = {}
    for d in (16, 32):
        fitted = fit_nmf(A_noisy[:, first], d, max_iter=60)  # mu from the random start, as the study fits
        study[d] = psnr(A[:, first], fitted.W @ fitted.H, opaque[:, first])
    assert m["study_rank"] == max(study, key=study.get)
    assert m["psnr_study"] == pytest.approx(max(study.values()), abs=1e-9)
    comparison = load_text(client, run.info.run_id, "tables/comparison.md", tmp_path)
    for row in ("the study's method", "truncated SVD", f"this denoiser: mean of {count} fits of all 240"):
        assert row in comparison
    assert f"{m['psnr_first_500']:.2f}" in comparison
    assert m["wall_seconds"] > 0 and m["cpu_seconds"] > 0
    check_the_model_on_punks_it_never_saw(client, run, m, experiment_name, A, A_noisy, opaque)
    check_the_clean_optimal_d_the_svd_baseline_and_the_steps(done, A, A_noisy, opaque)


def check_the_model_on_punks_it_never_saw(client, run, m, experiment_name, A, A_noisy, opaque):
    """Issue 20, items 2-4: the logged model's bases are fits of the training punks alone (the test punks
    0..99 and the validation punks are in no fit); psnr_unseen and model_gain_db recomputed from the model as a
    user loads it; the zero rule asked for; registered only if it helps, and the description says which."""
    import mlflow

    split = Split.of(240, 100, 40, seed=0)
    assert not set(split.train) & set(range(100))
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/denoiser")
    count, d, budget = int(m["cv_members"]), int(m["cv_rank"]), int(m["cv_iterations"])
    bases = model.get_raw_model().bases
    assert len(bases) == count
    for k, W in enumerate(bases):
        fit = fit_nmf(A_noisy[:, split.train], d, solver="hals", max_iter=budget, seed=k, dtype="float32")
        np.testing.assert_array_equal(W, fit.W.astype(np.float64))
    test = slice(0, 100)
    images = model_input_of(A_noisy[:, test], opaque[:, test])
    with pytest.raises(Exception, match="zero_rule"):
        model.predict(images)  # built with the zero rule: it will not guess whether the input follows spec 6.1
    for zero_rule, key in ((True, "psnr_unseen"), (False, "psnr_unseen_no_zero_rule")):
        out = model.predict(images, params={"zero_rule": zero_rule})
        assert m[key] == pytest.approx(psnr(A[:, test], out[..., :3].reshape(100, -1).T, opaque[:, test]), abs=1e-9)
    assert m["psnr_unseen"] > m["psnr_unseen_no_zero_rule"]
    fresh = add_noise(A[:, test], 0.1, seed=4)  # noise.seed + 1: a draw the fits never saw
    out = model.predict(model_input_of(fresh, opaque[:, test]), params={"zero_rule": True})
    gain = psnr(A[:, test], out[..., :3].reshape(100, -1).T, opaque[:, test]) - psnr(A[:, test], fresh, opaque[:, test])
    assert m["model_gain_db"] == pytest.approx(gain, abs=1e-9)
    versions = client.search_model_versions(f"name='{experiment_name}'")
    description = client.get_run(run.info.run_id).data.tags["mlflow.note.content"]
    if gain > 0:
        (version,) = versions
        assert version.run_id == run.info.run_id and "The logged model helps" in description
    else:
        assert not versions and "The logged model makes noisy images worse" in description
        assert "makes images worse" in client.get_run(run.info.run_id).data.tags["nmf_lab.model_not_registered"]


def check_the_clean_optimal_d_the_svd_baseline_and_the_steps(run, A, A_noisy, opaque):
    """Computed here from the clean and noisy punks: one fit at each d of the grid and what the clean images would
    have chosen (``oracle_rank``) and lose (``psnr_loss``), the truncated-SVD baseline, and the steps table (each
    step's PSNR and its gain)."""
    m = run.metrics
    first = slice(0, 100)
    A1, N1, O1 = A[:, first], A_noisy[:, first], opaque[:, first]

    # One fit of all the noisy images at each d of the grid (hals, float32, seed 0, as configured, stopped at the
    # chosen budget), post-processed, scored over the first images.
    budget = int(m["cv_iterations"])
    one_fit = {}
    for d in (32, 48):
        fit = fit_nmf(A_noisy, d, solver="hals", max_iter=budget, seed=0, init="random", dtype="float32")
        one_fit[d] = psnr_of(A1, cleaned(fit.W @ fit.H, A_noisy, opaque)[:, first], O1)
    logged = {h.step: h.value for h in run.client.get_metric_history(run.run_id, "psnr_one_fit_by_rank")}
    assert logged == pytest.approx(one_fit, abs=1e-3)
    oracle = max(one_fit, key=one_fit.get)
    assert abs(one_fit[32] - one_fit[48]) > 0.01  # the argmax is not decided by rounding
    assert m["oracle_rank"] == oracle
    assert m["psnr_one_fit_oracle_rank"] == pytest.approx(one_fit[oracle], abs=1e-3)
    assert m["psnr_one_fit_cv_rank"] == pytest.approx(one_fit[m["cv_rank"]], abs=1e-3)
    assert m["psnr_loss"] == pytest.approx(one_fit[oracle] - one_fit[m["cv_rank"]], abs=1e-3) and m["psnr_loss"] >= 0

    # The truncated SVD of the first noisy images at its clean-optimal d of svd_ranks, raw and clipped.
    svd = {d: psnr_of(A1, rank_d(N1, d), O1) for d in (16, 32)}
    best = max(svd, key=svd.get)
    assert m["svd_rank"] == best and m["psnr_svd"] == pytest.approx(svd[best], abs=1e-9)
    clipped = np.where(O1, np.clip(rank_d(N1, best), 0, 1), 0.0)
    assert m["psnr_svd_postprocessed"] == pytest.approx(psnr_of(A1, clipped, O1), abs=1e-9)

    # The steps table: each step's PSNR (the study's method, mu at its clean-optimal d, recomputed) and its gain.
    study = {}
    for d in (16, 32):
        fit = fit_nmf(N1, d, solver="mu", max_iter=60, seed=0, init="random")
        study[d] = fit.W @ fit.H
    X = study[max(study, key=lambda d: psnr_of(A1, study[d], O1))]
    expected = [
        psnr_of(A1, N1, O1),
        psnr_of(A1, X, O1),
        psnr_of(A1, np.where(O1, np.clip(X, 0, 1), 0.0), O1),
        psnr_of(A1, cleaned(X, N1, O1), O1),
        one_fit[m["cv_rank"]],
        m["psnr_first_500"],
    ]
    rows = [row.split("|")[1:-1] for row in run.text("tables/steps.md").split("\n\n")[0].splitlines()[2:]]
    assert [float(row[1]) for row in rows] == pytest.approx(expected, abs=0.006)
    assert rows[0][2].strip() == ""
    gains = [float(row[2]) for row in rows[1:]]
    assert gains == pytest.approx(np.diff(expected), abs=0.011)
    assert float(rows[0][3]) == pytest.approx(psnr_of(A, A_noisy, opaque), abs=0.006)
    assert float(rows[-1][3]) == pytest.approx(m["psnr"], abs=0.006)
    assert re.search(rf"cross-validated d = {m['cv_rank']:.0f}\b", rows[4][0])


def psnr_of(A, X, where):
    """PSNR (dB, peak 1) of X against A over the entries ``where``, written out."""
    return 10 * np.log10(1 / np.mean((X[where] - A[where]) ** 2))


def rank_d(A, d):
    """The rank-d truncated SVD of A, from numpy's SVD."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    return (U[:, :d] * s[:d]) @ Vt[:d]


def cleaned(X, A_noisy, opaque):
    """The denoiser's post-processing, written out: clipped to [0, 1], transparent pixels and noisy zeros 0."""
    return np.where(opaque & (A_noisy > 0), np.clip(X, 0, 1), 0.0)


def test_the_svd_baseline_is_the_truncated_svd_at_its_clean_optimal_d():
    rng = np.random.default_rng(2)
    opaque = np.broadcast_to(rng.uniform(size=(60, 1)) < 0.8, (60, 40))  # pixels transparent in every image
    W = np.kron(np.eye(4), np.ones((15, 1))) * rng.uniform(0.8, 1, (60, 4))  # four parts, each its own pixels
    A = np.where(opaque, W @ rng.uniform(0.1, 1, (4, 40)), 0.0)  # rank 4, up to about 1
    A_noisy = np.clip(A + np.where(A > 0, rng.normal(0, 0.1, A.shape), 0), 0, 1)
    ranks = [1, 2, 4, 8, 16]
    raw = {d: psnr_of(A, rank_d(A_noisy, d), opaque) for d in ranks}
    assert max(raw, key=raw.get) == 4  # the signal's rank: fewer miss signal, more fit noise
    result = svd_method(A, A_noisy, opaque, ranks)
    assert result["rank"] == 4
    assert result["raw"] == pytest.approx(raw[4], abs=1e-9)
    clipped = np.where(opaque, np.clip(rank_d(A_noisy, 4), 0, 1), 0.0)
    assert result["postprocessed"] == pytest.approx(psnr_of(A, clipped, opaque), abs=1e-9)
    assert result["postprocessed"] > result["raw"]  # its rank-4 reconstruction overshoots 1: clipping helps


def test_the_steps_table_by_hand():
    steps = [("noisy images", 20.0, 19.5), ("study", 25.25, None), ("+ clip", 25.5, None), ("mean", 27.0, 26.0)]
    ablations = [("the zero rule", 26.5, 25.75), ("any post-processing", 24.0, 23.0)]
    assert steps_table(steps, ablations, 10, 50) == (
        "| step | PSNR, first 10 (dB) | gain (dB) | PSNR, all 50 (dB) |\n"
        "|---|---|---|---|\n"
        "| noisy images | 20.00 |  | 19.50 |\n"
        "| study | 25.25 | +5.25 |  |\n"
        "| + clip | 25.50 | +0.25 |  |\n"
        "| mean | 27.00 | +1.50 | 26.00 |\n"
        "\n"
        "| the last step without | PSNR, first 10 (dB) | change (dB) | PSNR, all 50 (dB) |\n"
        "|---|---|---|---|\n"
        "| the zero rule | 26.50 | -0.50 | 25.75 |\n"
        "| any post-processing | 24.00 | -3.00 | 23.00 |\n"
    )


def model_input_of(colours, opaque):
    """Punk images (n, 24, 24, 4) from colour columns (1728 x n) and their opaque entries: alpha 1 where opaque."""
    n = colours.shape[1]
    rgb = colours.T.reshape(n, 24, 24, 3)
    alpha = opaque.T.reshape(n, 24, 24, 3)[..., :1].astype(np.float64)
    return np.concatenate([rgb, alpha], axis=3)


def logged_settings(client, run_id, tmp_path):
    """The typed settings of a run, from its logged config.yaml (validated as the app does)."""
    from omegaconf import OmegaConf

    from nmf_lab.harness.config import validate

    return validate(OmegaConf.load(client.download_artifacts(run_id, "config.yaml", str(tmp_path))))


@pytest.mark.slow
def test_denoise_search_minimises_validation_error_and_only_reports_the_clean_score(run_cli, client, experiment_name,
                                                                                    punks_sheet):  # fmt: skip
    """experiment=denoise_search: Optuna trials of the denoiser; each child's objective is recomputed from its
    parameters with fit_nmf and transform alone; the best child has the least of them, and its clean
    psnr_unseen is the parent's reported best_psnr_unseen."""
    result = run_cli(
        "experiment=denoise_search", "data.n_images=150", "denoise_trial.validation=30", "denoise_trial.first=40",
        "hydra.sweeper.n_trials=3", "hydra.sweeper.params.rank=int(interval(4,12))",
        "hydra.sweeper.params.solver.max_iter=int(interval(3,8))",
        "hydra.sweeper.params.denoise_trial.members=int(interval(1,3))", f"tracking.experiment={experiment_name}",
    )  # fmt: skip
    assert "best trial" in result.stdout
    (parent,), children = runs_of(client, experiment_name)
    assert len(children) == 3 and all(child.info.status == FINISHED for child in children)
    best = min(children, key=lambda run: run.data.metrics["heldout_error"])
    assert parent.data.tags["nmf_lab.best_run"] == best.info.run_id
    assert parent.data.metrics["best_psnr_unseen"] == best.data.metrics["psnr_unseen"]
    # The objective again, for the best trial, from its parameters and the noisy punks alone.
    params = best.data.params
    punks = Punks(n_images=150, path=str(punks_sheet)).load()
    A_noisy, opaque = add_noise(punks.matrix(), 0.1, seed=int(params["noise.seed"])), punks.opaque_entries()
    split = Split.of(150, 40, 30, seed=0)
    rank, budget, members = int(params["rank"]), int(params["solver.max_iter"]), int(params["denoise_trial.members"])
    fits = [
        fit_nmf(
            A_noisy[:, split.train], rank, solver="hals", dtype="float32", max_iter=budget, seed=int(params["seed"]) + k
        ).W
        for k in range(members)
    ]
    V, V_opaque = A_noisy[:, split.validation], opaque[:, split.validation]
    order = np.random.default_rng(0).permutation(1728)
    per_fold = []
    for rows in (np.sort(order[:173]), np.sort(order[173:346])):
        seen = np.setdiff1d(np.arange(1728), rows)
        mean = sum(W[rows] @ transform(V[seen], W[seen], tol=0.01).H for W in fits) / members
        per_fold.append(heldout_error(V[rows], mean, V_opaque[rows]))
    assert best.data.metrics["heldout_error"] == pytest.approx(np.mean(per_fold), rel=1e-6)
    history = client.get_metric_history(best.info.run_id, "heldout_error")
    assert [point.step for point in history] == list(range(1, members + 1))
