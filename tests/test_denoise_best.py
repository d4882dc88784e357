"""The best denoiser (experiment=denoise_best): its run-time choices (d and the budget from held-out curves, the
number of fits from validation images), the zero rule, and the study end to end on a few real punks, its metrics
recomputed from what it logged and from the noisy images."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import RunStatus

from experiments.denoise_best import Split, choose_members, denoise, heldout_rows
from nmf_lab import fit_nmf
from nmf_lab.core.denoiser import Denoiser
from nmf_lab.core.metrics import psnr
from nmf_lab.core.noise import add_noise
from nmf_lab.core.rank_selection import cross_validate_rank_and_budget, heldout_error, heldout_folds
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


def members_settings(**overrides):
    """The parts of a job's config that choose_members reads."""
    from types import SimpleNamespace

    best = dict(folds=2, holdout=0.1, cv_seed=0, max_members=6, member_tol=0.05, model_tol=0.01)
    solver = SimpleNamespace(
        name="hals", max_iter=999, dtype="float64", tol=0.0, time_limit=None, missing="impute", options={}
    )
    return SimpleNamespace(denoise_best=SimpleNamespace(**{**best, **overrides}), solver=solver, seed=7, init="random")


def test_fits_are_kept_while_the_validation_error_of_their_mean_falls_by_more_than_the_tolerance(punks_sheet):
    punks = Punks(n_images=120, path=str(punks_sheet)).load()
    A_noisy, opaque = add_noise(punks.matrix(), 0.1, seed=1), punks.opaque_entries()
    split = Split.of(120, 30, 30, seed=0)
    assert not set(split.test) & set(split.train) and not set(split.validation) & set(split.train)
    assert sorted([*split.test, *split.validation, *split.train]) == list(range(120))
    chosen = choose_members(A_noisy, opaque, split, 8, 10, members_settings())
    # Each fit is a fit of the training images alone (never a test or validation image), seeds 7, 8, ...
    fitted = [fit_nmf(A_noisy[:, split.train], 8, solver="hals", max_iter=10, seed=7 + k).W for k in range(6)]
    for W, again in zip(chosen.bases, fitted):
        np.testing.assert_array_equal(W, again)
    # The errors again: the validation images projected from the rows outside each held-out set.
    V, V_opaque = A_noisy[:, split.validation], opaque[:, split.validation]
    for k, error in enumerate(chosen.errors, start=1):
        per_fold = []
        for rows in heldout_rows(1728, 2, 0.1, seed=0):
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
    # A tolerance no fall can beat keeps one fit.
    assert choose_members(A_noisy, opaque, split, 8, 10, members_settings(member_tol=2.0, max_members=3)).count == 1


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
def test_denoise_best_end_to_end(run_job, client, experiment_name, punks_sheet, tmp_path):
    status = run_job(
        "experiment=denoise_best",
        *SMALL,
        "noise.seed=3",
        f"data.path={punks_sheet}",
        f"denoise_best.registered_model={experiment_name}",
        f"tracking.experiment={experiment_name}",
    )
    (run,), _ = runs_of(client, experiment_name)
    assert status == FINISHED
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
