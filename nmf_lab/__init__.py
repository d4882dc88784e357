"""nmf-lab: non-negative matrix factorization of images, every experiment tracked in MLflow.

The numerics core (this package's top level) imports NumPy only::

    from nmf_lab import fit_nmf
    result = fit_nmf(A, rank=64)          # A: m x n, one image per column
    result.W, result.H, result.errors     # m x d, d x n, ||A - W_k H_k||_F for k = 0..n_iter
"""

from nmf_lab.linalg import numerical_rank, truncated_svd, truncation_errors
from nmf_lab.nmf import NMFResult, fit_nmf, random_init
from nmf_lab.solvers import SOLVERS

__all__ = [
    "NMFResult",
    "SOLVERS",
    "fit_nmf",
    "numerical_rank",
    "random_init",
    "truncated_svd",
    "truncation_errors",
]
__version__ = "0.1.0"
