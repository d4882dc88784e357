"""Spec section 2.1: the 6 x 6 movie ratings with d = 2 split into two genres."""

from __future__ import annotations

from experiments.shared import fit_and_log
from nmf_lab.core.errors import InvalidOption
from nmf_lab.data.toy import MOVIE_TITLES, MOVIE_USERS
from nmf_lab.presentation.figures import heatmaps


def check(settings) -> None:
    """The heat maps label the 6 movies and 6 users: the study runs on the movie ratings only."""
    matrix = getattr(settings.data, "matrix", None)
    if matrix != "movies":
        raise InvalidOption("data.matrix", matrix, "movies (this study labels the rows and columns of the ratings)")


def run(settings, run) -> None:
    """Factorize the ratings; draw A, W (movies x components) and H (components x users) as heat maps."""
    A = settings.data.load()
    result = fit_and_log(A, settings, run)
    components = [f"component {k + 1}" for k in range(settings.rank)]
    figure = heatmaps(
        [
            ("A: ratings", A, MOVIE_TITLES, MOVIE_USERS),
            ("W: movies x components", result.W, MOVIE_TITLES, components),
            ("H: components x users", result.H, components, MOVIE_USERS),
        ],
        title=f"Movie ratings A ~ W H with d = {settings.rank} (||A - WH||_F = {result.final_error:.3f})",
    )
    run.log_figure(figure, "figures/factors.png")
    figure = heatmaps(
        [("A", A, MOVIE_TITLES, MOVIE_USERS), ("WH", result.W @ result.H, MOVIE_TITLES, MOVIE_USERS)],
        title="Ratings and their reconstruction",
    )
    run.log_figure(figure, "figures/reconstruction.png")
