"""What the argparse commands (report, inspect, demo) share: console logging and user errors as exit code 2.

These commands import torch, pandas and matplotlib only after their arguments are parsed, so `--help`
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from promptinfo.errors import PromptInfoError


def run_command(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    body: Callable[[argparse.Namespace, list[str]], int],
) -> int:
    """Parse `argv`, check `--format` (where the command has one), run `body(args, formats)`; a PromptInfoError prints and returns 2."""
    args = parser.parse_args(argv)
    from promptinfo.report.formats import parse_formats

    try:
        formats = parse_formats(args.format) if hasattr(args, "format") else []
    except ValueError as err:
        parser.error(str(err))
    with console_logging():
        try:
            return body(args, formats)
        except PromptInfoError as err:
            print(f"{parser.prog}: error: {err}", file=sys.stderr)
            return 2


@contextmanager
def console_logging(*filters: logging.Filter) -> Iterator[None]:
    """A command's console: warnings from every library, info from promptinfo, `filters` on every root handler.
    Undone on exit, so an in-process caller's logging (a test runner's, a notebook's) is left as it was."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    package = logging.getLogger("promptinfo")
    level = package.level
    package.setLevel(logging.INFO)
    added = [(handler, f) for handler in logging.getLogger().handlers for f in filters]
    for handler, f in added:
        handler.addFilter(f)
    try:
        yield
    finally:
        for handler, f in added:
            handler.removeFilter(f)
        package.setLevel(level)
