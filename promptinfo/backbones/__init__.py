"""CLIP backbones: creation from open_clip or OpenAI files, and the prompt-aware encoder adapter."""

from promptinfo.backbones.clip import Backbone, PreprocessConfig, normalize
from promptinfo.backbones.factory import create_backbone, list_backbones

__all__ = ["Backbone", "PreprocessConfig", "create_backbone", "list_backbones", "normalize"]
