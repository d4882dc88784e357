"""The CryptoPunks data layer: the sheet and folder loaders, checksums and downloads, images <-> matrix."""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nmf_lab.data import punks
from nmf_lab.data.images import for_display, images_to_matrix, matrix_to_images, opaque
from nmf_lab.data.punks import (
    PUNKS_SHA256,
    ChecksumError,
    SheetUnavailableError,
    load_punks,
    locate_sheet,
    select_punks,
)

PUNKS_PNG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "punks.png"
SOME_IDS = [0, 1, 99, 100, 2424, 5555, 9900, 9999]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """No local copy from the environment, a temporary cache, and any stray HTTP(S) request sent to a
    closed local port: these tests never reach beyond 127.0.0.1."""
    monkeypatch.delenv(punks.PATH_ENV, raising=False)
    monkeypatch.setenv(punks.CACHE_ENV, str(tmp_path / "default-cache"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def sheet_path() -> Path:
    if not PUNKS_PNG.is_file():
        pytest.skip(f"the real data set is absent: no file at {PUNKS_PNG}")
    return PUNKS_PNG


@pytest.fixture(scope="session")
def sheet_rgba(sheet_path) -> np.ndarray:
    """The whole sheet as Pillow reads it: (2400, 2400, 4) uint8."""
    with Image.open(sheet_path) as image:
        return np.asarray(image.convert("RGBA"))


def pillow_tile(sheet_path: Path, i: int) -> np.ndarray:
    """Punk i cut from the sheet by Pillow itself: (24, 24, 4) floats in [0, 1]."""
    row, column = divmod(i, 100)
    with Image.open(sheet_path) as image:
        tile = image.convert("RGBA").crop((column * 24, row * 24, column * 24 + 24, row * 24 + 24))
    return np.asarray(tile) / 255.0


def write_folder(folder: Path, sheet_rgba: np.ndarray, ids) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        row, column = divmod(int(i), 100)
        tile = sheet_rgba[row * 24 : row * 24 + 24, column * 24 : column * 24 + 24]
        Image.fromarray(tile, mode="RGBA").save(folder / f"{i}.png")
    return folder


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# --- loading ---------------------------------------------------------------------------------------------


def test_sheet_tiles_equal_a_direct_pillow_crop(sheet_path):
    ids = [5555, 0, 9999, 1, 100, 99]  # not sorted: the order of ids is the order of the images
    punk_set = load_punks(ids, path=sheet_path)
    assert punk_set.images.shape == (24, 24, 4, len(ids)) and punk_set.images.dtype == np.float64
    np.testing.assert_array_equal(punk_set.ids, ids)
    for k, i in enumerate(ids):
        np.testing.assert_array_equal(punk_set.images[..., k], pillow_tile(sheet_path, i))
    assert punk_set.source == str(sheet_path)
    assert punk_set.sha256 == hashlib.sha256(sheet_path.read_bytes()).hexdigest()


def test_a_folder_of_per_punk_pngs_gives_the_same_arrays(sheet_path, sheet_rgba, tmp_path):
    folder = write_folder(tmp_path / "imgs", sheet_rgba, SOME_IDS)
    from_folder = load_punks(SOME_IDS[::-1], folder=folder)
    from_sheet = load_punks(SOME_IDS[::-1], path=sheet_path)
    np.testing.assert_array_equal(from_folder.images, from_sheet.images)
    assert from_folder.images.dtype == from_sheet.images.dtype
    np.testing.assert_array_equal(from_folder.ids, from_sheet.ids)
    assert from_folder.source == str(folder) and from_folder.sha256 is None
    with pytest.raises(ValueError, match="either path .* or folder .*, not both"):
        load_punks([0], path=sheet_path, folder=folder)


def test_alpha_takes_exactly_the_values_0_half_and_1(sheet_path, sheet_rgba):
    alpha = sheet_rgba[..., 3].reshape(100, 24, 100, 24)
    has_half = np.flatnonzero((alpha == 128).any(axis=(1, 3)))  # tile (row, column) -> id row * 100 + column
    assert has_half.size > 0
    ids = np.union1d(np.arange(50), has_half[:200])
    images = load_punks(ids, path=sheet_path).images
    np.testing.assert_array_equal(np.unique(images[:, :, 3]), [0.0, 128 / 255, 1.0])
    mask = opaque(images)
    np.testing.assert_array_equal(mask, images[:, :, 3] > 0)
    assert np.any(images[:, :, 3][mask] < 1)  # half-transparent pixels count as opaque


def test_the_environment_variable_points_to_a_local_copy_and_an_explicit_path_wins(sheet_path, monkeypatch):
    offline = f"http://127.0.0.1:{closed_port()}/punks.png"  # a download would fail
    monkeypatch.setenv(punks.PATH_ENV, str(sheet_path))
    assert locate_sheet(url=offline) == sheet_path
    assert load_punks([7], url=offline).source == str(sheet_path)
    monkeypatch.setenv(punks.PATH_ENV, "/nonexistent/punks.png")
    assert locate_sheet(sheet_path, url=offline) == sheet_path
    with pytest.raises(FileNotFoundError, match=re.escape("$NMF_LAB_PUNKS=/nonexistent/punks.png")):
        locate_sheet(url=offline)


# --- images <-> matrix -----------------------------------------------------------------------------------


def test_round_trip_is_exact_and_the_pixel_order_is_the_documented_one(sheet_path):
    images = load_punks([3, 42, 1234], path=sheet_path).images
    A, alpha = images_to_matrix(images)
    assert A.shape == (1728, 3) and alpha.shape == (24, 24, 3)
    back = matrix_to_images(A, alpha)
    assert back.dtype == images.dtype
    np.testing.assert_array_equal(back, images)
    np.testing.assert_array_equal(alpha, images[:, :, 3])
    # row (y * 24 + x) * 3 + c holds channel c of pixel (y, x): one coloured pixel of punk 42, each channel
    y, x = map(int, np.argwhere(images[:, :, :3, 1].std(axis=-1) > 0)[0])
    for c in range(3):
        assert A[(y * 24 + x) * 3 + c, 1] == images[y, x, c, 1]


def test_pixel_order_on_a_non_square_tile_against_explicit_loops():
    h, w, n = 3, 5, 2
    images = np.random.default_rng(0).uniform(0, 1, size=(h, w, 4, n))
    A, alpha = images_to_matrix(images)
    expected = np.empty((h * w * 3, n))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                for c in range(3):
                    expected[(y * w + x) * 3 + c, i] = images[y, x, c, i]
    np.testing.assert_array_equal(A, expected)
    np.testing.assert_array_equal(matrix_to_images(A, alpha), images)
    np.testing.assert_array_equal(images_to_matrix(matrix_to_images(A, alpha))[0], A)
    A[0, 0] = -1.0  # new arrays: the images are untouched
    assert images[0, 0, 0, 0] >= 0


def test_matrix_to_images_does_not_clip_and_for_display_clips_colours_only():
    rng = np.random.default_rng(1)
    A = rng.uniform(-0.5, 1.5, size=(2 * 2 * 3, 4))
    alpha = rng.choice([0.0, 128 / 255, 1.0], size=(2, 2, 4))
    images = matrix_to_images(A, alpha)
    assert images.max() > 1 and images.min() < 0
    shown = for_display(images)
    np.testing.assert_array_equal(shown[:, :, :3], np.clip(images[:, :, :3], 0, 1))
    np.testing.assert_array_equal(shown[:, :, 3], alpha)
    assert images.max() > 1  # the input is not modified


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: images_to_matrix(np.zeros((24, 24, 3, 2))), r"\(h, w, 4, N\), got shape \(24, 24, 3, 2\)"),
        (lambda: images_to_matrix(np.zeros((24, 24, 4))), r"got shape \(24, 24, 4\)"),
        (lambda: images_to_matrix(np.zeros((24, 24, 4, 2), dtype=np.uint8)), r"got dtype uint8"),
        (lambda: for_display(np.zeros((2, 2, 4, 1), dtype=int)), r"floats in \[0, 1\]"),
        (lambda: matrix_to_images(np.zeros((1728, 2)), np.zeros((24, 24, 3))), r"expected A of shape \(1728"),
        (lambda: matrix_to_images(np.zeros((1727, 2)), np.zeros((24, 24, 2))), r"A of shape \(1727, 2\)"),
        (lambda: matrix_to_images(np.zeros(1728), np.zeros((24, 24, 1))), r"A must be a .* matrix"),
        (lambda: matrix_to_images(np.zeros((1728, 1)), np.zeros((24, 24))), r"alpha must be a \(h, w, N\)"),
    ],
)
def test_image_conversions_reject_bad_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- selecting punks -------------------------------------------------------------------------------------


