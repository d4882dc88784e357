"""Image sets <-> the matrix A of their colours (spec 4.2), and what every image loader shares.

An :class:`ImageSet` holds n images of h x w pixels with c colour channels (c = 1 grayscale, c = 3 RGB) as
a float64 array (h, w, c, n) in [0, 1], image i being ``images[..., i]``. NMF only learns the colours: the
opacity of pixels known to be transparent (the CryptoPunks' alpha channel) is kept aside in ``alpha``.

The loaders (:mod:`nmf_lab.data.punks`, :mod:`nmf_lab.data.digits`, :mod:`nmf_lab.data.folder`) are plain
dataclasses whose fields are their options: they check them in ``__post_init__`` (raising
:class:`nmf_lab.core.errors.InvalidOption`) and read the images in ``load()``. They pick their images with the
one function :func:`select_indices`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.validation import is_integer

SUBSETS = ("first", "random")
"""How a loader picks n of the available images: the first n, or a seeded random sample (sorted)."""


@dataclass(frozen=True, eq=False)
class ImageSet:
    """n images of one size, their colours in [0, 1] and (optionally) their known opacity.

    Attributes:
        images: float64 array (h, w, c, n), c = 1 (grayscale) or 3 (RGB), values in [0, 1].
        alpha: float64 array (h, w, n) in [0, 1], the opacity of each pixel, or None (every pixel opaque).
            A pixel with alpha 0 is known to be transparent: NMF does not learn it, figures draw it on grey.
        name: the data set's name, e.g. ``"cryptopunks"``, ``"digits"``, or a folder's name.
        source: where the images came from: a file, a folder, a URL, ``"sklearn.datasets.load_digits"``.
        ids: int64 array (n,): which images of the source these are (punk ids, digit indices, file indices).
        labels: optional array (n,) describing each image (digit targets, file names), or None.
        digest: the SHA-256 (hex) of the pixel content, computed here: the shape, the bytes of ``images``
            and of ``alpha``. The same images give the same digest, in any run.
    """

    images: np.ndarray
    alpha: np.ndarray | None
    name: str
    source: str
    ids: np.ndarray
    labels: np.ndarray | None = None
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.ndim != 4 or images.shape[2] not in (1, 3):
            raise ValueError(f"images must be an array (h, w, c, n) with c = 1 or 3, got shape {images.shape}")
        if images.dtype.kind != "f":
            raise ValueError(
                f"images must hold floats in [0, 1], got dtype {images.dtype} (divide 8-bit values by 255)"
            )
        images = np.ascontiguousarray(images, dtype=np.float64)
        h, w, _, n = images.shape
        if n == 0 or h == 0 or w == 0:
            raise ValueError(f"an image set needs at least one image of at least one pixel, got shape {images.shape}")
        _check_unit_interval("images", images)
        alpha = self.alpha
        if alpha is not None:
            alpha = np.asarray(alpha)
            if alpha.shape != (h, w, n) or alpha.dtype.kind != "f":
                raise ValueError(
                    f"alpha must be a float array (h, w, n) = {(h, w, n)} or None, got shape {alpha.shape} "
                    f"and dtype {alpha.dtype}"
                )
            alpha = np.ascontiguousarray(alpha, dtype=np.float64)
            _check_unit_interval("alpha", alpha)
        ids = np.asarray(self.ids)
        if ids.shape != (n,) or ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be {n} integers, one per image, got shape {ids.shape} and dtype {ids.dtype}")
        labels = None if self.labels is None else np.asarray(self.labels)
        if labels is not None and labels.shape != (n,):
            raise ValueError(f"labels must have one entry per image, shape ({n},), got shape {labels.shape}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "ids", ids.astype(np.int64))
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "digest", content_digest(images, alpha))

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w): the height and width of every image, in pixels."""
        return self.images.shape[0], self.images.shape[1]

    @property
    def channels(self) -> int:
        """c: 1 (grayscale) or 3 (RGB)."""
        return self.images.shape[2]

    @property
    def n(self) -> int:
        """The number of images."""
        return self.images.shape[3]

    def matrix(self) -> np.ndarray:
        """A, the (h * w * c) x n matrix of the colours, one image per column (spec 4.2 step 3); a new array.

        Row ``(y * w + x) * c + ch`` is channel ch of the pixel in row y, column x: the C-order reshape of
        ``images``, so ``A[:, i].reshape(h, w, c)`` is image i. For CryptoPunks A is 1728 x n.
        """
        h, w, c, n = self.images.shape
        return self.images.reshape(h * w * c, n).copy()

    def images_from_matrix(self, X: np.ndarray) -> np.ndarray:
        """The images (h, w, c, k) of the k columns of X ((h * w * c) x k, e.g. a reconstruction W H).

        The exact inverse of :meth:`matrix` for any number of columns; nothing is clipped (W H may exceed 1).
        """
        X = np.asarray(X)
        h, w, c, _ = self.images.shape
        if X.ndim != 2 or X.shape[0] != h * w * c:
            raise ValueError(
                f"X must be a matrix with h * w * c = {h * w * c} rows (one image of {h} x {w} x {c} per column), "
                f"got shape {X.shape}"
            )
        return X.reshape(h, w, c, X.shape[1])

    def opaque_entries(self) -> np.ndarray:
        """The bool (h * w * c) x n mask of the entries of A that are colour channels of pixels with alpha > 0.

        All True when alpha is None. PSNR is measured on these entries; post-processing zeros the others.
        """
        h, w, c, n = self.images.shape
        if self.alpha is None:
            return np.ones((h * w * c, n), dtype=bool)
        return np.repeat((self.alpha > 0)[:, :, None, :], c, axis=2).reshape(h * w * c, n)

    def subset(self, index) -> ImageSet:
        """The images ``index`` selects (a slice, integer array or boolean mask over the n images)."""
        pick = np.arange(self.n)[index]
        return ImageSet(
            images=self.images[..., pick],
            alpha=None if self.alpha is None else self.alpha[..., pick],
            name=self.name,
            source=self.source,
            ids=self.ids[pick],
            labels=None if self.labels is None else self.labels[pick],
        )


