"""Method registry: `@register_method("coop")` on a class, `create_method("coop", backbone, classnames)`."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable, Sequence

from promptinfo.errors import ConfigError

_METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator adding a `PromptMethod` subclass to the registry under a lowercase key."""

    def add(cls: type) -> type:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        cls.registry_name = name
        _METHODS[name] = cls
        return cls

    return add


def list_methods() -> list[str]:
    """Registry keys of every method, sorted."""
    return sorted(_METHODS)


def method_class(name: str) -> type:
    if name not in _METHODS:
        close = difflib.get_close_matches(name, list(_METHODS), n=3)
        raise ConfigError(f"Unknown method {name!r}; valid methods: {list_methods()} (close: {close}).")
    return _METHODS[name]


def build_config(cls: type, overrides: dict):
    """The method's typed config with `overrides` applied; None values keep the defaults (as timm does)."""
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {unknown} for method {cls.registry_name!r}; valid options: {sorted(fields)}."
        )
    return cls.Config(**{k: v for k, v in overrides.items() if v is not None})


def create_method(
    name: str, backbone, classnames: Sequence[str], dataset_templates: Sequence[str] | None = None, **config
):
    """Build a registered method on a frozen backbone for a class list.

    Args:
        name: registry key (see `list_methods()`).
        backbone: a `promptinfo.Backbone`.
        classnames: class names ordered by label.
        dataset_templates: the dataset's hand-crafted templates, for methods with a template-built
            frozen text side (zero-shot and KgCoOp use them unless their config names templates).
        **config: fields of the method's `Config` dataclass; None keeps the default.
    """
    cls = method_class(name)
    return cls(backbone, classnames, build_config(cls, config), dataset_templates)
