"""FreeMatch's self-adaptive threshold (Wang et al., ICLR 2023, Sec. 3.2, Eq. 4-7).

A global threshold tau_t, the EMA of the mean max-confidence on unlabelled batches, is modulated per
class by the EMA of the mean class probabilities p~_t normalised by its maximum:
tau_t(c) = MaxNorm(p~_t)(c) * tau_t; both start at 1/C and are updated with the batch before it is
masked (as in microsoft/Semi-supervised-learning, `semilearn/algorithms/freematch/utils.py`).
We keep the threshold and leave out FreeMatch's self-adaptive fairness loss.
"""

from __future__ import annotations

import torch

from promptinfo.pseudo.base import PseudoLabeler
from promptinfo.pseudo.configs import FreeMatchConfig
from promptinfo.pseudo.registry import register_strategy


@register_strategy("freematch")
class FreeMatch(PseudoLabeler):
    Config = FreeMatchConfig

    def __init__(self, config, n: int, candidates: torch.Tensor) -> None:
        super().__init__(config, n, candidates)
        k = self.candidates.numel()
        self.class_probs = torch.zeros(0)  # p~_t over all classes, sized at the first batch
        self.global_threshold = torch.tensor(1.0 / k, dtype=torch.float64)

    def label(self, probs: torch.Tensor | None, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = probs.detach().double().cpu()
        if self.class_probs.numel() == 0:
            self.class_probs = torch.zeros(probs.shape[1], dtype=torch.float64)
            self.class_probs[self.candidates] = 1.0 / self.candidates.numel()
        m = self.config.ema
        confidence, pseudo = probs.max(dim=1)
        self.global_threshold = m * self.global_threshold + (1 - m) * confidence.mean()
        self.class_probs = m * self.class_probs + (1 - m) * probs.mean(dim=0)
        thresholds = self.class_probs / self.class_probs.max() * self.global_threshold  # [C]
        return pseudo, confidence >= thresholds[pseudo]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"class_probs": self.class_probs, "global_threshold": self.global_threshold}
