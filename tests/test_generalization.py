"""The generalization study: W learned on images 0..N-1, images N..N+M-1 projected onto it with W fixed."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import RunStatus

from nmf_lab import fit_nmf, transform
from nmf_lab.core.metrics import psnr
from nmf_lab.data.punks import Punks

from helpers import artifact_paths, runs_of

FINISHED = RunStatus.to_string(RunStatus.FINISHED)


def test_projecting_the_training_images_reproduces_the_training_error():
    """A converged fit's H is (nearly) the NNLS solution for its W: projecting the training images onto W
    gives the fit's own error, never more (NNLS is optimal) and at most a little less."""
    rng = np.random.default_rng(0)
    A = rng.uniform(size=(40, 6)) @ rng.uniform(size=(6, 50)) + 0.05 * rng.uniform(size=(40, 50))
    result = fit_nmf(A, 4, solver="hals", max_iter=2000)
    projected = transform(A, result.W)
    assert projected.final_error <= result.final_error * (1 + 1e-9)
    assert projected.final_error >= result.final_error * (1 - 1e-3)


@pytest.mark.slow  # a whole job with its figures: about 3 s
def test_generalization_projects_unseen_punks_onto_the_training_basis(run_study, punks_sheet):
    run = run_study(
        "experiment=generalization",
        "data.n_images=30",
        "generalization.test_images=12",
        f"data.path={punks_sheet}",
        "rank=6",
        "solver.max_iter=40",
    )
    assert run.status == FINISHED
    m = run.metrics
    punks = Punks(n_images=42, path=str(punks_sheet)).load()
    A_train, A_test = punks.matrix()[:, :30], punks.matrix()[:, 30:]
    W, H = run.factors()
    # W is learned from the training punks alone: the same fit of them, bit for bit
    alone = fit_nmf(A_train, 6, solver="mu", max_iter=40, seed=0)
    np.testing.assert_array_equal(W, alone.W)
    H_test = run.array("arrays/H_test.npy")
    assert H_test.shape == (6, 12) and (H_test >= 0).all()
    np.testing.assert_allclose(H_test, transform(A_test, W).H, rtol=1e-9, atol=1e-12)
    assert m["train_error"] == pytest.approx(np.linalg.norm(A_train - W @ H) / np.linalg.norm(A_train), rel=1e-6)
    assert m["test_error"] == pytest.approx(np.linalg.norm(A_test - W @ H_test) / np.linalg.norm(A_test), rel=1e-6)
    assert m["train_error_projected"] <= m["train_error"] * (1 + 1e-9)  # NNLS is optimal for the fixed W
    assert m["psnr_test"] == pytest.approx(psnr(A_test, W @ H_test, punks.subset(slice(30, 42)).opaque_entries()))
    assert "figures/test_projections.png" in run.paths()
    contexts = sorted(i.tags[0].value for i in run.inputs.dataset_inputs)
    assert contexts == ["testing", "training"]


def test_more_test_images_than_the_data_set_has_stop_before_any_run(run_job, client, experiment_name):
    from nmf_lab.harness.config import ConfigError

    with pytest.raises(ConfigError, match=r"generalization.test_images=1000.*1798 images are more than"):
        run_job(
            "experiment=generalization",
            "data=digits",
            "data.n_images=798",
            "generalization.test_images=1000",
            f"tracking.experiment={experiment_name}",
        )
    assert client.get_experiment_by_name(experiment_name) is None


def test_the_sweep_draws_train_and_test_error_against_d(run_cli, client, experiment_name):
    run_cli(
        "experiment=generalization",
        "data=digits",
        "data.n_images=50",
        "generalization.test_images=30",
        "rank=2,6",
        "solver.max_iter=30",
        f"tracking.experiment={experiment_name}",
    )
    (parent,), children = runs_of(client, experiment_name)
    assert len(children) == 2 and all(c.info.status == FINISHED for c in children)
    best = min(children, key=lambda c: c.data.metrics["test_error"])
    assert parent.data.metrics["best_test_rank"] == int(best.data.params["rank"])
    assert parent.data.metrics["best_test_error"] == pytest.approx(best.data.metrics["test_error"])
    assert "figures/train_test_error_against_rank.png" in artifact_paths(client, parent.info.run_id)
