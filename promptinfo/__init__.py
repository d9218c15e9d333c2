"""promptinfo: prompt learning for CLIP-style models, with information-theoretic metrics and losses."""

from promptinfo.backbones import Backbone, create_backbone, list_backbones

__version__ = "0.1.0"

__all__ = ["Backbone", "create_backbone", "list_backbones", "__version__"]
