"""The image-set type and the loaders other than the punks': scikit-learn's digits, a folder of PNG and JPEG
files, the toy matrices; the one subset rule they share. Checked against independent computations (Pillow's
own reading, scikit-learn's arrays, explicit loops)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nmf_lab.core.errors import InvalidOption
from nmf_lab.data.digits import Digits
from nmf_lab.data.folder import ImageFolder
from nmf_lab.data.images import ImageSet, select_indices
from nmf_lab.data.toy import TOY_MATRICES, ToyMatrix

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="session")
def sklearn_digits():
    return sklearn_datasets.load_digits()


@pytest.fixture(scope="session")
def all_digits():
    return Digits().load()


def rng_images(h, w, c, n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(h, w, c, n))


def make_set(images, alpha=None, **kwargs):
    return ImageSet(images=images, alpha=alpha, name="test", source="memory", ids=np.arange(images.shape[-1]), **kwargs)


# --- the subset rule -------------------------------------------------------------------------------------


def test_select_indices_first_random_and_all():
    np.testing.assert_array_equal(select_indices(1797, 10), np.arange(10))
    np.testing.assert_array_equal(select_indices(7, None), np.arange(7))
    chosen = select_indices(10_000, 500, "random", 3)
    np.testing.assert_array_equal(chosen, np.sort(np.random.default_rng(3).choice(10_000, 500, replace=False)))
    assert chosen.dtype == np.int64 and np.all(np.diff(chosen) > 0)
    assert not np.array_equal(chosen, select_indices(10_000, 500, "random", 4))
    np.testing.assert_array_equal(select_indices(5, None, "random", 1), np.arange(5))  # all, in order


# --- ImageSet --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
def test_matrix_rows_follow_the_documented_order_and_the_inverse_is_exact(c):
    h, w, n = 3, 5, 4
    images = rng_images(h, w, c, n)
    image_set = make_set(images)
    A = image_set.matrix()
    expected = np.empty((h * w * c, n))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                for ch in range(c):
                    expected[(y * w + x) * c + ch, i] = images[y, x, ch, i]
    np.testing.assert_array_equal(A, expected)
    np.testing.assert_array_equal(image_set.images_from_matrix(A), images)
    np.testing.assert_array_equal(image_set.images_from_matrix(A[:, 1:3]), images[..., 1:3])  # any columns
    A[0, 0] = 7.0  # a new array: the set is untouched
    assert image_set.images[0, 0, 0, 0] < 1
    assert (image_set.shape, image_set.channels, image_set.n) == ((h, w), c, n)


def test_images_from_matrix_does_not_clip_and_checks_the_row_count():
    image_set = make_set(rng_images(2, 2, 3, 2))
    X = np.linspace(-1, 2, 24).reshape(12, 2)
    np.testing.assert_array_equal(image_set.images_from_matrix(X).reshape(12, 2), X)
    with pytest.raises(ValueError, match=r"h \* w \* c = 12 rows"):
        image_set.images_from_matrix(np.zeros((11, 2)))


def test_opaque_entries_are_the_colour_channels_of_pixels_with_alpha_above_zero():
    h, w, c, n = 2, 3, 3, 2
    alpha = np.array([0.0, 0.5, 1.0, 0.0, 1.0, 1.0] * n).reshape(n, h, w).transpose(1, 2, 0).copy()
    alpha[1, 2, 1] = 0.0
    image_set = make_set(rng_images(h, w, c, n), alpha)
    mask = image_set.opaque_entries()
    assert mask.shape == (h * w * c, n) and mask.dtype == bool
    for i in range(n):
        for y in range(h):
            for x in range(w):
                for ch in range(c):
                    assert mask[(y * w + x) * c + ch, i] == (alpha[y, x, i] > 0)
    assert make_set(rng_images(h, w, 1, n)).opaque_entries().all()


def test_the_digest_is_the_content_and_changes_with_it():
    images, alpha = rng_images(4, 4, 3, 3), np.ones((4, 4, 3))
    first = make_set(images, alpha)
    assert first.digest == make_set(images.copy(), alpha.copy()).digest
    assert re.fullmatch(r"[0-9a-f]{64}", first.digest)
    changed = images.copy()
    changed[3, 3, 2, 2] = np.nextafter(changed[3, 3, 2, 2], 0)
    assert make_set(changed, alpha).digest != first.digest
    alpha_changed = alpha.copy()
    alpha_changed[0, 0, 0] = 0.0
    assert make_set(images, alpha_changed).digest != first.digest
    assert make_set(images).digest != first.digest  # without alpha
    assert make_set(images.reshape(2, 8, 3, 3)).digest != first.digest  # the same bytes in another shape


def test_subset_keeps_images_alpha_ids_and_labels_together():
    image_set = ImageSet(
        images=rng_images(2, 2, 1, 5),
        alpha=rng_images(2, 2, 1, 5)[:, :, 0],
        name="x",
        source="y",
        ids=np.arange(10, 15),
        labels=np.array(list("abcde")),
    )
    part = image_set.subset(slice(1, 3))
    np.testing.assert_array_equal(part.images, image_set.images[..., 1:3])
    np.testing.assert_array_equal(part.alpha, image_set.alpha[..., 1:3])
    assert part.ids.tolist() == [11, 12] and part.labels.tolist() == ["b", "c"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"images": np.zeros((2, 2, 4, 1))}, r"c = 1 or 3, got shape \(2, 2, 4, 1\)"),
        ({"images": np.zeros((2, 2, 3, 1), dtype=np.uint8)}, r"got dtype uint8"),
        ({"images": np.full((2, 2, 3, 1), 1.5)}, r"images must lie in \[0, 1\]"),
        ({"images": np.full((2, 2, 3, 1), np.nan)}, r"images must lie in \[0, 1\]"),
        ({"alpha": np.ones((2, 2, 2))}, r"alpha must be a float array \(h, w, n\) = \(2, 2, 1\)"),
        ({"alpha": -np.ones((2, 2, 1))}, r"alpha must lie in \[0, 1\]"),
        ({"ids": np.arange(2)}, r"ids must be 1 integers"),
        ({"labels": np.array(["a", "b"])}, r"labels must have one entry per image"),
    ],
)
def test_image_set_rejects_bad_arrays(kwargs, message):
    fields = {"images": np.zeros((2, 2, 3, 1)), "alpha": None, "name": "x", "source": "y", "ids": np.arange(1)}
    with pytest.raises(ValueError, match=message):
        ImageSet(**{**fields, **kwargs})


# --- digits ----------------------------------------------------------------------------------------------


def test_digits_are_scikit_learns_images_divided_by_16(all_digits, sklearn_digits):
    assert all_digits.images.shape == (8, 8, 1, 1797) and all_digits.alpha is None
    for i in (0, 1, 500, 1796):
        np.testing.assert_array_equal(all_digits.images[:, :, 0, i], sklearn_digits.images[i] / 16)
    # A's column i is sklearn's flattened image i (its `data` row) / 16: row y * 8 + x
    np.testing.assert_array_equal(all_digits.matrix(), sklearn_digits.data.T / 16)
    np.testing.assert_array_equal(all_digits.labels, sklearn_digits.target)
    np.testing.assert_array_equal(all_digits.ids, np.arange(1797))
    assert all_digits.images.max() == 1.0 and all_digits.images.min() == 0.0
    assert (all_digits.name, all_digits.source) == ("digits", "sklearn.datasets.load_digits")


def test_digits_n_images_and_random_subset(all_digits, sklearn_digits):
    first = Digits(n_images=10).load()
    np.testing.assert_array_equal(first.images, all_digits.images[..., :10])
    assert first.digest != all_digits.digest and first.digest == Digits(n_images=10).load().digest
    sample = Digits(n_images=50, subset="random", subset_seed=2).load()
    ids = np.sort(np.random.default_rng(2).choice(1797, 50, replace=False))
    np.testing.assert_array_equal(sample.ids, ids)
    np.testing.assert_array_equal(sample.matrix(), sklearn_digits.data[ids].T / 16)
    np.testing.assert_array_equal(sample.labels, sklearn_digits.target[ids])
    assert sample.digest == all_digits.subset(ids).digest
    assert Digits(n_images=50, subset="random", subset_seed=3).load().digest != sample.digest


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"n_images": 0}, "n_images"),
        ({"n_images": 1798}, "n_images"),
        ({"n_images": 2.0}, "n_images"),
        ({"n_images": True}, "n_images"),
        ({"subset": "last"}, "subset"),
        ({"subset_seed": -1}, "subset_seed"),
    ],
)
def test_digits_options_are_checked_on_construction(kwargs, key):
    with pytest.raises(InvalidOption) as caught:
        Digits(**kwargs)
    assert caught.value.key == key and str(caught.value).startswith(f"{key}=")
    if key == "n_images":
        assert "1..1797" in str(caught.value)


# --- toy -------------------------------------------------------------------------------------------------


def test_toy_matrices_are_copies_and_names_are_checked():
    loaded = ToyMatrix("A3").load()
    np.testing.assert_array_equal(loaded, TOY_MATRICES["A3"])
    loaded[0, 0] = 99
    assert TOY_MATRICES["A3"][0, 0] == 2
    assert ToyMatrix("movies").load().shape == (6, 6)
    with pytest.raises(InvalidOption, match=r"matrix='A5': one of A1, A2, A3, A4, movies"):
        ToyMatrix("A5")


# --- a folder of images ----------------------------------------------------------------------------------


def pillow(path: Path, mode: str) -> np.ndarray:
    """A file as Pillow itself reads it, converted to ``mode``, divided by 255."""
    with Image.open(path) as image:
        return np.asarray(image.convert(mode), dtype=np.float64) / 255


def random_pixels(shape, seed, low=0):
    return np.random.default_rng(seed).integers(low, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def rgba_folder(tmp_path) -> Path:
    """Five 6 x 4 (width x height) images written out of name order: RGBA, RGB, LA, L and palette with a
    transparent index. Sorted by name: a_rgba, b_rgb, c_la, d_gray, e_palette."""
    folder = tmp_path / "sprites"
    folder.mkdir()
    rgba = random_pixels((4, 6, 4), 1)
    rgba[0, :, 3] = 0  # a transparent top row, whatever its colours
    rgba[1, 0, 3] = 128
    Image.fromarray(rgba, "RGBA").save(folder / "a_rgba.png")
    Image.fromarray(random_pixels((4, 6), 5), "L").save(folder / "d_gray.png")
    Image.fromarray(random_pixels((4, 6, 2), 3), "LA").save(folder / "c_la.png")
    Image.fromarray(random_pixels((4, 6, 3), 2), "RGB").save(folder / "b_rgb.png")
    palette = Image.fromarray(np.arange(24, dtype=np.uint8).reshape(4, 6) % 4, "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    palette.save(folder / "e_palette.png", transparency=0)  # index 0 (black) is transparent
    (folder / "notes.txt").write_text("not an image, ignored")
    (folder / "sub").mkdir()
    Image.new("RGB", (9, 9)).save(folder / "sub" / "ignored.png")
    return folder


def test_a_folder_of_mixed_modes_is_read_as_pillow_reads_it(rgba_folder):
    loader = ImageFolder(str(rgba_folder))
    image_set = loader.load()
    names = ["a_rgba.png", "b_rgb.png", "c_la.png", "d_gray.png", "e_palette.png"]
    assert image_set.labels.tolist() == names and image_set.ids.tolist() == list(range(5))
    assert image_set.images.shape == (4, 6, 3, 5) and image_set.alpha.shape == (4, 6, 5)
    assert (image_set.name, image_set.source) == ("sprites", str(rgba_folder.resolve()))
    for i, name in enumerate(names):
        rgba = pillow(rgba_folder / name, "RGBA")  # grey images become three equal channels
        np.testing.assert_array_equal(image_set.alpha[..., i], rgba[..., 3])
        visible = rgba[..., 3:] > 0
        np.testing.assert_array_equal(image_set.images[..., i], np.where(visible, rgba[..., :3], 0.0))
    alpha = image_set.alpha
    assert np.all(alpha[0, :, 0] == 0) and alpha[1, 0, 0] == 128 / 255  # the RGBA file's own alpha
    assert np.all(alpha[..., 1] == 1) and np.all(alpha[..., 3] == 1)  # RGB and L files: opaque
    np.testing.assert_array_equal(alpha[..., 4], (np.arange(24).reshape(4, 6) % 4 != 0).astype(float))
    assert np.all(image_set.images[0, :, :, 0] == 0)  # colours under alpha 0 are set to 0
    grey = pillow(rgba_folder / "d_gray.png", "L")
    np.testing.assert_array_equal(image_set.images[..., 3], np.repeat(grey[..., None], 3, axis=2))


def test_a_grayscale_folder_stays_grayscale_and_has_no_alpha(tmp_path):
    folder = tmp_path / "gray"
    folder.mkdir()
    pixels = [random_pixels((5, 7), seed) for seed in range(3)]
    for i, p in enumerate(pixels):
        Image.fromarray(p, "L").save(folder / f"{i}.png")
    Image.fromarray(pixels[0] > 128).save(folder / "3.png")  # a 1-bit image
    Image.fromarray(pixels[1], "L").save(folder / "4.jpg", quality=90)
    sixteen = np.random.default_rng(9).integers(0, 65536, size=(5, 7), dtype=np.uint16)
    Image.fromarray(sixteen).save(folder / "5.png")
    image_set = ImageFolder(folder).load()
    assert image_set.images.shape == (5, 7, 1, 6) and image_set.alpha is None and image_set.channels == 1
    for i, name in enumerate(["0.png", "1.png", "2.png", "3.png", "4.jpg"]):
        np.testing.assert_array_equal(image_set.images[:, :, 0, i], pillow(folder / name, "L"))
    assert set(np.unique(image_set.images[..., 3])) == {0.0, 1.0}
    np.testing.assert_array_equal(image_set.images[:, :, 0, 5], sixteen / 65535)
    assert image_set.opaque_entries().all()


def test_rgb_and_jpeg_files_without_transparency_give_no_alpha(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(random_pixels((8, 8, 3), 1), "RGB").save(folder / "x.JPG", quality=95)
    Image.fromarray(random_pixels((8, 8, 3), 2), "RGB").save(folder / "y.png")
    Image.fromarray(random_pixels((8, 8), 3), "L").save(folder / "z.jpeg")
    image_set = ImageFolder(folder).load()
    assert image_set.alpha is None and image_set.images.shape == (8, 8, 3, 3)
    for i, name in enumerate(["x.JPG", "y.png", "z.jpeg"]):
        np.testing.assert_array_equal(image_set.images[..., i], pillow(folder / name, "RGB"))


def test_folder_files_are_ordered_by_name_and_subsets_follow_the_shared_rule(tmp_path):
    folder = tmp_path / "numbers"
    folder.mkdir()
    names = ["10.png", "2.png", "1.png", "b.png", "a.png", "03.png"]
    for k, name in enumerate(names):
        Image.fromarray(np.full((3, 3), k * 40, dtype=np.uint8), "L").save(folder / name)
    ordered = sorted(names)  # "03.png", "1.png", "10.png", "2.png", "a.png", "b.png": by name, not by number
    full = ImageFolder(folder).load()
    assert full.labels.tolist() == ordered
    np.testing.assert_array_equal(full.images[0, 0, 0], [names.index(n) * 40 / 255 for n in ordered])
    first = ImageFolder(folder, n_images=2).load()
    assert first.labels.tolist() == ordered[:2]
    sample = ImageFolder(folder, n_images=3, subset="random", subset_seed=5).load()
    ids = np.sort(np.random.default_rng(5).choice(6, 3, replace=False))
    np.testing.assert_array_equal(sample.ids, ids)
    assert sample.labels.tolist() == [ordered[i] for i in ids]
    np.testing.assert_array_equal(sample.images, full.images[..., ids])
    assert sample.digest == full.subset(ids).digest != full.digest


def folder_with(tmp_path, files: dict[str, tuple[int, int]]) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    for name, (width, height) in files.items():
        Image.new("RGB", (width, height), (10, 20, 30)).save(folder / name)
    return folder


def test_mixed_sizes_are_refused_on_construction_naming_the_odd_files_and_the_usual_size(tmp_path):
    folder = folder_with(
        tmp_path, {"a.png": (24, 24), "b.png": (24, 24), "c.png": (25, 24), "d.png": (24, 24), "e.png": (8, 8)}
    )
    with pytest.raises(InvalidOption) as caught:
        ImageFolder(str(folder))
    message = str(caught.value)
    assert caught.value.key == "folder"
    assert "3 of 5 are 24 x 24 pixels (width x height)" in message
    assert "c.png is 25 x 24" in message and "e.png is 8 x 8" in message
    assert "a.png" not in message and "b.png" not in message


def test_unreadable_files_are_refused_on_construction_and_named(tmp_path):
    folder = folder_with(tmp_path, {"a.png": (4, 4), "b.png": (4, 4)})
    (folder / "broken.png").write_text("not an image")
    Image.new("RGB", (4, 4)).save(folder / "gif.png", format="GIF")  # a GIF with a .png name
    with pytest.raises(InvalidOption) as caught:
        ImageFolder(str(folder))
    message = str(caught.value)
    assert "2 of the 4 image files" in message and "broken.png (not a readable image" in message
    assert "gif.png (a GIF image, expected PNG or JPEG)" in message and "a.png" not in message


def test_a_truncated_file_is_refused_on_construction_and_named(tmp_path):
    folder = folder_with(tmp_path, {"a.png": (64, 64), "b.png": (64, 64)})
    Image.fromarray(random_pixels((64, 64, 3), 0), "RGB").save(folder / "b.png")
    data = (folder / "b.png").read_bytes()
    (folder / "b.png").write_bytes(data[: len(data) // 2])  # the header is intact, the pixels are cut
    with pytest.raises(InvalidOption) as caught:
        ImageFolder(str(folder))
    message = str(caught.value)
    assert "1 of the 2 image files" in message and "b.png (not a readable image" in message and "a.png" not in message


def test_empty_missing_and_non_folders_are_refused_on_construction(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidOption, match=r"no PNG or JPEG files \(\*\.png, \*\.jpg, \*\.jpeg\) in .*it is empty"):
        ImageFolder(str(empty))
    (empty / "readme.txt").write_text("x")
    with pytest.raises(InvalidOption, match=r"no PNG or JPEG files .* it holds readme\.txt"):
        ImageFolder(str(empty))
    with pytest.raises(InvalidOption, match=r"folder='.*absent': no such folder"):
        ImageFolder(str(tmp_path / "absent"))
    with pytest.raises(InvalidOption, match=r"is a file, not a folder"):
        ImageFolder(str(empty / "readme.txt"))
    with pytest.raises(InvalidOption, match=r"folder=None: required"):
        ImageFolder()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_images": 0}, r"n_images=0: must be null \(all 3 images\) or an integer in 1\.\.3"),
        ({"n_images": 4}, r"n_images=4: must be null \(all 3 images\) or an integer in 1\.\.3"),
        ({"n_images": "2"}, r"n_images='2'"),
        ({"subset": "middle"}, r"subset='middle': one of first, random"),
        ({"subset_seed": -2}, r"subset_seed=-2: must be an integer >= 0"),
    ],
)
def test_folder_options_are_checked_on_construction(tmp_path, kwargs, message):
    folder = folder_with(tmp_path, {"a.png": (2, 2), "b.png": (2, 2), "c.jpg": (2, 2)})
    with pytest.raises(InvalidOption, match=message):
        ImageFolder(str(folder), **kwargs)


def test_the_folder_digest_is_the_pixel_content(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    pixels = random_pixels((3, 3, 3), 4)
    Image.fromarray(pixels, "RGB").save(folder / "a.png")
    image_set = ImageFolder(folder).load()
    expected = hashlib.sha256(b"images(3, 3, 3, 1);alpha=False;" + (pixels / 255.0)[..., None].tobytes()).hexdigest()
    assert image_set.digest == expected
    other = tmp_path / "two"  # the same pixels under another name and folder: the same digest
    other.mkdir()
    Image.fromarray(pixels, "RGB").save(other / "zz.png")
    assert ImageFolder(other).load().digest == expected


def test_the_data_modules_know_nothing_of_config_or_tracking():
    import ast

    import nmf_lab.data

    for path in Path(nmf_lab.data.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("omegaconf", "hydra", "mlflow")], path
