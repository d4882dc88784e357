"""nmf-lab: non-negative matrix factorization of images, every experiment tracked in MLflow.

The numerics core (this package's top level) imports NumPy only::

    from nmf_lab import fit_nmf
    result = fit_nmf(A, rank=64)          # A: m x n, one image per column
    result.W, result.H, result.errors     # m x d, d x n, ||A - W_k H_k||_F for k = 0..n_iter
    fit_nmf(A, rank=64, mask=observed)    # observed: m x n bool, True where A is known; fits M * A only
    fit_nmf(A, rank=64, init="nndsvda")   # random (the spec's), nndsvd, nndsvda, nndsvdar
    transform(A_new, W).H                 # coefficients of new images for a fixed W (NNLS)

Solvers are registry entries (:class:`Solver`, see :mod:`nmf_lab.core.solvers`): ``solver_names()`` lists them,
``register_solver`` adds one in-process, and installed packages add theirs through the entry-point group
``nmf_lab.core.solvers``.
"""

from nmf_lab.core.inits import INITS, initial_factors, random_init
from nmf_lab.core.linalg import numerical_rank, truncated_svd, truncation_errors
from nmf_lab.core.nmf import NMFResult, fit_nmf
from nmf_lab.core.solvers import Option, Solver, register_solver, solver_names
from nmf_lab.core.transform import transform

__all__ = [
    "INITS",
    "NMFResult",
    "Option",
    "Solver",
    "fit_nmf",
    "initial_factors",
    "numerical_rank",
    "random_init",
    "register_solver",
    "solver_names",
    "transform",
    "truncated_svd",
    "truncation_errors",
]
__version__ = "0.1.0"
