"""``promptinfo-demo``: the main job on the offline demo world, in minutes on a laptop CPU.

Pretrains a tiny CLIP on procedurally rendered coloured shapes (once, then cached; see
``promptinfo.demo``), trains zero-shot CLIP, CoOp, CoOp + CMA and MaPLe under the base-to-novel
protocol on the procedural benchmark, then prints the Base / Novel / HM table of
``promptinfo-report`` and writes the information-trajectory plots (matrix entropy, MI, MIR, HDR
between training image features and their classifier weights, per epoch).

Each run is an ordinary ``promptinfo-train`` run (``experiment=demo`` plus the overrides of
``DEMO_RUNS``), so its folder, resumption and skipping of finished runs work as everywhere else::

    promptinfo-demo                                  # runs/demo/..., data under $PROMPTINFO_DATA or ./data
    promptinfo-demo --variant small --epochs 2       # the fast test variant, shortened
    promptinfo-report runs/demo                      # the table again, from the run folders
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from promptinfo.cli import report
from promptinfo.cli._argparse import console_logging
from promptinfo.errors import PromptInfoError

EXPERIMENT = "demo"
"""The experiment preset (``configs/experiment/demo.yaml``) and the runs' folder under ``--runs-root``."""

COMPARISON_FIGURE = "trajectories_demo.png"
"""The figure (under RUNS_ROOT/demo/report) with the trajectories of every trained demo run."""

MAPLE_DEPTH = 2
"""MaPLe's prompt depth on the demo backbones (2 text layers in the small one; at most 3 in the default)."""


@dataclass(frozen=True)
class DemoRun:
    """One run of the demo job: its name in the table and its ``promptinfo-train`` overrides."""

    label: str
    overrides: tuple[str, ...]


DEMO_RUNS: tuple[DemoRun, ...] = (
    DemoRun("zeroshot", ("method=zeroshot",)),
    DemoRun("coop", ("method=coop",)),
    DemoRun("coop+cma", ("method=coop", "loss=cma", "label=coop+cma")),  # lambda: experiment/demo.yaml
    # MaPLe prompts its image encoder, so it encodes images at every step (no cached views)
    DemoRun("maple", ("method=maple", f"method.depth={MAPLE_DEPTH}", "trainer.train_views=0")),
)

SEMI_EXPERIMENT = "demo_semi"
"""The semi-supervised comparison's preset (``configs/experiment/demo_semi.yaml``) and runs folder (``--semi``)."""

SEMI_RUNS: tuple[DemoRun, ...] = (
    DemoRun("zeroshot", ("method=zeroshot", "protocol=zeroshot")),
    DemoRun("coop", ("protocol=few_shot", "label=coop")),  # the labelled shots alone
    DemoRun("coop+fpl", ("label=coop+fpl",)),  # plus the unlabelled images, pseudo-labelled (FPL)
    DemoRun("coop+fpl+info", ("loss=interplay", "label=coop+fpl+info")),  # plus the information terms
)

