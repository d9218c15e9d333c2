"""Report aggregation: tables of fake run folders against numbers computed by hand."""

from __future__ import annotations

import json
import logging
import math

import pandas as pd
import pytest

from promptinfo.cli.report import main as report_main
from promptinfo.report import (
    AVERAGE,
    MEAN_HM,
    ReportError,
    base2novel_table,
    build_tables,
    few_shot_table,
    load_runs,
    read_metrics,
    to_latex,
    to_markdown,
    transfer_table,
    write_table,
)

# (method, protocol, shots, dataset, seed) -> {evaluation: accuracy}
B2N = {
    ("coop", "dtd", 1): {"base": 80.0, "novel": 50.0},
    ("coop", "dtd", 2): {"base": 82.0, "novel": 53.0},
    ("coop", "dtd", 3): {"base": 84.0, "novel": 56.0},
    ("coop", "oxford_pets", 1): {"base": 90.0, "novel": 96.0},
    ("coop", "oxford_pets", 2): {"base": 94.0, "novel": 98.0},
    ("zeroshot", "dtd", 1): {"base": 70.0, "novel": 60.0},
    ("zeroshot", "oxford_pets", 1): {"base": 88.0, "novel": 95.0},
}
FEW_SHOT = {
    ("coop", 16, "dtd", 1): 60.0, ("coop", 16, "dtd", 2): 64.0,
    ("coop", 16, "oxford_pets", 1): 85.0, ("coop", 16, "oxford_pets", 2): 87.0,
    ("coop", 1, "dtd", 1): 40.0, ("coop", 1, "dtd", 2): 44.0,
    ("coop", 1, "oxford_pets", 1): 80.0,
}
CROSS = {1: {"imagenet": 70.0, "caltech101": 92.0, "oxford_pets": 88.0},
         2: {"imagenet": 72.0, "caltech101": 94.0, "oxford_pets": 90.0}}
EXPECTED_ROWS = 2 * len(B2N) + len(FEW_SHOT) + 1 + 3 * len(CROSS)  # evaluations of the finished runs


def hm(b: float, n: float) -> float:
    return 2 * b * n / (b + n)


def write_run(root, folder, *, method, dataset, protocol, shots, seed, accuracies, status="finished", metrics=None):
    run_dir = root / folder
    run_dir.mkdir(parents=True)
    evaluations = {
        name: {"dataset": dataset if name in ("base", "novel", "test") else name,
               "subsample": name if name in ("base", "novel") else "all",
               "correct": int(acc * 10), "total": 1000, "accuracy": acc}
        for name, acc in accuracies.items()
    }
    results = {"status": status, "method": method, "dataset": dataset, "protocol": protocol, "shots": shots,
               "seed": seed, "backbone": "ViT-B-16", "weights": "openai", "experiment": None,
               "evaluations": evaluations, "wall_time_s": 1.5}
    if protocol == "base2novel":
        results["harmonic_mean"] = hm(accuracies["base"], accuracies["novel"])
    if metrics:
        results["metrics"] = metrics
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


@pytest.fixture()
def runs_root(tmp_path):
    root = tmp_path / "runs"
    for (method, dataset, seed), acc in B2N.items():
        shots = 0 if method == "zeroshot" else 16
        write_run(root, f"{dataset}/{method}/base2novel/shots{shots}_seed{seed}", method=method, dataset=dataset,
                  protocol="base2novel", shots=shots, seed=seed, accuracies=acc,
                  metrics={"base": {"mir": 0.25, "hdr": 0.5}} if seed == 1 else None)
    for (method, shots, dataset, seed), acc in FEW_SHOT.items():
        write_run(root, f"{dataset}/{method}/few_shot/shots{shots}_seed{seed}", method=method, dataset=dataset,
                  protocol="few_shot", shots=shots, seed=seed, accuracies={"test": acc})
    write_run(root, "dtd/zeroshot/zeroshot/seed1", method="zeroshot", dataset="dtd", protocol="zeroshot",
              shots=None, seed=1, accuracies={"test": 43.5})
    for seed, acc in CROSS.items():
        write_run(root, f"imagenet/coop/cross_dataset/shots16_seed{seed}", method="coop", dataset="imagenet",
                  protocol="cross_dataset", shots=16, seed=seed, accuracies=acc)
    # Not finished: must not enter any table, and must be listed as skipped.
    write_run(root, "dtd/coop/base2novel/shots16_seed4", method="coop", dataset="dtd", protocol="base2novel",
              shots=16, seed=4, accuracies={"base": 10.0, "novel": 5.0}, status="running")
    live = root / "dtd/coop/base2novel/shots16_seed5"
    live.mkdir(parents=True)
    (live / "metrics.jsonl").write_text('{"epoch": 0, "info/mir": 0.1}\n')
    return root