def test_select_punks_first_and_random():
    np.testing.assert_array_equal(select_punks(500), np.arange(500))
    np.testing.assert_array_equal(select_punks(10_000, subset="first"), np.arange(10_000))
    chosen = select_punks(500, subset="random", seed=3)
    expected = np.sort(np.random.default_rng(3).choice(10_000, 500, replace=False))
    np.testing.assert_array_equal(chosen, expected)
    np.testing.assert_array_equal(chosen, select_punks(500, subset="random", seed=3))
    assert not np.array_equal(chosen, select_punks(500, subset="random", seed=4))
    assert len(np.unique(chosen)) == 500 and chosen.min() >= 0 and chosen.max() < 10_000
    assert np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(np.sort(select_punks(10_000, subset="random", seed=0)), np.arange(10_000))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, r"n must be an integer in 1\.\.10000, got 0"),
        ({"n": 10_001}, r"got 10001"),
        ({"n": 2.0}, r"got 2\.0"),
        ({"n": True}, r"got True"),
        ({"n": 5, "subset": "last"}, r"subset must be 'first' or 'random', got 'last'"),
        ({"n": 5, "subset": "random", "seed": -1}, r"seed must be an integer >= 0, got -1"),
    ],
)
def test_select_punks_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_punks(**kwargs)


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids, message",
    [
        ([0, 10_000], r"ids must be in 0\.\.9999, got \[10000\]"),
        ([-1, 5], r"ids must be in 0\.\.9999, got \[-1\]"),
        ([], r"non-empty 1-D sequence of integers"),
        ([[1, 2]], r"shape \(1, 2\)"),
        ([1.5], r"dtype float64"),
    ],
)
def test_bad_ids_are_refused_before_any_file_is_read(ids, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        load_punks(ids, path=tmp_path / "never-read.png")


def test_a_non_png_sheet_names_the_file(tmp_path):
    text = tmp_path / "punks.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=rf"{re.escape(str(text))} is not a readable PNG image"):
        load_punks([0], path=text)
    jpeg = tmp_path / "punks.jpg"
    Image.new("RGB", (2400, 2400)).save(jpeg, format="JPEG")
    with pytest.raises(ValueError, match=rf"{re.escape(str(jpeg))} is a JPEG image, expected a PNG"):
        load_punks([0], path=jpeg)


def test_a_truncated_sheet_is_refused(sheet_path, tmp_path):
    data = sheet_path.read_bytes()
    for size in (20, len(data) // 2):  # inside the header, inside the image data
        cut = tmp_path / f"cut{size}.png"
        cut.write_bytes(data[:size])
        with pytest.raises(ValueError, match=re.escape(str(cut))):
            load_punks([0], path=cut)
        assert cut.read_bytes() == data[:size]


def test_a_sheet_of_the_wrong_size_says_what_it_found(sheet_rgba, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(sheet_rgba[:1200, :2376], mode="RGBA").save(small)
    message = rf"{re.escape(str(small))} is 2376 x 1200 pixels, expected 2400 x 2400"
    with pytest.raises(ValueError, match=message):
        load_punks([0], path=small)


def test_a_missing_sheet_is_named(tmp_path):
    message = rf"data\.path={re.escape(str(tmp_path / 'nope.png'))}: no such file"
    with pytest.raises(FileNotFoundError, match=message):
        load_punks([0], path=tmp_path / "nope.png")


def test_a_local_copy_with_another_hash_is_refused_and_kept(sheet_rgba, tmp_path, monkeypatch):
    edited = sheet_rgba.copy()
    edited[0, 0] = [1, 2, 3, 255]
    copy = tmp_path / "punks.png"
    Image.fromarray(edited, mode="RGBA").save(copy)  # a valid 2400 x 2400 PNG, but not the official one
    content = copy.read_bytes()
    actual = hashlib.sha256(content).hexdigest()
    for path in (copy, None):
        monkeypatch.setenv(punks.PATH_ENV, str(copy))
        with pytest.raises(ChecksumError) as caught:
            locate_sheet(path, url=f"http://127.0.0.1:{closed_port()}/punks.png")
        message = str(caught.value)
        assert str(copy) in message and PUNKS_SHA256 in message and actual in message
        assert copy.read_bytes() == content
    assert isinstance(caught.value, ValueError)


def test_folder_errors_name_the_file(sheet_rgba, tmp_path):
    folder = write_folder(tmp_path / "imgs", sheet_rgba, [0, 1, 2, 3])
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder / "7.png"))):
        load_punks([0, 7], folder=folder)
    with pytest.raises(FileNotFoundError, match=r"punk folder .*absent does not exist"):
        load_punks([0], folder=tmp_path / "absent")
    Image.new("RGBA", (25, 24)).save(folder / "1.png")
    message = rf"{re.escape(str(folder / '1.png'))} is 25 x 24 pixels, expected 24 x 24"
    with pytest.raises(ValueError, match=message):
        load_punks([0, 1], folder=folder)
    data = (folder / "2.png").read_bytes()
    (folder / "2.png").write_bytes(data[: len(data) - 30])
    with pytest.raises(ValueError, match=rf"{re.escape(str(folder / '2.png'))} is not a readable PNG"):
        load_punks([2], folder=folder)
    (folder / "3.png").write_bytes(b"GIF89a not really")
    with pytest.raises(ValueError, match=rf"{re.escape(str(folder / '3.png'))} is not a readable PNG"):
        load_punks([3], folder=folder)


