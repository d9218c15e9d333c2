"""CLIP backbones: creation from open_clip or OpenAI files, and the prompt-aware encoder adapter."""

from promptinfo.backbones.clip import Backbone, PreprocessConfig, common_prefix_length, normalize
from promptinfo.backbones.factory import create_backbone, list_backbones

__all__ = ["Backbone", "PreprocessConfig", "common_prefix_length", "create_backbone", "list_backbones", "normalize"]
