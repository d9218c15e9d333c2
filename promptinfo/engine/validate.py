"""Validate composed configs against the typed schemas, with messages that name the key and the choices."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from promptinfo.engine import schema
from promptinfo.engine.config_store import section_schema  # also registers the pi.* resolvers
from promptinfo.errors import ConfigError

DEFAULT_STRATEGY = "fixmatch"
"""The pseudo-labelling strategy of a config that names none."""


def validate_train_config(cfg: Any) -> DictConfig:
    """The composed `promptinfo-train` config merged onto `TrainConfig`, checked and fully resolved.

    Derived values are written in: `trainer.epochs` from the published schedule tables and
    `loss.cma.weight` from `cma_lambda` when it is "auto" and CMA is on.

    Raises:
        ConfigError: unknown key, wrong type, unknown choice (the message lists the valid ones).
    """
    typed = _merge(schema.TrainConfig, cfg)
    _check_common(typed)
    _check_choice("loss.info.level", typed.loss.info.level, schema.INFO_LEVELS)
    _check_trainer(typed.trainer)
    for i, target in enumerate(typed.protocol.targets):
        _check_choice(f"protocol.targets[{i}]", target, dataset_names())
    _check_protocol(typed)
    _check_unlabelled(typed)
    if not typed.run_dir:
        raise ConfigError("run_dir is empty; set it (train.yaml derives it from experiment_name, dataset, method, "
                          "protocol, shots and seed under runs_root).")
    _fill_epochs(typed)
    _fill_cma_weight(typed)
    return typed


def validate_eval_config(cfg: Any) -> DictConfig:
    """The composed `promptinfo-eval` config merged onto `EvalConfig` and checked."""
    typed = _merge(schema.EvalConfig, cfg)
    _check_common(typed)
    _check_trainer(typed.trainer)
    if typed.checkpoint is not None and not os.path.isfile(typed.checkpoint):
        raise ConfigError(
            f"checkpoint={typed.checkpoint!r} does not exist; pass the path of a prompt.safetensors file."
        )
    return typed


# --------------------------------------------------------------------------------------------- merging
def _merge(root: type, cfg: Any) -> DictConfig:
    """Merge `cfg` onto the structured schema, typing the method section by its registry entry."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    cfg = _resolved(cfg)
    base = OmegaConf.structured(root)
    base.method = OmegaConf.structured(method_schema(_method_name(cfg.get("method"))))
    if "pseudo" in base:
        base.pseudo = OmegaConf.structured(strategy_schema(_strategy_name(cfg.get("pseudo"))))
    try:
        typed = OmegaConf.merge(base, cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(_explain(err, base)) from None
    OmegaConf.set_readonly(typed, False)
    return typed


def _resolved(cfg: DictConfig) -> DictConfig:
    try:
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as err:
        raise ConfigError(f"Could not resolve config key {_key_of(err)!r}: {_first_line(err)}") from None


def _method_name(method_cfg: Any) -> str:
    from promptinfo.methods import list_methods

    name = method_cfg.get("name") if isinstance(method_cfg, DictConfig) else None
    if not isinstance(name, str):
        raise ConfigError(f"method.name must name a method; valid methods: {list_methods()} (e.g. method=coop).")
    return name


def _strategy_name(pseudo_cfg: Any) -> str:
    from promptinfo.pseudo import list_strategies

    name = pseudo_cfg.get("name", DEFAULT_STRATEGY) if isinstance(pseudo_cfg, DictConfig) else DEFAULT_STRATEGY
    if not isinstance(name, str):
        raise ConfigError(f"pseudo.name must name a strategy; valid strategies: {list_strategies()}.")
    return name


def method_schema(name: str) -> type:
    """A dataclass with `name` plus every option of method `name` (its `Config` fields and types).

    Raises:
        ConfigError: unknown method; the message lists the registered ones.
    """
    from promptinfo.methods.registry import find_method_config, list_methods

    return _registered_section("method.name", name, find_method_config, list_methods)


def strategy_schema(name: str) -> type:
    """A dataclass with `name` plus every option of pseudo-labelling strategy `name`.

    Raises:
        ConfigError: unknown strategy; the message lists the registered ones.
    """
    from promptinfo.pseudo.registry import find_strategy_config, list_strategies

    return _registered_section("pseudo.name", name, find_strategy_config, list_strategies)


def _registered_section(key: str, name: str, find: Callable[[str], type | None],
                        names: Callable[[], list[str]]) -> type:
    """The section schema of registered `name`, or a ConfigError naming `key`'s valid choices."""
    config = find(name)
    if config is None:
        raise ConfigError(unknown_choice(key, name, names()))
    return section_schema(name, config)


def method_options(method_cfg: DictConfig) -> dict:
    """The method's (or strategy's) options (every key but `name`) as plain Python values."""
    options = OmegaConf.to_container(method_cfg, resolve=True)
    options.pop("name")
    return options


def _explain(err: OmegaConfBaseException, base: DictConfig) -> str:
    key = _key_of(err)
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        parent = key.rpartition(".")[0]
        node = OmegaConf.select(base, parent) if parent else base
        return unknown_key(key, sorted(node.keys()) if isinstance(node, DictConfig) else [])
    return f"Invalid value for config key {key!r}: {_first_line(err)}"


def unknown_key(key: str, valid: Sequence[str]) -> str:
    """The message for an unknown config key: the valid keys beside it and the closest one."""
    parent, _, leaf = key.rpartition(".")
    close = difflib.get_close_matches(leaf, list(valid), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown config key {key!r}. Valid keys under {parent or 'the root'!r}: {sorted(valid)}.{hint}"


def _key_of(err: OmegaConfBaseException) -> str:
    return str(getattr(err, "full_key", None) or getattr(err, "key", None) or "?")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


# --------------------------------------------------------------------------------------------- checks
def dataset_names() -> list[str]:
    from promptinfo.data import list_datasets

    return list_datasets()


def _check_common(cfg: DictConfig) -> None:
    _check_choice("dataset.name", cfg.dataset.name, dataset_names())
    _check_choice("protocol.name", cfg.protocol.name, schema.PROTOCOLS)
    _check_choice("protocol.subsample", cfg.protocol.subsample, schema.SUBSAMPLES)
    _check_backbone(cfg.model.name)


def _check_backbone(name: str) -> None:
    from promptinfo.backbones import list_backbones

    if os.path.isfile(name):
        return
    if name not in list_backbones():
        raise ConfigError(
            unknown_choice("model.name", name, list_backbones())
            + " A path to an OpenAI-format checkpoint file is also accepted."
        )


def _check_trainer(t: DictConfig) -> None:
    _check_choice("trainer.precision", t.precision, schema.PRECISIONS)
    _check_choice("trainer.optimizer", t.optimizer, schema.OPTIMIZERS)
    _check_choice("trainer.scheduler", t.scheduler, schema.SCHEDULERS)
    _check_choice("trainer.warmup_type", t.warmup_type, schema.WARMUP_TYPES)
    _check_choice("trainer.progress", t.progress, schema.PROGRESS)
    _check_device(t.device)
    positive = {"batch_size": t.batch_size, "eval_batch_size": t.eval_batch_size, "grad_accum": t.grad_accum,
                "log_every": t.log_every}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"trainer.{key}={value}; it must be at least 1.")
    for key in ("lr", "warmup_lr", "weight_decay", "momentum", "num_workers", "train_views", "info_subset",
                "warmup_epochs"):
        if t[key] < 0:
            raise ConfigError(f"trainer.{key}={t[key]}; it must be non-negative.")
    if t.batch_size % t.grad_accum:
        raise ConfigError(
            f"trainer.batch_size={t.batch_size} is not divisible by trainer.grad_accum={t.grad_accum}; "
            "the batch is split into grad_accum equal micro-batches."
        )
    if len(t.crop_scale) != 2 or not 0.0 < t.crop_scale[0] <= t.crop_scale[1] <= 1.0:
        raise ConfigError(f"trainer.crop_scale={list(t.crop_scale)}; give [low, high] with 0 < low <= high <= 1 "
                          "(the area range of the random resized crop, e.g. [0.08, 1.0]).")
    if not 0.0 <= t.hflip <= 1.0:
        raise ConfigError(f"trainer.hflip={t.hflip}; it is a probability, between 0 and 1.")
    if t.clip_grad_norm is not None and t.clip_grad_norm <= 0:
        raise ConfigError(f"trainer.clip_grad_norm={t.clip_grad_norm}; use a positive norm or null for no clipping.")


def _check_device(device: str) -> None:
    kind, _, index = device.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"trainer.device={device!r}; valid choices: auto, cpu, cuda, cuda:<index>, mps.")


