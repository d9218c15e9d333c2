"""Prompt-learning methods behind one registry.

A new method is one module here whose class is decorated with `@register_method("<name>")`; the registry
imports every module of the package on its first lookup of a class, so nothing else lists them (hydra offers
it as `method=<name>`). The built-in methods' options are read without torch, from their torch-free configs
module; the names below are imported on first access.
"""

from promptinfo.lazy import exports_on_demand

__all__ = [
    "MethodOutput", "PromptMethod", "create_method", "list_methods", "register_method",
    "load_method", "load_prompt", "read_prompt_checkpoint", "save_prompt",
]

__getattr__, __dir__ = exports_on_demand(__name__, {
    "promptinfo.methods.base": ("MethodOutput", "PromptMethod"),
    "promptinfo.methods.registry": ("create_method", "list_methods", "register_method"),
    "promptinfo.methods.prompt_file": ("load_method", "load_prompt", "read_prompt_checkpoint", "save_prompt"),
})
