"""PNG figures: information trajectories over training epochs, and zero-shot inspection results.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, so
no pyplot state or global backend is touched and nothing needs a display.
"""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from promptinfo.io import atomic_path
from promptinfo.report.aggregate import ReportError, read_metrics
from promptinfo.report.names import METRIC_NAMES, method_display_name

ENTROPY_KEYS = {"info/entropy_image": "image features Z", "info/entropy_text": "text weights W_y"}
TRAJECTORY_PANELS = (
    ("Matrix entropy (nats)", tuple(ENTROPY_KEYS)),
    ("Mutual information (nats)", ("info/mi", "info_unlabelled/mi")),
    ("MIR", ("info/mir", "info_unlabelled/mir")),
    ("HDR", ("info/hdr", "info_unlabelled/hdr")),
)
"""(panel title, metrics.jsonl keys) of a trajectory figure (MIR/HDR: Song et al., arXiv 2406.03999);
`info_unlabelled/*` (dotted) are those of the unlabelled images of runs that have some."""
PSEUDO_PANELS = (
    ("Pseudo-label accuracy (%)", ("pseudo/accuracy",)),
    ("Pseudo-labelled images per epoch", ("pseudo/labelled",)),
)
"""Panels added to the figure when a run pseudo-labels unlabelled images."""

logger = logging.getLogger(__name__)

_STYLES = {"info/entropy_text": "--", "info_unlabelled/mi": ":", "info_unlabelled/mir": ":", "info_unlabelled/hdr": ":"}
_DPI = 120
_TITLE_CHARS_PER_INCH = 9  # a suptitle at matplotlib's default size fits about this many characters per inch


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Render ``figure`` to a PNG at ``path`` atomically."""
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
    return Path(path)


def trajectory_keys() -> list[str]:
    return [key for _, keys in TRAJECTORY_PANELS for key in keys]


def plot_trajectories(curves: Mapping[str, pd.DataFrame], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write :func:`trajectory_figure` as a PNG at ``path``."""
    return save_figure(trajectory_figure(curves, title), path)


def trajectory_figure(curves: Mapping[str, pd.DataFrame], title: str | None = None) -> Figure:
    """One figure of information trajectories, one colour per run.

    Panels: matrix entropy of image features (solid) and text weights (dashed), MI, MIR
    and HDR between image features and the classifier weights of their labels, against
    the epoch (epoch 0 is the zero-shot point).

    Args:
        curves: run label -> frame with an ``epoch`` column and ``info/*`` columns
            (as returned by :func:`~promptinfo.report.aggregate.read_metrics`).
        title: figure title.

    Raises:
        ReportError: no run has any ``info/*`` trajectory column.
    """
    if not any(key in frame for frame in curves.values() for key in trajectory_keys()):
        raise ReportError(f"no information trajectories ({', '.join(trajectory_keys())}) in runs {list(curves)}; "
                          "the engine records them in metrics.jsonl when information metrics are enabled")
    pseudo = any(key in frame for frame in curves.values() for _, keys in PSEUDO_PANELS for key in keys)
    panels = TRAJECTORY_PANELS + (PSEUDO_PANELS if pseudo else ())
    figure = Figure(figsize=(15 if pseudo else 10, 7), layout="constrained")
    axes = figure.subplots(2, 3 if pseudo else 2).ravel()
    colours = {label: f"C{i % 10}" for i, label in enumerate(curves)}
    for ax, (panel, keys) in zip(axes, panels):
        _draw_panel(ax, curves, keys, colours)
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(handles=[Line2D([], [], color="k", linestyle=_STYLES.get(k, "-"), label=name)
                            for k, name in ENTROPY_KEYS.items()], fontsize="small")
    if any("info_unlabelled/mir" in frame for frame in curves.values()):
        axes[2].legend(handles=[Line2D([], [], color="k", label="labelled images"),
                                Line2D([], [], color="k", linestyle=":", label="unlabelled images")], fontsize="small")
    figure.legend(handles=[Line2D([], [], color=c, label=label) for label, c in colours.items()],
                  loc="outside lower center", ncol=min(len(colours), 4), fontsize="small")
    _suptitle(figure, title)
    return figure


