"""promptinfo: prompt learning for CLIP-style models, with information-theoretic metrics and losses."""

from promptinfo.backbones import Backbone, create_backbone, list_backbones
from promptinfo.data import list_datasets, load_benchmark
from promptinfo.methods import create_method, list_methods
from promptinfo import demo  # noqa: F401,E402  (registers the demo models' `procedural` weights tag)

__version__ = "0.1.0"

__all__ = [
    "Backbone", "create_backbone", "create_method", "list_backbones", "list_datasets", "list_methods",
    "load_benchmark", "__version__",
]
