"""Prompt-learning methods behind one registry; importing this package registers them all.

A new method is one module here whose class is decorated with `@register_method("<name>")`; the modules are
found by `import_submodules`, so nothing else lists them (hydra offers it as `method=<name>`).
"""

from promptinfo.discovery import import_submodules
from promptinfo.methods.base import MethodOutput, PromptMethod
from promptinfo.methods.prompt_file import load_method, load_prompt, read_prompt_checkpoint, save_prompt
from promptinfo.methods.registry import create_method, list_methods, register_method

import_submodules(__name__, __path__)

__all__ = [
    "MethodOutput", "PromptMethod", "create_method", "list_methods", "register_method",
    "load_method", "load_prompt", "read_prompt_checkpoint", "save_prompt",
]
