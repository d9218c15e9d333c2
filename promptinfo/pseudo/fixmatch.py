"""FixMatch (Sohn et al., NeurIPS 2020): a fixed confidence threshold on the weak view's prediction.

The hard pseudo-label argmax p(y | weak view) supervises the strong view where max p >= tau
(Algorithm 1; tau = 0.95, mu = 7, lambda_u = 1 in google-research/fixmatch `fixmatch.py`'s flags).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptinfo.pseudo.base import PseudoLabeler, StrategyConfig
from promptinfo.pseudo.registry import register_strategy


@dataclass
class StrongViewConfig(StrategyConfig):
    """Options of strategies that train on a strongly augmented view.

    Attributes:
        randaugment_ops, randaugment_magnitude: torchvision RandAugment's `num_ops` and `magnitude`
            (FixMatch's RandAugment applies 2 random operations), after the training crop and flip.
    """

    randaugment_ops: int = 2
    randaugment_magnitude: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.randaugment_ops < 0 or not 0 <= self.randaugment_magnitude <= 30:
            raise ValueError(f"pseudo.randaugment_ops={self.randaugment_ops} and pseudo.randaugment_magnitude="
                             f"{self.randaugment_magnitude}; use ops >= 0 and a magnitude in [0, 30].")


@dataclass
class FixMatchConfig(StrongViewConfig):
    """Attributes:
        threshold: confidence a weak-view prediction needs to become a pseudo-label (tau).
    """

    threshold: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"pseudo.threshold={self.threshold}; a confidence threshold lies in (0, 1].")


@register_strategy("fixmatch")
class FixMatch(PseudoLabeler):
    Config = FixMatchConfig

    def label(self, probs: torch.Tensor | None, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        confidence, pseudo = probs.max(dim=1)  # [b], [b]
        return pseudo, confidence >= self.config.threshold
