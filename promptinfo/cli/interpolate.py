"""`promptinfo-interpolate`: test accuracy, loss barrier and information metrics along the line between two prompts.

Writes `interpolation.csv` / `.md` (one row per point), `interpolation.json` (rows, barriers, the two
checkpoints) and `interpolation.png` to `--out`, and prints the Markdown table. The evaluation settings are
`promptinfo-eval`'s config, given as hydra overrides after the two checkpoints::

    promptinfo-interpolate runs/.../seed1/prompt.safetensors runs/.../seed2/prompt.safetensors \
        --points 11 --out runs/interpolation dataset.root=data protocol.subsample=base
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from promptinfo.cli._argparse import run_command

logger = logging.getLogger("promptinfo.interpolate")

TABLE_COLUMNS = {"t": "t", "accuracy": "Accuracy", "loss": "Loss", "loss_excess": "Excess loss",
                 "entropy_image": "H(Z)", "entropy_text": "H(W_y)", "mi": "MI", "mir": "MIR", "hdr": "HDR"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptinfo-interpolate",
        description="Evaluate prompts (1 - t) A + t B between two checkpoints of the same method and backbone: "
        "test accuracy, loss and loss barrier, matrix entropies, MI, MIR and HDR between test features and "
        "the classifier rows of their labels (linear mode connectivity).",
    )
    parser.add_argument("checkpoint_a", help="prompt checkpoint A (prompt.safetensors)")
    parser.add_argument("checkpoint_b", help="prompt checkpoint B: same method, options, backbone and classes")
    parser.add_argument("overrides", nargs="*", default=[],
                        help="promptinfo-eval config overrides, e.g. dataset.root=data protocol.subsample=novel "
                        "trainer.info_subset=256 (dataset: by default the one A was trained on)")
    parser.add_argument("--points", type=int, default=11, help="points on the line, both ends included (default 11)")
    parser.add_argument("--out", type=Path, default=Path("runs/interpolation"), help="output folder")
    parser.add_argument("--format", default="csv,md", help="table formats, comma-separated subset of csv,md,tex")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _interpolate)


def _interpolate(args: argparse.Namespace, formats: list[str]) -> int:
    from promptinfo.engine.interpolate import barriers, interpolate_checkpoints
    from promptinfo.io import write_json
    from promptinfo.report.collapse_plots import plot_interpolation
    from promptinfo.report.formats import to_markdown, write_table

    cfg = eval_config(args.checkpoint_a, args.checkpoint_b, args.overrides)
    rows = interpolate_checkpoints(cfg, args.checkpoint_b, args.points)
    summary = barriers(rows)
    table = interpolation_table(rows, summary)
    write_table(table, args.out, formats)
    write_json(args.out / "interpolation.json", {"checkpoint_a": args.checkpoint_a, "checkpoint_b": args.checkpoint_b,
                                                 "dataset": cfg.dataset.name, "subsample": cfg.protocol.subsample,
                                                 **summary, "rows": rows})
    plot_interpolation(rows, args.out / "interpolation.png",
                       title=f"A -> B on {cfg.dataset.name} ({cfg.protocol.subsample} classes)")
    print(to_markdown(table))
    logger.info("wrote interpolation.{%s}, interpolation.json and interpolation.png to %s", ",".join(formats), args.out)
    return 0


def eval_config(checkpoint_a: str, checkpoint_b: str, overrides: list[str]):
    """The `promptinfo-eval` config of A with `overrides`; the dataset defaults to the one A was trained on."""
    from hydra import compose, initialize_config_module

    from promptinfo.cli._hydra import CONFIG_PATH, HYDRA_VERSION
    from promptinfo.errors import ConfigError
    from promptinfo.methods import read_prompt_checkpoint

    for path in (checkpoint_a, checkpoint_b):
        if not Path(path).is_file():
            raise ConfigError(f"no prompt checkpoint at {path}; pass the paths of two prompt.safetensors files")
    trained_on = read_prompt_checkpoint(checkpoint_a)[1].get("dataset")
    defaults = [f"dataset={trained_on}"] if trained_on and not any(o.startswith("dataset=") for o in overrides) else []
    with initialize_config_module(CONFIG_PATH.removeprefix("pkg://"), version_base=HYDRA_VERSION):
        return compose("eval", overrides=[*defaults, *overrides, f"checkpoint={checkpoint_a}"])


def interpolation_table(rows: list[dict], summary: dict):
    """The report table of the line: one row per point, numbers at full precision in `data`."""
    import pandas as pd

    from promptinfo.report.tables import Table

    data = pd.DataFrame(rows)[[k for k in TABLE_COLUMNS if k in rows[0]]]
    display = data.rename(columns=TABLE_COLUMNS).map(lambda v: f"{v:.4f}")
    display["t"] = data["t"].map(lambda v: f"{v:.2f}")
    display["Accuracy"] = data["accuracy"].map(lambda v: f"{v:.2f}")
    caption = (f"Prompts (1 - t) A + t B. Loss: mean test cross-entropy; excess: over the straight line between the "
               f"ends' losses. Loss barrier {summary['loss_barrier']:.4f}, accuracy barrier "
               f"{summary['accuracy_barrier']:.2f} points. Entropies (nats), MI, MIR and HDR between test image "
               "features Z and the classifier rows of their labels W_y.")
    return Table("interpolation", "Linear interpolation between two prompts", data, display, caption, label_columns=1)


if __name__ == "__main__":
    raise SystemExit(main())
