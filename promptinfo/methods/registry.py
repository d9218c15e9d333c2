"""Method registry: `@register_method("coop")` on a class, `create_method("coop", backbone, classnames)`.

A built-in method's `Config` is registered in `promptinfo.methods.configs` with `@method_config("coop")`, so
that its options are known without importing torch; its class is registered in its own module.
"""

from __future__ import annotations

from typing import Callable, Sequence

from promptinfo.registry import Registry

_METHODS = Registry("method", "methods", lambda name: f"method {name!r}", "promptinfo.methods")


def method_config(name: str) -> Callable[[type], type]:
    """Dataclass decorator adding a built-in method's `Config` under its key (in `promptinfo.methods.configs`)."""
    return _METHODS.register_config(name)


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator adding a `PromptMethod` subclass to the registry under a lowercase key."""
    return _METHODS.register(name)


def list_methods() -> list[str]:
    """Registry keys of every method, sorted."""
    return _METHODS.names()


def method_class(name: str) -> type:
    return _METHODS.get(name)


def method_configs(import_modules: bool = True) -> dict[str, type]:
    """Key -> `Config` of every method (see `Registry.configs`)."""
    return _METHODS.configs(import_modules)


def find_method_config(name: str) -> type | None:
    """The `Config` dataclass of method `name`, None if there is none (read without torch for a built-in one)."""
    return _METHODS.find_config(name)


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
    config = _METHODS.config(name, config, keep_none=False)  # None keeps the default (as timm does)
    return method_class(name)(backbone, classnames, config, dataset_templates)
