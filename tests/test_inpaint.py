"""Missing pixels (nmf_lab.core.holes) and the inpainting study."""

from __future__ import annotations

import numpy as np
import pytest

from nmf_lab.core.holes import entries_of_pixels, pixel_holes, row_mean_fill


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_random_holes_remove_the_requested_fraction_of_each_image(fraction):
    removed = pixel_holes((24, 24), 50, fraction, "random", seed=3)
    assert removed.shape == (24, 24, 50) and removed.dtype == bool
    assert (removed.sum(axis=(0, 1)) == round(fraction * 576)).all()
    # uniform: every pixel is removed in about `fraction` of the images (binomial, 6 standard deviations)
    exact = round(fraction * 576) / 576
    per_pixel = removed.mean(axis=2).ravel()
    assert per_pixel.mean() == pytest.approx(exact, abs=1e-12)
    assert np.abs(per_pixel - exact).max() < 6 * np.sqrt(exact * (1 - exact) / 50)
    assert not np.array_equal(removed[..., 0], removed[..., 1])  # each image its own holes


@pytest.mark.parametrize("shape, fraction, side", [((24, 24), 0.3, 13), ((8, 8), 0.25, 4), ((6, 10), 0.9, 6)])
def test_a_block_is_one_square_of_the_nearest_size_somewhere_in_each_image(shape, fraction, side):
    removed = pixel_holes(shape, 40, fraction, "block", seed=1)
    for i in range(40):
        rows, cols = np.nonzero(removed[..., i])
        assert rows.size == side * side
        assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side  # a filled square
    corners = {(np.nonzero(removed[..., i])[0].min(), np.nonzero(removed[..., i])[1].min()) for i in range(40)}
    assert len(corners) > 1


def test_holes_are_seeded():
    np.testing.assert_array_equal(pixel_holes((5, 7), 4, 0.3, seed=2), pixel_holes((5, 7), 4, 0.3, seed=2))
    assert not np.array_equal(pixel_holes((5, 7), 4, 0.3, seed=2), pixel_holes((5, 7), 4, 0.3, seed=3))


def test_a_removed_pixel_is_every_channel_of_it_in_the_matrix():
    """The layout of ImageSet.matrix: row (y * w + x) * c + ch of column i is images[y, x, ch, i]."""
    removed = pixel_holes((4, 5), 3, 0.3, seed=0)
    entries = entries_of_pixels(removed, 3)
    assert entries.shape == (60, 3)
    images = np.broadcast_to(removed[:, :, None, :], (4, 5, 3, 3))  # each channel of a removed pixel
    np.testing.assert_array_equal(entries, images.reshape(60, 3))
    y, x, i = np.argwhere(removed)[0]
    assert entries[(y * 5 + x) * 3 : (y * 5 + x) * 3 + 3, i].all()
    assert entries.sum() == 3 * removed.sum()
    np.testing.assert_array_equal(entries_of_pixels(removed, 1), removed.reshape(20, 3))


def test_the_mean_fill_puts_each_rows_observed_mean_into_its_holes():
    rng = np.random.default_rng(0)
    A = rng.uniform(size=(6, 9))
    observed = rng.uniform(size=A.shape) > 0.4
    observed[5] = False  # a row with nothing observed is filled with 0
    filled = row_mean_fill(np.where(observed, A, np.nan), observed)
    for i in range(6):
        seen = [A[i, j] for j in range(9) if observed[i, j]]
        expected = sum(seen) / len(seen) if seen else 0.0
        for j in range(9):
            assert filled[i, j] == pytest.approx(A[i, j] if observed[i, j] else expected, abs=1e-15)


@pytest.mark.parametrize(
    "args, message",
    [
        (((24, 24), 5, 0.0), "fraction"),
        (((24, 24), 5, 1.0), "fraction"),
        (((24, 24), 0, 0.3), "n, the number of images"),
        (((24,), 5, 0.3), "shape must be"),
        (((24, 24), 5, 0.3, "circle"), "kind must be one of random, block"),
    ],
)
def test_bad_hole_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        pixel_holes(*args)


# --- the inpaint study ---------------------------------------------------------------------------------------


