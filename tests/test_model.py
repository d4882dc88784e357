"""The denoiser (NumPy) and the denoiser as an MLflow pyfunc model: logged by every NMF denoising run, loaded
with ``mlflow.pyfunc.load_model``, registered under a name."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from nmf_lab.core.denoiser import Denoiser, model_input, postprocess
from nmf_lab.core.metrics import psnr
from nmf_lab.core.noise import add_noise
from nmf_lab.data.images import ImageSet
from nmf_lab.data.punks import Punks
from nmf_lab.tracking.lifecycle import FINISHED, tracked_run
from nmf_lab.tracking.model import MODEL_NAME, log_denoiser
from nmf_lab.tracking.store import get_experiment_id


def disjoint_basis(m: int, d: int, seed: int) -> np.ndarray:
    """An m x d non-negative basis whose columns have disjoint supports (rows i with i % d == k)."""
    rng = np.random.default_rng(seed)
    W = np.zeros((m, d))
    for k in range(d):
        W[k::d, k] = rng.uniform(0.5, 1.5, size=len(range(k, m, d)))
    return W


def projection(W: np.ndarray, A: np.ndarray) -> np.ndarray:
    """The NNLS projection onto a basis of disjoint supports, in closed form: for non-negative A the
    coefficient of column k is <w_k, a> / ||w_k||^2 (the columns do not interact, and it is >= 0)."""
    return W @ ((W.T @ A) / (W * W).sum(axis=0)[:, None])


def rgba_set(n: int = 5, seed: int = 0) -> ImageSet:
    """n random 4 x 3 RGB images, about a third of their pixels transparent (alpha 0, colours 0)."""
    rng = np.random.default_rng(seed)
    alpha = (rng.uniform(size=(4, 3, n)) > 0.35).astype(np.float64)
    images = rng.uniform(size=(4, 3, 3, n)) * alpha[:, :, None, :]
    return ImageSet(images=images, alpha=alpha, name="rgba", source="test", ids=np.arange(n))


def test_the_denoiser_projects_onto_its_basis():
    image_set = rgba_set()
    A = image_set.matrix()
    W = disjoint_basis(A.shape[0], 4, seed=1)
    raw = Denoiser.for_images(image_set, W, postprocess=False)
    np.testing.assert_allclose(raw.denoise_matrix(A), projection(W, A), rtol=1e-9, atol=1e-12)


def test_an_ensemble_averages_the_projections_of_its_bases():
    image_set = rgba_set()
    A = image_set.matrix()
    W1, W2 = disjoint_basis(A.shape[0], 3, seed=2), disjoint_basis(A.shape[0], 5, seed=3)
    both = Denoiser.for_images(image_set, [W1, W2], postprocess=False)
    expected = (projection(W1, A) + projection(W2, A)) / 2
    np.testing.assert_allclose(both.denoise_matrix(A), expected, rtol=1e-9, atol=1e-12)


def test_images_in_images_out_with_alpha_passed_through_and_transparent_pixels_cleared():
    image_set = rgba_set()
    W = disjoint_basis(image_set.matrix().shape[0], 2, seed=4)
    images = model_input(image_set)
    assert images.shape == (5, 4, 3, 4)
    np.testing.assert_array_equal(images[2, :, :, :3], image_set.images[..., 2])  # image 2, colours then alpha
    np.testing.assert_array_equal(images[2, :, :, 3], image_set.alpha[..., 2])
    denoiser = Denoiser.for_images(image_set, W, postprocess=True)
    out = denoiser.denoise_images(images)
    assert out.shape == images.shape
    np.testing.assert_array_equal(out[..., 3], images[..., 3])
    raw = projection(W, image_set.matrix())
    assert (raw[~image_set.opaque_entries()] > 0).any()  # transparent pixels to clear
    expected = postprocess(raw, image_set.opaque_entries())
    np.testing.assert_allclose(out[..., :3], image_set.images_from_matrix(expected).transpose(3, 0, 1, 2), atol=1e-9)


def test_postprocess_without_alpha_only_clips():
    X = np.linspace(-1, 2, 12).reshape(4, 3)
    np.testing.assert_array_equal(postprocess(X, None), np.clip(X, 0, 1))


def test_the_denoiser_survives_a_round_trip_through_npz(tmp_path):
    image_set = rgba_set()
    W1, W2 = disjoint_basis(36, 3, seed=5), disjoint_basis(36, 2, seed=6)
    denoiser = Denoiser.for_images(image_set, (W1, W2), postprocess=False, solver="mu", max_iter=50)
    np.savez(tmp_path / "d.npz", **denoiser.arrays())
    with np.load(tmp_path / "d.npz", allow_pickle=False) as arrays:
        again = Denoiser.from_arrays(arrays)
    assert (again.image_shape, again.alpha, again.postprocess, again.solver, again.max_iter, again.tol) == (
        (4, 3, 3),
        True,
        False,
        "mu",
        50,
        1e-7,
    )
    images = model_input(image_set)
    np.testing.assert_array_equal(again.denoise_images(images), denoiser.denoise_images(images))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 4, 3, 3)), r"images must be an array \(n, 4, 3, 4\) with n >= 1 \(3 colour channels and alpha\)"),
        (np.zeros((4, 3, 4)), r"got shape \(4, 3, 4\)"),
        (np.full((1, 4, 3, 4), 1.5), r"images must lie in \[0, 1\], found values in \[1.5, 1.5\]"),
        (np.full((1, 4, 3, 4), np.nan), r"must lie in \[0, 1\]"),
    ],
)
def test_bad_images_are_refused_with_what_is_expected(images, message):
    denoiser = Denoiser.for_images(rgba_set(), disjoint_basis(36, 2, seed=0))
    with pytest.raises(ValueError, match=message):
        denoiser.denoise_images(images)


@pytest.mark.parametrize(
    "bases, shape, message",
    [
        (np.ones((35, 2)), (4, 3, 3), r"basis 0 must be m x d with m = h \* w \* c = 36 rows, got shape \(35, 2\)"),
        ([np.ones((36, 2)), -np.ones((36, 2))], (4, 3, 3), "basis 1 must be finite, non-negative and not all zero"),
        ([], (4, 3, 3), "at least one basis"),
        (np.ones((36, 2)), (4, 3, 2), r"image_shape must be \(h, w, c\)"),
    ],
)
def test_bad_denoisers_are_refused(bases, shape, message):
    with pytest.raises(ValueError, match=message):
        Denoiser(bases=bases, image_shape=shape)


# --- the MLflow model ------------------------------------------------------------------------------------


def test_a_logged_denoiser_loads_back_and_registers(client, tracking_uri, experiment_name, monkeypatch):
    """log_denoiser needs no active MLflow run, leaves the global tracking URI as it was, and registers."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    image_set = rgba_set()
    denoiser = Denoiser.for_images(image_set, disjoint_basis(36, 3, seed=7), postprocess=True)
    name = f"denoiser-{experiment_name}"
    with tracked_run(client, get_experiment_id(client, experiment_name)) as run:
        model_uri = log_denoiser(run, denoiser, input_example=model_input(image_set)[:1], registered_model_name=name)
    assert client.get_run(run.run_id).info.status == FINISHED
    assert mlflow.active_run() is None
    assert not mlflow.is_tracking_uri_set() or mlflow.get_tracking_uri() == tracking_uri
    (output,) = client.get_run(run.run_id).outputs.model_outputs
    assert model_uri == f"models:/{output.model_id}"
    (version,) = client.search_model_versions(f"name = '{name}'")
    assert version.run_id == run.run_id and version.source == model_uri
    images = model_input(image_set)
    expected = denoiser.denoise_images(images)
    for uri in (f"runs:/{run.run_id}/{MODEL_NAME}", model_uri, f"models:/{name}/{version.version}"):
        model = mlflow.pyfunc.load_model(uri)
        np.testing.assert_array_equal(model.predict(images), expected)
    inputs = model.metadata.get_input_schema().inputs
    assert inputs[0].shape == (-1, 4, 3, 4) and inputs[0].type == np.dtype(np.float64)


