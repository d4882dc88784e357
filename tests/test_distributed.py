"""The blocked problem on Dask (nmf_lab.distributed): the same iterates as the in-memory fit, on real Dask
schedulers and clusters, data in real Zarr stores on disk."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from nmf_lab import fit_nmf, transform  # noqa: E402
from nmf_lab.distributed import BlockedProblem, fit_blocked, transform_blocked  # noqa: E402


@pytest.fixture(scope="module")
def punks_matrix(punks_sheet) -> np.ndarray:
    """The 10,000 punks as A (1728 x 10000, float64)."""
    from nmf_lab.data.punks import Punks

    return Punks(n_images=10000, path=str(punks_sheet)).load().matrix()


@pytest.mark.slow  # seconds: the full suite runs it, the inner loop does not
@pytest.mark.parametrize("solver", ["mu", "hals", "ahals", "ahals_extrapolated"])
def test_the_blocked_fit_of_the_10000_punks_has_the_in_memory_error_curve(punks_matrix, solver):
    """float64, fixed seed: the error of every iterate equals the in-memory fit's to relative 1e-9, and so do
    the factors (the same iterates, only the products are summed block by block)."""
    A = punks_matrix
    expected = fit_nmf(A, 8, solver=solver, max_iter=3, seed=3)
    blocked = fit_blocked(da.from_array(A, chunks=(A.shape[0], 2400)), 8, solver=solver, max_iter=3, seed=3)
    assert blocked.n_iter == expected.n_iter == 3
    np.testing.assert_allclose(blocked.errors, expected.errors, rtol=1e-9, atol=0)
    np.testing.assert_allclose(blocked.W, expected.W, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(blocked.H, expected.H, rtol=1e-7, atol=1e-12)
    assert blocked.best_iter == expected.best_iter


def test_the_blocked_problem_finds_the_zero_rows_and_columns_and_the_norm_in_one_pass(punks_matrix):
    A = punks_matrix[:, :3000].copy()
    A[:, 7] = 0
    problem = BlockedProblem(da.from_array(A, chunks=(200, 700)))  # row chunks are merged into column blocks
    assert problem.part.B.shape == (int(A.any(axis=1).sum()), A.shape[1] - 1)
    np.testing.assert_array_equal(problem.part.nonzero_rows, A.any(axis=1))
    assert problem.norm2 == pytest.approx(float(np.sum(A * A)), rel=1e-12)
    W = np.random.default_rng(0).uniform(size=(A.shape[0], 5))
    H = np.random.default_rng(1).uniform(size=(5, A.shape[1]))
    np.testing.assert_allclose(problem.least_squares(W).C, W.T @ A, rtol=1e-12)
    np.testing.assert_allclose(problem.T.least_squares(H.T).C, (A @ H.T).T, rtol=1e-12)
    assert problem.exact_error(W, H) == pytest.approx(np.linalg.norm(A - W @ H), rel=1e-12)


def test_the_imputed_mask_runs_blocked_with_the_in_memory_iterates(punks_matrix):
    A = punks_matrix[:, :2000]
    mask = np.random.default_rng(5).uniform(size=A.shape) > 0.3
    expected = fit_nmf(A, 6, mask=mask, missing="impute", solver="hals", max_iter=3, seed=1)
    blocked = fit_blocked(
        da.from_array(A, chunks=(A.shape[0], 700)),
        6,
        mask=da.from_array(mask, chunks=(A.shape[0], 700)),
        solver="hals",
        max_iter=3,
        seed=1,
    )
    np.testing.assert_allclose(blocked.errors, expected.errors, rtol=1e-9, atol=0)


def test_bad_blocks_are_refused_before_any_iteration():
    A = np.ones((6, 8))
    A[2, 3] = -1
    with pytest.raises(ValueError, match="1 negative entries"):
        fit_blocked(da.from_array(A, chunks=(6, 3)), 2)
    with pytest.raises(ValueError, match="all zeros"):
        fit_blocked(da.zeros((6, 8), chunks=(6, 3)), 2)


def test_transform_of_new_columns_runs_blocked_with_the_in_memory_coefficients(punks_matrix):
    W = fit_nmf(punks_matrix[:, :1000], 8, solver="hals", max_iter=20, seed=0).W
    A_new = punks_matrix[:, 5000:5600]
    H = transform_blocked(da.from_array(A_new, chunks=(A_new.shape[0], 250)), W).compute()
    np.testing.assert_allclose(H, transform(A_new, W).H, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("solver", "options", "setup"), [
    ("mu", {}, 3),  # the first pass, the initial error, H's first subproblem
    ("hals", {}, 4),  # and the start's rescaling
    ("ahals", {"inner_tol": 0.0}, 4),  # a fixed number of passes on H: column-separable
])  # fmt: skip
def test_an_iteration_reads_the_blocks_once_with_the_in_memory_iterates(punks_matrix, solver, options, setup):
    """H's half-step runs inside each block's task (update_and_cross): one pass over A per iteration after the
    setup's, and still the in-memory error curve and factors."""
    A = punks_matrix[:, :3000]
    expected = fit_nmf(A, 8, solver=solver, max_iter=4, seed=1, **options)
    problem = BlockedProblem(da.from_array(A, chunks=(A.shape[0], 1000)))
    iterations = 0

    def count(k, error):
        nonlocal iterations
        iterations = k

    from nmf_lab.core.nmf import iterate
    from nmf_lab.core.solvers import get_solver
    from nmf_lab.distributed.problem import initial_factors

    entry = get_solver(solver)
    W, H = initial_factors(problem, 8, 1)
    result = iterate(problem, W, H, entry, entry.resolve_options(options), max_iter=4, callback=count)
    np.testing.assert_allclose(result.errors, expected.errors, rtol=1e-9, atol=0)
    np.testing.assert_allclose(result.H, expected.H, rtol=1e-7, atol=1e-12)
    assert iterations == 4
    assert problem.shared.passes == setup + 4  # then one pass per iteration


