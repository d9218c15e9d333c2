"""Pseudo-labelling strategies for semi-supervised, unsupervised and transductive prompt learning."""

from promptinfo.pseudo import fixmatch, freematch, topk  # noqa: F401  (registration)
from promptinfo.pseudo.base import PseudoLabeler, StrategyConfig, candidate_probs
from promptinfo.pseudo.registry import create_strategy, list_strategies, register_strategy, strategy_class
from promptinfo.pseudo.topk import balanced_top_k

__all__ = ["PseudoLabeler", "StrategyConfig", "balanced_top_k", "candidate_probs", "create_strategy",
           "list_strategies", "register_strategy", "strategy_class"]
