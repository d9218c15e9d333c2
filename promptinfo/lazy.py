"""Packages whose public names are imported on first access (PEP 562), so that importing a light part of a
package (a config, a registry key) does not load torch and open_clip for the rest."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping, Sequence


def exports_on_demand(package: str, exports: Mapping[str, Sequence[str]],
                      first: Sequence[str] = ()) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of a package whose public names are imported when first read.

    A public name that is also a submodule's (`promptinfo.engine.evaluate`, the module of the function
    `evaluate`) stays the public object, as it would after an eager `from .evaluate import evaluate`.

    Args:
        package: the package's `__name__`.
        exports: module -> the public names it defines, e.g. `{"promptinfo.engine.training": ("train",)}`.
        first: modules imported before the first public name is (plug-ins that register into the package).

    Returns:
        `(__getattr__, __dir__)`, to assign in the package's `__init__` after its `__all__` (which must list
        every name of `exports`, and may list names the package defines itself, such as `__version__`).
    """
    where = {name: module for module, names in exports.items() for name in names}
    defined = vars(sys.modules[package])
    assert {*where, *defined} >= set(defined.get("__all__", ())) >= set(where), f"{package}: __all__ != exports"
    sys.modules[package].__class__ = _keeping_public_names(package, set(where))

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for module in first:
            importlib.import_module(module)
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__


def _keeping_public_names(package: str, public: set[str]) -> type:
    """A module type that ignores the import system's binding of submodule `<package>.<name>` to the package's
    attribute `name` where `name` is a public name (read through `__getattr__` instead)."""

    class Package(types.ModuleType):
        def __setattr__(self, name: str, value: object) -> None:
            if name in public and isinstance(value, types.ModuleType) and value.__name__ == f"{package}.{name}":
                return
            super().__setattr__(name, value)

    return Package
