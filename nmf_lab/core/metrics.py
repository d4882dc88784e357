"""Image quality measures."""

from __future__ import annotations

import numpy as np


def psnr(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``PSNR = 10 log10(peak^2 / MSE)``.

    ``MSE`` is the mean of ``(estimate - reference)^2`` over the entries where ``mask`` is True (all entries
    when ``mask`` is None); for images in [0, 1], ``peak = 1``. For CryptoPunks the mask selects the colour
    channels of the opaque pixels, so the known transparent background does not inflate the score.
    Identical inputs give ``inf``.
    """
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, estimate {estimate.shape}")
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), reference.shape)
        if not mask.any():
            raise ValueError("the mask selects no entries")
        reference, estimate = reference[mask], estimate[mask]
    mse = float(np.mean((estimate - reference) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))