def test_ahals_with_its_inner_rule_takes_two_passes_and_keeps_the_in_memory_iterates(punks_matrix):
    """The inner stopping rule is global over H, so its half-step does not split by blocks: after the first
    iteration (whose H subproblem the start computed) two passes per iteration, and the in-memory curve."""
    from nmf_lab.core.nmf import iterate
    from nmf_lab.core.solvers import get_solver
    from nmf_lab.distributed.problem import initial_factors

    A = punks_matrix[:, :3000]
    expected = fit_nmf(A, 8, solver="ahals", max_iter=4, seed=1)
    problem = BlockedProblem(da.from_array(A, chunks=(A.shape[0], 1000)))
    entry = get_solver("ahals")
    W, H = initial_factors(problem, 8, 1)
    result = iterate(problem, W, H, entry, entry.resolve_options({}), max_iter=4)
    np.testing.assert_allclose(result.errors, expected.errors, rtol=1e-9, atol=0)
    assert problem.shared.passes == 4 + 1 + 2 * 3  # setup (as hals), the first iteration, then two each


@pytest.mark.slow  # seconds: the full suite runs it, the inner loop does not
def test_the_denoiser_model_predicts_a_large_batch_blocked(punks_matrix, client, tracking_uri, experiment_name,
                                                           monkeypatch):  # fmt: skip
    """A logged denoiser's predict, chunk by chunk on Dask, equals the model's in-memory predict."""
    from nmf_lab.core.denoiser import Denoiser
    from nmf_lab.distributed.denoise import denoise_blocked
    from nmf_lab.tracking.lifecycle import tracked_run
    from nmf_lab.tracking.model import log_denoiser
    from nmf_lab.tracking.model_blocked import predict_blocked
    from nmf_lab.tracking.store import get_experiment_id

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    W = fit_nmf(punks_matrix[:, :500], 6, solver="hals", max_iter=10, seed=0).W
    denoiser = Denoiser(bases=W, image_shape=(24, 24, 3), max_iter=200)
    noisy = np.clip(punks_matrix[:, 1000:1900] + np.random.default_rng(1).normal(0, 0.05, (1728, 900)), 0, 1)
    images = noisy.T.reshape(900, 24, 24, 3)
    expected = denoiser.denoise_images(images)
    blocked = denoise_blocked(denoiser, images, chunk=300).compute()  # equal to the NNLS tolerance:
    np.testing.assert_allclose(blocked, expected, rtol=0, atol=1e-6)  # products of other widths round otherwise
    with tracked_run(client, get_experiment_id(client, experiment_name)) as run:
        model_uri = log_denoiser(run, denoiser, input_example=images[:1])
    predicted = predict_blocked(model_uri, da.from_array(images, chunks=(400, 24, 24, 3)))
    assert predicted.chunks[0] == (400, 400, 100)
    np.testing.assert_allclose(predicted.compute(), expected, rtol=0, atol=1e-6)


def test_fit_nmf_of_a_dask_array_is_the_blocked_fit(punks_matrix):
    """fit_nmf hands a Dask array to the installed backend (entry point group nmf_lab.arrays): the blocked fit,
    the in-memory curve, and what a blocked fit cannot do refused by name."""
    from nmf_lab.core.nmf import array_backend
    from nmf_lab.distributed.problem import fit_dask_array

    A = punks_matrix[:, :2000]
    A_blocks = da.from_array(A, chunks=(A.shape[0], 500))
    assert array_backend(A_blocks) is fit_dask_array and array_backend(A) is None
    expected = fit_nmf(A, 6, solver="hals", max_iter=3, seed=2)
    result = fit_nmf(A_blocks, 6, solver="hals", max_iter=3, seed=2)
    np.testing.assert_allclose(result.errors, expected.errors, rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="Frobenius loss only, not loss='kl'"):
        fit_nmf(A_blocks, 6, solver="mu", loss="kl")
    with pytest.raises(ValueError, match=r"no penalty, got alpha_W=0\.1"):
        fit_nmf(A_blocks, 6, alpha_W=0.1)
    with pytest.raises(ValueError, match="pass missing='impute'"):
        fit_nmf(A_blocks, 6, mask=da.ones(A.shape, chunks=(A.shape[0], 500), dtype=bool))
