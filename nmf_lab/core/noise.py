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


def split_noise(A_noisy: np.ndarray, sigma: float, tau: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise splitting (data thinning; "recorrupted-to-recorrupted", Pang et al. 2021): two noisy copies
    of the clean image whose noises are independent, from one noisy copy and its noise level ``sigma``.

    With ``Z = sigma * default_rng(seed).standard_normal``, ``A_in = clip(A_noisy + tau Z, 0, 1)`` and
    ``A_target = A_noisy - Z / tau`` where ``A_noisy > 0`` (zero entries got no noise and stay 0). For
    ``A_noisy = A + E``, ``E ~ N(0, sigma^2)``, the noises ``E + tau Z`` and ``E - Z / tau`` are uncorrelated
    Gaussians, hence independent: a denoiser f run on ``A_in`` (noise ``sigma sqrt(1 + tau^2)``) has
    ``E ||f(A_in) - A_target||^2 = E ||f(A_in) - A||^2 + N sigma^2 (1 + 1 / tau^2)`` (N entries), so what
    minimises the error against ``A_target`` minimises the error against the clean image, without it.
    The spec's clipping to [0, 1] makes this approximate near 0 and 1. Returns ``(A_in, A_target)``, float64.
    """
    check_real("sigma", sigma, lambda value: math.isfinite(value) and value > 0, "a finite number > 0")
    check_real("tau", tau, lambda value: math.isfinite(value) and value > 0, "a finite number > 0")
    seed = check_int("the splitting seed", seed, minimum=0)
    noisy = np.asarray(A_noisy, dtype=np.float64)
    Z = sigma * np.random.default_rng(seed).standard_normal(noisy.shape)
    nonzero = noisy > 0
    return np.where(nonzero, np.clip(noisy + tau * Z, 0.0, 1.0), 0.0), np.where(nonzero, noisy - Z / tau, 0.0)
