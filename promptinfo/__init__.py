"""promptinfo: prompt learning for CLIP-style models, with information-theoretic metrics and losses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptinfo.lazy import exports_on_demand

__version__ = "0.1.0"

_EXPORTS = {
    "promptinfo.backbones": ("Backbone", "create_backbone", "list_backbones"),
    "promptinfo.data": ("list_datasets", "load_benchmark"),
    "promptinfo.methods": ("create_method", "list_methods", "load_method"),
    "promptinfo.engine.predict": ("predict",),
}
"""The module that defines each public name. Imported on first access, so that a console command's
`--help` (or any light submodule) does not pay for torch and open_clip."""

_PLUGINS = ("promptinfo.demo.weights",)
"""Modules that register into the lower layers (the demo's `procedural` weights tag), imported with the
first public name."""

__all__ = ["Backbone", "create_backbone", "list_backbones", "list_datasets", "load_benchmark", "create_method",
           "list_methods", "load_method", "predict", "__version__"]

if TYPE_CHECKING:
    from promptinfo.backbones import Backbone, create_backbone, list_backbones
    from promptinfo.data import list_datasets, load_benchmark
    from promptinfo.engine.predict import predict
    from promptinfo.methods import create_method, list_methods, load_method

__getattr__, __dir__ = exports_on_demand(__name__, _EXPORTS, first=_PLUGINS)
