"""Pseudo-labelling strategies for semi-supervised, unsupervised and transductive prompt learning.

A strategy is one module here whose class is decorated with `@register_strategy("<name>")`, found as the
methods are (on the registry's first lookup of a class); the names below are imported on first access.
"""

from promptinfo.lazy import exports_on_demand

__all__ = ["PseudoLabeler", "StrategyConfig", "balanced_top_k", "candidate_probs", "create_strategy",
           "list_strategies", "register_strategy", "strategy_class"]

__getattr__, __dir__ = exports_on_demand(__name__, {
    "promptinfo.pseudo.base": ("PseudoLabeler", "candidate_probs"),
    "promptinfo.pseudo.configs": ("StrategyConfig",),
    "promptinfo.pseudo.registry": ("create_strategy", "list_strategies", "register_strategy", "strategy_class"),
    "promptinfo.pseudo.topk": ("balanced_top_k",),
})
