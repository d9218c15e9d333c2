"""What the argparse commands (report, inspect) share: logging set-up and user errors as exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from promptinfo.errors import PromptInfoError
from promptinfo.report.formats import parse_formats


def run_command(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    body: Callable[[argparse.Namespace, list[str]], int],
) -> int:
    """Parse `argv`, check `--format`, run `body(args, formats)`; a PromptInfoError prints and returns 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("promptinfo").setLevel(logging.INFO)
    try:
        formats = parse_formats(args.format)
    except ValueError as err:
        parser.error(str(err))
    try:
        return body(args, formats)
    except PromptInfoError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
