"""Pseudo-labelling strategies behind one registry, like the methods: `@register_strategy("fixmatch")`."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable

from promptinfo.errors import ConfigError

_STRATEGIES: dict[str, type] = {}


def register_strategy(name: str) -> Callable[[type], type]:
    """Class decorator adding a `PseudoLabeler` subclass to the registry under a lowercase key."""

    def add(cls: type) -> type:
        if name in _STRATEGIES:
            raise ValueError(f"pseudo-labelling strategy {name!r} is registered twice")
        cls.registry_name = name
        _STRATEGIES[name] = cls
        return cls

    return add


def list_strategies() -> list[str]:
    """Registry keys of every strategy, sorted."""
    return sorted(_STRATEGIES)


def strategy_class(name: str) -> type:
    if name not in _STRATEGIES:
        close = difflib.get_close_matches(name, list(_STRATEGIES), n=3)
        raise ConfigError(f"Unknown pseudo.name={name!r}; valid strategies: {list_strategies()} (close: {close}).")
    return _STRATEGIES[name]


def create_strategy(name: str, n_unlabelled: int, candidates, **config):
    """Build a registered strategy for `n_unlabelled` images whose pseudo-labels lie in `candidates` `[k]`.

    Args:
        name: registry key (see `list_strategies()`).
        n_unlabelled: size of the unlabelled set (strategies keep per-image state indexed by position).
        candidates: class indices a pseudo-label may take (all classes, or the novel ones in
            transductive zero-shot learning).
        **config: fields of the strategy's `Config` dataclass.
    """
    cls = strategy_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ConfigError(f"Unknown option(s) {unknown} for pseudo.name={name!r}; valid options: {sorted(fields)}.")
    return cls(cls.Config(**config), n_unlabelled, candidates)
