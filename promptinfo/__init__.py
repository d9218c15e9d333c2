"""promptinfo: prompt learning for CLIP-style models, with information-theoretic metrics and losses."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Backbone": "promptinfo.backbones", "create_backbone": "promptinfo.backbones",
    "list_backbones": "promptinfo.backbones", "list_datasets": "promptinfo.data",
    "load_benchmark": "promptinfo.data", "create_method": "promptinfo.methods", "list_methods": "promptinfo.methods",
    "load_method": "promptinfo.methods", "predict": "promptinfo.engine.predict",
}
"""Public name -> the module that defines it. Imported on first access, so that a console command's
`--help` (or any light submodule) does not pay for torch and open_clip."""

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from promptinfo.backbones import Backbone, create_backbone, list_backbones
    from promptinfo.data import list_datasets, load_benchmark
    from promptinfo.engine.predict import predict
    from promptinfo.methods import create_method, list_methods, load_method


_PLUGINS = ("promptinfo.demo.weights",)
"""Modules that register into the lower layers (the demo's `procedural` weights tag), imported with the
first public name."""


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'promptinfo' has no attribute {name!r}")
    for plugin in _PLUGINS:
        importlib.import_module(plugin)
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
