"""The CryptoPunks study end to end on the real data: a small run and a small rank sweep."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import RunStatus
from PIL import Image

from conftest import PUNKS_PNG
from nmf_lab.data.images import images_to_matrix
from nmf_lab.data.punks import load_punks
from nmf_lab.linalg import truncation_errors
from store_helpers import artifact_paths, load_text, runs_of

pytestmark = pytest.mark.skipif(not PUNKS_PNG.is_file(), reason=f"the CryptoPunks sheet is absent: {PUNKS_PNG}")

FINISHED = RunStatus.to_string(RunStatus.FINISHED)
SMALL = ["data.n_images=40", "solver.max_iter=30", f"data.path={PUNKS_PNG}"]


def test_punks_run_logs_metrics_figures_and_dataset(run_cli, client, experiment_name, tmp_path):
    run_cli("experiment=punks", "rank=6", *SMALL, f"tracking.experiment={experiment_name}")
    (run,), children = runs_of(client, experiment_name)
    assert not children and run.info.status == FINISHED
    metrics = run.data.metrics
    A, alpha = images_to_matrix(load_punks(np.arange(40), path=PUNKS_PNG).images)
    assert A.shape == (1728, 40)
    assert metrics["numerical_rank"] == np.linalg.matrix_rank(A)
    assert metrics["always_transparent_pixels"] == np.sum(np.all(alpha == 0, axis=-1))
    assert metrics["relative_error"] == pytest.approx(metrics["final_error"] / np.linalg.norm(A))
    assert metrics["svd_error"] == pytest.approx(truncation_errors(A)[6])
    assert metrics["svd_error"] <= metrics["final_error"]
    history = client.get_metric_history(run.info.run_id, "error")
    assert len(history) == 31

    paths = set(artifact_paths(client, run.info.run_id))
    figures = {"2a_images", "2b_mean_image", "2c_basis_images", "2d_reconstructions", "error_curve"}
    assert {f"figures/{name}.png" for name in figures} <= paths
    for key in ("basis_images", "reconstructions"):  # MLflow images, for the UI's side-by-side comparison
        assert any(path.startswith(f"images/{key}+step+0") and path.endswith(".png") for path in paths)
    grid = Image.open(client.download_artifacts(run.info.run_id, "figures/2a_images.png", str(tmp_path)))
    assert grid.format == "PNG" and min(grid.size) > 400

    W = np.load(client.download_artifacts(run.info.run_id, "arrays/W.npy", str(tmp_path)), allow_pickle=False)
    H = np.load(client.download_artifacts(run.info.run_id, "arrays/H.npy", str(tmp_path)), allow_pickle=False)
    assert W.shape == (1728, 6) and H.shape == (6, 40)
    assert np.linalg.norm(A - W @ H) == pytest.approx(metrics["final_error"], rel=1e-6)

    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "cryptopunks" and str(PUNKS_PNG) in dataset.source
    assert '"features_shape": [1728, 40]' in dataset.profile and dataset.digest
    assert run.data.params["data.n_images"] == "40" and run.data.params["data.subset"] == "first"


def test_random_subset_is_logged_and_differs(run_cli, client, experiment_name):
    run_cli("experiment=punks", "rank=3", *SMALL, "data.subset=random", "data.subset_seed=7",
            f"tracking.experiment={experiment_name}")
    (run,), _ = runs_of(client, experiment_name)
    assert run.data.params["data.subset"] == "random" and run.data.params["data.subset_seed"] == "7"
    first = images_to_matrix(load_punks(np.arange(40), path=PUNKS_PNG).images)[0]
    assert run.data.metrics["final_error"] > 0
    assert run.inputs.dataset_inputs[0].dataset.digest != _digest_of(first)


def _digest_of(A):
    import mlflow.data

    return mlflow.data.from_numpy(A, source="https://example.org/punks.png", name="cryptopunks").digest


def test_rank_sweep_summary_answers_2e_and_2f(run_cli, client, experiment_name, tmp_path):
    run_cli("experiment=punks_ranks", "rank=2,5,9", *SMALL, f"tracking.experiment={experiment_name}")
    (parent,), children = runs_of(client, experiment_name)
    assert len(children) == 3 and parent.info.status == FINISHED
    paths = set(artifact_paths(client, parent.info.run_id))
    assert {"figures/2e_error_curves.png", "figures/2f_error_against_rank.png", "tables/final_errors.md",
            "summary/children.csv"} <= paths
    by_rank = {int(c.data.params["rank"]): c.data.metrics for c in children}
    nmf = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "final_error_by_rank")}
    svd = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "svd_error_by_rank")}
    assert nmf == {d: by_rank[d]["final_error"] for d in (2, 5, 9)}
    assert svd == {d: by_rank[d]["svd_error"] for d in (2, 5, 9)}
    assert svd[2] > svd[5] > svd[9]  # more components, a better best approximation
    assert all(nmf[d] >= svd[d] for d in nmf)  # Eckart-Young: NMF never beats the truncated SVD
    assert load_text(client, parent.info.run_id, "tables/final_errors.md", tmp_path).count("\n| ") == 3


@pytest.mark.parametrize(
    "override, key", [("data.n_images=0", "data.n_images"), ("data.n_images=10001", "data.n_images"),
                      ("data.subset=some", "data.subset")],
)
def test_bad_data_config_stops_before_any_run(run_cli, client, experiment_name, override, key):
    result = run_cli("experiment=punks", override, f"tracking.experiment={experiment_name}", check=False)
    assert result.returncode != 0 and f"invalid config value {key}=" in result.stderr
    assert client.get_experiment_by_name(experiment_name) is None


def test_offline_without_a_copy_fails_with_where_to_put_the_file(run_cli, client, experiment_name, tmp_path):
    result = run_cli(
        "experiment=punks", "data.n_images=5", "data.url=http://127.0.0.1:9/punks.png",
        f"tracking.experiment={experiment_name}", check=False,
        env={"NMF_LAB_CACHE": str(tmp_path / "cache"), "NMF_LAB_PUNKS": ""},
    )
    assert result.returncode != 0
    assert "data.path=/path/to/punks.png" in result.stderr and str(tmp_path / "cache") in result.stderr
    (run,), _ = runs_of(client, experiment_name)
    assert run.info.status == RunStatus.to_string(RunStatus.FAILED)
