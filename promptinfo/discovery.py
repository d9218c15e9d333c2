"""Find a package's modules without a hand-kept list: importing them runs their registrations."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable


def import_submodules(package: str, path: Iterable[str]) -> list[str]:
    """Import every public module of `package` (names not starting with `_`), in name order.

    Args:
        package: the package's dotted name (`__name__` of its `__init__`).
        path: the package's `__path__`.

    Returns:
        The imported modules' dotted names.
    """
    names = sorted(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return [f"{package}.{name}" for name in names]
