"""Does W describe images it never saw? NMF learns W on images 0..N-1; images N..N+M-1 are projected onto
it with W fixed (:func:`nmf_lab.core.transform.transform`, non-negative least squares per image).

A job fits one d and logs the relative error on the training images and on the unseen test images; the sweep
over d (``experiment=generalization``, the d of ``punks_ranks``) draws both against d: the overfitting picture
without any noise. The training images are also projected with the same ``transform``, so that train and test
are measured by the same procedure (its error is at most the fit's own, the fit's H being one feasible choice).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from experiments.shared import display_images, draw_reconstructions, fit_and_log, shown, warn_if_full_rank
from nmf_lab.core.errors import InvalidOption
from nmf_lab.core.metrics import psnr
from nmf_lab.core.transform import transform
from nmf_lab.presentation.figures import error_against_rank

HEADLINE = ("train_error", "test_error", "psnr_test")
"""The metrics the CLI prints and a run's description shows first: ||A - W H||_F / ||A||_F on the training and
the unseen images, and the PSNR (dB) of the unseen images' projections."""


@dataclass
class GeneralizationSettings:
    """``generalization``: ``test_images``, M, the number of unseen images, those right after the N =
    ``data.n_images`` training images (the loader is asked for N + M images: with ``data.subset=random`` a
    random sample of N + M, of which the first N by id train)."""

    test_images: int = 500

    def check(self) -> None:
        if self.test_images < 1:
            raise InvalidOption("test_images", self.test_images, "an integer >= 1")


SETTINGS = {"generalization": GeneralizationSettings}
"""The config node of this study's own settings."""


def check(settings) -> None:
    """The data must be an image set of at least N + M images (a loader with ``n_images``)."""
    both_loader(settings)


def both_loader(settings):
    """The data loader of the N training and M test images: the job's loader with ``n_images = N + M``."""
    n_train, n_test = getattr(settings.data, "n_images", None), settings.generalization.test_images
    if n_train is None:
        raise InvalidOption("data", type(settings.data).__name__, "an image set whose loader has n_images")
    try:
        return dataclasses.replace(settings.data, n_images=n_train + n_test)
    except InvalidOption as error:
        raise InvalidOption(
            "generalization.test_images",
            n_test,
            f"data.n_images + test_images = {n_train + n_test} images are more than the data set has ({error.valid})",
        ) from error


def run(settings, run) -> None:
    images = both_loader(settings).load()
    n_train = settings.data.n_images
    train, test = images.subset(slice(0, n_train)), images.subset(slice(n_train, images.n))
    A_train, A_test = train.matrix(), test.matrix()
    run.log_dataset(A_train, name=train.name, source=train.source, digest=train.digest)
    run.log_dataset(A_test, name=f"{test.name}-test", source=test.source, digest=test.digest, context="testing")
    warn_if_full_rank(A_train, settings.rank)

    result = fit_and_log(A_train, settings, run)  # W learned on the training images only
    W = result.W
    projected_train = transform(A_train, W)
    projected_test = transform(A_test, W)  # W fixed: the test images never change it
    X_train, X_test = W @ projected_train.H, W @ projected_test.H
    norm_train, norm_test = float(np.linalg.norm(A_train)), float(np.linalg.norm(A_test))
    run.log_metrics(
        {
            "train_error": result.final_error / norm_train,
            "train_error_projected": projected_train.final_error / norm_train,
            "test_error": projected_test.final_error / norm_test,
            "psnr_train": psnr(A_train, X_train, train.opaque_entries()),
            "psnr_test": psnr(A_test, X_test, test.opaque_entries()),
        }
    )
    run.log_array(projected_test.H, "arrays/H_test.npy")
    first = shown(test)
    draw_reconstructions(
        [
            ("unseen images", first.images),
            (f"projected onto W (d = {settings.rank})", display_images(test, X_test[:, : first.n])),
        ],
        run,
        alpha=first.alpha,
        name="test_projections",
        title=f"Images {n_train}..{images.n - 1} (not in the fit) projected onto the W of images 0..{n_train - 1}",
    )


def summarize(children, parent) -> None:
    """The relative error against d on the training images (the fit) and on the unseen images (projected
    with W fixed); parent metrics ``best_test_rank`` and ``best_test_error``, and a table."""
    children = sorted(children, key=lambda child: child.config.rank)
    ranks = [child.config.rank for child in children]
    train = [child.metrics["train_error"] for child in children]
    test = [child.metrics["test_error"] for child in children]
    figure = error_against_rank(
        {"training images (the fit)": (ranks, train), "unseen images (projected, W fixed)": (ranks, test)},
        title="Generalization: relative error on the training and unseen images against d",
        ylabel=r"$\|A - WH\|_F \,/\, \|A\|_F$",
    )
    parent.log_figure(figure, "figures/train_test_error_against_rank.png")
    best = int(np.argmin(test))
    parent.log_metrics({"best_test_rank": ranks[best], "best_test_error": test[best]})
    for d, tr, te in zip(ranks, train, test):
        parent.log_metrics({"train_error_by_rank": tr, "test_error_by_rank": te}, step=d)
    rows = [f"| {d} | {tr:.4f} | {te:.4f} | {te / tr:.2f} |" for d, tr, te in zip(ranks, train, test)]
    header = "| d | train error | test error | test / train |\n|---|---|---|---|\n"
    parent.log_text(header + "\n".join(rows) + "\n", "tables/train_test_errors.md")
