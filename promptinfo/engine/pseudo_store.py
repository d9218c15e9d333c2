"""The pseudo-labelling strategies as hydra configs: `pseudo/<name>` holds each strategy's typed defaults,
so `pseudo=<name>` and `pseudo.<option>=...` compose without a YAML copy of them (presets in `configs/pseudo/`
extend these)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


def register_pseudo_configs() -> None:
    """Store every registered strategy's `Config` (plus `name`) as `pseudo/<name>` (idempotent)."""
    from promptinfo.engine.validate import strategy_schema
    from promptinfo.pseudo import list_strategies

    store = ConfigStore.instance()
    for name in list_strategies():
        store.store(group="pseudo", name=name, node=OmegaConf.to_container(OmegaConf.structured(strategy_schema(name))))
