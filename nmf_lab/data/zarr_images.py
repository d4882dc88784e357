"""A Zarr image store as an image set (``data=zarr data.path=STORE``): columns = images, chunks along the columns.

Small selections are read into an ordinary :class:`~nmf_lab.data.images.ImageSet` (``in_memory: true``, or
``null`` and the colours below :data:`IN_MEMORY_BYTES` in float64); large ones stay in the store as a
:class:`BlockedImageSet`, whose :meth:`~BlockedImageSet.matrix` is a Dask array of column blocks that
:func:`nmf_lab.distributed.fit_blocked` factorizes without ever holding it. Stores are written by
``nmf-lab-zarr`` (:mod:`nmf_lab.distributed.store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmf_lab.core.errors import InvalidOption
from nmf_lab.data.images import ImageSet, check_subset, select_indices
from nmf_lab.distributed.store import StoredImages, open_store

IN_MEMORY_BYTES = 2 * 1024**3
"""With ``in_memory: null`` a selection whose colours take less than this in float64 is read into memory."""


@dataclass(frozen=True, eq=False)
class BlockedImageSet:
    """The images of a store, left in it: what studies read of an :class:`ImageSet`, with :meth:`matrix` a
    Dask array ((h w c) x n float32, the store's column chunks)."""

    stored: StoredImages
    columns: object  # a slice or sorted index array over the store's images

    @property
    def name(self) -> str:
        return self.stored.name

    @property
    def source(self) -> str:
        return str(self.stored.path)

    @property
    def digest(self) -> str:
        return self.stored.digest if self.columns == slice(None) else f"{self.stored.digest}:{self.n}"

    @property
    def ids(self) -> np.ndarray:
        return self.stored.ids(self.columns)

    @property
    def shape(self) -> tuple[int, int]:
        return self.stored.height, self.stored.width

    @property
    def channels(self) -> int:
        return self.stored.channels

    @property
    def n(self) -> int:
        return len(range(self.stored.n)[self.columns]) if isinstance(self.columns, slice) else len(self.columns)

    @property
    def alpha(self):
        """The opacity as a Dask array ((h w) x n), or None."""
        return self.stored.alpha(self.columns)

    def matrix(self):
        return self.stored.matrix(self.columns)

    def images_from_matrix(self, X: np.ndarray) -> np.ndarray:
        h, w, c = self.stored.height, self.stored.width, self.stored.channels
        return np.asarray(X).reshape(h, w, c, X.shape[1])

    def head(self, count: int) -> ImageSet:
        """The first ``count`` images, in memory (for figures)."""
        return _read(self.stored, np.arange(self.n)[self.columns][:count] if not isinstance(self.columns, slice)
                     else slice(*slice(0, count).indices(self.n)))  # fmt: skip


@dataclass
class ZarrImages:
    """Loader of ``data=zarr``: the images of the Zarr store at ``path`` (see the module).

    Options: ``path`` (required), ``n_images`` (null: all), ``subset`` / ``subset_seed`` (as every loader),
    ``in_memory`` (true: an ImageSet; false: a BlockedImageSet; null: by size)."""

    path: str | None = None
    n_images: int | None = None
    subset: str = "first"
    subset_seed: int = 0
    in_memory: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, Path)):
            raise InvalidOption("path", self.path, "must be the path of a Zarr image store (nmf-lab-zarr makes one)")
        check_subset(self.subset, self.subset_seed)
        if self.in_memory not in (None, True, False):
            raise InvalidOption("in_memory", self.in_memory, "must be true, false or null (by size)")

    def locate(self) -> Path:
        """The store, opened (its metadata only); FileNotFoundError if it is not there."""
        path = Path(self.path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data.path={path}: no such Zarr store (nmf-lab-zarr writes one)")
        open_store(path)
        return path

    def load(self):
        stored = open_store(Path(self.path).expanduser())
        columns = select_indices(stored.n, self.n_images, self.subset, self.subset_seed)
        if self.subset == "first":
            columns = slice(0, columns.size)
        size = stored.height * stored.width * stored.channels * len(range(stored.n)[columns] if isinstance(
            columns, slice) else columns) * 8  # fmt: skip
        in_memory = size < IN_MEMORY_BYTES if self.in_memory is None else self.in_memory
        return _read(stored, columns) if in_memory else BlockedImageSet(stored, columns)


def _read(stored: StoredImages, columns) -> ImageSet:
    h, w, c = stored.height, stored.width, stored.channels
    colours = np.asarray(stored.matrix(columns).compute(), dtype=np.float64)
    alpha = stored.alpha(columns)
    n = colours.shape[1]
    return ImageSet(
        images=np.clip(colours, 0.0, 1.0).reshape(h, w, c, n),
        alpha=None if alpha is None else np.clip(np.asarray(alpha.compute(), np.float64), 0, 1).reshape(h, w, n),
        name=stored.name,
        source=str(stored.path),
        ids=stored.ids(columns),
    )
