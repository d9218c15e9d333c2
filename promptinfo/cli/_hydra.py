"""What the hydra entry points share: the config location, a check of the command line before hydra runs,
and clean exits on user mistakes."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from promptinfo.engine.config_store import known_without_imports
from promptinfo.engine.rundir import LOCK
from promptinfo.engine.validate import unknown_choice, unknown_key
from promptinfo.errors import ConfigError, PromptInfoError

CONFIG_MODULE = "promptinfo_configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
"""The `configs/` tree, installed as the package `promptinfo_configs`."""
HYDRA_VERSION = "1.3"
USER_ERROR_EXIT = 2
MULTIRUN_FLAGS = ("-m", "--multirun")
HELP_FLAGS = ("-h", "--help", "--hydra-help")

logger = logging.getLogger("promptinfo.cli")


class QuietOpenClip(logging.Filter):
    """Drop open_clip's info-level messages (model and tokenizer creation steps); keep its warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or f"{os.sep}open_clip{os.sep}" not in record.pathname


def asks_only_for_help(args: Sequence[str]) -> bool:
    """Whether a command line is a bare help request: a help flag, no override."""
    return any(arg in HELP_FLAGS for arg in args) and all(arg.startswith("-") for arg in args)


def register_configs_for(args: Sequence[str]) -> None:
    """Import the configs package, which registers every group's options, before hydra runs (hydra imports it
    only when it composes, after it may have listed a group, e.g. to complete a command line): for a bare help
    request with the methods and strategies known without importing torch
    (`config_store.known_without_imports`), otherwise with every one, as a run needs."""
    with known_without_imports() if asks_only_for_help(args) else contextlib.nullcontext():
        importlib.import_module(CONFIG_MODULE)


def run_command(command: Callable[[Any], Any], cfg: Any) -> Any:
    """Run `command(cfg)`; a user mistake (bad config, missing data, busy run folder) ends the process
    with its message and exit status 2 instead of a traceback."""
    try:
        return command(cfg)
    except PromptInfoError as err:
        logger.error("%s: %s", type(err).__name__, err)
        if isinstance(err, ConfigError):
            _remove_unused_run_dir(cfg)
        sys.exit(USER_ERROR_EXIT)


def _remove_unused_run_dir(cfg: Any) -> None:
    """After a config error found while a single run starts (e.g. `trainer.device=cuda` without CUDA), remove
    the run folder hydra created when the run wrote nothing into it (at most its lock file), and the folders
    above it up to `runs_root` that it leaves empty."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN:
        return
    folder = Path(HydraConfig.get().runtime.output_dir).resolve()
    stop = Path(str(cfg.get("runs_root") or ".")).resolve()
    if stop not in folder.parents or not folder.is_dir() or any(p.name != LOCK for p in folder.iterdir()):
        return
    (folder / LOCK).unlink(missing_ok=True)
    while folder != stop:
        try:
            folder.rmdir()  # only ever an empty folder
        except OSError:
            return
        folder = folder.parent


def exit_on_bad_command_line(config_name: str, args: Sequence[str], validate: Callable[[DictConfig], Any],
                             schema_root: type) -> None:
    """Check the command line as `check_command_line` does; on a mistake print it and exit with status 2."""
    try:
        check_command_line(config_name, args, validate, schema_root)
    except ConfigError as err:
        sys.stderr.write(f"ConfigError: {err}\n")
        sys.exit(USER_ERROR_EXIT)


def check_command_line(config_name: str, args: Sequence[str], validate: Callable[[DictConfig], Any],
                       schema_root: type) -> None:
    """Compose and validate the config of a command line before hydra does.

    Hydra would create the run folder first and answer a typo in its own words (for an unknown key, "use
    +trainer.lrr=0.1", which only leads to a second error) with exit status 1. Here a misspelled group choice
    or key gets the valid ones and a did-you-mean. A sweep is checked with every choice of each group and the
    first value of every other swept key. Hydra's own flags (`--help`, `--cfg`, ...) are left to hydra.

    Raises:
        ConfigError: what is wrong and the valid choices.
    """
    if any(arg.startswith("-") and arg not in MULTIRUN_FLAGS for arg in args):
        return
    parsed = _parse([arg for arg in args if arg not in MULTIRUN_FLAGS])
    overrides = [o for o in parsed if not o.key_or_group.startswith("hydra")]  # hydra's own settings: hydra's
    importlib.import_module(CONFIG_MODULE)  # registers every group's options before hydra lists the first one
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=HYDRA_VERSION):
        groups = {o.key_or_group for o in overrides if _group_options(o.key_or_group)}
        for o in overrides:
            if o.key_or_group in groups and not o.is_delete():
                _check_choices(o)
        first = [_first_value(o) for o in overrides]
        base = _compose(config_name, [f for o, f in zip(overrides, first) if o.key_or_group in groups])
        for o in overrides:
            if o.key_or_group not in groups and o.type == OverrideType.CHANGE:
                _check_key(base, o.key_or_group, schema_root)
        cfg = _compose(config_name, first, with_hydra=True)
        _validate_as_hydra_will(cfg, validate)


def _parse(args: Sequence[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(list(args))
    except HydraException as err:
        raise ConfigError(f"Could not parse the command line: {_first_line(err)} (overrides are key=value).") from None


def _group_options(group: str) -> list[str]:
    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def _check_choices(o: Override) -> None:
    choices = _group_options(o.key_or_group)
    values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
    for value in values:
        if value not in choices and value != "null":
            raise ConfigError(unknown_choice(o.key_or_group, value, choices))


def _first_value(o: Override) -> str:
    if not o.is_sweep_override():
        return o.input_line
    return f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"


def _check_key(cfg: DictConfig, key: str, schema_root: type) -> None:
    """An existing key, or a ConfigError naming the valid keys beside it (a mapping's new entry takes `+`)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if node is None and parent:
        _check_key(cfg, parent, schema_root)
    if not isinstance(node, DictConfig):
        raise ConfigError(f"Config key {parent!r} holds a value, not a section; {key!r} cannot be set.")
    if leaf in node:
        return
    message = unknown_key(key, list(node.keys()))
    typed = OmegaConf.select(OmegaConf.structured(schema_root), parent) if parent else None
    if isinstance(typed, DictConfig) and OmegaConf.get_type(typed) is dict:
        message += f" {parent!r} is a mapping: add an entry with a leading +, e.g. +{key}=..."
    raise ConfigError(message)


def _compose(config_name: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    try:
        return compose(config_name, overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"The configuration does not compose: {_first_line(err)}") from None


def _validate_as_hydra_will(cfg: DictConfig, validate: Callable[[DictConfig], Any]) -> None:
    """Validate the job config with hydra's own settings visible to `${hydra:...}` interpolations (e.g.
    `experiment_name=${hydra:runtime.choices.loss}`), as they are when hydra runs the job."""
    hydra_config = HydraConfig.instance()
    hydra_config.set_config(cfg)
    try:
        with open_dict(cfg):
            del cfg["hydra"]
        validate(cfg)
    finally:
        hydra_config.cfg = None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

