"""NMF of matrices beyond memory: the blocked problem on Dask, its engine (a Dask cluster) and its store (Zarr).

An optional layer beside the core (it imports dask, distributed and zarr; the core never does)::

    import dask.array as da
    from nmf_lab.distributed import fit_blocked
    A = da.from_zarr("punks.zarr", component="A")      # m x n, chunks = column blocks
    result = fit_blocked(A, 64, solver="hals", max_iter=50)   # the core's loop on a BlockedProblem

:class:`BlockedProblem` is one more problem kind of :mod:`nmf_lab.core.problems`: the solvers of
:mod:`nmf_lab.core.solvers` run on it unchanged, and it computes ``W^T A`` and ``A H^T`` block by block on the
active Dask client (or Dask's default scheduler), with H's half-step inside the same tasks: one pass over A per
iteration. :mod:`.engine` starts or joins the cluster, :mod:`.store` reads and writes Zarr image stores.
"""

from nmf_lab.distributed.problem import BlockedProblem, fit_blocked, transform_blocked

__all__ = ["BlockedProblem", "fit_blocked", "transform_blocked"]