@pytest.mark.slow  # a whole job with its figures: about 3 s
def test_inpainting_fills_the_holes_from_the_pixels_left(run_study, punks_sheet):
    from mlflow.entities import RunStatus

    from nmf_lab.core.metrics import psnr
    from nmf_lab.data.punks import Punks

    run = run_study(
        "experiment=inpaint",
        "data.n_images=40",
        f"data.path={punks_sheet}",
        "rank=8",
        "solver.max_iter=30",
        "inpaint.fraction=0.3",
        "inpaint.holes=block",
        "inpaint.seed=4",
    )
    assert run.status == RunStatus.to_string(RunStatus.FINISHED)
    m = run.metrics
    punks = Punks(n_images=40, path=str(punks_sheet)).load()
    A = punks.matrix()
    removed = pixel_holes((24, 24), 40, 0.3, "block", seed=4)
    missing = entries_of_pixels(removed, 3)
    scored = missing & punks.opaque_entries()
    W, H = run.factors()
    # a 13 x 13 block always covers pixels (11..12, 11..12): those 12 rows are seen in no image, and not fitted
    seen = ~missing.all(axis=1)
    assert np.flatnonzero(~seen).size == 12 and W.shape == (1728 - 12, 8)
    np.testing.assert_array_equal(run.array("arrays/fitted_rows.npy"), np.flatnonzero(seen))
    assert m["never_seen_entries"] == scored[~seen].sum() > 0
    X = np.zeros_like(A)
    X[seen] = W.astype(np.float64) @ H.astype(np.float64)
    filled = np.where(missing, np.clip(X, 0, 1), A)
    assert m["psnr_missing"] == pytest.approx(psnr(A, filled, scored), rel=1e-6)
    assert m["psnr_missing_baseline"] == pytest.approx(psnr(A, row_mean_fill(A, ~missing), scored))
    assert m["psnr_gain"] == pytest.approx(m["psnr_missing"] - m["psnr_missing_baseline"])
    assert m["removed_fraction"] == pytest.approx(169 / 576)  # a 13 x 13 block in every image
    assert m["scored_entries"] == scored.sum()
    # the fit's own error is over the entries left: W H against A where A was observed
    observed_residual = np.where(missing, 0.0, A - X)
    assert m["final_error"] == pytest.approx(np.linalg.norm(observed_residual), rel=1e-4)
    assert "figures/inpainting.png" in run.paths()


def test_a_fraction_outside_zero_one_stops_before_any_run(run_job, client, experiment_name):
    from nmf_lab.harness.config import ConfigError

    with pytest.raises(ConfigError, match=r"invalid config value inpaint.fraction=1.0"):
        run_job("experiment=inpaint", "data=digits", "inpaint.fraction=1.0", f"tracking.experiment={experiment_name}")
    assert client.get_experiment_by_name(experiment_name) is None


def test_the_inpainting_sweep_draws_psnr_against_d_per_fraction(run_cli, client, experiment_name, tmp_path):
    from helpers import artifact_paths, load_text, runs_of

    run_cli(
        "experiment=inpaint_ranks",
        "data=digits",
        "data.n_images=60",
        "inpaint.fraction=0.1,0.5",
        "rank=2,5",
        "solver.max_iter=20",
        f"tracking.experiment={experiment_name}",
    )
    (parent,), children = runs_of(client, experiment_name)
    assert len(children) == 4
    for p in ("0.1", "0.5"):
        mine = [c for c in children if c.data.params["inpaint.fraction"] == p]
        best = max(mine, key=lambda c: c.data.metrics["psnr_missing"])
        assert parent.data.metrics[f"best_rank.p_{p}"] == int(best.data.params["rank"])
        assert parent.data.metrics[f"best_psnr_missing.p_{p}"] == pytest.approx(best.data.metrics["psnr_missing"])
        # the same holes in every job of a fraction: one baseline
        assert len({c.data.metrics["psnr_missing_baseline"] for c in mine}) == 1
    assert {"figures/inpainting_against_rank.png", "tables/inpainting.md"} <= set(
        artifact_paths(client, parent.info.run_id)
    )
    assert load_text(client, parent.info.run_id, "tables/inpainting.md", tmp_path).count("| p = ") == 4