def cell(data: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=data.index)
    for key, value in where.items():
        mask &= data[key] == value
    assert mask.sum() == 1, f"{where} matches {int(mask.sum())} rows"
    return data[mask].iloc[0]


def test_tidy_frame_has_one_row_per_run_and_evaluation(runs_root):
    collection = load_runs(runs_root)
    frame = collection.frame
    assert len(frame) == EXPECTED_ROWS
    assert frame["run"].nunique() == len(B2N) + len(FEW_SHOT) + 1 + len(CROSS)
    row = cell(frame, run="dtd/coop/base2novel/shots16_seed2", evaluation="novel")
    assert (row["accuracy"], row["correct"], row["total"], row["seed"], row["shots"]) == (53.0, 530, 1000, 2, 16)
    assert cell(frame, run="dtd/coop/base2novel/shots16_seed1", evaluation="base")["metric/mir"] == 0.25
    assert pd.isna(cell(frame, run="dtd/coop/base2novel/shots16_seed2", evaluation="base")["metric/mir"])
    assert pd.isna(cell(frame, run="dtd/zeroshot/zeroshot/seed1", evaluation="test")["shots"])


def test_unfinished_runs_are_skipped_and_listed(runs_root):
    collection = load_runs(runs_root)
    assert not collection.frame["run"].str.contains("seed4|seed5").any()
    skipped = {s.run: s.reason for s in collection.skipped}
    assert set(skipped) == {"dtd/coop/base2novel/shots16_seed4", "dtd/coop/base2novel/shots16_seed5"}
    assert "'running'" in skipped["dtd/coop/base2novel/shots16_seed4"]
    assert "no results.json" in skipped["dtd/coop/base2novel/shots16_seed5"]


def test_base2novel_numbers_match_hand_computation(runs_root):
    data = base2novel_table(load_runs(runs_root).frame).data
    dtd = cell(data, method="coop", dataset="dtd")
    # seeds 80, 82, 84 -> mean 82, sample std sqrt((4 + 0 + 4) / 2) = 2; novel 50, 53, 56 -> 53 +- 3
    assert (dtd["base"], dtd["base_std"], dtd["novel"], dtd["novel_std"]) == (82.0, 2.0, 53.0, 3.0)
    assert dtd["hm"] == pytest.approx(2 * 82 * 53 / 135, abs=1e-9)  # 64.38518518...
    assert (dtd["n_seeds"], dtd["seeds"]) == (3, "1,2,3")
    pets = cell(data, method="coop", dataset="oxford_pets")
    # base 90, 94 -> 92 +- sqrt(8); novel 96, 98 -> 97 +- sqrt(2)
    assert pets["base"] == 92.0 and pets["base_std"] == pytest.approx(2.8284271247461903, abs=1e-12)
    assert pets["novel"] == 97.0 and pets["novel_std"] == pytest.approx(1.4142135623730951, abs=1e-12)
    assert pets["hm"] == pytest.approx(17848 / 189, abs=1e-9)  # 94.43386243...; mean of seed HMs is 94.43078
    average = cell(data, method="coop", dataset=AVERAGE)
    assert (average["base"], average["novel"]) == (87.0, 75.0)
    assert average["hm"] == pytest.approx(2 * 87 * 75 / 162, abs=1e-9)  # 80.5555..., HM of the averages
    mean_hm = cell(data, method="coop", dataset=MEAN_HM)
    assert mean_hm["hm"] == pytest.approx((8692 / 135 + 17848 / 189) / 2, abs=1e-9)  # 79.40952380952...
    assert pd.isna(mean_hm["base"]) and mean_hm["n_datasets"] == 2
    zs = cell(data, method="zeroshot", dataset="dtd")
    assert zs["base"] == 70.0 and pd.isna(zs["base_std"]) and zs["hm"] == pytest.approx(2 * 70 * 60 / 130, abs=1e-9)
    assert cell(data, method="zeroshot", dataset=AVERAGE)["hm"] == pytest.approx(hm(79.0, 77.5), abs=1e-9)


