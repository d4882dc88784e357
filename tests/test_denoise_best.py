"""The best denoiser (experiment=denoise_best): the imputation solver its cross-validation fits with, and the
study end to end on a few real punks, its metrics recomputed from what it logged and from the noisy images."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import RunStatus

from experiments.denoise_best import denoise, imputed_solver
from nmf_lab import fit_nmf
from nmf_lab.core.denoiser import Denoiser
from nmf_lab.core.metrics import psnr
from nmf_lab.core.noise import add_noise
from nmf_lab.data.punks import Punks

from helpers import load_array, load_text, runs_of

FINISHED = RunStatus.to_string(RunStatus.FINISHED)


def low_rank_with_holes(seed=0, shape=(60, 40), rank=4, missing=0.3):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0, 1, (shape[0], rank)) @ rng.uniform(0, 1, (rank, shape[1]))
    A += rng.uniform(0, 0.05, shape)
    mask = rng.uniform(size=shape) >= missing
    return A, mask


def test_the_imputation_solver_fits_the_masked_objective_without_reading_hidden_entries():
    A, mask = low_rank_with_holes()
    name = imputed_solver("hals")
    assert imputed_solver("hals") == name == "hals_em"  # registered once
    result = fit_nmf(A, 4, mask=mask, solver=name, max_iter=150, seed=1)
    garbage = np.where(mask, A, np.nan)  # the hidden entries may be anything
    again = fit_nmf(garbage, 4, mask=mask, solver=name, max_iter=150, seed=1)
    np.testing.assert_array_equal(result.W, again.W)
    np.testing.assert_array_equal(result.H, again.H)
    # A generalised EM step never raises the masked error, and errors[k] is the masked norm at the factors.
    assert np.all(np.diff(result.errors) <= 1e-12 * result.errors[0])
    assert result.final_error == pytest.approx(np.linalg.norm(mask * (A - result.W @ result.H)), rel=1e-9)
    # It minimises what exact masked HALS minimises, more slowly: converged, both fit the observed entries alike.
    converged = fit_nmf(A, 4, mask=mask, solver=name, max_iter=2000, seed=1)
    exact = fit_nmf(A, 4, mask=mask, solver="hals", max_iter=1000, seed=1)
    assert converged.final_error == pytest.approx(exact.final_error, rel=0.01)
    # Without a mask it is the solver itself, bit for bit.
    np.testing.assert_array_equal(fit_nmf(A, 4, solver=name, max_iter=5).W, fit_nmf(A, 4, solver="hals", max_iter=5).W)


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
    "denoise_best.members=2",
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
    # The study's method, recomputed: mu on the first images alone at its clean-optimal d.
    study = {}
    for d in (16, 32):
        fitted = fit_nmf(A_noisy[:, first], d, max_iter=60)  # mu from the random start, as the study fits
        study[d] = psnr(A[:, first], fitted.W @ fitted.H, opaque[:, first])
    assert m["study_rank"] == max(study, key=study.get)
    assert m["psnr_study"] == pytest.approx(max(study.values()), abs=1e-9)
    comparison = load_text(client, run.info.run_id, "tables/comparison.md", tmp_path)
    for row in ("the study's method", "truncated SVD", "this denoiser: mean of 2 fits of all 240"):
        assert row in comparison
    assert f"{m['psnr_first_500']:.2f}" in comparison
    # The registered model is this run's, and scores on the first images close to the run's own reconstruction.
    (version,) = client.search_model_versions(f"name='{experiment_name}'")
    assert version.run_id == run.info.run_id
    assert m["psnr_first_500_model"] == pytest.approx(m["psnr_first_500"], abs=0.5)
    assert m["wall_seconds"] > 0


def logged_settings(client, run_id, tmp_path):
    """The typed settings of a run, from its logged config.yaml (validated as the app does)."""
    from omegaconf import OmegaConf

    from nmf_lab.harness.config import validate

    return validate(OmegaConf.load(client.download_artifacts(run_id, "config.yaml", str(tmp_path))))
