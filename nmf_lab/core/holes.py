"""Missing pixels for inpainting: which pixels of each image are removed, and the simplest fill.

A removed pixel loses all its colour channels. In the matrix A ((h * w * c) x n, one image per column, row
``(y * w + x) * c + ch`` as in :meth:`nmf_lab.data.images.ImageSet.matrix`) it is c missing entries; a
masked NMF (:func:`nmf_lab.fit_nmf` with ``mask=``) fits the others and ``W H`` fills them.
"""

from __future__ import annotations

import math

import numpy as np

from nmf_lab.core.validation import check_int, is_integer, is_real

__all__ = ["HOLES", "entries_of_pixels", "pixel_holes", "row_mean_fill"]

HOLES = ("random", "block")
"""How pixels are removed: ``random`` (a random set of pixels in each image) or ``block`` (one square block at
a random place in each image)."""


def pixel_holes(shape: tuple[int, int], n: int, fraction: float, kind: str = "random", seed: int = 0) -> np.ndarray:
    """The removed pixels of n images of ``shape`` (h, w): bool (h, w, n), True where a pixel is removed.

    ``random``: in each image exactly ``round(fraction * h * w)`` pixels, drawn uniformly without replacement.
    ``block``: in each image one square of side ``s = round(sqrt(fraction * h * w))`` (at least 1, at most
    ``min(h, w)``), its top-left corner uniform over the places where it fits; it removes ``s^2 / (h w)``, the
    nearest a square comes to ``fraction`` (0.293 for 0.3 on 24 x 24 punks). Each image draws its own holes
    from ``np.random.default_rng(seed)``; ``fraction`` is in (0, 1).
    """
    h, w = _check_shape(shape)
    n = check_int("n", n, minimum=1, what="the number of images")
    if not is_real(fraction) or not 0 < fraction < 1:
        raise ValueError(f"fraction, the part of the pixels removed, must be a number in (0, 1), got {fraction!r}")
    if kind not in HOLES:
        raise ValueError(f"kind must be one of {', '.join(HOLES)}, got {kind!r}")
    seed = check_int("the holes' seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    removed = np.zeros((n, h * w), dtype=bool)
    if kind == "random":
        count = round(fraction * h * w)
        chosen = np.argsort(rng.random((n, h * w)), axis=1)[:, :count]  # a uniform subset per image
        np.put_along_axis(removed, chosen, True, axis=1)
        return removed.reshape(n, h, w).transpose(1, 2, 0).copy()
    side = min(max(1, round(math.sqrt(fraction * h * w))), h, w)
    tops, lefts = rng.integers(0, h - side + 1, size=n), rng.integers(0, w - side + 1, size=n)
    removed = removed.reshape(n, h, w)
    for i, (top, left) in enumerate(zip(tops, lefts)):
        removed[i, top : top + side, left : left + side] = True
    return removed.transpose(1, 2, 0).copy()


def entries_of_pixels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """The bool (h * w * c) x n entries of A of the pixels (h, w, n) that are True: every channel of each."""
    pixels = np.asarray(pixels, dtype=bool)
    if pixels.ndim != 3:
        raise ValueError(f"pixels must be a bool array (h, w, n), got shape {pixels.shape}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    h, w, n = pixels.shape
    return np.repeat(pixels[:, :, None, :], channels, axis=2).reshape(h * w * channels, n)


def row_mean_fill(A: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The baseline fill: A on the ``observed`` entries, and in each row the mean of that row's observed
    values on the others (per pixel channel, the mean over the images where it is seen); a row with none
    observed is filled with 0. Returns a new m x n float64 array."""
    A = np.asarray(A, dtype=np.float64)
    observed = np.asarray(observed, dtype=bool)
    if observed.shape != A.shape:
        raise ValueError(f"observed must have A's shape {A.shape}, got {observed.shape}")
    counts = observed.sum(axis=1)
    sums = np.where(observed, A, 0.0).sum(axis=1)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return np.where(observed, A, means[:, None])


def _check_shape(shape) -> tuple[int, int]:
    ok = isinstance(shape, tuple) and len(shape) == 2
    ok = ok and all(is_integer(s) and s >= 1 for s in shape)
    if not ok:
        raise ValueError(f"shape must be (h, w), two integers >= 1, got {shape!r}")
    return int(shape[0]), int(shape[1])
