"""The image figures for grayscale, RGB and RGBA sets of any size: the pictures they compose (exactly), and
what the saved PNG shows (its pixels, read back with Pillow), as ``RunLog.log_figure`` saves it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from nmf_lab.presentation.figures import (
    BACKGROUND,
    MAX_FIGURE_PIXELS,
    basis_grid,
    grid_picture,
    image_grid,
    mean_image,
    over_background,
    pixel_scale,
    side_by_side_grids,
)

GREY = round(BACKGROUND * 255)  # 140: the background of transparent pixels in a saved PNG


def saved(figure) -> np.ndarray:
    """The figure as its PNG artifact: (height, width, 3) uint8."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


def panels(figure) -> list[np.ndarray]:
    """The saved PNG cut to each picture panel (its axes), without titles and captions (whose anti-aliased
    text has every grey)."""
    picture = saved(figure)
    height = picture.shape[0]
    cuts = []
    for ax in figure.axes:
        box = ax.get_window_extent()
        top, bottom = round(height - box.y1), round(height - box.y0)
        cuts.append(picture[top:bottom, round(box.x0) : round(box.x1)])
    return cuts


def block_of(picture: np.ndarray, colour) -> tuple[int, int, int, int]:
    """The bounding box (top, bottom, left, right; inclusive) of the pixels of exactly ``colour``; asserts they
    fill it (a solid rectangle)."""
    mask = np.all(picture == np.array(colour, dtype=np.uint8), axis=-1)
    assert mask.any(), f"no pixel of colour {colour}"
    ys, xs = np.nonzero(mask)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    assert mask[top : bottom + 1, left : right + 1].all(), f"the pixels of colour {colour} are not one block"
    return int(top), int(bottom), int(left), int(right)


# --- the pictures, exactly -------------------------------------------------------------------------------


def test_grayscale_values_become_equal_grey_channels_and_alpha_blends_with_the_background():
    grey = np.array([0.0, 0.25, 1.0, 1.7, -0.2, 0.5]).reshape(1, 6, 1, 1)
    rgb = over_background(grey)
    assert rgb.shape == (1, 6, 3, 1)
    np.testing.assert_array_equal(rgb[0, :, :, 0], np.repeat([[0.0], [0.25], [1.0], [1.0], [0.0], [0.5]], 3, axis=1))
    colour = np.random.default_rng(0).uniform(0, 1, size=(2, 3, 3, 2))
    alpha = np.array([0.0, 0.5, 1.0, 1.0, 0.0, 0.25] * 2).reshape(2, 2, 3).transpose(1, 2, 0)
    blended = over_background(colour, alpha)
    for y, x, i in np.ndindex(2, 3, 2):
        a = alpha[y, x, i]
        np.testing.assert_allclose(blended[y, x, :, i], colour[y, x, :, i] * a + BACKGROUND * (1 - a), rtol=1e-15)
    with pytest.raises(ValueError, match="alpha of shape"):
        over_background(colour, alpha[..., :1])
    with pytest.raises(ValueError, match="c = 1 or 3"):
        over_background(np.zeros((2, 2, 4, 1)))


def test_a_grid_places_images_row_by_row_with_one_white_pixel_between():
    images = np.stack([np.full((2, 3, 1), k / 10) for k in range(5)], axis=-1)  # 5 grey 2 x 3 images
    picture = grid_picture(images)
    assert picture.shape == (2 * 2 + 1, 3 * 3 + 2, 3)  # 3 columns, 2 rows
    for k in range(5):
        row, column = divmod(k, 3)
        tile = picture[row * 3 : row * 3 + 2, column * 4 : column * 4 + 3]
        assert np.all(tile == k / 10)
    assert np.all(picture[2] == 1.0) and np.all(picture[:, 3] == 1.0) and np.all(picture[:, 7] == 1.0)
    assert np.all(picture[3:, 8:] == 1.0)  # the sixth place is empty: white


@pytest.mark.parametrize(
    "image_size, picture, expected",
    [
        (8, (71, 71), 12.0),
        (24, (199, 199), 4.0),
        (48, (391, 391), 2.0),
        (64, (519, 519), 1.5),
        (24, (199, 2 * 199), 4.0),
        (24, (199, 3 * 199), 3.0),
        (8, (71, 3 * 71), 8.0),
    ],
)
def test_the_pixel_scale_follows_the_image_size_and_keeps_figures_within_bounds(image_size, picture, expected):
    """8 x 8 digits: 12 screen pixels per pixel; 24 x 24 punks: 4 (3 when three grids stand side by side);
    64 x 64 photos: 1.5 (not a whole number below 2)."""
    assert pixel_scale(image_size, picture) == expected


def test_large_images_are_shrunk_to_fit():
    scale = pixel_scale(256, (8 * 257, 8 * 257))
    assert scale < 1 and 8 * 257 * scale <= MAX_FIGURE_PIXELS


# --- what the saved figures show -------------------------------------------------------------------------


def test_a_grayscale_digit_is_drawn_in_grey_levels_with_crisp_12_pixel_blocks():
    image = np.zeros((8, 8, 1, 1))
    image[:3] = 1.0  # white
    image[3:6] = 0.2  # dark grey: 51 in 8 bits
    figure = image_grid(image, title="one digit")  # rows 6, 7: black
    (picture,) = panels(figure)
    assert picture.shape == (8 * 12, 8 * 12, 3)  # 12 screen pixels per pixel
    assert block_of(picture, (255, 255, 255)) == (0, 3 * 12 - 1, 0, 95)  # 1 is white, not a colour map's colour
    assert block_of(picture, (51, 51, 51)) == (3 * 12, 6 * 12 - 1, 0, 95)
    assert block_of(picture, (0, 0, 0)) == (6 * 12, 8 * 12 - 1, 0, 95)
    assert saved(figure).shape[0] < 300 and saved(figure).shape[1] < 300  # one small image, a small figure


