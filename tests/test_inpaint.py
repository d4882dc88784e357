"""Missing pixels (nmf_lab.holes) and the inpainting study."""

from __future__ import annotations

import numpy as np
import pytest

from nmf_lab.holes import entries_of_pixels, pixel_holes, row_mean_fill


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