def content_digest(images: np.ndarray, alpha: np.ndarray | None) -> str:
    """SHA-256 hex digest of image content: the shape, whether there is alpha, and the float64 bytes."""
    digest = hashlib.sha256()
    digest.update(f"images{images.shape};alpha={alpha is not None};".encode())
    digest.update(np.ascontiguousarray(images, dtype=np.float64).tobytes())
    if alpha is not None:
        digest.update(np.ascontiguousarray(alpha, dtype=np.float64).tobytes())
    return digest.hexdigest()


def select_indices(total: int, n_images: int | None, subset: str = "first", subset_seed: int = 0) -> np.ndarray:
    """Which ``n_images`` of ``total`` images a loader takes (all when ``n_images`` is None), as int64 indices.

    ``"first"``: 0..n-1. ``"random"``: ``np.random.default_rng(subset_seed).choice(total, n, replace=False)``,
    sorted (a subset is a set, and sorted indices keep figures in the source's order).
    """
    n = total if n_images is None else check_int("n_images", n_images, 1, total)
    check_subset(subset, subset_seed)
    if subset == "first":
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(subset_seed).choice(total, n, replace=False)).astype(np.int64)


def check_int(key: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool) in minimum..maximum, else :class:`InvalidOption`."""
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        valid = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidOption(key, value, f"must be an integer {valid}")
    return int(value)


def check_subset(subset, subset_seed) -> None:
    """The options ``subset`` (first | random) and ``subset_seed`` (an integer >= 0) every image loader has."""
    if subset not in SUBSETS:
        raise InvalidOption("subset", subset, f"one of {', '.join(SUBSETS)}")
    check_int("subset_seed", subset_seed, 0)


def _check_unit_interval(name: str, values: np.ndarray) -> None:
    low, high = float(values.min()), float(values.max())
    if not (low >= 0.0 and high <= 1.0):  # also catches NaN
        raise ValueError(f"{name} must lie in [0, 1], found values in [{low}, {high}]")
