"""``promptinfo-export RUN``: a trained prompt as a file to share, with a card (README.md) saying how to use it.

Example::

    promptinfo-export runs/demo/procedural/coop/base2novel/shots16_seed1 --out shared/coop_demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from promptinfo.cli._argparse import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptinfo-export",
        description="Write a run's prompt.safetensors with its results in the metadata, and a Markdown card "
        "(what it was trained on, results, how to load it); promptinfo.load_method reads it back.",
    )
    parser.add_argument("source", type=Path, help="a finished run folder, or a prompt.safetensors")
    parser.add_argument("--out", type=Path, required=True, help="folder to write prompt.safetensors and README.md to")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _export)


def _export(args: argparse.Namespace, formats: list[str]) -> int:
    from promptinfo.report.card import export_prompt

    exported = export_prompt(args.source, args.out)
    print(exported.card.read_text())
    print(f"wrote {exported.prompt} and {exported.card}")
    return 0
