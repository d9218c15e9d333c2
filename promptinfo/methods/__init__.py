"""Prompt-learning methods behind one registry; importing this package registers them all."""

from promptinfo.methods import cocoop, coop, ivlp, kgcoop, maple, promptsrc, vpt, zeroshot  # noqa: F401  (registration)
from promptinfo.methods.base import MethodOutput, PromptMethod
from promptinfo.methods.checkpoint import load_method, load_prompt, read_prompt_checkpoint, save_prompt
from promptinfo.methods.registry import create_method, list_methods, register_method

__all__ = [
    "MethodOutput", "PromptMethod", "create_method", "list_methods", "register_method",
    "load_method", "load_prompt", "read_prompt_checkpoint", "save_prompt",
]