def test_base2novel_display_and_caption(runs_root):
    table = base2novel_table(load_runs(runs_root).frame)
    display = table.display
    assert list(display.columns) == ["Dataset", "Method", "Shots", "Base", "Novel", "HM"]
    assert display["Dataset"].tolist() == ["dtd", "dtd", "oxford_pets", "oxford_pets",
                                           AVERAGE, AVERAGE, MEAN_HM, MEAN_HM]
    assert display.iloc[0].tolist() == ["dtd", "zero-shot", "0", "70.00", "60.00", "64.62"]  # the baseline first
    assert display.iloc[1].tolist() == ["dtd", "CoOp", "16", "82.00 ± 2.00", "53.00 ± 3.00", "64.39"]
    assert display.iloc[5].tolist() == [AVERAGE, "CoOp", "16", "87.00", "75.00", "80.56"]
    assert display.iloc[7].tolist() == [MEAN_HM, "CoOp", "16", "", "", "79.41"]
    assert table.summary_start == 4
    assert "harmonic mean of those two averages" in table.caption and MEAN_HM in table.caption


def test_few_shot_numbers_and_layout(runs_root):
    table = few_shot_table(load_runs(runs_root).frame)
    data = table.data
    shots16 = cell(data, method="coop", shots=16, dataset="dtd")
    assert (shots16["mean"], shots16["std"]) == (62.0, math.sqrt(8))
    assert cell(data, method="coop", shots=16, dataset=AVERAGE)["mean"] == (62.0 + 86.0) / 2
    one_seed = cell(data, method="coop", shots=1, dataset="oxford_pets")
    assert one_seed["mean"] == 80.0 and pd.isna(one_seed["std"]) and one_seed["n_seeds"] == 1
    assert cell(data, method="coop", shots=1, dataset=AVERAGE)["mean"] == (42.0 + 80.0) / 2
    assert list(table.display.columns) == ["Method", "Shots", "dtd", "oxford_pets", AVERAGE]
    assert table.display.values.tolist() == [
        ["zero-shot", "", "43.50", "", "43.50 (1/2)"],
        ["CoOp", "1", "42.00 ± 2.83", "80.00", "61.00"],
        ["CoOp", "16", "62.00 ± 2.83", "86.00 ± 1.41", "74.00"],
    ]


def test_cross_dataset_averages_targets_only(runs_root):
    table = transfer_table(load_runs(runs_root).frame, "cross_dataset")
    data = table.data
    assert cell(data, evaluation="imagenet")["role"] == "source"
    assert (cell(data, evaluation="caltech101")["mean"], cell(data, evaluation="oxford_pets")["mean"]) == (93.0, 89.0)
    assert cell(data, evaluation=AVERAGE)["mean"] == 91.0  # (93 + 89) / 2; source 71 excluded
    assert list(table.display.columns) == ["Method", "imagenet (source)", "caltech101", "oxford_pets", "Average (targets)"]
    assert table.display.iloc[0].tolist() == ["CoOp", "71.00 ± 1.41", "93.00 ± 1.41", "89.00 ± 1.41", "91.00"]
    assert transfer_table(load_runs(runs_root).frame, "domain_generalization") is None


@pytest.fixture
def demo_like_root(tmp_path):
    """One dataset, base-to-novel, the demo's four methods (one a label) and one seed; plus single-dataset
    few-shot runs and a cross-dataset run with one target."""
    root = tmp_path / "single"
    for i, method in enumerate(["maple", "coop+cma", "zeroshot", "coop"]):
        write_run(root, f"procedural/{method}/base2novel/seed1", method=method, dataset="procedural",
                  protocol="base2novel", shots=16, seed=1, accuracies={"base": 60.0 + i, "novel": 40.0 + i})
        write_run(root, f"procedural/{method}/few_shot/seed1", method=method, dataset="procedural",
                  protocol="few_shot", shots=16, seed=1, accuracies={"test": 50.0 + i})
    write_run(root, "imagenet/coop/cross_dataset/seed1", method="coop", dataset="imagenet", protocol="cross_dataset",
              shots=16, seed=1, accuracies={"imagenet": 70.0, "caltech101": 92.0})
    return root


