"""The one way the studies fit an NMF: the job's solver settings, and a progress bar on a terminal."""

from __future__ import annotations

import numpy as np

from nmf_lab import NMFResult, fit_nmf
from nmf_lab.progress import fit_progress


def fit(A: np.ndarray, settings) -> NMFResult:
    """:func:`nmf_lab.fit_nmf` of ``A`` with ``settings.rank``, ``settings.seed`` and ``settings.solver``."""
    solver = settings.solver
    with fit_progress(solver.max_iter, f"{solver.name}, d = {settings.rank}") as callback:
        return fit_nmf(
            A,
            settings.rank,
            solver=solver.name,
            max_iter=solver.max_iter,
            delta=solver.delta,
            seed=settings.seed,
            dtype=solver.dtype,
            tol=solver.tol,
            time_limit=solver.time_limit,
            callback=callback,
        )
