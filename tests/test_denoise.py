"""The noise model, PSNR, and the denoising study end to end."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import RunStatus

from experiments.shared import postprocess
from nmf_lab import truncated_svd
from nmf_lab.core.metrics import psnr
from nmf_lab.core.noise import add_noise
from nmf_lab.data.digits import Digits
from nmf_lab.data.images import ImageSet
from nmf_lab.data.punks import Punks

from helpers import artifact_paths, dataset_of, runs_of

FINISHED = RunStatus.to_string(RunStatus.FINISHED)


@pytest.fixture(scope="session")
def first_punks(punks_sheet) -> ImageSet:
    """The first 40 punks, as the runs load them."""
    return Punks(n_images=40, path=str(punks_sheet)).load()


def image_like(seed=0, shape=(300, 40)):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0, 1, size=shape)
    A[rng.uniform(size=shape) < 0.3] = 0.0
    return A


def test_zeros_stay_zero_and_values_stay_in_the_unit_interval():
    A = image_like()
    noisy = add_noise(A, 0.3, seed=1)
    assert np.all(noisy[A == 0] == 0)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert np.mean(noisy[A > 0] != A[A > 0]) > 0.99


def test_same_seed_same_noise_and_different_seeds_differ():
    A = image_like()
    np.testing.assert_array_equal(add_noise(A, 0.1, seed=3), add_noise(A, 0.1, seed=3))
    assert not np.array_equal(add_noise(A, 0.1, seed=3), add_noise(A, 0.1, seed=4))


def test_sigma_zero_is_the_identity_and_leaves_the_input_alone():
    A = image_like()
    copy = A.copy()
    noisy = add_noise(A, 0.0, seed=0)
    np.testing.assert_array_equal(noisy, A)
    assert noisy is not A
    add_noise(A, 0.2, seed=0)
    np.testing.assert_array_equal(A, copy)


@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_noise_on_mid_grey_has_standard_deviation_sigma(sigma):
    """On 0.5 with sigma <= 0.05 clipping at 0 and 1 is 10+ standard deviations away: the noise is the
    unclipped Gaussian, whose sample std over 10^6 draws is sigma to within 0.5%."""
    A = np.full((1000, 1000), 0.5)
    noise = add_noise(A, sigma, seed=11) - A
    assert abs(noise.mean()) < 5 * sigma / 1000
    assert noise.std() == pytest.approx(sigma, rel=5e-3)


@pytest.mark.parametrize("sigma, seed", [(-0.1, 0), (float("nan"), 0), (0.1, -1)])
def test_bad_noise_parameters(sigma, seed):
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0|seed must be an integer >= 0"):
        add_noise(image_like(), sigma, seed)


def test_psnr_of_a_hand_computed_case():
    reference = np.array([[0.0, 0.5], [1.0, 0.25]])
    estimate = np.array([[0.1, 0.5], [0.8, 0.25]])
    # MSE = (0.01 + 0 + 0.04 + 0) / 4 = 0.0125; PSNR = 10 log10(1 / 0.0125) = 19.0309 dB
    assert psnr(reference, estimate) == pytest.approx(10 * np.log10(80), abs=1e-12)
    assert psnr(reference, estimate) == pytest.approx(19.0309, abs=1e-4)
    mask = np.array([[False, True], [True, True]])  # MSE = 0.04 / 3
    assert psnr(reference, estimate, mask) == pytest.approx(10 * np.log10(3 / 0.04), abs=1e-12)
    assert psnr(reference, reference) == float("inf")


def test_postprocess_clips_and_clears_transparent_pixels():
    alpha = np.zeros((2, 2, 1))
    alpha[0, 0, 0] = 1.0
    image_set = ImageSet(images=np.zeros((2, 2, 3, 1)), alpha=alpha, name="x", source="y", ids=np.arange(1))
    X = np.linspace(-0.5, 1.5, 12).reshape(12, 1)
    mask = image_set.opaque_entries()
    assert mask.sum() == 3 and mask[:3].all()
    out = postprocess(X, mask)
    assert np.all(out[3:] == 0)  # pixels (0,1), (1,0), (1,1) are transparent: 3 channels each
    np.testing.assert_array_equal(out[:3], np.clip(X[:3], 0, 1))
    grey = ImageSet(images=np.zeros((2, 2, 1, 3)), alpha=None, name="x", source="y", ids=np.arange(3))
    Y = np.linspace(-1, 2, 12).reshape(4, 3)
    np.testing.assert_array_equal(postprocess(Y, grey.opaque_entries()), np.clip(Y, 0, 1))  # no alpha: clip only


SMALL = ["data.n_images=40", "solver.max_iter=40"]


def test_denoise_run_measures_against_the_clean_matrix(run_study, punks_sheet, first_punks):
    run = run_study(
        "experiment=denoise",
        "rank=8",
        "noise.seed=5",
        *SMALL,
        f"data.path={punks_sheet}",
    )
    assert run.status == FINISHED
    A, mask = first_punks.matrix(), first_punks.opaque_entries()
    A_noisy = add_noise(A, 0.1, seed=5)
    m = run.metrics
    assert m["noise_error"] == pytest.approx(np.linalg.norm(A_noisy - A))
    W, H = run.factors()
    assert m["clean_error"] == pytest.approx(np.linalg.norm(A - W @ H), rel=1e-9)
    assert m["final_error"] == pytest.approx(np.linalg.norm(A_noisy - W @ H), rel=1e-6)  # the fit's objective
    assert m["clean_error"] != pytest.approx(m["final_error"], rel=1e-3)
    assert m["psnr_noisy"] == pytest.approx(psnr(A, A_noisy, mask))
    assert m["psnr"] == pytest.approx(psnr(A, W @ H, mask), rel=1e-9)
    paths = run.paths()
    assert {
        "figures/3a_noisy_images.png",
        "figures/3b_basis_images.png",
        "figures/3b_original_noisy_denoised.png",
    } <= paths
    assert run.params["noise.sigma"] == "0.1" and run.params["noise.seed"] == "5"
    assert dataset_of(run).name == "cryptopunks-noisy"


@pytest.mark.slow
def test_denoise_sweep_compares_nmf_and_svd(run_cli, client, experiment_name, punks_sheet, first_punks):
    run_cli(
        "experiment=denoise_ranks",
        "rank=2,6",
        "noise.sigma=0.1",
        "denoise.postprocess=true",
        *SMALL,
        f"data.path={punks_sheet}",
        f"tracking.experiment={experiment_name}",
    )
    (parent,), children = runs_of(client, experiment_name)
    assert len(children) == 4 and parent.info.status == FINISHED
    A, mask = first_punks.matrix(), first_punks.opaque_entries()
    A_noisy = add_noise(A, 0.1, seed=0)
    svd6 = [
        c
        for c in children
        if c.data.params["denoise.method"] == "svd"
        and c.data.params["rank"] == "6"
        and c.data.params["noise.sigma"] == "0.1"
    ]
    (svd6,) = svd6
    expected = np.linalg.norm(A - postprocess(truncated_svd(A_noisy, 6), mask))
    assert svd6.data.metrics["clean_error"] == pytest.approx(expected)
    nmf_noisy = {
        int(c.data.params["rank"]): c.data.metrics["clean_error"]
        for c in children
        if c.data.params["denoise.method"] == "nmf" and c.data.params["noise.sigma"] == "0.1"
    }
    best = min(nmf_noisy, key=nmf_noisy.get)
    assert parent.data.metrics["best_rank"] == best
    assert parent.data.metrics["best_clean_error"] == nmf_noisy[best]
    svd_noisy = {
        int(c.data.params["rank"]): c.data.metrics["clean_error"]
        for c in children
        if c.data.params["denoise.method"] == "svd" and c.data.params["noise.sigma"] == "0.1"
    }
    assert parent.data.metrics["best_rank.svd.sigma_0.1"] == min(svd_noisy, key=svd_noisy.get)
    assert parent.data.metrics["best_clean_error.svd.sigma_0.1"] == min(svd_noisy.values())
    # The parent's params are those every job used: not the swept rank or method, but sigma and postprocess.
    assert "rank" not in parent.data.params and "denoise.method" not in parent.data.params
    assert parent.data.params["denoise.postprocess"] == "True" and parent.data.params["noise.sigma"] == "0.1"
    assert "figures/3c_clean_error_against_rank.png" in artifact_paths(client, parent.info.run_id)


# --- any image set ---------------------------------------------------------------------------------------


def test_denoising_the_digits(run_study):
    run = run_study(
        "experiment=denoise",
        "data=digits",
        "data.n_images=60",
        "rank=6",
        "solver.max_iter=20",
        "noise.seed=2",
    )
    assert run.status == FINISHED
    A = Digits(n_images=60).load().matrix()
    A_noisy = add_noise(A, 0.1, seed=2)
    m = run.metrics
    W, H = run.factors()
    assert W.shape == (64, 6)
    assert m["noise_error"] == pytest.approx(np.linalg.norm(A_noisy - A))
    assert m["clean_error"] == pytest.approx(np.linalg.norm(A - W @ H), rel=1e-9)
    assert m["psnr_noisy"] == pytest.approx(psnr(A, A_noisy))  # no alpha: PSNR over every entry
    assert m["psnr"] == pytest.approx(psnr(A, W @ H), rel=1e-9)
    assert {
        "figures/3a_noisy_images.png",
        "figures/3b_basis_images.png",
        "figures/3b_original_noisy_denoised.png",
    } <= run.paths()
    dataset = dataset_of(run)
    assert dataset.name == "digits-noisy" and '"features_shape": [64, 60]' in dataset.profile


def test_a_run_without_noise_does_not_claim_noise(run_study):
    run = run_study(
        "experiment=denoise",
        "data=digits",
        "data.n_images=50",
        "rank=4",
        "noise.sigma=0",
        "denoise.method=svd",
        "denoise.postprocess=true",
    )
    assert run.status == FINISHED
    A = Digits(n_images=50).load().matrix()
    m = run.metrics
    assert m["noise_error"] == 0.0 and "psnr_noisy" not in m  # no noisy images to score
    assert "noise.seed" not in run.params and run.params["noise.sigma"] == "0.0"
    assert m["clean_error"] == pytest.approx(np.linalg.norm(A - np.clip(truncated_svd(A, 4), 0, 1)))
    assert dataset_of(run).name == "digits"