def test_single_dataset_tables_have_no_rows_or_columns_repeating_it(demo_like_root):
    frame = load_runs(demo_like_root).frame
    table = base2novel_table(frame)
    assert not table.data["dataset"].isin([AVERAGE, MEAN_HM]).any()
    assert table.title == "Base-to-novel generalisation on procedural" and table.summary_start is None
    assert list(table.display.columns) == ["Method", "Base", "Novel", "HM"]
    assert table.display.values.tolist() == [  # paper names, zero-shot first, CoOp + CMA after CoOp
        ["zero-shot", "62.00", "42.00", "50.08"], ["CoOp", "63.00", "43.00", "51.11"],
        ["CoOp + CMA", "61.00", "41.00", "49.04"], ["MaPLe", "60.00", "40.00", "48.00"]]
    assert to_markdown(table).splitlines()[2:4] == ["| Method | Base | Novel | HM |", "| :--- | ---: | ---: | ---: |"]
    assert "Average" not in table.caption and MEAN_HM not in table.caption
    few = few_shot_table(frame)
    assert list(few.display.columns) == ["Method", "procedural"] and AVERAGE not in set(few.data["dataset"])
    transfer = transfer_table(frame, "cross_dataset")
    assert list(transfer.display.columns) == ["Method", "imagenet (source)", "caltech101"]
    assert AVERAGE not in set(transfer.data["evaluation"]) and "Average" not in transfer.caption


def test_method_display_names_cover_every_method_and_keep_unknown_labels():
    from promptinfo.methods import list_methods
    from promptinfo.report.names import METHOD_NAMES, method_display_name

    assert set(list_methods()) <= set(METHOD_NAMES)
    assert method_display_name("coop+cma") == "CoOp + CMA"
    assert method_display_name("maple-depth3") == "maple-depth3"  # a user's label is shown as written
    assert method_display_name("kgcoop + cma") == "KgCoOp + CMA"


def test_cli_plot_choices_are_the_trajectory_modes():
    from promptinfo.cli.report import PLOT_CHOICES
    from promptinfo.report.plots import TRAJECTORY_MODES

    assert PLOT_CHOICES == ("none", *TRAJECTORY_MODES)


def test_markdown_and_latex_rendering(runs_root):
    table = base2novel_table(load_runs(runs_root).frame)
    markdown = to_markdown(table).splitlines()
    assert markdown[2] == "| Dataset | Method | Shots | Base | Novel | HM |"
    assert markdown[3] == "| :--- | :--- | :--- | ---: | ---: | ---: |"
    assert markdown[5] == "| dtd | CoOp | 16 | 82.00 ± 2.00 | 53.00 ± 3.00 | 64.39 |"
    latex = to_latex(table)
    assert r"\begin{tabular}{lllrrr}" in latex
    assert r"    dtd & CoOp & 16 & 82.00 $\pm$ 2.00 & 53.00 $\pm$ 3.00 & 64.39 \\" in latex
    assert r"oxford\_pets" in latex and r"\label{tab:base2novel}" in latex
    lines = latex.splitlines()
    assert lines[lines.index(r"    \midrule", lines.index(r"    \toprule") + 3) + 1].startswith("    Average")


def test_csv_round_trip_keeps_full_precision(runs_root, tmp_path):
    table = base2novel_table(load_runs(runs_root).frame)
    paths = write_table(table, tmp_path / "out", ["csv", "md"])
    assert [p.name for p in paths] == ["base2novel.csv", "base2novel.md"]
    back = pd.read_csv(paths[0])
    assert cell(back, method="coop", dataset=MEAN_HM)["hm"] == pytest.approx((8692 / 135 + 17848 / 189) / 2, abs=1e-9)


def test_malformed_results_raise_naming_the_file_or_are_skipped(runs_root):
    broken = runs_root / "dtd/coop/few_shot/shots2_seed1"
    broken.mkdir(parents=True)
    (broken / "results.json").write_text('{"status": "finished", "method": "coop"')  # truncated
    with pytest.raises(ReportError, match="shots2_seed1/results.json"):
        load_runs(runs_root)
    collection = load_runs(runs_root, on_invalid="skip")
    assert "dtd/coop/few_shot/shots2_seed1" in {s.run for s in collection.skipped}
    assert len(collection.frame) == EXPECTED_ROWS