VARIANTS: dict[str, tuple[str, ...]] = {
    "default": ("model=demo", "dataset=procedural"),
    "small": ("model=demo_small", "dataset=procedural_small"),
}
"""Demo variant -> its backbone and benchmark (``promptinfo.demo.VARIANTS`` pretrains each backbone)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptinfo-demo",
        description="Offline demo: pretrain a tiny CLIP on procedural shapes (once, cached), train zero-shot, "
        "CoOp, CoOp + CMA and MaPLe base-to-novel, print the Base / Novel / HM table and write the "
        "information-trajectory plots.",
    )
    parser.add_argument("--runs-root", type=Path, default=Path("runs"), help="run folders go to RUNS_ROOT/demo (default: runs)")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("PROMPTINFO_DATA") or "data"),
                        help="where the procedural benchmark is rendered (default: $PROMPTINFO_DATA, else ./data)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="default",
                        help="default: the demo job; small: a smaller backbone and benchmark (tests)")
    parser.add_argument("--seed", type=int, default=1, help="seeds few-shot sampling, prompts and data order")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs of every learned method (default: the demo schedule)")
    parser.add_argument("--overwrite", action="store_true", help="redo finished runs instead of skipping them")
    parser.add_argument("--semi", action="store_true",
                        help="run the semi-supervised comparison instead (experiment=demo_semi): CoOp on 2 labelled "
                        "shots per base class alone, with the other train images pseudo-labelled, and with the "
                        "information terms too")
    return parser


def run_overrides(run: DemoRun, args: argparse.Namespace) -> list[str]:
    """The ``promptinfo-train`` overrides of one demo run."""
    experiment = SEMI_EXPERIMENT if args.semi else EXPERIMENT
    overrides = [f"experiment={experiment}", *VARIANTS[args.variant], *run.overrides, f"seed={args.seed}",
                 f"runs_root={args.runs_root}", f"dataset.root={args.data_root}"]
    if args.epochs is not None:
        overrides.append(f"trainer.epochs={args.epochs}")
    if args.overwrite:
        overrides.append("overwrite=true")
    return overrides


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status (2 on a user mistake)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 0:
        parser.error(f"--epochs must be 0 or more, got {args.epochs}")
    from promptinfo.cli._hydra import QuietOpenClip  # loads the engine: after --help and argument errors

    with console_logging(QuietOpenClip(), QuietEngine()):
        try:
            return _demo(args)
        except PromptInfoError as err:
            print(f"promptinfo-demo: error: {err}", file=sys.stderr)
            return 2


def _demo(args: argparse.Namespace) -> int:
    from hydra import compose, initialize_config_module

    from promptinfo.cli._hydra import CONFIG_PATH, HYDRA_VERSION
    from promptinfo.engine import train
    from promptinfo.report.names import method_display_name
    from promptinfo.report.plots import plot_run_trajectories

    start = time.perf_counter()
    _pretrain(args.variant)
    trained = {}
    runs = SEMI_RUNS if args.semi else DEMO_RUNS
    for i, run in enumerate(runs, start=1):
        overrides = run_overrides(run, args)
        print(f"[{i}/{len(runs)}] {run.label}: promptinfo-train {' '.join(overrides)}", flush=True)
        with initialize_config_module(CONFIG_PATH.removeprefix("pkg://"), version_base=HYDRA_VERSION):
            cfg = compose("train", overrides=overrides)
        results = train(cfg)
        print(_summary(run.label, results), flush=True)
        if results.get("epochs", 0) > 0:
            trained[run.label] = Path(cfg.run_dir)
    if args.semi:
        print(f"promptinfo-demo --semi finished in {time.perf_counter() - start:.0f} s.")
        return report.main([str(args.runs_root / SEMI_EXPERIMENT), "--format", "csv,md"])
    out = args.runs_root / EXPERIMENT
    status = report.main([str(out), "--format", "csv,md"])
    if status != 0:
        return status
    figure = out / "report" / COMPARISON_FIGURE
    if trained:
        plot_run_trajectories(list(trained.values()), figure, labels=[method_display_name(t) for t in trained],
                              title="Information trajectories on base training images (epoch 0: zero-shot)")
        print(f"Trajectories of {', '.join(trained)} in one figure: {figure}")
    print(f"Per-run trajectory figures: {out / 'report' / 'trajectories'}")
    print(f"promptinfo-demo finished in {time.perf_counter() - start:.0f} s.")
    return 0


def _pretrain(variant: str) -> None:
    from promptinfo.demo import demo_checkpoint_path, ensure_demo_backbone, get_recipe

    recipe = get_recipe(variant)
    if not demo_checkpoint_path(variant).is_file():
        print(f"Pretraining the demo CLIP {recipe.model} on procedural shapes (first use only; cached under "
              f"{demo_checkpoint_path(variant).parent})...", flush=True)
    ensure_demo_backbone(variant)


def _summary(label: str, results: dict) -> str:
    timing = f"({results['wall_time_s']:.0f} s)"
    if "test" in results["evaluations"]:
        pseudo = results.get("pseudo_labels")
        extra = "" if not pseudo else (f"  pseudo-labels {pseudo['labelled']} per epoch, "
                                       f"{pseudo.get('accuracy', float('nan')):.2f}% right")
        return f"    {label}: test {results['evaluations']['test']['accuracy']:.2f}{extra}  {timing}"
    base, novel = (results["evaluations"][k]["accuracy"] for k in ("base", "novel"))
    return f"    {label}: base {base:.2f}  novel {novel:.2f}  HM {results['harmonic_mean']:.2f}  {timing}"


class QuietEngine(logging.Filter):
    """Drop the engine's info-level progress (per-epoch lines) on the console: the demo prints one summary
    line per run instead. The run's train.log, written by its own handler, keeps every line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith("promptinfo.engine")


if __name__ == "__main__":
    raise SystemExit(main())
