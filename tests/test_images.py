"""The image study end to end: a small run on the real CryptoPunks, on scikit-learn's digits and on a folder
of RGBA PNG files (in process), and a small rank sweep (the CLI, slow)."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import RunStatus
from PIL import Image

from experiments.shared import dataset_name, display_images, postprocess, shown, warn_if_full_rank
from nmf_lab.core.linalg import truncation_errors
from nmf_lab.data.digits import Digits
from nmf_lab.data.images import ImageSet
from nmf_lab.data.punks import Punks
from nmf_lab.harness.config import ConfigError

from helpers import artifact_paths, dataset_of, load_text, runs_of

FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
SMALL = ["data.n_images=40", "solver.max_iter=30"]
FIGURES = {"2a_images", "2b_mean_image", "2c_basis_images", "2d_reconstructions", "error_curve"}


@pytest.fixture(scope="session")
def first_punks(punks_sheet) -> ImageSet:
    """The first 40 punks, as the run loads them."""
    return Punks(n_images=40, path=str(punks_sheet)).load()


def always_zero(image_set: ImageSet) -> int:
    """Pixels whose every channel is 0 in every image, counted with loops."""
    h, w = image_set.shape
    return sum(not image_set.images[y, x].any() for y in range(h) for x in range(w))


# --- the shared helpers ----------------------------------------------------------------------------------


def test_helpers_show_the_first_64_clip_for_display_and_name_noisy_data():
    images = np.random.default_rng(0).uniform(0, 1, size=(2, 3, 3, 70))
    image_set = ImageSet(images=images, alpha=None, name="tiles", source="memory", ids=np.arange(70))
    assert shown(image_set).n == 64 and shown(image_set.subset(slice(0, 5))).n == 5
    X = np.linspace(-1, 2, 18 * 4).reshape(18, 4)
    np.testing.assert_array_equal(display_images(image_set, X), np.clip(X, 0, 1).reshape(2, 3, 3, 4))
    np.testing.assert_array_equal(postprocess(X, np.ones_like(X, dtype=bool)), np.clip(X, 0, 1))
    assert (dataset_name(image_set, 0.0), dataset_name(image_set, 0.1)) == ("tiles", "tiles-noisy")


def test_a_rank_as_large_as_the_matrix_is_warned_about(caplog):
    with caplog.at_level("WARNING", logger="experiments"):
        warn_if_full_rank(np.ones((64, 1797)), 16)
        assert not caplog.records
        warn_if_full_rank(np.ones((64, 1797)), 64)
    (record,) = caplog.records
    assert "rank d = 64 >= min(m, n) = 64" in record.getMessage() and "rank=16" in record.getMessage()


# --- CryptoPunks -----------------------------------------------------------------------------------------


def test_punks_run_logs_metrics_figures_and_dataset(run_study, client, tmp_path, punks_sheet, first_punks):
    run = run_study("experiment=punks", "rank=6", *SMALL, f"data.path={punks_sheet}")
    assert run.status == FINISHED and run.info.status == FINISHED
    metrics = run.metrics
    A, alpha = first_punks.matrix(), first_punks.alpha
    assert A.shape == (1728, 40)
    assert metrics["numerical_rank"] == np.linalg.matrix_rank(A)
    assert metrics["always_transparent_pixels"] == np.sum(np.all(alpha == 0, axis=-1))
    assert metrics["always_zero_pixels"] == always_zero(first_punks) >= metrics["always_transparent_pixels"]
    assert metrics["relative_error"] == pytest.approx(metrics["final_error"] / np.linalg.norm(A))
    assert metrics["svd_error"] == pytest.approx(truncation_errors(A)[6])
    assert metrics["svd_error"] <= metrics["final_error"]
    history = client.get_metric_history(run.info.run_id, "error")
    assert len(history) == 31

    paths = run.paths()
    assert {f"figures/{name}.png" for name in FIGURES} <= paths
    for key in ("basis_images", "reconstructions"):  # MLflow images, for the UI's side-by-side comparison
        assert any(path.startswith(f"images/{key}+step+0") and path.endswith(".png") for path in paths)
    grid = Image.open(client.download_artifacts(run.info.run_id, "figures/2a_images.png", str(tmp_path)))
    assert grid.format == "PNG" and min(grid.size) > 400 and max(grid.size) < 1500

    W, H = run.factors()
    assert W.shape == (1728, 6) and H.shape == (6, 40)
    assert np.linalg.norm(A - W @ H) == pytest.approx(metrics["final_error"], rel=1e-6)

    dataset = dataset_of(run)
    assert dataset.name == "cryptopunks" and str(punks_sheet) in dataset.source
    assert '"features_shape": [1728, 40]' in dataset.profile and dataset.digest
    assert run.params["data.n_images"] == "40" and run.params["data.subset"] == "first"


def test_random_subset_is_logged_and_differs(run_study, punks_sheet, first_punks):
    run = run_study(
        "experiment=punks",
        "rank=3",
        *SMALL,
        f"data.path={punks_sheet}",
        "data.subset=random",
        "data.subset_seed=7",
    )
    assert run.params["data.subset"] == "random" and run.params["data.subset_seed"] == "7"
    sample = Punks(n_images=40, subset="random", subset_seed=7, path=str(punks_sheet)).load()
    assert run.metrics["numerical_rank"] == np.linalg.matrix_rank(sample.matrix())
    assert dataset_of(run).digest == sample.digest[:32] != first_punks.digest[:32]  # the image set's own digest


@pytest.mark.slow
def test_rank_sweep_summary_answers_2e_and_2f(run_cli, client, experiment_name, tmp_path, punks_sheet):
    run_cli(
        "experiment=punks_ranks",
        "rank=2,5,9",
        *SMALL,
        f"data.path={punks_sheet}",
        f"tracking.experiment={experiment_name}",
    )
    (parent,), children = runs_of(client, experiment_name)
    assert len(children) == 3 and parent.info.status == FINISHED
    paths = set(artifact_paths(client, parent.info.run_id))
    assert {
        "figures/2e_error_curves.png",
        "figures/2f_error_against_rank.png",
        "tables/final_errors.md",
        "summary/children.csv",
    } <= paths
    by_rank = {int(c.data.params["rank"]): c.data.metrics for c in children}
    nmf = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "final_error_by_rank")}
    svd = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "svd_error_by_rank")}
    assert nmf == {d: by_rank[d]["final_error"] for d in (2, 5, 9)}
    assert svd == {d: by_rank[d]["svd_error"] for d in (2, 5, 9)}
    assert svd[2] > svd[5] > svd[9]  # more components, a better best approximation
    assert all(nmf[d] >= svd[d] for d in nmf)  # Eckart-Young: NMF never beats the truncated SVD
    assert load_text(client, parent.info.run_id, "tables/final_errors.md", tmp_path).count("\n| ") == 3


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.n_images=0", "data.n_images"),
        ("data.n_images=10001", "data.n_images"),
        ("data.subset=some", "data.subset"),
    ],
)
def test_bad_data_config_stops_before_any_run(run_job, client, experiment_name, override, key):
    with pytest.raises(ConfigError, match=rf"invalid config value {key}="):
        run_job("experiment=punks", override, f"tracking.experiment={experiment_name}")
    assert client.get_experiment_by_name(experiment_name) is None


def test_offline_without_a_copy_fails_the_run_saying_where_to_put_the_file(
    run_job, client, experiment_name, tmp_path, monkeypatch
):
    monkeypatch.setenv("NMF_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NMF_LAB_PUNKS", "")
    with pytest.raises(FileNotFoundError) as caught:
        run_job(
            "experiment=punks",
            "data.n_images=5",
            "data.url=http://127.0.0.1:9/punks.png",
            f"tracking.experiment={experiment_name}",
        )
    assert "data.path=/path/to/punks.png" in str(caught.value) and str(tmp_path / "cache") in str(caught.value)
    (run,), _ = runs_of(client, experiment_name)
    assert run.info.status == FAILED


# --- any image set: digits, a folder ---------------------------------------------------------------------


def test_the_image_study_runs_on_the_digits(run_study, client, tmp_path):
    run = run_study(
        "experiment=punks",
        "data=digits",
        "data.n_images=100",
        "rank=5",
        "solver.max_iter=20",
    )
    assert run.status == FINISHED
    digits = Digits(n_images=100).load()
    A = digits.matrix()
    metrics = run.metrics
    assert metrics["numerical_rank"] == np.linalg.matrix_rank(A)
    assert metrics["always_transparent_pixels"] == 0  # no alpha: every pixel is opaque
    assert metrics["always_zero_pixels"] == always_zero(digits) > 0  # e.g. the left column of every digit
    assert metrics["svd_error"] == pytest.approx(truncation_errors(A)[5])
    W, H = run.factors()
    assert W.shape == (64, 5) and H.shape == (5, 100)
    assert np.linalg.norm(A - W @ H) == pytest.approx(metrics["final_error"], rel=1e-6)
    assert {f"figures/{name}.png" for name in FIGURES} <= run.paths()
    dataset = dataset_of(run)
    assert dataset.name == "digits" and "sklearn.datasets.load_digits" in dataset.source
    assert '"features_shape": [64, 100]' in dataset.profile
    grid = Image.open(client.download_artifacts(run.info.run_id, "figures/2a_images.png", str(tmp_path)))
    assert min(grid.size) > 500 and max(grid.size) < 1500  # 8 x 8 digits drawn large enough, not gigantic


def sprite_folder(folder, n=10, size=12, seed=0):
    """n RGBA sprites of size x size: a transparent border one pixel wide, random opaque colours inside."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        rgba = rng.integers(0, 256, size=(size, size, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        rgba[0, :, 3] = rgba[-1, :, 3] = rgba[:, 0, 3] = rgba[:, -1, 3] = 0
        rgba[2, 2 + i % 5, 3] = 0  # and one more transparent pixel in some images
        Image.fromarray(rgba, "RGBA").save(folder / f"sprite_{i:02d}.png")
    return folder


