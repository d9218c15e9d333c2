"""Method registry: `@register_method("coop")` on a class, `create_method("coop", backbone, classnames)`."""

from __future__ import annotations

from typing import Callable, Sequence

from promptinfo.registry import Registry

_METHODS = Registry("method", "methods", lambda name: f"method {name!r}")


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator adding a `PromptMethod` subclass to the registry under a lowercase key."""
    return _METHODS.register(name)


def list_methods() -> list[str]:
    """Registry keys of every method, sorted."""
    return _METHODS.names()


def method_class(name: str) -> type:
    return _METHODS.get(name)


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
