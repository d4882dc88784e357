"""Choosing the number of components d from the data alone: cross-validation over held-out entries, or a score.

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

For denoising, :func:`select_ensemble` chooses d and the iteration budget of a mean of fits by any score of a
reconstruction instead, e.g. its error against a copy of the data with independent noise
(:func:`nmf_lab.core.noise.split_noise`), which estimates the clean error itself: measured on the 10,000 noisy punks
(sigma = 0.1, one HALS fit), the lowest split score fell within 10 iterations of the clean-best budget of each d of
128..320 and ordered the d as the clean error did, where held-out prediction chose a longer fit and a larger d.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nmf_lab.core.nmf import NMFResult, fit_nmf
from nmf_lab.core.validation import check_int, is_integer, is_real

__all__ = [
    "RULES",
    "BudgetSelection",
    "EnsembleSelection",
    "RankSelection",
    "cross_validate_rank",
    "heldout_error",
    "heldout_folds",
    "select_ensemble",
    "select_rank",
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
    """A score of every d of a grid against the iterations (:func:`select_ensemble`), and the choice.

    Attributes:
        ranks: int64 (g,), the grid of d, increasing.
        iterations: int64 (c,), the checkpoints (iteration counts) at which the held-out error was measured.
        fold_errors: float64 (K, g, c), the score of fold k (K = 1: one curve) at ``ranks[g]`` after
            ``iterations[c]`` iterations; NaN after the curve of that d stopped (``patience``).
        mean: float64 (g, c), the mean over the folds (NaN where not measured).
        standard_error: float64 (g, c), ``std(ddof=1) / sqrt(K)``.
        rank: the chosen d (by ``rule`` from the lowest mean of each d, :attr:`by_rank`).
        budget: the chosen iteration budget: the checkpoint with the lowest mean held-out error at ``rank``.
        rule: the rule that chose ``rank`` (one of :data:`RULES`).
    """

    ranks: np.ndarray
    iterations: np.ndarray
    fold_errors: np.ndarray
    mean: np.ndarray
    standard_error: np.ndarray
    rank: int
    budget: int
    rule: str

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
            holdout=0.0,
            heldout_entries=0,
        )

    def curve(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, mean held-out error) of ``rank``, the checkpoints it reached."""
        row = self.mean[int(np.flatnonzero(self.ranks == rank)[0])]
        reached = ~np.isnan(row)
        return self.iterations[reached], row[reached]


# ---------------------------------------------------------------- an ensemble's d and budget, by a score


@dataclass(frozen=True)
class EnsembleSelection:
    """What :func:`select_ensemble` measured and chose.

    Attributes:
        selection: the :class:`BudgetSelection` (one "fold": ``fold_errors`` is 1 x g x c, the score of the mean
            of the ``probes`` fits of each d at each checkpoint; standard errors 0).
        probes: how many fits each curve averages.
        member_scores: float64 (probes,), the score of the mean of the first k fits at the chosen d and budget.
        total: m x n, the sum of the probes' ``W H`` there (in the fits' dtype).
    """

    selection: BudgetSelection
    probes: int
    member_scores: np.ndarray
    total: np.ndarray


