"""``promptinfo-report RUNS_DIR``: paper-style tables (and trajectory plots) from finished run folders.

Writes ``<out>/<table>.{csv,md,tex}`` for each protocol present, ``runs.csv`` (one row per
run and evaluation), ``skipped.csv`` and ``trajectories/*.png``; prints the Markdown tables.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from promptinfo.cli._argparse import run_command
from promptinfo.io import atomic_path

logger = logging.getLogger("promptinfo.report")

PLOT_CHOICES = ("none", "group", "run")
"""``--plots``: none, or ``promptinfo.report.plots.TRAJECTORY_MODES`` (written out here so that ``--help`` need
not import the plotting stack; a test keeps the two equal)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptinfo-report",
        description="Aggregate finished run folders (results.json) into base-to-novel, few-shot and transfer "
        "tables: mean ± std over seeds, per dataset and averaged.",
    )
    parser.add_argument("runs_dir", type=Path, help="folder searched recursively for run folders")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUNS_DIR/report)")
    parser.add_argument("--format", default="csv,md,tex", help="comma-separated subset of csv,md,tex (default: all)")
    parser.add_argument("--decimals", type=int, default=2, help="decimals in Markdown/LaTeX cells (CSV keeps full precision)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip malformed results.json files with a warning instead of stopping")
    parser.add_argument("--plots", choices=PLOT_CHOICES, default="group",
                        help="trajectory figures from metrics.jsonl: one per group of seeds (default), one per run, or none")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _report)


def _report(args: argparse.Namespace, formats: list[str]) -> int:
    from promptinfo.report import build_tables, load_runs, to_markdown, write_table
    from promptinfo.report.plots import write_trajectory_plots

    collection = load_runs(args.runs_dir, on_invalid="skip" if args.skip_invalid else "error")
    out = args.out or args.runs_dir / "report"
    skipped = collection.skipped_frame()
    _write_csv(skipped, out / "skipped.csv")
    if collection.frame.empty:
        print(f"promptinfo-report: error: no finished runs under {args.runs_dir} ({len(skipped)} skipped)", file=sys.stderr)
        return 1
    _write_csv(collection.frame, out / "runs.csv")
    tables = build_tables(collection.frame, decimals=args.decimals)
    for table in tables:
        write_table(table, out, formats)
        print(to_markdown(table))
    logger.info("wrote %s.{%s}, runs.csv and skipped.csv to %s", ",".join(t.name for t in tables), ",".join(formats), out)
    if args.plots != "none":
        paths = write_trajectory_plots(collection, out / "trajectories", per=args.plots)
        logger.info("wrote %d trajectory figure(s) under %s", len(paths), out / "trajectories")
    runs = collection.frame["run"].nunique()
    print(f"{runs} finished run(s) aggregated, {len(skipped)} skipped.")
    for row in skipped.itertuples(index=False):
        print(f"- skipped {row.run}: {row.reason}")
    return 0


def _write_csv(frame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


if __name__ == "__main__":
    raise SystemExit(main())
