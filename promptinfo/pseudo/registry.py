"""Pseudo-labelling strategies behind one registry, like the methods: `@register_strategy("fixmatch")`."""

from __future__ import annotations

from typing import Callable

from promptinfo.registry import Registry

_STRATEGIES = Registry("pseudo-labelling strategy", "strategies", lambda name: f"pseudo.name={name!r}",
                       "promptinfo.pseudo")


def strategy_config(name: str) -> Callable[[type], type]:
    """Dataclass decorator adding a built-in strategy's `Config` under its key (in `promptinfo.pseudo.configs`)."""
    return _STRATEGIES.register_config(name)


def register_strategy(name: str) -> Callable[[type], type]:
    """Class decorator adding a `PseudoLabeler` subclass to the registry under a lowercase key."""
    return _STRATEGIES.register(name)


def list_strategies() -> list[str]:
    """Registry keys of every strategy, sorted."""
    return _STRATEGIES.names()


def strategy_class(name: str) -> type:
    return _STRATEGIES.get(name)


def strategy_configs(import_modules: bool = True) -> dict[str, type]:
    """Key -> `Config` of every strategy (see `Registry.configs`)."""
    return _STRATEGIES.configs(import_modules)


def find_strategy_config(name: str) -> type | None:
    """The `Config` dataclass of strategy `name`, None if there is none (read without torch for a built-in one)."""
    return _STRATEGIES.find_config(name)


def create_strategy(name: str, n_unlabelled: int, candidates, **config):
    """Build a registered strategy for `n_unlabelled` images whose pseudo-labels lie in `candidates` `[k]`.

    Args:
        name: registry key (see `list_strategies()`).
        n_unlabelled: size of the unlabelled set (strategies keep per-image state indexed by position).
        candidates: class indices a pseudo-label may take (all classes, or the novel ones in
            transductive zero-shot learning).
        **config: fields of the strategy's `Config` dataclass.
    """
    return strategy_class(name)(_STRATEGIES.config(name, config), n_unlabelled, candidates)
