"""Figures of the loss and penalty studies (``experiment=poisson``, ``experiment=sparsity``): functions from
numbers to a matplotlib ``Figure``, as in :mod:`nmf_lab.presentation.figures`."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure


def psnr_against_photons(
    chosen: Mapping[str, Mapping[float, tuple[float, int]]],
    oracle: Mapping[str, Mapping[float, tuple[float, int]]],
    noisy: Mapping[float, float],
    *,
    title: str,
) -> Figure:
    """PSNR against the photon level (log x): per method (label -> {photons: (PSNR, d)}) a solid line at the
    d it chose, each point labelled with that d, a dashed line at its oracle d (best against the clean
    images), and the noisy images' PSNR in grey."""
    figure = Figure(figsize=(7.6, 4.8), layout="constrained")
    ax = figure.add_subplot()
    levels = sorted(noisy)
    ax.plot(levels, [noisy[level] for level in levels], color="grey", marker=".", label="noisy images")
    for (label, points), marker in zip(chosen.items(), "osD^"):
        xs = sorted(points)
        (line,) = ax.plot(xs, [points[x][0] for x in xs], marker=marker, label=f"{label}, d chosen from the counts")
        for x in xs:
            ax.annotate(f"d={points[x][1]}", (x, points[x][0]), textcoords="offset points", xytext=(4, -10),
                        fontsize="x-small", color=line.get_color())  # fmt: skip
        best = oracle[label]
        ax.plot(xs, [best[x][0] for x in xs], linestyle="--", color=line.get_color(), linewidth=1.0,
                label=f"{label}, oracle d (best against the clean images)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(levels, [f"{level:g}" for level in levels])
    ax.set(title=title, xlabel="photons at an entry of value 1 (Poisson noise: fewer is noisier)", ylabel="PSNR (dB)")
    ax.title.set_fontsize("small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return figure


def sparsity_against_error(
    sweeps: Mapping[str, list[tuple[float, float, float]]],
    *,
    title: str,
    ylabel: str = "Hoyer sparsity of the basis W (mean over components)",
) -> Figure:
    """A sparsity against the relative reconstruction error: one marked line per sweep (label -> [(alpha,
    relative error, sparsity), ...]), each point labelled with its alpha."""
    figure = Figure(figsize=(7.2, 4.8), layout="constrained")
    ax = figure.add_subplot()
    for (label, points), marker in zip(sweeps.items(), "osD^"):
        (line,) = ax.plot([p[1] for p in points], [p[2] for p in points], marker=marker, label=label)
        for alpha, error, sparsity in points:
            ax.annotate(f"{alpha:g}", (error, sparsity), textcoords="offset points", xytext=(4, 4),
                        fontsize="x-small", color=line.get_color())  # fmt: skip
    ax.set(title=title, xlabel="relative reconstruction error ||A - W H||_F / ||A||_F", ylabel=ylabel)
    ax.title.set_fontsize("small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", title="L1 penalty (labels: alpha)")
    return figure