# --- downloads -------------------------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path, sheet_path, sheet_rgba):
    """A local HTTP server with ``/punks.png`` (the real file) and ``/corrupt.png`` (one pixel changed)."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copyfile(sheet_path, root / "punks.png")
    edited = sheet_rgba.copy()
    edited[5, 5] = [9, 9, 9, 255]
    Image.fromarray(edited, mode="RGBA").save(root / "corrupt.png")
    requests_seen: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests_seen.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests_seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(server, tmp_path):
    base, seen = server
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=re.escape(f"{base}/corrupt.png")):
        locate_sheet(url=f"{base}/corrupt.png", cache_dir=cache)
    assert seen == ["/corrupt.png"]
    assert files_under(cache) == []


def test_a_download_is_verified_cached_and_reused(server, sheet_path, tmp_path):
    base, seen = server
    cache = tmp_path / "cache"
    located = locate_sheet(url=f"{base}/punks.png", cache_dir=cache)
    assert located == (cache / "punks.png").resolve()
    assert located.read_bytes() == sheet_path.read_bytes()
    assert files_under(cache) == [located]
    punk_set = load_punks([0, 9999], url=f"{base}/punks.png", cache_dir=cache)  # from the cache, no request
    assert seen == ["/punks.png"]
    np.testing.assert_array_equal(punk_set.images, load_punks([0, 9999], path=sheet_path).images)
    assert punk_set.source == str(located)


def test_a_bad_cached_file_is_replaced_by_a_verified_download(server, sheet_path, tmp_path, monkeypatch):
    base, seen = server
    cache = tmp_path / "env-cache"
    monkeypatch.setenv(punks.CACHE_ENV, str(cache))
    cache.mkdir()
    (cache / "punks.png").write_bytes(b"stale")
    located = locate_sheet(url=f"{base}/punks.png")
    assert located.parent == cache.resolve() and located.read_bytes() == sheet_path.read_bytes()
    assert seen == ["/punks.png"]


def test_offline_without_a_local_copy_says_where_to_put_the_file(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/punks.png"
    for cache_dir, expected_dir in ((tmp_path / "given", tmp_path / "given"), (None, tmp_path / "env-cache")):
        monkeypatch.setenv(punks.CACHE_ENV, str(tmp_path / "env-cache"))
        with pytest.raises(SheetUnavailableError) as caught:
            load_punks([0], url=url, cache_dir=cache_dir)
        message = str(caught.value)
        assert str(expected_dir / "punks.png") in message
        assert "data.path=/path/to/punks.png" in message and "NMF_LAB_PUNKS=/path/to/punks.png" in message
        assert url in message and isinstance(caught.value, FileNotFoundError)
        assert files_under(expected_dir) == []


def test_an_http_error_is_reported_like_offline(server, tmp_path):
    base, _ = server
    with pytest.raises(SheetUnavailableError, match=r"404"):
        locate_sheet(url=f"{base}/missing.png", cache_dir=tmp_path / "cache")
    assert files_under(tmp_path / "cache") == []
