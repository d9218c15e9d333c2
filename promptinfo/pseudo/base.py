"""The interface every pseudo-labelling strategy implements.

A strategy turns the model's class probabilities on unlabelled images into hard pseudo-labels and a
mask of the images they are trusted on. It never sees the images' true labels: the engine keeps
those apart and compares them with the pseudo-labels only to report their accuracy.

Two families:
- online strategies label every unlabelled batch from the predictions on its weak view, and the
  loss is taken on its strong view (FixMatch, FreeMatch);
- offline strategies pick a labelled pool in a batched pass over the whole unlabelled set every few
  epochs, and train on it as on labelled data (the top-K family of Menghini et al., NeurIPS 2023).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from promptinfo.pseudo.configs import StrategyConfig


class PseudoLabeler:
    """Pseudo-labels of an unlabelled set of `n` images, restricted to the `candidates` classes.

    Class attributes:
        online: labels each batch from its weak view's predictions (else from a refreshed pool).
        uses_strong_view: the loss is taken on a strongly augmented view (RandAugment).
    """

    Config: ClassVar[type] = StrategyConfig
    registry_name: ClassVar[str] = ""
    online: ClassVar[bool] = True
    uses_strong_view: ClassVar[bool] = True

    def __init__(self, config, n: int, candidates: torch.Tensor) -> None:
        self.config, self.n = config, n
        self.candidates = torch.as_tensor(candidates, dtype=torch.long)

    # ----------------------------------------------------------------- offline strategies
    def refresh_source(self, epoch: int, epochs: int) -> str | None:
        """Which predictions the pool is rebuilt from before `epoch` (0-based) of `epochs`: "zeroshot",
        "model", or None for no rebuild."""
        return None

    def refresh(self, probs: torch.Tensor, epoch: int, epochs: int) -> None:
        """Rebuild the pool from the probabilities `[n, C]` of every unlabelled image."""

    def pool(self) -> torch.Tensor:
        """Indices of the unlabelled images a batch may draw this epoch (every image for online strategies)."""
        return torch.arange(self.n)

    def pseudo_weight(self, labelled: int) -> float:
        """Weight of the pseudo-label cross-entropy this epoch, beside the labelled one's 1, given the
        number of labelled training images."""
        return self.config.weight

    # ----------------------------------------------------------------- every strategy
    def label(self, probs: torch.Tensor | None, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo-labels `[b]` and trust mask `[b]` (bool) of the images `index` `[b]`.

        Args:
            probs: the weak view's class probabilities `[b, C]` (online strategies), else None.
            index: positions of the images in the unlabelled set.
        """
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors that make a resumed run continue exactly (adaptive thresholds, the pool)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            setattr(self, name, value.clone())


def candidate_probs(logits: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Softmax `[b, C]` (float32) over the candidate classes only; the other classes get probability 0."""
    masked = torch.full_like(logits, float("-inf"), dtype=torch.float32)
    cand = candidates.to(logits.device)
    masked[:, cand] = logits[:, cand].float()
    return masked.softmax(dim=1)