def _check_protocol(cfg: DictConfig) -> None:
    p = cfg.protocol
    if p.name in ("cross_dataset", "domain_generalization") and not p.targets:
        raise ConfigError(f"protocol={p.name} evaluates on target datasets: set protocol.targets (a list of datasets).")
    if p.name not in ("cross_dataset", "domain_generalization") and p.targets:
        raise ConfigError(f"protocol.targets is only used by cross_dataset and domain_generalization, not {p.name}.")
    if p.name not in ("zeroshot", "unsupervised") and p.shots != -1 and p.shots < 1:
        raise ConfigError(f"protocol.shots={p.shots}; use a positive number of images per class, or -1 for all.")
    if p.name in ("base2novel", "transductive_zero_shot") and p.subsample != "all":
        raise ConfigError(f"protocol={p.name} always trains on base and evaluates base and novel; "
                          f"leave protocol.subsample=all (got {p.subsample!r}).")
    if p.name == "semi_supervised" and p.shots == -1:
        raise ConfigError("protocol=semi_supervised with protocol.shots=-1 labels every training image and leaves "
                          "none unlabelled; give a number of labelled shots per class.")


def _check_unlabelled(cfg: DictConfig) -> None:
    """The unlabelled-data settings: loss.unlabelled and the pseudo-labelling strategy."""
    u = cfg.loss.unlabelled
    weights = {"mi_weight": u.mi_weight, "gap_weight": u.gap_weight, "cma_weight": u.cma_weight}
    if cfg.protocol.name not in schema.UNLABELLED_PROTOCOLS:  # loss= stays orthogonal to protocol=: no
        return  # unlabelled image, nothing for loss.unlabelled to weigh
    _check_choice("loss.unlabelled.level", u.level, schema.INFO_LEVELS)
    for key, value in weights.items():
        if value < 0:
            raise ConfigError(f"loss.unlabelled.{key}={value}; weights must be non-negative.")
    from promptinfo.pseudo.registry import find_strategy_config

    try:
        find_strategy_config(cfg.pseudo.name)(**method_options(cfg.pseudo))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _fill_epochs(cfg: DictConfig) -> None:
    t = cfg.trainer
    if t.epochs is not None:
        if t.epochs < 0:
            raise ConfigError(f"trainer.epochs={t.epochs}; it must be non-negative.")
        return
    if cfg.dataset.name in t.epochs_by_dataset:
        t.epochs = t.epochs_by_dataset[cfg.dataset.name]
    elif cfg.protocol.shots in t.epochs_by_shots:
        t.epochs = t.epochs_by_shots[cfg.protocol.shots]
    elif cfg.protocol.name == "zeroshot":
        t.epochs = 0
    elif cfg.protocol.name == "unsupervised" and t.epochs_by_shots:  # no labelled shots: the longest schedule
        t.epochs = t.epochs_by_shots[max(t.epochs_by_shots)]
    else:
        raise ConfigError(
            f"trainer.epochs is null and the schedule has no entry for dataset {cfg.dataset.name!r} "
            f"(epochs_by_dataset: {dict(t.epochs_by_dataset)}) or shots={cfg.protocol.shots} "
            f"(epochs_by_shots: {dict(t.epochs_by_shots)}); set trainer.epochs."
        )


def _fill_cma_weight(cfg: DictConfig) -> None:
    cma = cfg.loss.cma
    if isinstance(cma.weight, str):
        if cma.weight != "auto":
            raise ConfigError(f"loss.cma.weight={cma.weight!r}; use a number in [0, 1] or 'auto'.")
        if not cma.enabled:
            return
        from promptinfo.data import cma_lambda

        try:
            cma.weight = float(cma_lambda(cfg.dataset.name, cfg.protocol.shots))
        except ValueError as err:
            raise ConfigError(f"loss.cma.weight=auto: {err}") from None
    elif not 0.0 <= cma.weight <= 1.0:
        raise ConfigError(f"loss.cma.weight={cma.weight}; lambda must lie in [0, 1].")


def _check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(unknown_choice(key, value, choices))


def unknown_choice(key: str, value: Any, choices: Sequence[str]) -> str:
    """The message for a value outside `choices`: every valid one and the closest ones."""
    close = difflib.get_close_matches(str(value), list(choices), n=3)
    hint = f" Did you mean {close}?" if close else ""
    return f"Unknown {key}={value!r}. Valid choices: {', '.join(map(str, choices))}.{hint}"