@pytest.mark.slow
def test_the_model_of_a_denoising_run_denoises_punks_it_never_saw(run_study, punks_sheet):
    """The round trip: a denoising run on the first 300 punks (sigma = 0.3) logs its model; loaded with
    mlflow.pyfunc.load_model it denoises punks 300..339 under other noise (seed 7) to a higher PSNR than the
    noisy input, and agrees with the NumPy denoiser built from the run's W."""
    run = run_study(
        "experiment=denoise",
        "data.n_images=300",
        "rank=16",
        "solver=hals",
        "solver.max_iter=60",
        "noise.sigma=0.3",
        "denoise.postprocess=true",
        f"data.path={punks_sheet}",
    )
    assert run.status == FINISHED
    punks = Punks(n_images=340, path=str(punks_sheet)).load()
    fresh = punks.subset(slice(300, 340))
    A, opaque = fresh.matrix(), fresh.opaque_entries()
    A_noisy = add_noise(A, 0.3, seed=7)
    noisy = model_input(fresh, A_noisy)

    model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/{MODEL_NAME}")
    denoised = model.predict(noisy)

    assert denoised.shape == noisy.shape == (40, 24, 24, 4)
    np.testing.assert_array_equal(denoised[..., 3], fresh.alpha.transpose(2, 0, 1))
    X = denoised[..., :3].reshape(40, -1).T
    gain = psnr(A, X, opaque) - psnr(A, A_noisy, opaque)
    assert gain > 0, f"the model made unseen punks worse: {gain:.2f} dB"
    W = run.array("arrays/W.npy")
    numpy_denoiser = Denoiser.for_images(fresh, W, postprocess=True)
    np.testing.assert_allclose(denoised, numpy_denoiser.denoise_images(noisy), atol=1e-12)
    assert X.min() >= 0 and X.max() <= 1 and (X[~opaque] == 0).all()


