"""RGBA images <-> the matrix A of their colours (spec 4.2), for NMF of pixel art.

Images are stored as the spec stores them: a float array of shape (h, w, 4, N), RGBA in [0, 1], image i is
``images[..., i]`` (CryptoPunks: h = w = 24). NMF only learns the colours; the opacity is kept aside.
"""

from __future__ import annotations

import numpy as np


def images_to_matrix(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split RGBA images (h, w, 4, N) into the matrix ``A`` of their colours and their opacity ``alpha``.

    ``A`` is (h * w * 3) x N (1728 x N for punks), one image per column (spec 4.2 step 3). Row
    ``(y * w + x) * 3 + c`` of ``A`` is channel c (0 red, 1 green, 2 blue) of the pixel in row y, column x:
    the C-order reshape ``images[:, :, :3].reshape(h * w * 3, N)``, so ``A[:, i].reshape(h, w, 3)`` is the
    RGB picture of image i. ``alpha`` is ``images[:, :, 3]``, shape (h, w, N). Both are new arrays in the
    dtype of ``images``; :func:`matrix_to_images` is the exact inverse.
    """
    images = _check_images(images)
    h, w, _, n = images.shape
    A = images[:, :, :3].reshape(h * w * 3, n)  # a copy: the RGB slice is not contiguous
    alpha = images[:, :, 3].copy()
    return A, alpha


def matrix_to_images(A: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The RGBA images (h, w, 4, N) with colours from ``A`` ((h * w * 3) x N) and opacity ``alpha`` (h, w, N).

    The exact inverse of :func:`images_to_matrix` (same pixel order; the tile size comes from ``alpha``).
    Colours are not clipped: a reconstruction ``W @ H`` may exceed 1, see :func:`for_display`.
    """
    A, alpha = np.asarray(A), np.asarray(alpha)
    for name, X, ndim in (("A", A, 2), ("alpha", alpha, 3)):
        if X.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got an array of dtype {X.dtype}")
        if X.ndim != ndim:
            want = "(h * w * 3) x N matrix" if name == "A" else "(h, w, N) array"
            raise ValueError(f"{name} must be a {want}, got an array of shape {X.shape}")
    h, w, n = alpha.shape
    if A.shape != (h * w * 3, n):
        raise ValueError(
            f"A of shape {A.shape} does not fit alpha of shape {alpha.shape}: "
            f"expected A of shape ({h * w * 3}, {n}) = (h * w * 3, N)"
        )
    images = np.empty((h, w, 4, n), dtype=np.result_type(A.dtype, alpha.dtype, np.float32))
    images[:, :, :3] = A.reshape(h, w, 3, n)
    images[:, :, 3] = alpha
    return images


def for_display(images: np.ndarray) -> np.ndarray:
    """A copy of RGBA images (h, w, 4, N), colours clipped to [0, 1] for plotting (spec 4.2 step 5)."""
    images = _check_images(images).copy()
    np.clip(images[:, :, :3], 0.0, 1.0, out=images[:, :, :3])
    return images


def opaque(images: np.ndarray) -> np.ndarray:
    """The (h, w, N) boolean mask of the pixels that are at least partly opaque (alpha > 0).

    CryptoPunks have alpha 0, 128/255 and 1; a pixel counts as part of the image when its alpha is not 0.
    """
    return _check_images(images)[:, :, 3] > 0


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[2] != 4:
        raise ValueError(f"images must be an RGBA array of shape (h, w, 4, N), got shape {images.shape}")
    if images.dtype.kind != "f":
        raise ValueError(
            f"images must hold floats in [0, 1], got dtype {images.dtype} (divide 8-bit values by 255)"
        )
    return images
