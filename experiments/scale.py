"""Scale: NMF of a matrix that does not fit in the workers' memory, blocked on Dask with A in a Zarr store,
against the in-memory NumPy fit of the same matrix, the time of reading A once, and scikit-learn's MiniBatchNMF.

All in one run, with the job's engine (``engine=dask``: a LocalCluster whose workers' memory limit is below
the size of A) and the same initial guess (``seed``):

- seconds per iteration of the blocked fit (:func:`nmf_lab.distributed.fit_blocked`, the core's solvers on
  column blocks) and of the in-memory fit (:func:`nmf_lab.fit_nmf`) of the same matrix in this process
  (``dask_iter_over_numpy``; the medians of ``scale.iterations`` iterations after the first);
- the read floor: the seconds of one pass that only reads (and decompresses) every block of A from the store
  on the same workers (``dask_iter_over_read_floor``; an iteration of the blocked fit is one pass over A, H's
  half-step inside each block's task);
- the peak resident memory of any worker (``peak_worker_memory_gb``);
- time to a target error against MiniBatchNMF (its defaults, in memory, on A^T): the target is the error of
  MiniBatchNMF's model (``||A^T - transform(A^T) H||``, its fit timed, not this evaluation); the blocked fit
  runs until it reaches it (``time_to_target_over_minibatch``);
- the error curves, and the basis images of the blocked fit (``figures/basis_images.png``).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from nmf_lab import fit_nmf
from nmf_lab.core.errors import InvalidOption
from nmf_lab.distributed import fit_blocked
from nmf_lab.distributed.problem import BlockedProblem, column_blocks, read_pass
from nmf_lab.harness.progress import fit_progress
from nmf_lab.presentation.figures import basis_grid, error_against_time

log = logging.getLogger(__name__)


@dataclass
class ScaleSettings:
    """``scale``: what the scale benchmark measures."""

    solver: str = "hals"  # the update rule of both fits
    iterations: int = 5  # timed iterations of the blocked and the in-memory fit
    numpy: bool = True  # also fit A in memory in this process (it must fit in this machine's memory)
    minibatch: bool = True  # also run scikit-learn's MiniBatchNMF (defaults) and race to its final error
    target_max_iter: int = 200  # iterations the blocked fit may take to reach MiniBatchNMF's error
    dtype: str = "float32"

    def check(self) -> None:
        if self.iterations < 2:
            raise InvalidOption("iterations", self.iterations, "must be an integer >= 2 (the first is not timed)")
        if self.target_max_iter < 1:
            raise InvalidOption("target_max_iter", self.target_max_iter, "must be an integer >= 1")


SETTINGS = {"scale": ScaleSettings}

HEADLINE = (
    "dask_iter_over_numpy",
    "dask_iter_over_read_floor",
    "peak_worker_memory_gb",
    "time_to_target_over_minibatch",
)


def seconds_per_iteration(times: np.ndarray) -> float:
    """The median seconds of an iteration after the first (the first pays for setups and warm-up)."""
    steps = np.diff(np.asarray(times))
    return float(statistics.median(steps[1:] if steps.size > 1 else steps))


def run(settings, run) -> None:
    scale = settings.scale
    data = settings.data.load()
    A_blocks = column_blocks(data.matrix())
    m, n = A_blocks.shape
    size_gb = m * n * np.dtype(scale.dtype).itemsize / 1e9
    d = settings.rank
    run.log_params({"scale.m": m, "scale.n": n, "scale.blocks": len(A_blocks.chunks[1])})
    measured = {"matrix_gb": size_gb}
    log.info("A is %d x %d (%.2f GB in %s), %d column blocks", m, n, size_gb, scale.dtype, len(A_blocks.chunks[1]))

    read_floor = statistics.median(read_pass(A_blocks) for _ in range(2))
    with fit_progress(scale.iterations, f"blocked {scale.solver}, d = {d}") as progress:
        blocked = fit_blocked(A_blocks, d, solver=scale.solver, max_iter=scale.iterations, seed=settings.seed,
                              dtype=scale.dtype, callback=progress)  # fmt: skip
    dask_iter = seconds_per_iteration(blocked.times)
    measured |= {"read_floor_seconds": read_floor, "dask_seconds_per_iter": dask_iter,
                 "dask_iter_over_read_floor": dask_iter / read_floor}  # fmt: skip
    peak = _peak_worker_memory()
    if peak is not None:
        measured["peak_worker_memory_gb"] = peak / 1e9
    run.log_curve("dask_error", blocked.errors)
    run.log_metrics(measured)  # what is measured so far stays logged if a later phase fails
    curves = {"dask (blocked)": (blocked.times, blocked.errors)}

    A = None
    if scale.numpy or scale.minibatch:
        A = np.asarray(A_blocks.compute(scheduler="threads"), dtype=scale.dtype)  # read here, not on the workers
        squares = (float(np.einsum("ij,ij->", B, B, dtype=np.float64)) for B in np.array_split(A, 64, axis=1))
        norm = math.sqrt(math.fsum(squares))
    else:
        norm = math.sqrt(BlockedProblem(A_blocks, dtype=scale.dtype).norm2)  # one more pass
    curves = {label: (times, errors / norm) for label, (times, errors) in curves.items()}
    if scale.numpy:
        in_memory = fit_nmf(A, d, solver=scale.solver, max_iter=scale.iterations, seed=settings.seed, dtype=scale.dtype)
        numpy_iter = seconds_per_iteration(in_memory.times)
        difference = float(np.max(np.abs(blocked.errors - in_memory.errors) / in_memory.errors))
        run.log_curve("numpy_error", in_memory.errors)
        measured |= {"numpy_seconds_per_iter": numpy_iter, "dask_iter_over_numpy": dask_iter / numpy_iter,
                     "curve_max_relative_difference": difference}  # fmt: skip
        curves["numpy (in memory)"] = (in_memory.times, in_memory.errors / norm)
        del in_memory
    if scale.minibatch:
        from sklearn.decomposition import MiniBatchNMF

        start = time.perf_counter()
        model = MiniBatchNMF(n_components=d, random_state=settings.seed)
        model.fit(A.T)
        minibatch_seconds = time.perf_counter() - start
        # its model's error, ||A^T - W H|| with W = transform(A^T) (not timed): with its defaults sklearn's
        # reconstruction_err_ is from its last mini-batch statistics and was above this by 1.5x (measured)
        W_sk = model.transform(A.T)
        target = _frobenius_residual(A, W_sk, model.components_)
        measured |= {"minibatch_epochs": float(model.n_iter_), "minibatch_steps": float(model.n_steps_),
                     "minibatch_reported_error": float(model.reconstruction_err_)}  # fmt: skip
        del model, W_sk
        A = None
        with fit_progress(scale.target_max_iter, "blocked, to MiniBatchNMF's error") as progress:

            def reached_target(k: int, error: float) -> bool:
                return progress(k, error) or error <= target

            race = fit_blocked(A_blocks, d, solver=scale.solver, max_iter=scale.target_max_iter, seed=settings.seed,
                               dtype=scale.dtype, callback=reached_target)  # fmt: skip
        reached = race.errors[-1] <= target
        dask_seconds = float(race.times[-1]) if reached else float("nan")
        measured |= {"minibatch_error": target, "minibatch_seconds": minibatch_seconds,
                     "dask_time_to_target": dask_seconds, "dask_iter_to_target": race.n_iter,
                     "time_to_target_over_minibatch": dask_seconds / minibatch_seconds}  # fmt: skip
        curves["dask, race to MiniBatchNMF's error"] = (race.times, race.errors / norm)
        blocked = race if race.n_iter > blocked.n_iter else blocked
    A = None
    run.log_metrics(measured)
    target_line = measured.get("minibatch_error")
    run.log_figure(error_against_time(curves, title=f"{m} x {n}, d = {d}: error against time",
                                      target=None if target_line is None else target_line / norm),
                   "figures/error_against_time.png")  # fmt: skip
    h, w = data.shape
    run.log_figure(basis_grid(blocked.W, (h, w), title=f"{d} basis images of {n} images (blocked fit)"),
                   "figures/basis_images.png")  # fmt: skip
    run.log_array(blocked.W, "arrays/W.npy")
    run.log_text(_table(measured, settings, m, n), "tables/scale.md")


def _frobenius_residual(A: np.ndarray, W_sk: np.ndarray, H_sk: np.ndarray) -> float:
    """``||A^T - W_sk H_sk||_F`` in column blocks of A (float64 sums), without an n x m temporary."""
    total = 0.0
    for cols in np.array_split(np.arange(A.shape[1]), max(1, A.shape[1] // 20_000)):
        residual = A[:, cols].T - W_sk[cols] @ H_sk
        total += float(np.einsum("ij,ij->", residual, residual, dtype=np.float64))
    return math.sqrt(total)


def _peak_worker_memory() -> float | None:
    from nmf_lab.distributed.engine import worker_peak_memory

    try:
        return worker_peak_memory()
    except ValueError:  # no Dask client: the default scheduler, in this process
        return None


def _table(measured: dict, settings, m: int, n: int) -> str:
    rows = [f"| {key} | {value:.4g} |" for key, value in sorted(measured.items())]
    return f"# Scale: {m} x {n}, d = {settings.rank}\n\n| metric | value |\n|---|---|\n" + "\n".join(rows) + "\n"
