"""FixMatch (Sohn et al., NeurIPS 2020): a fixed confidence threshold on the weak view's prediction.

The hard pseudo-label argmax p(y | weak view) supervises the strong view where max p >= tau
(Algorithm 1; tau = 0.95, mu = 7, lambda_u = 1 in google-research/fixmatch `fixmatch.py`'s flags).
"""

from __future__ import annotations

import torch

from promptinfo.pseudo.base import PseudoLabeler
from promptinfo.pseudo.configs import FixMatchConfig, StrongViewConfig  # noqa: F401  (old import path)
from promptinfo.pseudo.registry import register_strategy


@register_strategy("fixmatch")
class FixMatch(PseudoLabeler):
    Config = FixMatchConfig

    def label(self, probs: torch.Tensor | None, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        confidence, pseudo = probs.max(dim=1)  # [b], [b]
        return pseudo, confidence >= self.config.threshold