def test_the_image_study_runs_on_a_folder_of_rgba_pngs(run_study, tmp_path):
    folder = sprite_folder(tmp_path / "sprites")
    run = run_study(
        "experiment=punks",
        "data=image_folder",
        f"data.folder={folder}",
        "rank=3",
        "solver.max_iter=10",
    )
    assert run.status == FINISHED
    metrics = run.metrics
    assert metrics["always_transparent_pixels"] == 4 * 12 - 4  # the border; the inner pixels are opaque in some
    W, H = run.factors()
    assert W.shape == (12 * 12 * 3, 3) and H.shape == (3, 10)
    dataset = dataset_of(run)
    assert dataset.name == "sprites" and str(folder) in dataset.source
    assert '"features_shape": [432, 10]' in dataset.profile
    assert {f"figures/{name}.png" for name in FIGURES} <= run.paths()
    assert run.params["data.folder"] == str(folder)


def test_a_folder_of_mixed_sizes_stops_before_any_run(run_job, client, experiment_name, tmp_path):
    folder = sprite_folder(tmp_path / "sprites", n=3)
    Image.new("RGBA", (13, 12)).save(folder / "wide.png")
    message = r"invalid config value data\.folder=.*3 of 4 are 12 x 12 .*wide\.png is 13 x 12"
    with pytest.raises(ConfigError, match=message):
        run_job(
            "experiment=punks", "data=image_folder", f"data.folder={folder}", f"tracking.experiment={experiment_name}"
        )
    assert client.get_experiment_by_name(experiment_name) is None
