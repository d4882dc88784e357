"""The 10,000 CryptoPunks (spec 4.1) as an :class:`ImageSet` (24 x 24 RGB, alpha kept aside), from the
official sheet or a folder.

The sheet ``punks.png`` is a 2400 x 2400 RGBA PNG, a 100 x 100 grid of 24 x 24 tiles, punk i at tile row
``i // 100``, column ``i % 100``. It is found by :func:`locate_sheet` (an explicit path, ``$NMF_LAB_PUNKS``,
or a download cached by pooch) and always verified against its SHA-256, the one the CryptoPunks contract
embeds. Alpha takes the values 0, 128 and 255; a pixel is opaque when its alpha is > 0.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
from PIL import Image

from nmf_lab.core.errors import InvalidOption
from nmf_lab.data.images import ImageSet, check_int, check_subset, select_indices

PUNKS_URL = "https://raw.githubusercontent.com/larvalabs/cryptopunks/master/punks.png"
PUNKS_SHA256 = "ac39af4793119ee46bbff351d8cb6b5f23da60222126add4268e261199a2921b"
SHEET_NAME = "punks.png"
N_PUNKS = 10_000
TILE = 24
GRID = 100
"""The sheet has GRID x GRID tiles of TILE x TILE pixels."""
PATH_ENV = "NMF_LAB_PUNKS"
"""Environment variable: the path of a local copy of punks.png (used instead of a download)."""
CACHE_ENV = "NMF_LAB_CACHE"
"""Environment variable: the download cache folder (default ``pooch.os_cache("nmf-lab")``)."""
NAME = "cryptopunks"
"""The name of the data set (the runs' dataset input)."""


class ChecksumError(ValueError):
    """A file that should be the official punks.png has another SHA-256."""


class SheetUnavailableError(FileNotFoundError):
    """No local punks.png was given and the download failed; the message says where to put the file."""


@dataclass
class Punks:
    """Loader of ``data=punks``: ``n_images`` CryptoPunks as an :class:`ImageSet` (24, 24, 3, n) with alpha.

    Options: ``n_images`` (1..10000), ``subset`` (``first`` | ``random``, see
    :func:`nmf_lab.data.images.select_indices`), ``subset_seed``, ``path`` (a local punks.png, else
    ``$NMF_LAB_PUNKS``, else the verified download from ``url``), ``folder`` (a folder of ``<id>.png``
    files, the Kaggle layout, instead of the sheet). The options are checked on construction; files are
    looked at by :meth:`locate` (before a job's or a sweep's first run) and :meth:`load`.
    """

    n_images: int = 500
    subset: str = "first"
    subset_seed: int = 0
    path: str | None = None
    folder: str | None = None
    url: str = PUNKS_URL

    def __post_init__(self) -> None:
        check_int("n_images", self.n_images, 1, N_PUNKS)
        check_subset(self.subset, self.subset_seed)
        for key in ("path", "folder", "url"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise InvalidOption(key, value, "must be a path (a string)" + (" or null" if key != "url" else ""))
        if self.path is not None and self.folder is not None:
            valid = f"give either path (a sheet) or folder (of <id>.png), not both (path={self.path})"
            raise InvalidOption("folder", self.folder, valid)

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(m, n) of the matrix A of the loaded set: 24 x 24 x 3 values per punk, one punk per column."""
        return (TILE * TILE * 3, self.n_images)

    def locate(self) -> Path:
        """Find the data before a run exists: the folder, else the verified sheet (:func:`locate_sheet`, which
        downloads it if need be); raises as :func:`locate_sheet` does."""
        if self.folder is not None:
            folder = Path(self.folder).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"data.folder={folder}: no such folder (expected a folder of <id>.png)")
            return folder
        return locate_sheet(self.path, url=self.url)

    def load(self) -> ImageSet:
        """Read the selected punks (the sheet is located, downloaded if need be, and verified)."""
        ids = select_indices(N_PUNKS, self.n_images, self.subset, self.subset_seed)
        return load_punks(ids, path=self.path, folder=self.folder, url=self.url)


def load_punks(
    ids,
    *,
    path: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    url: str = PUNKS_URL,
    cache_dir: str | os.PathLike | None = None,
) -> ImageSet:
    """The punks ``ids`` (integers in 0..9999, in this order) as an :class:`ImageSet` named ``cryptopunks``.

    With ``folder``: one PNG per punk named ``<id>.png`` (the Kaggle layout), each 24 x 24. Otherwise the
    sheet found by :func:`locate_sheet` (``path``, ``url`` and ``cache_dir`` are passed on). Both sources
    give identical arrays: Pillow's RGBA conversion divided by 255, RGB as ``images`` and A as ``alpha``.
    ``source`` is the folder or the sheet's path.

    Raises:
        ValueError: for bad ids, both ``path`` and ``folder`` given, a file that is not a readable PNG of
            the right size, or a sheet whose SHA-256 is not the official one (:class:`ChecksumError`).
        FileNotFoundError: for a missing file; :class:`SheetUnavailableError` when there is no local sheet
            and the download failed.
    """
    ids = _check_ids(ids)
    if folder is not None and path is not None:
        raise ValueError(f"give either path (a sheet) or folder (of <id>.png), not both: {path=}, {folder=}")
    if folder is not None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"punk folder {folder} does not exist (expected a folder of <id>.png)")
        rgba = np.stack([_read_png(folder / f"{i}.png", (TILE, TILE)) for i in ids], axis=-1)
        source = folder
    else:
        source = locate_sheet(path, url=url, cache_dir=cache_dir)
        sheet = _read_png(source, (GRID * TILE, GRID * TILE))
        grid = sheet.reshape(GRID, TILE, GRID, TILE, 4)  # (tile row, y, tile column, x, channel)
        rgba = np.moveaxis(grid[ids // GRID, :, ids % GRID], 0, -1)  # (y, x, channel, N)
    return ImageSet(images=rgba[:, :, :3] / 255.0, alpha=rgba[:, :, 3] / 255.0, name=NAME, source=str(source), ids=ids)


def locate_sheet(
    path: str | os.PathLike | None = None, *, url: str = PUNKS_URL, cache_dir: str | os.PathLike | None = None
) -> Path:
    """The path of a verified copy of the official punks.png.

    In order: ``path``, else ``$NMF_LAB_PUNKS``, both used as they are (never downloaded, copied or
    deleted); else ``punks.png`` in ``cache_dir`` (default :func:`default_cache_dir`), downloaded from
    ``url`` by pooch if it is missing or not the official file. A download is written to a temporary file
    and only moved into the cache once its SHA-256 matches; otherwise it is deleted.

    Raises:
        FileNotFoundError: a local path that does not exist.
        ValueError: a local file that is not a 2400 x 2400 PNG; :class:`ChecksumError` for a local file or
            a download with the wrong SHA-256.
        SheetUnavailableError: no local copy and the download failed (offline, HTTP error, ...).
    """
    local = path if path is not None else os.environ.get(PATH_ENV) or None
    if local is not None:
        setting = "data.path" if path is not None else f"${PATH_ENV}"
        local = Path(local).expanduser()
        if not local.is_file():
            raise FileNotFoundError(f"{setting}={local}: no such file (expected the official punks.png)")
        _check_png_header(local, (GRID * TILE, GRID * TILE))
        _verify(local, what=f"{setting}={local}")
        return local
    return _download(url, Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir())


def default_cache_dir() -> Path:
    """``$NMF_LAB_CACHE`` if set, else pooch's per-user cache folder for nmf-lab (e.g. ~/.cache/nmf-lab)."""
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("nmf-lab")).expanduser()


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as 64 hex digits."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _download(url: str, cache_dir: Path) -> Path:
    target = cache_dir / SHEET_NAME
    try:
        fetched = pooch.retrieve(
            url,
            known_hash=f"sha256:{PUNKS_SHA256}",
            fname=SHEET_NAME,
            path=cache_dir,
            progressbar=sys.stderr.isatty(),
        )
    except ValueError as error:
        if "does not match the known hash" not in str(error):
            raise
        raise ChecksumError(
            f"the file downloaded from {url} is not the official punks.png and was discarded (pooch: {error})"
        ) from error
    except OSError as error:  # requests' errors are OSErrors too
        raise SheetUnavailableError(
            f"punks.png could not be downloaded from {url} ({type(error).__name__}: {error}). "
            f"Put the official file (SHA-256 {PUNKS_SHA256}) at {target}, or point to a local copy with "
            f"data.path=/path/to/punks.png or {PATH_ENV}=/path/to/punks.png"
        ) from error
    return Path(fetched)


def _verify(path: Path, *, what: str) -> None:
    actual = sha256(path)
    if actual != PUNKS_SHA256:
        raise ChecksumError(
            f"{what} is not the official punks.png: its SHA-256 is {actual}, expected {PUNKS_SHA256} "
            f"(the file was left as it is)"
        )


def _check_png_header(path: Path, size: tuple[int, int]) -> None:
    """Raise ValueError unless ``path`` is a PNG of ``size`` (width, height); reads the header only."""
    try:
        with Image.open(path) as image:
            found, kind = image.size, image.format
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path} is not a readable PNG image ({error})") from error
    if kind != "PNG":
        raise ValueError(f"{path} is a {kind} image, expected a PNG")
    if found != size:
        raise ValueError(f"{path} is {found[0]} x {found[1]} pixels, expected {size[0]} x {size[1]}")


def _read_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The RGBA pixels (height, width, 4) uint8 of the PNG at ``path`` of ``size`` (width, height)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    _check_png_header(path, size)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGBA"))
    except (OSError, SyntaxError) as error:  # truncated or corrupt image data
        raise ValueError(f"{path} is not a readable PNG image ({error})") from error


def _check_ids(ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise ValueError(
            f"ids must be a non-empty 1-D sequence of integers, got an array of shape {ids.shape} and dtype {ids.dtype}"
        )
    bad = ids[(ids < 0) | (ids >= N_PUNKS)]
    if bad.size:
        raise ValueError(f"punk ids must be in 0..{N_PUNKS - 1}, got {bad[:5].tolist()}")
    return ids.astype(np.int64)
