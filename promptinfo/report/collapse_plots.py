"""Figures of the neural-collapse analysis: per-epoch trajectories against their values at collapse, and
metrics along the straight line between two prompts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.figure import Figure

from promptinfo.report.plots import save_figure

COLLAPSE_PANELS = (
    ("Accuracy (%)", (("train_accuracy", "train"), ("test_accuracy", "test")), None, False),
    ("Matrix entropy (nats)", (("entropy_features", "features Z"), ("entropy_head", "head rows W_y")), "entropy",
     False),
    ("MIR(Z, W_y)", (("mir", "MIR"),), "mir", False),
    ("HDR(Z, W_y)", (("hdr", "HDR"),), "hdr", False),
    ("NC1: tr(Sigma_W Sigma_B^+)/C", (("nc1", "NC1"),), None, True),
    ("NC2 / NC3", (("nc2_equiangular_means", "NC2 equiangular (means)"),
                   ("nc2_equinorm_means", "NC2 equinorm (means)"), ("nc3", "NC3 self-duality")), None, True),
)
"""(title, ((metrics.jsonl key, legend label), ...), key of its closed form at collapse or None, log scale)."""


def plot_collapse(rows: Sequence[Mapping[str, float]], closed: Mapping[str, float], path: str | os.PathLike,
                  title: str | None = None) -> Path:
    """Write the trajectories of a `promptinfo-collapse` run (rows of metrics.jsonl) as a PNG at ``path``,
    with the closed forms at neural collapse (``collapse_values``) as dashed grey lines."""
    figure = Figure(figsize=(13, 7), layout="constrained")
    epochs = [row["epoch"] for row in rows]
    for ax, (panel, keys, reference, log) in zip(figure.subplots(2, 3).ravel(), COLLAPSE_PANELS):
        for key, label in keys:
            ax.plot(epochs, [max(row[key], 1e-12) if log else row[key] for row in rows], marker=".", label=label)
        if reference is not None:
            ax.axhline(closed[reference], color="grey", linestyle="--", label=f"at collapse: {closed[reference]:.4f}")
        if log:
            ax.set_yscale("log")
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


def plot_interpolation(rows: Sequence[Mapping[str, float]], path: str | os.PathLike, title: str | None = None) -> Path:
    """Accuracy, loss, matrix entropies, MIR and HDR against the interpolation coefficient t (0 = A, 1 = B)."""
    figure = Figure(figsize=(13, 3.6), layout="constrained")
    t = [row["t"] for row in rows]
    panels = (("Test accuracy (%)", ("accuracy",)), ("Test loss", ("loss",)),
              ("Matrix entropy (nats)", ("entropy_image", "entropy_text")), ("MIR / HDR", ("mir", "hdr")))
    for ax, (panel, keys) in zip(figure.subplots(1, 4), panels):
        for key in keys:
            ax.plot(t, [row[key] for row in rows], marker=".", label=key)
        ax.set_title(panel)
        ax.set_xlabel("t (0 = A, 1 = B)")
        if len(keys) > 1:
            ax.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)
