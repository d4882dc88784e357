"""Choosing the number of components d from the data alone: cross-validation over held-out entries.

Each of K folds hides a random part of the entries that may be held out (``candidates``, e.g. the colour
channels of the opaque pixels), fits NMF on the rest with a mask (:func:`nmf_lab.fit_nmf` with ``mask=``,
which never reads the hidden entries) for every d of a grid, and measures how well ``W H`` predicts the
hidden entries::

    e_k(d) = sqrt( mean_{(i, j) held out in fold k} (A_ij - clip(W H)_ij)^2 )        (RMSE)

The folds are disjoint (fold k holds out its own ``holdout`` fraction of the candidates). A fit that has
seen fewer entries predicts the hidden ones with an error that first falls with d (the signal is described)
and then rises (the extra components fit the noise of the entries they saw). The mean over folds ``m(d)`` and
its standard error ``s(d) = std_k e_k(d) / sqrt(K)`` choose d by one of :data:`RULES`:

- ``"min"``: the d with the lowest mean held-out error;
- ``"one_se"``: the one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani & Friedman, *The
  Elements of Statistical Learning*, 7.10): the smallest d whose mean is at most ``m(d*) + s(d*)``, d* the
  minimiser: the simplest model that the folds cannot tell apart from the best;
- ``"one_se_largest"``: the largest d whose mean is at most ``m(d*) + s(d*)``: the richest model the folds
  cannot tell apart from the best, for denoising (see below).

Predictions are clipped to ``value_range`` (the range the data are known to lie in, [0, 1] for images)
before the error is measured. A masked fit leaves a coefficient nearly undetermined when its component's
support in a column is almost all held out; the fit on the observed entries is still exact, but the
prediction there can be huge (measured on 500 noisy punks, d = 128, masked HALS: 0.05 % of the held-out
predictions above 1.5 and an unclipped RMSE of 1.6 to 5.5, against 0.104 clipped). Clipping is what any
reconstruction of such data does anyway (it is the post-processing the noise model allows).

What the held-out error measures is *prediction*: the error at entries the fit has not seen. Denoising fits
every entry, and a fit that has seen an entry moves towards it by its leverage ``h = dX_ij / dA_ij``; a
component helps denoising more than it helps prediction, and the held-out error favours a smaller d than the
clean error does. Measured on 500 punks with sigma = 0.1 (masked HALS, 100 iterations), the leverage of the
held-out entries, estimated from the fold fits and the fit of all entries without the clean images, grows
from 0.34 at d = 96 to 0.58 at d = 160; the mean held-out error was lowest at d = 96 while the clean error
was lowest at d = 128 (0.69 dB better), with d = 112 within one standard error of the minimum (0.18 dB
from the best). Hence ``"one_se_largest"`` for choosing d to denoise, ``"min"`` for predicting unseen entries
(completion) and ``"one_se"`` for the most parsimonious description.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nmf_lab.core.nmf import NMFResult, fit_nmf
from nmf_lab.core.transform import transform
from nmf_lab.core.validation import check_int, is_integer, is_real

__all__ = [
    "RULES",
    "BudgetSelection",
    "RankSelection",
    "RowHoldout",
    "cross_validate_rank",
    "cross_validate_rank_and_budget",
    "heldout_error",
    "heldout_folds",
    "select_rank",
    "validate_rank_and_budget",
]

RULES = ("min", "one_se", "one_se_largest")
"""The rules that choose d from the mean held-out errors (see the module's docstring)."""


@dataclass(frozen=True)
class RankSelection:
    """What :func:`cross_validate_rank` measured and chose.

    Attributes:
        ranks: int64 (g,), the grid of d, increasing.
        fold_errors: float64 (K, g), the held-out RMSE of fold k at ``ranks[g]``.
        mean: float64 (g,), the mean over the folds.
        standard_error: float64 (g,), the standard error of the mean, ``std(ddof=1) / sqrt(K)``.
        rule: the rule that chose ``rank`` (one of :data:`RULES`).
        rank: the chosen d.
        best_rank: the d with the lowest mean held-out error (``rank`` under the rule ``"min"``).
        holdout: the fraction of the candidate entries each fold held out.
        heldout_entries: how many entries each fold held out.
    """

    ranks: np.ndarray
    fold_errors: np.ndarray
    mean: np.ndarray
    standard_error: np.ndarray
    rule: str
    rank: int
    best_rank: int
    holdout: float
    heldout_entries: int

    @property
    def folds(self) -> int:
        """K, the number of folds."""
        return self.fold_errors.shape[0]

    def chosen_by(self, rule: str) -> int:
        """The d another rule would have chosen from the same errors."""
        return select_rank(self.ranks, self.mean, self.standard_error, rule)


def cross_validate_rank(
    A,
    ranks: Sequence[int],
    *,
    folds: int = 3,
    holdout: float = 0.1,
    candidates: np.ndarray | None = None,
    rule: str = "min",
    fold_seed: int = 0,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    on_fit: Callable[[int, int, NMFResult, float], None] | None = None,
    **fit_options,
) -> RankSelection:
    """Choose d from ``A`` (m x n, e.g. the noisy images) alone by K-fold cross-validation over its entries.

    Args:
        A: the non-negative m x n matrix (validated by :func:`nmf_lab.fit_nmf`).
        ranks: the grid of d, distinct integers >= 1 (any order; the result is sorted).
        folds: K >= 2, the number of folds.
        holdout: the fraction of the candidate entries each fold hides, in (0, 1] with ``folds * holdout
            <= 1`` (the folds are disjoint; ``holdout = 1 / folds`` is classical K-fold).
        candidates: bool m x n, True where an entry may be held out (None: every entry). Entries outside it
            are always observed, e.g. the colours of pixels known to be transparent: their value is known
            and not scored.
        rule: how d is chosen from the mean errors, one of :data:`RULES`.
        fold_seed: the seed of the folds, ``np.random.default_rng(fold_seed).permutation`` of the
            candidates (the NMF's own seed is ``seed`` in ``fit_options``).
        value_range: (low, high), predictions are clipped to it before the error is measured; None: not
            clipped.
        on_fit: optional ``on_fit(fold, d, result, error)`` after each masked fit (progress, logging).
        **fit_options: passed to every :func:`nmf_lab.fit_nmf`: ``solver`` (it must support masks),
            ``max_iter``, ``seed``, ``init``, ``dtype``, ``tol``, ``time_limit``, the solver's options.

    Every fit of fold k has the mask "observed = not held out in fold k": it never reads the held-out
    entries (changing them changes no fit). Returns a :class:`RankSelection`.

    Raises:
        ValueError: naming the bad argument and what is valid, before any fit; also when a fold would hide
            every entry of a row or column of ``A`` (the fit needs one observed entry in each).
    """
    A = np.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D matrix (m x n), got shape {A.shape}")
    grid = _check_ranks(ranks)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if value_range is not None:
        low, high = value_range
        if not (is_real(low, finite=True) and is_real(high, finite=True) and low < high):
            raise ValueError(f"value_range must be None or (low, high) with low < high, got {value_range!r}")
    heldout = heldout_folds(A.shape, folds, holdout, candidates=candidates, seed=fold_seed)
    errors = np.empty((folds, grid.size), dtype=np.float64)
    for k, hidden in enumerate(heldout):
        observed = ~hidden
        A_seen = np.where(observed, A, 0)  # the fit never reads the hidden entries; zeros make that plain
        for g, d in enumerate(grid):
            result = fit_nmf(A_seen, int(d), mask=observed, **fit_options)
            errors[k, g] = heldout_error(A, result.W @ result.H, hidden, value_range)
            if on_fit is not None:
                on_fit(k, int(d), result, float(errors[k, g]))
    mean = errors.mean(axis=0)
    standard_error = errors.std(axis=0, ddof=1) / math.sqrt(folds)
    return RankSelection(
        ranks=grid,
        fold_errors=errors,
        mean=mean,
        standard_error=standard_error,
        rule=rule,
        rank=select_rank(grid, mean, standard_error, rule),
        best_rank=select_rank(grid, mean, standard_error, "min"),
        holdout=float(holdout),
        heldout_entries=int(heldout[0].sum()),
    )


def heldout_folds(
    shape: tuple[int, int], folds: int, holdout: float, *, candidates: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """The K disjoint held-out sets, bool (K, m, n): fold k hides ``round(holdout * c)`` of the c candidate
    entries, the k-th slice of ``np.random.default_rng(seed).permutation`` of their flat indices.

    Raises ValueError for invalid arguments, or when a fold hides every entry of a row or a column.
    """
    m, n = shape
    if not is_integer(folds) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2 (the standard error needs two), got {folds!r}")
    if not is_real(holdout, finite=True) or not 0 < holdout <= 1 or folds * holdout > 1 + 1e-12:
        raise ValueError(
            f"holdout must be a fraction in (0, 1] with folds * holdout <= 1 (disjoint folds), got holdout="
            f"{holdout!r} with folds={folds}"
        )
    seed = check_int("the fold seed", seed, minimum=0)
    if candidates is None:
        candidates = np.ones((m, n), dtype=bool)
    elif not isinstance(candidates, np.ndarray) or candidates.dtype != np.bool_ or candidates.shape != (m, n):
        what = f"shape {candidates.shape}, dtype {candidates.dtype}" if isinstance(candidates, np.ndarray) else ""
        raise ValueError(f"candidates must be None or a bool array of A's shape {(m, n)}, got {what or candidates!r}")
    pool = np.flatnonzero(candidates)
    size = round(holdout * pool.size)
    if size < 1:
        raise ValueError(f"holdout={holdout!r} of {pool.size} candidate entries holds out none; raise holdout")
    order = np.random.default_rng(seed).permutation(pool)
    heldout = np.zeros((folds, m * n), dtype=bool)
    for k in range(folds):
        heldout[k, order[k * size : (k + 1) * size]] = True
    heldout = heldout.reshape(folds, m, n)
    for k, hidden in enumerate(heldout):
        empty_rows, empty_cols = np.flatnonzero(hidden.all(axis=1)), np.flatnonzero(hidden.all(axis=0))
        if empty_rows.size or empty_cols.size:
            raise ValueError(
                f"fold {k} holds out every entry of rows {empty_rows[:5].tolist()} / columns "
                f"{empty_cols[:5].tolist()}: a masked fit needs an observed entry in each; lower holdout={holdout!r}"
            )
    return heldout


def heldout_error(A: np.ndarray, X: np.ndarray, heldout: np.ndarray, value_range=(0.0, 1.0)) -> float:
    """The RMSE of the prediction ``X`` (clipped to ``value_range``; None: as it is) on the ``heldout``
    entries of ``A``: ``sqrt(mean((A - clip(X))^2))`` over them."""
    predicted = X[heldout]
    if value_range is not None:
        predicted = np.clip(predicted, *value_range)
    residual = np.asarray(A, dtype=np.float64)[heldout] - predicted
    return float(np.sqrt(np.mean(residual * residual)))


def select_rank(ranks, mean, standard_error, rule: str = "min") -> int:
    """The d a rule (:data:`RULES`) chooses from the mean held-out errors over a grid of d and their
    standard errors (three arrays of length g, ``ranks`` increasing)."""
    ranks, mean, standard_error = np.asarray(ranks), np.asarray(mean), np.asarray(standard_error)
    best = int(np.argmin(mean))
    if rule == "min":
        return int(ranks[best])
    if rule in ("one_se", "one_se_largest"):
        within = np.flatnonzero(mean <= mean[best] + standard_error[best])
        return int(ranks[within[0] if rule == "one_se" else within[-1]])
    raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")


def _check_ranks(ranks) -> np.ndarray:
    values = list(ranks) if not isinstance(ranks, (str, bytes)) and hasattr(ranks, "__iter__") else None
    ok = values is not None and len(values) > 0
    ok = ok and all(is_integer(d) and d >= 1 for d in values)
    if not ok or len(set(int(d) for d in values)) != len(values):
        raise ValueError(f"ranks must be a non-empty list of distinct integers >= 1 (the grid of d), got {ranks!r}")
    return np.array(sorted(int(d) for d in values), dtype=np.int64)


@dataclass(frozen=True)
class BudgetSelection:
    """What :func:`cross_validate_rank_and_budget` measured and chose: the held-out error of every d of a grid
    against the iterations, from the same folds.

    Attributes:
        ranks: int64 (g,), the grid of d, increasing.
        iterations: int64 (c,), the checkpoints (iteration counts) at which the held-out error was measured.
        fold_errors: float64 (K, g, c), the held-out RMSE of fold k at ``ranks[g]`` after ``iterations[c]``
            iterations; NaN after the curve of that d stopped (``patience``).
        mean: float64 (g, c), the mean over the folds (NaN where not measured).
        standard_error: float64 (g, c), ``std(ddof=1) / sqrt(K)``.
        rank: the chosen d (by ``rule`` from the lowest mean of each d, :attr:`by_rank`).
        budget: the chosen iteration budget: the checkpoint with the lowest mean held-out error at ``rank``.
        rule: the rule that chose ``rank`` (one of :data:`RULES`).
        holdout: the fraction of the candidate entries each fold held out.
        heldout_entries: how many entries each fold held out.
    """

    ranks: np.ndarray
    iterations: np.ndarray
    fold_errors: np.ndarray
    mean: np.ndarray
    standard_error: np.ndarray
    rank: int
    budget: int
    rule: str
    holdout: float
    heldout_entries: int

    @property
    def folds(self) -> int:
        return self.fold_errors.shape[0]

    def best_checkpoints(self) -> np.ndarray:
        """int64 (g,): for each d, the index of its checkpoint with the lowest mean held-out error."""
        return np.array([int(np.nanargmin(row)) for row in self.mean], dtype=np.int64)

    def by_rank(self) -> RankSelection:
        """The choice of d alone, as :func:`cross_validate_rank` reports it: each d at its own best budget
        (fold errors, mean and standard error at that checkpoint)."""
        best = self.best_checkpoints()
        at = np.arange(self.ranks.size)
        fold_errors = self.fold_errors[:, at, best]
        mean, standard_error = self.mean[at, best], self.standard_error[at, best]
        return RankSelection(
            ranks=self.ranks,
            fold_errors=fold_errors,
            mean=mean,
            standard_error=standard_error,
            rule=self.rule,
            rank=self.rank,
            best_rank=select_rank(self.ranks, mean, standard_error, "min"),
            holdout=self.holdout,
            heldout_entries=self.heldout_entries,
        )

    def curve(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, mean held-out error) of ``rank``, the checkpoints it reached."""
        row = self.mean[int(np.flatnonzero(self.ranks == rank)[0])]
        reached = ~np.isnan(row)
        return self.iterations[reached], row[reached]


def cross_validate_rank_and_budget(
    A,
    ranks: Sequence[int],
    *,
    every: int,
    max_iter: int,
    patience: int,
    folds: int = 2,
    holdout: float = 0.1,
    candidates: np.ndarray | None = None,
    rule: str = "min",
    fold_seed: int = 0,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    on_checkpoint: Callable[[int, int, float], None] | None = None,
    **fit_options,
) -> BudgetSelection:
    """Choose d and the iteration budget from ``A`` alone, by K-fold cross-validation over its entries.

    The folds are those of :func:`cross_validate_rank` (:func:`heldout_folds`). For every d of ``ranks``,
    each fold's masked fit runs ``every`` iterations at a time (a fit continued from where the last stopped:
    ``fit_nmf(..., init=(W, H), max_iter=every)``), and after each stretch the held-out RMSE is measured: a
    curve of held-out error against iterations per fold. A curve stops at ``max_iter`` iterations, or once
    its mean over the folds has not reached a new minimum for ``patience`` iterations (the held-out error of
    an NMF fit first falls, while the fit describes the signal, then rises, once it fits the noise of the
    entries it sees). Then d is chosen by ``rule`` from each d's lowest mean (and its standard error there),
    and the budget is the checkpoint with the lowest mean at that d.

    ``every``, ``max_iter``, ``patience``: integers >= 1 (``max_iter`` a multiple of ``every`` is measured up to
    itself; otherwise up to the last multiple below it). ``on_checkpoint(d, iterations, mean_error)``: called
    after each checkpoint (progress). The other arguments are :func:`cross_validate_rank`'s, and
    ``fit_options`` go to every :func:`nmf_lab.fit_nmf` (``max_iter`` and ``init`` excepted: ``init`` starts each
    fit, then the fit goes on from its own factors).

    A solver restarts on each call (a HALS solver rescales its starting point optimally), so a curve's point at
    k iterations may differ slightly from one fit of k iterations, unless the solver's iterations are
    restarts anyway (an imputation (EM) variant).
    """
    A = np.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D matrix (m x n), got shape {A.shape}")
    grid = _check_ranks(ranks)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    for key, value in (("every", every), ("max_iter", max_iter), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if max_iter < every:
        raise ValueError(f"max_iter must be at least every = {every}, got {max_iter!r}")
    fit_options = dict(fit_options)
    fit_options.pop("max_iter", None)
    init = fit_options.pop("init", "random")
    heldout = heldout_folds(A.shape, folds, holdout, candidates=candidates, seed=fold_seed)
    checkpoints = np.arange(every, max_iter + 1, every, dtype=np.int64)
    errors = np.full((folds, grid.size, checkpoints.size), np.nan)
    dtype = fit_options.get("dtype")
    # The fits never read the hidden entries (zeros make that plain); converted once to the fits' dtype.
    seen = [np.where(hidden, 0, A).astype(dtype or A.dtype, copy=False) for hidden in heldout]
    observed = [~hidden for hidden in heldout]
    for g, d in enumerate(grid):
        factors = [init] * folds
        best, best_at = math.inf, 0
        for c, iterations in enumerate(checkpoints.tolist()):
            for k, hidden in enumerate(heldout):
                result = fit_nmf(seen[k], int(d), mask=observed[k], init=factors[k], max_iter=every, **fit_options)
                factors[k] = (result.W, result.H)
                errors[k, g, c] = heldout_error(A, result.W @ result.H, hidden, value_range)
            mean = float(errors[:, g, c].mean())
            if on_checkpoint is not None:
                on_checkpoint(int(d), iterations, mean)
            if mean < best:
                best, best_at = mean, iterations
            elif iterations - best_at >= patience:
                break
    mean = errors.mean(axis=0)
    standard_error = errors.std(axis=0, ddof=1) / math.sqrt(folds)
    best = np.array([int(np.nanargmin(row)) for row in mean])
    at = np.arange(grid.size)
    rank = select_rank(grid, mean[at, best], standard_error[at, best], rule)
    g = int(np.flatnonzero(grid == rank)[0])
    return BudgetSelection(
        ranks=grid,
        iterations=checkpoints,
        fold_errors=errors,
        mean=mean,
        standard_error=standard_error,
        rank=rank,
        budget=int(checkpoints[best[g]]),
        rule=rule,
        holdout=float(holdout),
        heldout_entries=int(heldout[0].sum()),
    )


# ---------------------------------------------------------------- validation columns, held-out rows


@dataclass(frozen=True)
class RowHoldout:
    """Validation columns ``V`` (m x v, e.g. noisy images no fit sees) with ``folds`` disjoint sets of held-out
    rows: a basis W (m x d, fitted on other columns) is scored by projecting each column of V onto W from its
    other rows (:func:`nmf_lab.core.transform.transform`, tolerance ``tol``) and predicting the held-out rows,
    RMSE over the held-out entries that are ``candidates`` (e.g. colours of opaque pixels), predictions clipped
    to ``value_range``. The noise of a held-out entry is independent of its prediction, so the error estimates
    the clean prediction error plus the noise's variance: its minimiser needs no clean data.

    Attributes: ``V`` (m x v), ``candidates`` (bool m x v), ``rows`` (one sorted int array per fold), ``tol``,
    ``value_range``."""

    V: np.ndarray
    candidates: np.ndarray
    rows: tuple[np.ndarray, ...]
    tol: float = 0.01
    value_range: tuple[float, float] | None = (0.0, 1.0)

    @classmethod
    def of(cls, V, *, folds: int = 2, holdout: float = 0.1, candidates=None, seed: int = 0, **options) -> RowHoldout:
        """``folds`` disjoint sets of ``round(holdout * m)`` rows (at least 1): ``default_rng(seed).permutation``
        of 0..m - 1 cut in order. ``options``: ``tol``, ``value_range``."""
        V = np.asarray(V)
        if V.ndim != 2:
            raise ValueError(f"V must be a 2-D matrix (m x v), got shape {V.shape}")
        if not is_integer(folds) or folds < 1:
            raise ValueError(f"folds must be an integer >= 1, got {folds!r}")
        if not is_real(holdout, finite=True) or not 0 < holdout < 1 or folds * holdout > 1 + 1e-12:
            raise ValueError(f"holdout must be a fraction in (0, 1) with folds * holdout <= 1, got {holdout!r}")
        m = V.shape[0]
        size = max(1, round(holdout * m))
        if folds * size >= m:
            raise ValueError(f"{folds} folds of {size} held-out rows leave no row of the {m} to project from")
        order = np.random.default_rng(check_int("the fold seed", seed, minimum=0)).permutation(m)
        rows = tuple(np.sort(order[k * size : (k + 1) * size]) for k in range(folds))
        candidates = np.ones(V.shape, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
        if candidates.shape != V.shape:
            raise ValueError(f"candidates must have V's shape {V.shape}, got {candidates.shape}")
        return cls(V=V, candidates=candidates, rows=rows, **options)

    @property
    def folds(self) -> int:
        return len(self.rows)

    @property
    def heldout_entries(self) -> int:
        """The scored entries of the first fold."""
        return int(self.candidates[self.rows[0]].sum())

    def predictions(self, W: np.ndarray) -> list[np.ndarray]:
        """For each fold, the prediction of its held-out rows of V (rows x v) from the others through W."""
        out = []
        for rows in self.rows:
            seen = np.ones(self.V.shape[0], dtype=bool)
            seen[rows] = False
            H = transform(self.V[seen], W[seen], tol=self.tol).H
            out.append(W[rows] @ H)
        return out

    def fold_errors(self, predictions: list[np.ndarray]) -> np.ndarray:
        """float64 (K,): each fold's held-out RMSE of ``predictions`` (one per fold, e.g. a mean of several)."""
        return np.array([
            heldout_error(self.V[rows], P, self.candidates[rows], self.value_range)
            for rows, P in zip(self.rows, predictions)
        ])  # fmt: skip


def validate_rank_and_budget(
    A,
    holdout: RowHoldout,
    ranks: Sequence[int],
    *,
    every: int,
    max_iter: int,
    patience: int,
    rule: str = "min",
    on_checkpoint: Callable[[int, int, float], None] | None = None,
    **fit_options,
) -> tuple[BudgetSelection, dict[int, np.ndarray]]:
    """Choose d and the iteration budget from noisy data alone: for every d of ``ranks`` one fit of ``A`` (m x n,
    the training columns) runs to ``max_iter`` iterations, and every ``every`` iterations its W is scored on the
    ``holdout``'s validation columns (:class:`RowHoldout`: their held-out rows predicted from the others); the
    fit stops once the mean over the folds has not reached a new minimum for ``patience`` iterations. d is
    chosen by ``rule`` from each d's lowest mean (and its standard error there), the budget is the checkpoint
    with the lowest mean at that d: the fit is scored at its checkpoints without a restart
    (:func:`nmf_lab.fit_nmf`'s ``on_iterate``), so the W kept there is the W of a fit of exactly that many
    iterations.

    ``fit_options`` go to :func:`nmf_lab.fit_nmf` (``solver``, ``seed``, ``init``, ``dtype``, ...; not
    ``max_iter``). ``on_checkpoint(d, iterations, mean_error)``: called after each checkpoint. Returns the
    :class:`BudgetSelection` (with ``holdout`` the fraction of rows each fold held out) and, for every d, a
    copy of W at its best checkpoint."""
    grid = _check_ranks(ranks)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    for key, value in (("every", every), ("max_iter", max_iter), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if max_iter < every:
        raise ValueError(f"max_iter must be at least every = {every}, got {max_iter!r}")
    fit_options = {key: value for key, value in fit_options.items() if key != "max_iter"}
    checkpoints = np.arange(every, max_iter + 1, every, dtype=np.int64)
    errors = np.full((holdout.folds, grid.size, checkpoints.size), np.nan)
    best_W: dict[int, np.ndarray] = {}
    for g, d in enumerate(grid.tolist()):
        best, best_at = math.inf, 0

        def checkpoint(k: int, W: np.ndarray, H: np.ndarray, g=g, d=d) -> bool:
            nonlocal best, best_at
            if k % every:
                return False
            c = k // every - 1
            errors[:, g, c] = holdout.fold_errors(holdout.predictions(W))
            mean = float(errors[:, g, c].mean())
            if on_checkpoint is not None:
                on_checkpoint(d, k, mean)
            if mean < best:
                best, best_at = mean, k
                best_W[d] = W.copy()
            return k - best_at >= patience

        fit_nmf(A, d, max_iter=int(checkpoints[-1]), on_iterate=checkpoint, **fit_options)
    mean = errors.mean(axis=0)
    standard_error = errors.std(axis=0, ddof=1) / math.sqrt(holdout.folds) if holdout.folds > 1 else 0 * mean
    best = np.array([int(np.nanargmin(row)) for row in mean])
    at = np.arange(grid.size)
    rank = select_rank(grid, mean[at, best], standard_error[at, best], rule)
    selection = BudgetSelection(
        ranks=grid,
        iterations=checkpoints,
        fold_errors=errors,
        mean=mean,
        standard_error=standard_error,
        rank=rank,
        budget=int(checkpoints[best[int(np.flatnonzero(grid == rank)[0])]]),
        rule=rule,
        holdout=float(holdout.rows[0].size / holdout.V.shape[0]),
        heldout_entries=holdout.heldout_entries,
    )
    return selection, best_W
