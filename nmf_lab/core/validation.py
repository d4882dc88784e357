"""The checks at the boundary of the core, written once: integers, reals, dtypes, matrices, masks.

Every public function of the core validates its arguments with these and raises ``ValueError`` with a message
that names the argument, its value and what would be valid; the code behind the boundary assumes valid input.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "check_data",
    "check_dtype",
    "check_int",
    "check_mask",
    "check_matrix",
    "check_non_negative",
    "check_real",
    "is_integer",
    "is_real",
]


def is_integer(value) -> bool:
    """True for an integer of any kind (NumPy's too), False for a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value, *, finite: bool = False) -> bool:
    """True for a real number of any kind (integers included, NumPy's too), False for a bool; with ``finite``,
    only for a finite one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not finite or math.isfinite(value)


def check_int(name: str, value, *, minimum: int, maximum: int | None = None, what: str = "") -> int:
    """``value`` as an int if it is an integer in ``minimum..maximum``, else ``ValueError`` naming ``name``
    (and ``what`` it is, e.g. "the noise seed")."""
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        if maximum is not None:
            valid = f"an integer in {minimum}..{maximum}"
        else:
            valid = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}{f', {what},' if what else ''} must be {valid}, got {value!r}")
    return int(value)


def check_real(name: str, value, valid, valid_text: str) -> float:
    """``value`` as a float if it is a real number (not a bool) for which ``valid(value)`` holds, else
    ``ValueError``: "``name`` must be ``valid_text``, got ``value``"."""
    if not is_real(value) or not valid(float(value)):
        raise ValueError(f"{name} must be {valid_text}, got {value!r}")
    return float(value)


def check_dtype(dtype, default: np.dtype) -> np.dtype:
    """The dtype of a computation: ``default`` for None, else float32 or float64 (any spelling NumPy takes)."""
    if dtype is None:
        return np.dtype(default)
    try:
        resolved = np.dtype(dtype)
    except (TypeError, ValueError):
        resolved = None  # not a dtype at all (comparing None with a dtype would mean float64)
    if resolved is None or resolved.type not in (np.float32, np.float64):
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
    return resolved


def check_matrix(A, name: str = "A") -> np.ndarray:
    """``A`` as an array, if it is a non-empty 2-D array of real numbers (its values are not looked at)."""
    A = np.asarray(A)
    if A.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {A.dtype}")
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix (m x n), got an array of shape {A.shape}")
    if A.size == 0:
        raise ValueError(f"{name} is empty (shape {A.shape}): it needs at least one row and one column")
    return A


def check_non_negative(name: str, X: np.ndarray, *, where: str = "") -> None:
    """``ValueError`` if ``X`` has a NaN, infinite or negative entry, counting them (``where``: e.g. "inside
    the mask")."""
    finite = np.isfinite(X)
    at = f" {where}" if where else ""
    if not finite.all():
        n_nan = int(np.isnan(X).sum())
        n_inf = X.size - int(finite.sum()) - n_nan
        raise ValueError(f"{name} has {n_nan} NaN and {n_inf} infinite entries{at}; all entries{at} must be finite")
    negative = X < 0
    if negative.any():
        raise ValueError(
            f"{name} has {int(negative.sum())} negative entries{at} (minimum {X.min():.6g}); "
            f"NMF needs every entry{at} >= 0"
        )


def check_mask(mask, shape: tuple[int, int], *, every_row_and_column: bool = True) -> np.ndarray | None:
    """Return ``mask`` (True where ``A`` is observed) as it is, or raise ``ValueError``.

    ``None`` (every entry observed) stays ``None``. Otherwise ``mask`` must be a NumPy array of dtype bool
    (an int or float array is refused: 0/1 weights are not a mask) of ``shape``, the shape of ``A``, and with
    ``every_row_and_column`` hold at least one True in every row and every column (a row or column with no
    observed entry leaves its row of W or column of H undetermined). It is never copied or modified.
    """
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"mask must be None or a NumPy array of dtype bool, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise ValueError(
            f"mask must be a NumPy array of dtype bool (True where A is observed), got dtype {mask.dtype}; "
            f"convert 0/1 values with mask.astype(bool)"
        )
    shape = tuple(shape)
    if mask.shape != shape:
        raise ValueError(f"mask must have the shape of A, {shape}, got {mask.shape}")
    if every_row_and_column:
        for axis, what in ((1, "row"), (0, "column")):
            empty = np.flatnonzero(~mask.any(axis=axis))
            if empty.size:
                first = ", ".join(map(str, empty[:5])) + (", ..." if empty.size > 5 else "")
                raise ValueError(
                    f"mask leaves {empty.size} {what}{'s' if empty.size > 1 else ''} of A with no observed entry "
                    f"({what} indices {first}); every row and every column needs at least one True"
                )
    return mask


def check_data(A, mask=None, *, allow_zero: bool = False) -> np.ndarray:
    """Return ``A`` as a float array fit for NMF (float32 stays float32, anything else becomes float64), or
    raise ``ValueError`` saying what is wrong with it.

    With a ``mask`` (checked by :func:`check_mask`) only the observed entries are checked (finite, >= 0, not
    all zero unless ``allow_zero``); the entries outside the mask may be anything, NaN included, and are set
    to 0 in the returned array, a copy (the caller's array is never modified).
    """
    A = check_matrix(A)
    mask = check_mask(mask, A.shape)
    dtype = np.float32 if A.dtype == np.float32 else np.float64
    if mask is None:
        A = A.astype(dtype, copy=False)
        check_non_negative("A", A)
        if not allow_zero and not np.any(A):
            raise ValueError("A is all zeros: its only factorization is W H = 0, there is nothing to fit")
        return A
    A = np.where(mask, A, 0).astype(dtype, copy=False)  # always a new array
    check_non_negative("A", A, where="inside the mask")
    if not allow_zero and not np.any(A):
        raise ValueError("A is all zeros on the observed entries (the mask): there is nothing to fit")
    return A