def _draw_panel(ax, curves: Mapping[str, pd.DataFrame], keys: Sequence[str], colours: Mapping[str, str]) -> None:
    """One panel's curves; a curve equal to one drawn before (e.g. the image entropy of two runs with the same
    frozen image features) would hide it, so it is drawn thinner on top and named in a note under the panel."""
    drawn: dict[tuple, str] = {}
    notes = []
    for label, frame in curves.items():
        for key in (k for k in keys if k in frame):
            points = frame[["epoch", key]].dropna()
            values = (key, tuple(points["epoch"]), tuple(np.round(points[key].to_numpy(dtype=float), 12)))
            twin = drawn.setdefault(values, label)
            style = dict(linewidth=1.0, marker="") if twin != label else dict(marker="." if len(points) > 1 else "o")
            ax.plot(points["epoch"], points[key], _STYLES.get(key, "-"), color=colours[label], **style)
            if twin != label:
                notes.append(f"{label} = {twin}" + (f" ({ENTROPY_KEYS[key]})" if key in ENTROPY_KEYS else ""))
    if not drawn:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
    if notes:
        ax.text(0.01, 0.01, "overlapping: " + "; ".join(notes), transform=ax.transAxes, fontsize="x-small",
                color="dimgrey", va="bottom")


def _suptitle(figure: Figure, title: str | None) -> None:
    """The figure title, wrapped to the figure's width so that no side is cut off."""
    if title:
        width = figure.get_figwidth() * _TITLE_CHARS_PER_INCH
        figure.suptitle(textwrap.fill(title, width=max(20, int(width))))


def plot_run_trajectories(run_dirs: Sequence[str | os.PathLike], path: str | os.PathLike,
                          labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Read each run folder's metrics.jsonl and plot their trajectories in one figure."""
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"got {len(labels)} labels for {len(run_dirs)} run folders")
    labels = labels or [Path(d).name for d in run_dirs]
    return plot_trajectories({label: read_metrics(d) for label, d in zip(labels, run_dirs)}, path, title)


def plot_spectra(spectra: Mapping[str, Mapping[str, np.ndarray]], path: str | os.PathLike,
                 top: int = 64, title: str | None = None) -> Path:
    """Write :func:`spectra_figure` as a PNG at ``path``."""
    return save_figure(spectra_figure(spectra, top, title), path)


def spectra_figure(spectra: Mapping[str, Mapping[str, np.ndarray]], top: int = 64, title: str | None = None) -> Figure:
    """Sorted eigenvalues of unit-trace kernels, one panel per group (e.g. dataset), log scale.

    Args:
        spectra: group -> {curve label -> eigenvalues}; each curve is sorted descending and
            its ``top`` largest non-zero eigenvalues are drawn.
    """
    if not spectra:
        raise ValueError("plot_spectra needs at least one group of spectra")
    figure = Figure(figsize=(max(6.0, 4.2 * len(spectra)), 3.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(spectra)))
    for ax, (group, curves) in zip(axes, spectra.items()):
        for label, values in curves.items():
            values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
            values = values[values > 0][:top]
            ax.semilogy(np.arange(1, len(values) + 1), values, marker=".", label=label)
        ax.set_title(group)
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel("eigenvalue of K = XX^T/n")
        ax.legend(fontsize="small")
    _suptitle(figure, title)
    return figure


def plot_metric_bars(frame: pd.DataFrame, metrics: Sequence[str], path: str | os.PathLike,
                     label_column: str = "dataset", title: str | None = None) -> Path:
    """Write :func:`metric_bars_figure` as a PNG at ``path``."""
    return save_figure(metric_bars_figure(frame, metrics, label_column, title), path)