@pytest.mark.parametrize(
    "change, message",
    [({"evaluations": {"test": {"accuracy": 0.9e3}}}, "percentage"),
     ({"seed": "1"}, "'seed'"),
     ({"evaluations": {}}, "'evaluations'"),
     ({"method": None}, "'method'")],
)
def test_invalid_fields_are_named(tmp_path, change, message):
    run_dir = write_run(tmp_path, "r", method="coop", dataset="dtd", protocol="few_shot", shots=1, seed=1,
                        accuracies={"test": 50.0})
    results = json.loads((run_dir / "results.json").read_text()) | change
    (run_dir / "results.json").write_text(json.dumps(results))
    with pytest.raises(ReportError, match=message):
        load_runs(tmp_path)


def test_duplicate_runs_are_refused(runs_root):
    write_run(runs_root, "copy/dtd_seed1", method="coop", dataset="dtd", protocol="few_shot", shots=16, seed=1,
              accuracies={"test": 1.0})
    with pytest.raises(ReportError, match="same run"):
        load_runs(runs_root)


def test_base2novel_run_without_novel_is_refused(tmp_path):
    write_run(tmp_path, "r", method="coop", dataset="dtd", protocol="base2novel", shots=16, seed=1,
              accuracies={"base": 50.0, "novel": 40.0})
    results = json.loads((tmp_path / "r/results.json").read_text())
    del results["evaluations"]["novel"]
    (tmp_path / "r/results.json").write_text(json.dumps(results))
    with pytest.raises(ReportError, match="'base' and 'novel'"):
        build_tables(load_runs(tmp_path).frame)


def test_read_metrics_tolerates_only_a_partial_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 0, "loss": 3.0}\n{"epoch": 2, "lo')
    assert read_metrics(tmp_path)["epoch"].tolist() == [0, 1]
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": \n{"epoch": 2}\n')
    with pytest.raises(ReportError, match="line 2"):
        read_metrics(tmp_path)


def test_cli_writes_tables_and_prints_markdown(runs_root, tmp_path, capsys):
    out = tmp_path / "report"
    lines = [{"epoch": e, "info/entropy_image": 3.0 - e, "info/entropy_text": 2.0, "info/mir": 0.1 * e} for e in range(3)]
    (runs_root / "dtd/coop/base2novel/shots16_seed1/metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert report_main([str(runs_root), "--out", str(out), "--format", "csv,md,tex"]) == 0
    printed = capsys.readouterr().out
    assert "### Base-to-novel generalisation" in printed and "| dtd | CoOp | 16 | 82.00 ± 2.00 |" in printed
    assert "skipped dtd/coop/base2novel/shots16_seed4" in printed
    names = {p.name for p in out.iterdir()}
    for stem in ("base2novel", "few_shot", "cross_dataset"):
        assert {f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= names
    assert {"runs.csv", "skipped.csv"} <= names and "domain_generalization.csv" not in names
    assert len(pd.read_csv(out / "skipped.csv")) == 2
    assert [p.name for p in (out / "trajectories").iterdir()] == ["dtd_coop_base2novel_16_ViT-B-16_openai.png"]


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert report_main([str(tmp_path / "missing"), "--plots", "none"]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty), "--plots", "none"]) == 1



def test_cli_leaves_the_callers_logging_level_as_it_was(tmp_path):
    package = logging.getLogger("promptinfo")
    level = package.level
    package.setLevel(logging.ERROR)
    try:
        assert report_main([str(tmp_path / "missing"), "--plots", "none"]) == 2
        assert package.level == logging.ERROR  # informs at INFO while it runs, then restores the caller's level
    finally:
        package.setLevel(level)

def test_same_seed_twice_in_one_cell_is_refused(runs_root):
    # A zero-shot run under the few_shot protocol lands in the same few-shot cell as the zeroshot-protocol run.
    write_run(runs_root, "dtd/zeroshot/few_shot/seed1", method="zeroshot", dataset="dtd", protocol="few_shot",
              shots=None, seed=1, accuracies={"test": 43.5})
    with pytest.raises(ReportError, match="same table cell with the same seed 1"):
        few_shot_table(load_runs(runs_root).frame)
