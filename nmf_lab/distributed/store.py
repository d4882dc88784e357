"""Zarr image stores: n images of h x w pixels with c channels as the matrix A ((h w c) x n, one image per
column, float32, chunks along the columns), written block by block, read as a Dask array of column blocks.

The layout of a store (a Zarr 3 group)::

    A       float32 (h w c) x n, chunks (h w c) x chunk: the colours, row (y w + x) c + ch as ImageSet.matrix()
    alpha   float32 (h w) x n, same column chunks, optional: each pixel's opacity (0: transparent)
    ids     int64 (n,): which image of the source each column is
    attrs   height, width, channels, name, source, digest (SHA-256 of the blocks' bytes, in order)

:func:`write_blocks` writes any sequence of blocks without holding more than one; :func:`augmented_blocks`
makes N images from a set (shifts of each sprite within its frame, mirror images, permutations of the colour
channels), block by block, from a seed.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

__all__ = ["StoredImages", "augmented_blocks", "image_blocks", "open_store", "write_blocks"]

DEFAULT_CHUNK = 10_000
"""Columns (images) per chunk: 1728 x 10,000 float32 is 69 MB for the punks."""

PERMUTATIONS = tuple(itertools.permutations(range(3)))
"""The 6 orders of the colour channels."""


@dataclass(frozen=True)
class Block:
    """``count`` images: colours (h w c) x count, opacity (h w) x count or None, their ids."""

    colours: np.ndarray
    alpha: np.ndarray | None
    ids: np.ndarray


def write_blocks(
    path,
    blocks: Iterable[Block],
    *,
    n: int,
    height: int,
    width: int,
    channels: int,
    name: str,
    source: str,
    chunk: int = DEFAULT_CHUNK,
    alpha: bool = False,
) -> Path:
    """Write ``n`` images given as consecutive ``blocks`` (each at most ``chunk`` columns; all but the last
    exactly ``chunk``) to a new Zarr store at ``path``; returns it. One block is in memory at a time."""
    path = Path(path)
    m = height * width * channels
    group = zarr.open_group(str(path), mode="w")
    A = group.create_array("A", shape=(m, n), chunks=(m, chunk), dtype="float32", fill_value=0.0)
    opacity = group.create_array("alpha", shape=(height * width, n), chunks=(height * width, chunk),
                                 dtype="float32", fill_value=0.0) if alpha else None  # fmt: skip
    ids = group.create_array("ids", shape=(n,), chunks=(chunk,), dtype="int64", fill_value=0)
    digest, start = hashlib.sha256(), 0
    for block in blocks:
        count = block.colours.shape[1]
        stop = start + count
        colours = np.ascontiguousarray(block.colours, dtype=np.float32)
        A[:, start:stop] = colours
        digest.update(colours.tobytes())
        if opacity is not None:
            opacity[:, start:stop] = np.asarray(block.alpha, dtype=np.float32)
        ids[start:stop] = block.ids
        start = stop
    if start != n:
        raise ValueError(f"the blocks held {start} images, expected {n}")
    group.attrs.update(
        {"height": height, "width": width, "channels": channels, "name": name, "source": source,
         "digest": digest.hexdigest(), "n": n}
    )  # fmt: skip
    return path


def image_blocks(images: np.ndarray, alpha: np.ndarray | None, ids: np.ndarray, chunk: int) -> Iterator[Block]:
    """The blocks of an image set in memory (images (h, w, c, n), alpha (h, w, n) or None)."""
    h, w, c, n = images.shape
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        yield Block(
            images[..., start:stop].reshape(h * w * c, stop - start),
            None if alpha is None else alpha[..., start:stop].reshape(h * w, stop - start),
            ids[start:stop],
        )


def augmented_blocks(
    images: np.ndarray, alpha: np.ndarray, n: int, *, seed: int = 0, chunk: int = DEFAULT_CHUNK
) -> Iterator[Block]:
    """``n`` images made from the source ``images`` (h, w, 3, n0) with their ``alpha`` (h, w, n0), in blocks:
    image k is source ``k mod n0`` (the first n0 are the sources themselves), from the second round on
    mirrored (left-right) with probability 1/2, its colour channels in one of the 6 orders, and shifted by
    (dy, dx) drawn uniformly among the shifts that keep every opaque pixel in the frame. Block b draws from
    ``np.random.default_rng([seed, b])``: any block can be made again alone. The id of an image is its source's."""
    h, w, c, n0 = images.shape
    opaque = alpha > 0
    rows, cols = opaque.any(axis=1), opaque.any(axis=0)  # (h, n0), (w, n0)
    top, bottom = rows.argmax(axis=0), h - 1 - rows[::-1].argmax(axis=0)
    left, right = cols.argmax(axis=0), w - 1 - cols[::-1].argmax(axis=0)
    for b, start in enumerate(range(0, n, chunk)):
        stop = min(start + chunk, n)
        k = np.arange(start, stop)
        source = k % n0
        rng = np.random.default_rng([seed, b])
        mirror = rng.uniform(size=k.size) < 0.5
        order = rng.integers(0, len(PERMUTATIONS), size=k.size)
        dy = rng.integers(-top[source], h - bottom[source])
        left_k = np.where(mirror, w - 1 - right[source], left[source])  # the frame of the mirrored sprite
        right_k = np.where(mirror, w - 1 - left[source], right[source])
        dx = rng.integers(-left_k, w - right_k)
        original = k < n0
        mirror[original], order[original], dy[original], dx[original] = False, 0, 0, 0
        # one gather: pixel (y, x) of image k is source pixel ((y - dy) mod h, x') with x' = (x - dx) mod w,
        # mirrored x' -> w - 1 - x' (nothing opaque wraps round: the shift keeps the sprite in its frame)
        ys = (np.arange(h)[:, None] - dy[None, :]) % h  # (h, k)
        xs = (np.arange(w)[:, None] - dx[None, :]) % w  # (w, k)
        xs = np.where(mirror[None, :], w - 1 - xs, xs)
        channels = np.asarray(PERMUTATIONS)[order].T  # (3, k)
        colours = images[ys[:, None, None, :], xs[None, :, None, :], channels[None, None, :, :], source]
        opacity = alpha[ys[:, None, :], xs[None, :, :], source]
        colours = colours.astype(np.float32).reshape(h * w * c, k.size)
        yield Block(colours, opacity.astype(np.float32).reshape(h * w, k.size), source.astype(np.int64))


