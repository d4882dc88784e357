"""The denoiser on a large batch, blocked: :meth:`nmf_lab.core.denoiser.Denoiser.denoise_images` on each chunk
of a Dask array of images, on the active Dask client or Dask's default scheduler.

A denoiser projects each image on its bases by NNLS (:func:`nmf_lab.core.transform.transform`, W fixed), one
independent problem per image (each column stops on its own rule), so a chunk's task gives its images of the
in-memory result, to the NNLS tolerance (the products of a chunk round differently from those of the whole
batch: 1e-8 apart in the punks' test); no chunk needs another, and only the bases go with the tasks.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from nmf_lab.core.denoiser import Denoiser

__all__ = ["denoise_blocked"]


def denoise_blocked(denoiser: Denoiser, images, *, zero_rule: bool | None = None, chunk: int = 2000) -> da.Array:
    """Denoised copies of ``images`` (n, h, w, channels; a Dask array chunked along n, or anything
    ``da.asarray`` takes, cut into chunks of ``chunk`` images), as a lazy Dask array of the same chunks; see
    :meth:`~nmf_lab.core.denoiser.Denoiser.denoise_images` for ``zero_rule`` and the checks (made per chunk)."""
    images = images if isinstance(images, da.Array) else da.from_array(np.asarray(images), chunks=chunk)
    if images.ndim != 4:
        raise ValueError(f"images must be an array (n, h, w, channels), got shape {images.shape}")
    images = images.rechunk({1: -1, 2: -1, 3: -1})
    return images.map_blocks(
        lambda block: denoiser.denoise_images(np.asarray(block), zero_rule=zero_rule), dtype=np.float64
    )
