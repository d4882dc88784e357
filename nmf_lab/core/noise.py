"""The noise model of spec section 6.1: Gaussian noise on the non-zero colour values, clipped to [0, 1]."""

from __future__ import annotations

import math

import numpy as np

from nmf_lab.core.validation import check_int, check_real


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
    check_real("sigma", sigma, lambda value: math.isfinite(value) and value >= 0, "a finite number >= 0")
    seed = check_int("the noise seed", seed, minimum=0)
    if sigma == 0:
        return A.copy()
    E = np.random.default_rng(seed).standard_normal(A.shape)
    noisy = np.where(A > 0, np.clip(A + sigma * E, 0.0, 1.0), A)
    return noisy.astype(A.dtype, copy=False)