@dataclass(frozen=True)
class StoredImages:
    """An opened image store: its metadata, and its arrays as Dask arrays of column blocks (nothing read)."""

    path: Path
    height: int
    width: int
    channels: int
    n: int
    name: str
    source: str
    digest: str
    has_alpha: bool

    def matrix(self, columns=None) -> da.Array:
        """A (float32, (h w c) x n) as a Dask array of the store's column chunks; ``columns``: a slice or sorted
        index array of the images to take."""
        A = da.from_zarr(str(self.path), component="A")
        return A if columns is None else A[:, columns]

    def alpha(self, columns=None) -> da.Array | None:
        if not self.has_alpha:
            return None
        alpha = da.from_zarr(str(self.path), component="alpha")
        return alpha if columns is None else alpha[:, columns]

    def ids(self, columns=None) -> np.ndarray:
        ids = np.asarray(zarr.open_array(str(self.path), path="ids", mode="r")[:])
        return ids if columns is None else ids[columns]


def open_store(path) -> StoredImages:
    """The image store at ``path``; ValueError naming what is missing if it is not one."""
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as error:
        raise ValueError(f"{path} is not a Zarr image store ({error}); make one with nmf-lab-zarr") from None
    attrs = dict(group.attrs)
    missing = [key for key in ("height", "width", "channels", "n") if key not in attrs]
    if missing or "A" not in group:
        raise ValueError(f"{path} is not a Zarr image store: it lacks {', '.join(missing) or 'the array A'}")
    return StoredImages(
        path=path,
        height=int(attrs["height"]),
        width=int(attrs["width"]),
        channels=int(attrs["channels"]),
        n=int(attrs["n"]),
        name=str(attrs.get("name", path.stem)),
        source=str(attrs.get("source", str(path))),
        digest=str(attrs.get("digest", "")),
        has_alpha="alpha" in group,
    )
