"""The small matrices of the spec: A1..A4 of Task 1 and the 6 x 6 movie ratings of section 2.1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmf_lab.core.errors import InvalidOption

TOY_MATRICES: dict[str, np.ndarray] = {
    "A1": np.array([[1, 0], [0, 1]], dtype=np.float64),
    "A2": np.array([[1, 2], [1, 1], [1, 2]], dtype=np.float64),
    "A3": np.array([[2, 1, 1], [2, 1, 1], [1, 1, 2]], dtype=np.float64),
    "A4": np.array([[2, 1, 0], [1, 2, 3], [0, 3, 3]], dtype=np.float64),
}
"""Task 1's matrices by name. Treat them as read-only: :func:`toy_matrix` hands out copies."""

MOVIE_TITLES = (
    "Avengers: Infinity War",
    "LotR: Fellowship of the Ring",
    "Avengers: Endgame",
    "LotR: Two Towers",
    "Spiderman: Homecoming",
    "LotR: Return of the King",
)
"""The rows of :data:`MOVIE_RATINGS` (movies)."""

MOVIE_USERS = tuple(f"User {i}" for i in range(1, 7))
"""The columns of :data:`MOVIE_RATINGS` (raters)."""

MOVIE_RATINGS = np.array(
    [
        [5, 1, 3, 1, 3, 2],
        [2, 4, 1, 4, 1, 4],
        [4, 1, 5, 1, 4, 2],
        [1, 4, 2, 5, 2, 4],
        [3, 1, 5, 3, 3, 2],
        [2, 4, 2, 4, 2, 4],
    ],
    dtype=np.float64,
)
"""Ratings 1..5 of 6 movies (rows) by 6 users (columns), spec section 2.1."""


def toy_matrix(name: str) -> np.ndarray:
    """A copy of the toy matrix ``name`` ("A1".."A4", or "movies" for the ratings)."""
    if name == "movies":
        return MOVIE_RATINGS.copy()
    if name not in TOY_MATRICES:
        known = ", ".join([*TOY_MATRICES, "movies"])
        raise ValueError(f"unknown toy matrix {name!r}; known: {known}")
    return TOY_MATRICES[name].copy()


@dataclass
class ToyMatrix:
    """Loader of ``data=toy`` and ``data=movies``: the matrix ``matrix`` (A1..A4, or ``movies``)."""

    matrix: str = "A1"

    def __post_init__(self) -> None:
        names = [*TOY_MATRICES, "movies"]
        if self.matrix not in names:
            raise InvalidOption("matrix", self.matrix, f"one of {', '.join(names)}")

    def load(self) -> np.ndarray:
        """A float64 copy of the matrix."""
        return toy_matrix(self.matrix)
