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

from nmf_lab.core.errors import InvalidOption
from nmf_lab.data import punks
from nmf_lab.data.images import select_indices
from nmf_lab.data.punks import (
    PUNKS_SHA256,
    PUNKS_URL,
    ChecksumError,
    Punks,
    SheetUnavailableError,
    load_punks,
    locate_sheet,
)

SOME_IDS = [0, 1, 99, 100, 2424, 5555, 9900, 9999]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """No local copy from the environment, a temporary cache, and any stray HTTP(S) request sent to a
    closed local port: these tests never reach beyond 127.0.0.1. (The session fixture ``punks_sheet`` has
    found the real sheet before this runs.)"""
    monkeypatch.delenv(punks.PATH_ENV, raising=False)
    monkeypatch.setenv(punks.CACHE_ENV, str(tmp_path / "default-cache"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def sheet_rgba(punks_sheet) -> np.ndarray:
    """The whole sheet as Pillow reads it: (2400, 2400, 4) uint8."""
    with Image.open(punks_sheet) as image:
        return np.asarray(image.convert("RGBA"))


@pytest.fixture(scope="session")
def first_punks(punks_sheet):
    """The first 40 punks as the ``data=punks`` loader gives them."""
    return Punks(n_images=40, path=str(punks_sheet)).load()


def pillow_tile(punks_sheet: Path, i: int) -> np.ndarray:
    """Punk i cut from the sheet by Pillow itself: (24, 24, 4) floats in [0, 1]."""
    row, column = divmod(i, 100)
    with Image.open(punks_sheet) as image:
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


def test_the_sheet_found_is_the_verified_official_file(punks_sheet):
    assert hashlib.sha256(punks_sheet.read_bytes()).hexdigest() == PUNKS_SHA256


def test_sheet_tiles_equal_a_direct_pillow_crop(punks_sheet):
    ids = [5555, 0, 9999, 1, 100, 99]  # not sorted: the order of ids is the order of the images
    punk_set = load_punks(ids, path=punks_sheet)
    assert punk_set.images.shape == (24, 24, 3, len(ids)) and punk_set.images.dtype == np.float64
    assert punk_set.alpha.shape == (24, 24, len(ids))
    np.testing.assert_array_equal(punk_set.ids, ids)
    for k, i in enumerate(ids):
        tile = pillow_tile(punks_sheet, i)
        np.testing.assert_array_equal(punk_set.images[..., k], tile[:, :, :3])
        np.testing.assert_array_equal(punk_set.alpha[..., k], tile[:, :, 3])
    assert punk_set.source == str(punks_sheet) and punk_set.name == "cryptopunks"
    assert punk_set.digest == load_punks(ids, path=punks_sheet).digest != load_punks(ids[:5], path=punks_sheet).digest


def test_the_loader_selects_the_first_or_a_seeded_random_subset(punks_sheet, first_punks):
    np.testing.assert_array_equal(first_punks.ids, np.arange(40))
    np.testing.assert_array_equal(first_punks.images, load_punks(np.arange(40), path=punks_sheet).images)
    sample = Punks(n_images=30, subset="random", subset_seed=3, path=str(punks_sheet)).load()
    expected = np.sort(np.random.default_rng(3).choice(10_000, 30, replace=False))
    np.testing.assert_array_equal(sample.ids, expected)
    for k in (0, 29):
        np.testing.assert_array_equal(sample.images[..., k], pillow_tile(punks_sheet, expected[k])[:, :, :3])


def test_a_folder_of_per_punk_pngs_gives_the_same_arrays(punks_sheet, sheet_rgba, tmp_path):
    folder = write_folder(tmp_path / "imgs", sheet_rgba, SOME_IDS)
    from_folder = load_punks(SOME_IDS[::-1], folder=folder)
    from_sheet = load_punks(SOME_IDS[::-1], path=punks_sheet)
    np.testing.assert_array_equal(from_folder.images, from_sheet.images)
    np.testing.assert_array_equal(from_folder.alpha, from_sheet.alpha)
    assert from_folder.images.dtype == from_sheet.images.dtype
    np.testing.assert_array_equal(from_folder.ids, from_sheet.ids)
    assert from_folder.source == str(folder) and from_folder.digest == from_sheet.digest
    with pytest.raises(ValueError, match=r"either path .* or folder .*, not both"):
        load_punks([0], path=punks_sheet, folder=folder)
    loaded = Punks(n_images=3, subset="random", subset_seed=0, folder=str(folder)).load  # ids outside the folder
    with pytest.raises(FileNotFoundError, match=r"\.png does not exist"):
        loaded()


def test_alpha_takes_exactly_the_values_0_half_and_1(punks_sheet, sheet_rgba):
    alpha = sheet_rgba[..., 3].reshape(100, 24, 100, 24)
    has_half = np.flatnonzero((alpha == 128).any(axis=(1, 3)))  # tile (row, column) -> id row * 100 + column
    assert has_half.size > 0
    ids = np.union1d(np.arange(50), has_half[:200])
    punk_set = load_punks(ids, path=punks_sheet)
    np.testing.assert_array_equal(np.unique(punk_set.alpha), [0.0, 128 / 255, 1.0])
    assert np.all(punk_set.images[np.broadcast_to(punk_set.alpha[:, :, None] == 0, punk_set.images.shape)] == 0)
    mask = punk_set.opaque_entries()  # half-transparent pixels count as opaque
    np.testing.assert_array_equal(mask, np.repeat(punk_set.alpha > 0, 3, axis=1).reshape(1728, -1))
    assert np.any(punk_set.alpha[punk_set.alpha > 0] < 1)


def test_the_environment_variable_points_to_a_local_copy_and_an_explicit_path_wins(punks_sheet, monkeypatch):
    offline = f"http://127.0.0.1:{closed_port()}/punks.png"  # a download would fail
    monkeypatch.setenv(punks.PATH_ENV, str(punks_sheet))
    assert locate_sheet(url=offline) == punks_sheet
    assert load_punks([7], url=offline).source == str(punks_sheet)
    assert Punks(n_images=2, url=offline).load().source == str(punks_sheet)
    monkeypatch.setenv(punks.PATH_ENV, "/nonexistent/punks.png")
    assert locate_sheet(punks_sheet, url=offline) == punks_sheet
    with pytest.raises(FileNotFoundError, match=re.escape("$NMF_LAB_PUNKS=/nonexistent/punks.png")):
        locate_sheet(url=offline)


# --- images <-> matrix -----------------------------------------------------------------------------------


def test_the_matrix_is_1728_x_n_in_the_documented_pixel_order(first_punks):
    A = first_punks.matrix()
    assert A.shape == (1728, 40)
    rgb = first_punks.images
    # row (y * 24 + x) * 3 + c holds channel c of pixel (y, x): every coloured pixel of punk 1, every channel
    for y, x in np.argwhere(rgb[:, :, :, 1].std(axis=-1) > 0):
        for c in range(3):
            assert A[(y * 24 + x) * 3 + c, 1] == rgb[y, x, c, 1]
    np.testing.assert_array_equal(A, rgb.reshape(1728, 40))  # what images_to_matrix computed before
    np.testing.assert_array_equal(first_punks.images_from_matrix(A), rgb)
    np.testing.assert_array_equal(first_punks.images_from_matrix(A[:, 5:9]), rgb[..., 5:9])


# --- the loader's options --------------------------------------------------------------------------------


def test_the_subset_rule_gives_the_punks_it_always_gave():
    """The ids ``select_punks`` chose before image sets existed: the first n, or a sorted seeded sample."""
    np.testing.assert_array_equal(select_indices(10_000, 500), np.arange(500))
    chosen = select_indices(10_000, 500, "random", 3)
    np.testing.assert_array_equal(chosen, np.sort(np.random.default_rng(3).choice(10_000, 500, replace=False)))
    np.testing.assert_array_equal(select_indices(10_000, 10_000, "random", 0), np.arange(10_000))


def test_the_loader_defaults_are_the_spec_setup():
    loader = Punks()
    assert (loader.n_images, loader.subset, loader.subset_seed, loader.path, loader.folder, loader.url) == (
        500,
        "first",
        0,
        None,
        None,
        PUNKS_URL,
    )


@pytest.mark.parametrize(
    "kwargs, key, message",
    [
        ({"n_images": 0}, "n_images", r"n_images=0: must be an integer in 1\.\.10000"),
        ({"n_images": 10_001}, "n_images", r"n_images=10001"),
        ({"n_images": 2.0}, "n_images", r"n_images=2\.0"),
        ({"n_images": True}, "n_images", r"n_images=True"),
        ({"subset": "last"}, "subset", r"subset='last': one of first, random"),
        ({"subset_seed": -1}, "subset_seed", r"subset_seed=-1: must be an integer >= 0"),
        ({"path": "a.png", "folder": "imgs"}, "folder", r"either path .* or folder .*, not both"),
        ({"path": 5}, "path", r"path=5: must be a path"),
    ],
)
def test_the_loader_checks_its_options_on_construction(kwargs, key, message):
    with pytest.raises(InvalidOption, match=message) as caught:
        Punks(**kwargs)
    assert caught.value.key == key


def test_a_missing_path_is_only_found_by_load(tmp_path):
    loader = Punks(n_images=1, path=str(tmp_path / "nope.png"))  # a sweep may list it: the run fails, not the sweep
    with pytest.raises(FileNotFoundError, match=r"data\.path=.*nope\.png: no such file"):
        loader.load()


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


def test_a_truncated_sheet_is_refused(punks_sheet, tmp_path):
    data = punks_sheet.read_bytes()
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
def server(tmp_path, punks_sheet, sheet_rgba):
    """A local HTTP server with ``/punks.png`` (the real file) and ``/corrupt.png`` (one pixel changed)."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copyfile(punks_sheet, root / "punks.png")
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


def test_a_download_is_verified_cached_and_reused(server, punks_sheet, tmp_path):
    base, seen = server
    cache = tmp_path / "cache"
    located = locate_sheet(url=f"{base}/punks.png", cache_dir=cache)
    assert located == (cache / "punks.png").resolve()
    assert located.read_bytes() == punks_sheet.read_bytes()
    assert files_under(cache) == [located]
    punk_set = load_punks([0, 9999], url=f"{base}/punks.png", cache_dir=cache)  # from the cache, no request
    assert seen == ["/punks.png"]
    np.testing.assert_array_equal(punk_set.images, load_punks([0, 9999], path=punks_sheet).images)
    assert punk_set.source == str(located)


def test_a_bad_cached_file_is_replaced_by_a_verified_download(server, punks_sheet, tmp_path, monkeypatch):
    base, seen = server
    cache = tmp_path / "env-cache"
    monkeypatch.setenv(punks.CACHE_ENV, str(cache))
    cache.mkdir()
    (cache / "punks.png").write_bytes(b"stale")
    located = locate_sheet(url=f"{base}/punks.png")
    assert located.parent == cache.resolve() and located.read_bytes() == punks_sheet.read_bytes()
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
