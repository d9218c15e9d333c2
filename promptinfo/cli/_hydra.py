"""What the hydra entry points share: the config location and clean exits on user mistakes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import promptinfo.engine.resolvers  # noqa: F401  (pi.or, before hydra resolves hydra.run.dir)
from promptinfo.errors import PromptInfoError

CONFIG_PATH = "pkg://promptinfo_configs"
"""The `configs/` tree, installed as the package `promptinfo_configs`."""
HYDRA_VERSION = "1.3"
USER_ERROR_EXIT = 2

logger = logging.getLogger("promptinfo.cli")


class QuietOpenClip(logging.Filter):
    """Drop open_clip's info-level messages (model and tokenizer creation steps); keep its warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or f"{os.sep}open_clip{os.sep}" not in record.pathname


def run_command(command: Callable[[Any], Any], cfg: Any) -> Any:
    """Run `command(cfg)`; a user mistake (bad config, missing data, busy run folder) ends the process
    with its message and exit status 2 instead of a traceback."""
    try:
        return command(cfg)
    except PromptInfoError as err:
        logger.error("%s: %s", type(err).__name__, err)
        sys.exit(USER_ERROR_EXIT)
