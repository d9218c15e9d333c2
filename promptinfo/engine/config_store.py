"""The typed defaults as hydra configs: what `train.yaml` and `eval.yaml` compose before any YAML delta.

`register_configs()` stores in hydra's ConfigStore, as plain nodes built from the dataclasses (so hydra
composes the one copy of each default and `promptinfo.engine.validate` types the result afterwards):

- `train_schema` / `eval_schema`: `TrainConfig()` / `EvalConfig()`, the roots of `train.yaml` / `eval.yaml`;
- `method/<name>`: every registered method's `Config` fields plus `name`;
- `dataset/<key>`: every registered benchmark (`name: <key>`; the root comes from `DatasetConfig`);
- `pseudo/<name>`: every pseudo-labelling strategy's `Config` fields plus `name`;
- `loss/ce` and `trainer/default`: `LossConfig()` and `TrainerConfig()`.

It runs when hydra imports the `configs` package (`promptinfo_configs`), so hydra sees every method, strategy
and benchmark registered by then, and every module of their packages (a method module dropped into
`promptinfo/methods/` included). Within `known_without_imports()` (what `--help` uses) it stores the ones known
without importing torch instead: the benchmarks, the built-in methods and strategies (from their torch-free
`configs` modules) and any registered so far.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import typing
from collections.abc import Iterator
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from promptinfo.engine import schema

OmegaConf.register_new_resolver("pi.or", lambda value, default: default if value in (None, "") else value, replace=True)


def experiment_name(method: str, model: str, protocol: str, cma: bool = False, mi_weight: float = 0.0,
                    gap_weight: float = 0.0) -> str:
    """The experiment name derived from a run's choices: `<method>[_cma][_interplay]_<backbone>_<protocol>`.

    The backbone is its name in lowercase letters and digits (`ViT-B-16` -> `vitb16`; a checkpoint path
    gives its file name), e.g. `coop_vitb16_few_shot`, `maple_cma_vitb16_base2novel`.
    """
    backbone = re.sub(r"[^a-z0-9]", "", str(model).replace("\\", "/").rsplit("/", 1)[-1].split(".")[0].lower())
    loss = ("_cma" if cma else "") + ("_interplay" if mi_weight or gap_weight else "")
    return f"{method}{loss}_{backbone}_{protocol}"


OmegaConf.register_new_resolver("pi.experiment", experiment_name, replace=True)


def node(config: Any) -> dict:
    """A dataclass instance (or class) as a plain, unresolved dict: what hydra composes."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=False)


def section_schema(name: str, config_cls: type) -> type:
    """A dataclass with `name` plus every field of `config_cls` (types and defaults): a config section that
    names a registered component (`method`, `pseudo`) and holds its options."""
    hints = typing.get_type_hints(config_cls)
    fields = [("name", str, dataclasses.field(default=name))]
    for f in dataclasses.fields(config_cls):
        default = {"default": f.default} if f.default is not dataclasses.MISSING else {}
        if f.default_factory is not dataclasses.MISSING:
            default = {"default_factory": f.default_factory}
        fields.append((f.name, hints[f.name], dataclasses.field(**default)))
    return dataclasses.make_dataclass(f"{config_cls.__name__}Section", fields)


_import_modules = True
"""Whether `register_configs` imports every module of the method and strategy packages first."""


@contextlib.contextmanager
def known_without_imports() -> Iterator[None]:
    """Within it, `register_configs` stores only the methods and strategies known without importing their
    packages' modules (torch and open_clip): enough for `--help`, which then does not list a method module
    dropped into `promptinfo/methods/`."""
    global _import_modules
    _import_modules = False
    try:
        yield
    finally:
        _import_modules = True


def register_configs() -> None:
    """Store the typed defaults, every method, strategy and benchmark in hydra's ConfigStore (idempotent)."""
    from promptinfo.data import list_datasets
    from promptinfo.methods.registry import method_configs
    from promptinfo.pseudo.registry import strategy_configs

    store = ConfigStore.instance()
    store.store(name="train_schema", node=node(schema.TrainConfig))
    store.store(name="eval_schema", node=node(schema.EvalConfig))
    store.store(group="loss", name="ce", node=node(schema.LossConfig))
    store.store(group="trainer", name="default", node=node(schema.TrainerConfig))
    for group, configs in (("method", method_configs(_import_modules)), ("pseudo", strategy_configs(_import_modules))):
        for name, config in sorted(configs.items()):
            store.store(group=group, name=name, node=node(section_schema(name, config)))
    for key in list_datasets():
        store.store(group="dataset", name=key, node={"name": key})
