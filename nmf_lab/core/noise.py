"""The noise model of spec section 6.1: Gaussian noise on the non-zero colour values, clipped to [0, 1]."""

from __future__ import annotations

import numbers

import numpy as np


def add_noise(A: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``A_noisy = clip(A + sigma * E, 0, 1)`` where ``A > 0``; zero entries stay exactly zero.

    ``E`` is standard normal, drawn as ``np.random.default_rng(seed).standard_normal(A.shape)``, so the
    noise has its own seed, separate from the NMF's. Entries of ``A`` that are 0 (the zero colour channels
    of opaque pixels and the transparent pixels) get no noise (spec 6.1). ``sigma = 0`` returns a copy of
    ``A``. Returns a new array of the shape and float dtype of ``A``.
    """
    A = np.asarray(A)
    if A.dtype.kind != "f":
        raise ValueError(f"A must be a float array with values in [0, 1], got dtype {A.dtype}")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"the noise seed must be an integer >= 0, got {seed!r}")
    if sigma == 0:
        return A.copy()
    E = np.random.default_rng(seed).standard_normal(A.shape)
    noisy = np.where(A > 0, np.clip(A + sigma * E, 0.0, 1.0), A)
    return noisy.astype(A.dtype, copy=False)
