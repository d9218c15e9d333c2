"""Trajectory and inspection figures: what is drawn, and that PNG files are written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from promptinfo.report import ReportError, load_runs
from promptinfo.report.plots import (
    metric_bars_figure,
    plot_metric_bars,
    plot_run_trajectories,
    plot_spectra,
    spectra_figure,
    trajectory_figure,
    write_trajectory_plots,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def epoch_lines(seed: int, epochs: int = 3) -> list[dict]:
    """metrics.jsonl lines with simple, seed-dependent trajectories (epoch 0 = zero-shot point)."""
    return [
        {"epoch": e, "step": 10 * e, "loss": 2.0 - 0.1 * e, "info/entropy_image": 3.0 - 0.2 * e,
         "info/entropy_text": 2.0 - 0.1 * e, "info/mi": 0.5 + 0.1 * e, "info/mir": 0.2 + 0.1 * e + 0.01 * seed,
         "info/hdr": 0.4 - 0.05 * e}
        for e in range(epochs + 1)
    ]


def write_run(root, folder: str, seed: int, lines: list[dict] | None, method: str = "coop"):
    run_dir = root / folder
    run_dir.mkdir(parents=True)
    results = {"status": "finished", "method": method, "dataset": "dtd", "protocol": "few_shot", "shots": 4,
               "seed": seed, "backbone": "pi-tiny-vit-s", "weights": "random", "experiment": "demo",
               "evaluations": {"test": {"accuracy": 50.0 + seed}}}
    (run_dir / "results.json").write_text(json.dumps(results))
    if lines is not None:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run_dir


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_trajectory_figure_draws_every_run_in_every_panel():
    curves = {"seed 1": pd.DataFrame(epoch_lines(1)), "seed 2": pd.DataFrame(epoch_lines(2))}
    figure = trajectory_figure(curves, title="dtd")
    entropy, mi, mir, hdr = figure.axes[:4]
    assert [ax.get_title() for ax in (entropy, mi, mir, hdr)] == [
        "Matrix entropy (nats)", "Mutual information (nats)", "MIR", "HDR"]
    assert len(entropy.lines) == 4 and len(mir.lines) == 2  # image + text per run; one MIR curve per run
    image_seed1, text_seed1 = entropy.lines[:2]
    assert image_seed1.get_linestyle() == "-" and text_seed1.get_linestyle() == "--"
    np.testing.assert_allclose(mir.lines[1].get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(mir.lines[1].get_ydata(), [0.22, 0.32, 0.42, 0.52])
    np.testing.assert_allclose(hdr.lines[0].get_ydata(), [0.4, 0.35, 0.3, 0.25])


def test_missing_panel_is_labelled_not_silently_empty():
    lines = [{k: v for k, v in line.items() if k != "info/mi"} for line in epoch_lines(1)]
    figure = trajectory_figure({"run": pd.DataFrame(lines)})
    assert not figure.axes[1].lines and figure.axes[1].texts[0].get_text() == "not recorded"


def test_runs_without_information_columns_raise():
    with pytest.raises(ReportError, match="no information trajectories"):
        trajectory_figure({"run": pd.DataFrame([{"epoch": 0, "loss": 1.0}])})


def test_plot_run_trajectories_writes_png(tmp_path):
    run_dirs = [write_run(tmp_path, f"seed{s}", s, epoch_lines(s)) for s in (1, 2)]
    path = plot_run_trajectories(run_dirs, tmp_path / "out" / "traj.png", title="demo")
    assert path == tmp_path / "out" / "traj.png"
    assert_png(path)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["traj.png"]  # no temporary file left


@pytest.mark.slow
def test_write_trajectory_plots_per_group_and_per_run(tmp_path):
    root = tmp_path / "runs"
    for seed in (1, 2):
        write_run(root, f"dtd/coop/seed{seed}", seed, epoch_lines(seed))
    write_run(root, "dtd/zeroshot/seed1", 1, None, method="zeroshot")  # no metrics.jsonl: no figure
    write_run(root, "dtd/zeroshot/seed2", 2, epoch_lines(2, epochs=0), method="zeroshot")  # one point: no figure
    collection = load_runs(root)
    grouped = write_trajectory_plots(collection, tmp_path / "group", per="group")
    assert [p.name for p in grouped] == ["demo_dtd_coop_few_shot_4_pi-tiny-vit-s_random.png"]
    per_run = write_trajectory_plots(collection, tmp_path / "run", per="run")
    assert sorted(p.name for p in per_run) == ["dtd__coop__seed1.png", "dtd__coop__seed2.png"]
    for path in [*grouped, *per_run]:
        assert_png(path)


def test_spectra_and_metric_bars():
    spectra = {"dtd": {"image": np.array([0.0, 0.5, 0.3, 0.2]), "text": np.array([0.9, 0.1])},
               "pets": {"image": np.array([1.0])}}
    figure = spectra_figure(spectra, top=2)
    assert [ax.get_title() for ax in figure.axes] == ["dtd", "pets"]
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), [0.5, 0.3])  # sorted, zeros dropped, top 2
    frame = pd.DataFrame({"dataset": ["dtd", "pets"], "mir": [0.1, 0.2], "hdr": [0.3, 0.4]})
    bars = metric_bars_figure(frame, ["mir", "hdr"])
    assert [round(p.get_height(), 6) for p in bars.axes[1].patches] == [0.3, 0.4]
    assert [ax.get_title() for ax in bars.axes[:2]] == ["MIR(Z; W_y)", "HDR(Z; W_y)"]  # names, not column keys
    with pytest.raises(ValueError, match="nc1"):
        metric_bars_figure(frame, ["nc1"])


def test_inspection_plots_write_png(tmp_path):
    assert_png(plot_spectra({"dtd": {"image": np.linspace(1, 0.1, 8)}}, tmp_path / "spectra.png"))
    frame = pd.DataFrame({"dataset": ["dtd"], "mir": [0.1]})
    assert_png(plot_metric_bars(frame, ["mir"], tmp_path / "bars.png"))


def test_a_curve_equal_to_an_earlier_one_is_noted_under_its_panel():
    """Two runs with the same frozen image features draw the same image-entropy line: the later one would
    hide the earlier, so the panel says which curves coincide."""
    first, second = pd.DataFrame(epoch_lines(1)), pd.DataFrame(epoch_lines(2))
    second["info/mi"] = first["info/mi"] + 1e-3  # close but not equal: no note
    figure = trajectory_figure({"CoOp": first, "CoOp + CMA": second})
    entropy, mi = figure.axes[:2]
    assert [t.get_text() for t in entropy.texts] == [
        "overlapping: CoOp + CMA = CoOp (image features Z); CoOp + CMA = CoOp (text weights W_y)"]
    assert not mi.texts
    assert entropy.lines[2].get_linewidth() < entropy.lines[0].get_linewidth()  # the later one drawn thinner on top


def test_long_titles_wrap_to_the_figure_width():
    title = "Kernel spectra: pi-demo-default (file-0123456789abcdef) on procedural, imagenet and dtd"
    figure = spectra_figure({"procedural": {"image": np.linspace(1, 0.1, 8)}}, title=title)
    lines = figure._suptitle.get_text().splitlines()
    assert len(lines) > 1 and " ".join(lines) == title
    assert max(map(len, lines)) <= figure.get_figwidth() * 9