def select_ensemble(
    A,
    score: Callable[[np.ndarray], float],
    ranks: Sequence[int],
    *,
    every: int,
    max_iter: int,
    patience: int,
    probes: int,
    on_checkpoint: Callable[[int, int, float], None] | None = None,
    **fit_options,
) -> EnsembleSelection:
    """Choose d and the iteration budget of a mean of fits (an ensemble) by ``score(X)`` of a reconstruction
    ``X`` (m x n; e.g. its error against an independent noisy copy, :func:`nmf_lab.core.noise.split_noise`).

    For every d of ``ranks``: the fit of ``A`` with ``seed`` is scored every ``every`` iterations
    (``fit_nmf``'s ``on_iterate``, no restart) until ``max_iter`` or until its score has not reached a new
    minimum for ``patience`` iterations; ``probes - 1`` more fits (seeds ``seed + 1, ...``) run to the same last
    checkpoint, and the curve of d is the score of the mean of the ``probes`` reconstructions at each checkpoint
    (an ensemble fits longer and richer than one fit: its mean averages out what each fits of the noise). d and
    the budget are the lowest point of all curves (one curve per d has no standard error, so the rule is
    ``"min"``). ``fit_options`` go to :func:`nmf_lab.fit_nmf` (``solver``, ``seed``, ``dtype``, ...; not
    ``max_iter``). ``on_checkpoint(d, iterations, score)``: after each checkpoint of the first fit."""
    grid = _check_ranks(ranks)
    for key, value in (("every", every), ("max_iter", max_iter), ("patience", patience), ("probes", probes)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if max_iter < every:
        raise ValueError(f"max_iter must be at least every = {every}, got {max_iter!r}")
    fit_options = {key: value for key, value in fit_options.items() if key != "max_iter"}
    if fit_options.get("tol") or fit_options.get("time_limit") is not None:
        raise ValueError(
            f"select_ensemble runs every fit to the same checkpoints: no tol or time_limit (got tol="
            f"{fit_options.get('tol')!r}, time_limit={fit_options.get('time_limit')!r}); the budget is what it chooses"
        )
    checkpoints = np.arange(every, max_iter + 1, every, dtype=np.int64)
    curves = np.full((1, grid.size, checkpoints.size), np.nan)
    chosen = None  # (score, d, checkpoint index, member scores, total) of the lowest point so far
    for g, d in enumerate(grid.tolist()):
        curve = _EnsembleCurve(score, every, patience, probes, checkpoints.size)
        curve.fit(A, d, on_checkpoint, fit_options)
        curves[0, g, : curve.last] = curve.partial[probes - 1, : curve.last]
        c = int(np.nanargmin(curves[0, g]))
        if chosen is None or curves[0, g, c] < chosen[0]:
            chosen = (curves[0, g, c], d, c, curve.partial[:, c].copy(), curve.sums[c])
    mean = curves[0]
    selection = BudgetSelection(
        ranks=grid,
        iterations=checkpoints,
        fold_errors=curves,
        mean=mean,
        standard_error=np.zeros_like(mean),
        rank=chosen[1],
        budget=int(checkpoints[chosen[2]]),
        rule="min",
    )
    return EnsembleSelection(selection=selection, probes=probes, member_scores=chosen[3], total=chosen[4])


class _EnsembleCurve:
    """The curve of one d for :func:`select_ensemble`: ``partial[k, c]`` is the score of the mean of the first
    k + 1 fits at checkpoint c, ``sums[c]`` the sum of the fits' reconstructions there."""

    def __init__(self, score, every: int, patience: int, probes: int, size: int):
        self.score, self.every, self.patience, self.probes = score, every, patience, probes
        self.partial = np.full((probes, size), np.nan)
        self.sums: list[np.ndarray] = []
        self.last, self.probe = size, 0

    def fit(self, A, d: int, on_checkpoint, fit_options: dict) -> None:
        options = dict(fit_options)
        seed = options.pop("seed", 0)

        def checkpoint(k: int, W: np.ndarray, H: np.ndarray) -> bool:
            return self.checkpoint(k, W @ H, d, on_checkpoint)

        for probe in range(self.probes):
            self.probe = probe
            fit_nmf(A, d, max_iter=self.last * self.every, seed=seed + probe, on_iterate=checkpoint, **options)
            if probe == 0:
                self.last = len(self.sums)

    def checkpoint(self, k: int, X: np.ndarray, d: int, on_checkpoint) -> bool:
        if k % self.every:
            return False
        c = k // self.every - 1
        if self.probe == 0:
            self.sums.append(X.copy())
            self.partial[0, c] = self.score(X)
            if on_checkpoint is not None:
                on_checkpoint(d, k, float(self.partial[0, c]))
            best_at = int(np.nanargmin(self.partial[0, : c + 1]))
            return (c - best_at) * self.every >= self.patience
        self.sums[c] += X
        self.partial[self.probe, c] = self.score(self.sums[c] / (self.probe + 1))
        return False
