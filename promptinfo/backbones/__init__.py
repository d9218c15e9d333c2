"""CLIP backbones: creation from open_clip or OpenAI files, registered weights tags, and the prompt-aware
encoder adapter."""

from promptinfo.backbones.clip import Backbone, PreprocessConfig, common_prefix_length, normalize
from promptinfo.backbones.factory import create_backbone, list_backbones
from promptinfo.backbones.weights import register_weights, registered_tags, registered_weights

__all__ = [
    "Backbone", "PreprocessConfig", "common_prefix_length", "create_backbone", "list_backbones", "normalize",
    "register_weights", "registered_tags", "registered_weights",
]