def metric_bars_figure(frame: pd.DataFrame, metrics: Sequence[str], label_column: str = "dataset",
                       title: str | None = None) -> Figure:
    """One small bar chart per metric, one bar per row of ``frame`` (labelled by ``label_column``), each titled
    with the metric's name (:data:`~promptinfo.report.names.METRIC_NAMES`, else the column name)."""
    missing = [m for m in [label_column, *metrics] if m not in frame]
    if missing:
        raise ValueError(f"columns {missing} are not in the frame (columns: {list(frame.columns)})")
    if frame.empty or not metrics:
        raise ValueError("plot_metric_bars needs at least one row and one metric")
    ncols = min(4, len(metrics))
    nrows = -(-len(metrics) // ncols)
    figure = Figure(figsize=(3.2 * ncols, 2.8 * nrows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(nrows, ncols)).ravel()
    labels = frame[label_column].astype(str).tolist()
    for ax, metric in zip(axes, metrics):
        bars = ax.bar(range(len(labels)), frame[metric].astype(float), color=[f"C{i % 10}" for i in range(len(labels))])
        ax.bar_label(bars, fmt="%.3g", fontsize="small")  # the value itself, readable with one bar or many
        ax.margins(y=0.15)  # room for the labels
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
        ax.set_title(METRIC_NAMES.get(metric, metric), fontsize="medium")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    _suptitle(figure, title)
    return figure


TRAJECTORY_MODES = ("group", "run")


def _file_stem(parts: Sequence[object]) -> str:
    text = "_".join(str(p) for p in parts if p is not None and not pd.isna(p) and str(p) != "")
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def _group_title(values: dict) -> str:
    parts = [values["experiment"], values["dataset"], method_display_name(values["method"]), values["protocol"]]
    if not pd.isna(values["shots"]):
        parts.append(f"{values['shots']} shots")
    parts.append(f"{values['backbone']} ({values['weights']})")
    return " / ".join(str(p) for p in parts if p is not None and not pd.isna(p) and str(p))


def _figure_name(root: Path, per: str, keys: list[str], key: tuple) -> tuple[str, str]:
    """(file stem, title) of the figure of one group of runs, or of one run."""
    if per == "group":
        return _file_stem(key), _group_title(dict(zip(keys, key)))
    return _file_stem([root.resolve().name if key[0] == "." else key[0].replace("/", "__")]), key[0]


def write_trajectory_plots(collection, out_dir: str | os.PathLike, per: str = "group") -> list[Path]:
    """Trajectory PNGs for the runs of a :class:`~promptinfo.report.aggregate.RunCollection`.

    Args:
        collection: finished runs, as returned by ``load_runs``.
        out_dir: folder the PNGs are written to.
        per: ``"group"``: one figure per setting and dataset with one curve per seed;
            ``"run"``: one figure per run folder.

    Returns:
        Paths written. Runs without a metrics.jsonl, without ``info/*`` columns in it, or with a
        single epoch (a zero-shot run: one point, whose values the tables and runs.csv give) are left
        out and logged.
    """
    if per not in TRAJECTORY_MODES:
        raise ValueError(f"per must be one of {TRAJECTORY_MODES}, got {per!r}")
    runs = collection.frame.drop_duplicates("run")
    keys = ["experiment", "dataset", "method", "protocol", "shots", "backbone", "weights"]
    grouping = runs.groupby(keys if per == "group" else ["run"], dropna=False, sort=True)
    written, without_metrics, single_point = [], 0, 0
    for key, group in grouping:
        curves = {
            f"seed {seed}" if per == "group" else run: read_metrics(collection.root / run)
            for run, seed in zip(group["run"], group["seed"])
            if (collection.root / run / "metrics.jsonl").is_file()
        }
        if not curves:
            without_metrics += 1
            continue
        if all(frame["epoch"].nunique() < 2 for frame in curves.values()):
            single_point += 1
            continue
        if not any(k in f for f in curves.values() for k in trajectory_keys()):
            logger.warning("metrics.jsonl of %s has no info/* columns; no trajectory plot", group["run"].tolist())
            continue
        stem, title = _figure_name(collection.root, per, keys, key)
        written.append(plot_trajectories(curves, Path(out_dir) / f"{stem}.png", title=title))
    if without_metrics:
        logger.info("%d %s(s) without metrics.jsonl have no trajectory plot", without_metrics, per)
    if single_point:
        logger.info("%d %s(s) with a single epoch (zero-shot: one point, see the tables) have no trajectory plot",
                    single_point, per)
    return written
