"""Aggregate run folders into paper-style tables and plot information trajectories.

``load_runs`` reads every results.json under a folder into a tidy frame
(:mod:`~promptinfo.report.aggregate`), ``build_tables`` turns it into base-to-novel,
few-shot and transfer tables (:mod:`~promptinfo.report.tables`), ``write_table`` writes
them as CSV, Markdown and LaTeX (:mod:`~promptinfo.report.formats`), and
:mod:`~promptinfo.report.plots` draws metrics.jsonl trajectories and inspection results.
"""

from promptinfo.report.aggregate import (
    ReportError,
    RunCollection,
    SkippedRun,
    find_run_dirs,
    load_runs,
    read_metrics,
    read_results,
)
from promptinfo.report.formats import parse_formats, to_latex, to_markdown, write_table
from promptinfo.report.tables import (
    AVERAGE,
    MEAN_HM,
    Table,
    base2novel_numbers,
    base2novel_table,
    build_tables,
    few_shot_numbers,
    few_shot_table,
    seed_statistics,
    transfer_numbers,
    transfer_table,
)

__all__ = [
    "AVERAGE", "MEAN_HM", "ReportError", "RunCollection", "SkippedRun", "Table",
    "base2novel_numbers", "base2novel_table", "build_tables", "few_shot_numbers", "few_shot_table",
    "find_run_dirs", "load_runs", "parse_formats", "read_metrics", "read_results", "seed_statistics",
    "to_latex", "to_markdown", "transfer_numbers", "transfer_table", "write_table",
]