def test_rgba_punks_show_transparent_pixels_on_the_grey_background_and_keep_their_colours():
    colour = np.random.default_rng(1).uniform(0, 1, size=(24, 24, 3, 4))
    colour[..., 1] = [1.0, 0.0, 0.0]  # image 1: opaque red
    alpha = np.ones((24, 24, 4))
    alpha[..., 0] = 0.0  # image 0: transparent everywhere, whatever its colours
    (picture,) = panels(image_grid(colour, alpha, title="punks"))
    top, bottom, left, right = block_of(picture, (GREY, GREY, GREY))
    assert (bottom - top + 1, right - left + 1) == (24 * 4, 24 * 4)  # 4 screen pixels per punk pixel
    red = block_of(picture, (255, 0, 0))
    assert red == (top, bottom, right + 1 + 4, right + 4 + 24 * 4)  # the next image, after a 4-pixel white gap
    assert np.all(picture[top : bottom + 1, right + 1 : right + 5] == 255)


def test_side_by_side_grids_share_the_alpha_and_stay_within_the_width_limit():
    colour = np.zeros((24, 24, 3, 64))
    alpha = np.ones((24, 24, 64))
    alpha[:12, :, :] = 0.0  # the top half of every image is transparent
    reconstruction = colour.copy()
    reconstruction[:, :, 2, :] = 1.0  # blue reconstructions
    figure = side_by_side_grids([("a", colour), ("b", reconstruction), ("c", colour)], alpha, title="three")
    assert saved(figure).shape[1] <= MAX_FIGURE_PIXELS + 100
    first, second, third = panels(figure)
    assert first.shape == second.shape == third.shape == (199 * 3, 199 * 3, 3)  # 3 screen pixels per pixel
    assert np.all(second == (0, 0, 255), axis=-1).sum() == 64 * 12 * 24 * 3 * 3  # the opaque bottom halves
    for panel in (first, second, third):
        assert np.all(panel == (GREY, GREY, GREY), axis=-1).sum() == 64 * 12 * 24 * 3 * 3  # the transparent tops
    assert np.all(first == (0, 0, 0), axis=-1).sum() == 64 * 12 * 24 * 3 * 3


def test_large_rgb_photos_give_a_figure_of_sensible_size():
    photos = np.zeros((100, 100, 3, 64))
    photos[..., 5] = [0.0, 1.0, 0.0]
    picture = saved(image_grid(photos, title="photos"))
    assert 700 <= picture.shape[1] <= MAX_FIGURE_PIXELS + 100 and picture.shape[0] <= MAX_FIGURE_PIXELS + 150
    assert np.all(picture == (0, 255, 0), axis=-1).sum() > 0.8 * (100 * pixel_scale(100, (807, 807))) ** 2


def test_basis_images_are_divided_by_their_own_maximum_in_grey_or_colour():
    W = np.zeros((8 * 8, 2))
    W[:, 0] = 0.3  # divided by 0.3: white
    W[:32, 1], W[32:, 1] = 0.04, 0.02  # divided by 0.04: white top half, grey 0.5 bottom half
    (picture,) = panels(basis_grid(W, (8, 8), title="gray basis"))
    assert block_of(picture, (127, 127, 127)) == (48, 95, 8 * 12 + 12, 8 * 12 + 12 + 95)  # the second image
    assert np.all(picture == 255, axis=-1).sum() == picture.shape[0] * picture.shape[1] - 48 * 96
    W_rgb = np.zeros((24 * 24 * 3, 2))
    W_rgb[0::3, 0] = 0.01  # red channel only: pure red once divided by its maximum
    (picture,) = panels(basis_grid(W_rgb, (24, 24), title="rgb basis"))
    assert block_of(picture, (255, 0, 0)) == (0, 95, 0, 95)
    assert block_of(picture, (0, 0, 0)) == (0, 95, 100, 195)  # the zero column: black
    with pytest.raises(ValueError, match="W has 100 rows"):
        basis_grid(np.zeros((100, 2)), (8, 8), title="x")


def test_the_mean_image_has_the_never_opaque_map_only_with_alpha():
    mean = np.full((8, 8, 1), 0.2)
    (picture,) = panels(mean_image(mean, title="digits"))  # one panel only
    assert block_of(picture, (51, 51, 51)) == (0, 8 * 30 - 1, 0, 8 * 30 - 1)  # 30 screen pixels per pixel
    colour = np.full((24, 24, 3), 0.5)
    mean_alpha = np.ones((24, 24))
    mean_alpha[0, :] = 0.0
    never = mean_alpha == 0
    figure = mean_image(colour, mean_alpha, never, title="punks")
    assert len(figure.axes) == 2 and figure.axes[1].get_title() == "never opaque: 24 pixels (red)"
    mean_panel, never_panel = panels(figure)
    assert block_of(mean_panel, (GREY, GREY, GREY)) == (0, 9, 0, 239)  # the transparent top row, on grey
    assert block_of(mean_panel, (127, 127, 127)) == (10, 239, 0, 239)  # 0.5 grey below it
    assert block_of(never_panel, (216, 25, 25)) == (0, 9, 0, 239)  # never opaque: red
