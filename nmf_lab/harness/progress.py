"""A progress bar for long fits (tqdm): iteration, error and rate on the console, nowhere else.

The bar appears only when standard error is a terminal, only after a fit has run for 2 seconds, and not in
the workers of a parallel launcher (their bars would garble each other): the CLI says which through
``$NMF_LAB_PROGRESS``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

PROGRESS_ENV = "NMF_LAB_PROGRESS"
"""``0`` turns the progress bar off (set by the CLI for parallel workers)."""


def progress_enabled() -> bool:
    return os.environ.get(PROGRESS_ENV, "1") != "0" and sys.stderr.isatty()


@contextmanager
def fit_progress(total: int, description: str) -> Iterator[Callable[[int, float], bool]]:
    """Yield a ``callback(k, error)`` for :func:`nmf_lab.fit_nmf` that advances a bar of ``total`` steps."""
    bar = tqdm(
        total=total,
        desc=description,
        unit="it",
        delay=2.0,
        mininterval=0.5,
        leave=False,
        disable=not progress_enabled(),
        dynamic_ncols=True,
    )

    from nmf_lab.harness.search import trial_callback

    pruning = trial_callback(total)  # a search's job with a pruner: report the error, stop when pruned

    def callback(k: int, error: float) -> bool:
        bar.update(k - bar.n)
        bar.set_postfix(error=f"{error:.5g}", refresh=False)
        return bool(pruning is not None and pruning(k, error))

    try:
        yield callback
    finally:
        bar.close()