# --- the zero rule's assumption (issue 20, item 3) and the registration rule (item 4) -------------------


def zero_rule_case():
    """A denoiser of 4 x 3 RGBA images and noisy images with exact zeros on opaque pixels."""
    image_set = rgba_set(n=6, seed=3)
    W = disjoint_basis(36, 4, seed=8)
    noisy = np.clip(image_set.matrix() + 0.1, 0, 1) * image_set.opaque_entries()
    noisy[::5] = 0.0  # a few exact zeros on opaque pixels: the rule clears them, the projection fills them
    return image_set, W, model_input(image_set, noisy), noisy


def test_a_denoiser_built_with_the_zero_rule_refuses_to_guess_whether_the_input_follows_the_noise_model():
    image_set, W, images, _ = zero_rule_case()
    built = Denoiser.for_images(image_set, W, keep_zeros=True)
    with pytest.raises(ValueError, match=r"zero entries are exact \(spec 6.1.*zero_rule=True.*zero_rule=False"):
        built.denoise_images(images)
    with_rule, without = built.denoise_images(images, zero_rule=True), built.denoise_images(images, zero_rule=False)
    zeros = images[..., :3] == 0
    assert (with_rule[..., :3][zeros] == 0).all() and without[..., :3][zeros & (images[..., 3:] > 0)].any()
    # A denoiser built without the rule applies it only when asked.
    plain = Denoiser.for_images(image_set, W)
    np.testing.assert_array_equal(plain.denoise_images(images), without)
    np.testing.assert_array_equal(plain.denoise_images(images, zero_rule=True), with_rule)


def test_the_logged_model_states_its_assumption_and_takes_zero_rule_as_a_parameter(
    client, tracking_uri, experiment_name, monkeypatch
):
    from nmf_lab.tracking.model import predict

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    image_set, W, images, _ = zero_rule_case()
    denoiser = Denoiser.for_images(image_set, W, keep_zeros=True)
    with tracked_run(client, get_experiment_id(client, experiment_name)) as run:
        model_uri = log_denoiser(run, denoiser, input_example=images[:1])
    model = mlflow.pyfunc.load_model(model_uri)
    (param,) = model.metadata.get_params_schema().params
    assert param.to_dict() == {"name": "zero_rule", "type": "boolean", "default": None, "shape": None}
    description = model.metadata.metadata["description"]
    assert "zero entries are exact (spec 6.1" in description and "refuses" in description
    logged = client.get_logged_model(model_uri.removeprefix("models:/"))
    assert logged.tags["mlflow.note.content"] == description
    with pytest.raises(Exception, match="zero_rule=True"):
        model.predict(images)
    for zero_rule in (True, False):
        expected = denoiser.denoise_images(images, zero_rule=zero_rule)
        np.testing.assert_array_equal(model.predict(images, params={"zero_rule": zero_rule}), expected)
        np.testing.assert_array_equal(predict(model_uri, images, client=client, zero_rule=zero_rule), expected)


def test_a_model_that_makes_images_worse_is_never_registered(client, tracking_uri, experiment_name, monkeypatch):
    from nmf_lab.tracking.model import HarmfulModel, register_denoiser

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    image_set = rgba_set()
    denoiser = Denoiser.for_images(image_set, disjoint_basis(36, 3, seed=9))
    name = f"denoiser-{experiment_name}"
    with tracked_run(client, get_experiment_id(client, experiment_name)) as run:
        model_uri = log_denoiser(run, denoiser)
        for gain in (-0.5, 0.0, float("nan")):
            with pytest.raises(HarmfulModel, match="makes noisy images outside its fit worse"):
                register_denoiser(run, model_uri, name, gain_db=gain, description="x")
        assert not client.search_model_versions(f"name = '{name}'")
        version = register_denoiser(run, model_uri, name, gain_db=0.4, description="helps by 0.4 dB")
    (registered,) = client.search_model_versions(f"name = '{name}'")
    assert registered.version == version and registered.source == model_uri and registered.run_id == run.run_id
    assert registered.description == "helps by 0.4 dB"
