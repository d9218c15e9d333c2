"""Accuracy counts and the base-to-novel harmonic mean."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class AccuracyCount(NamedTuple):
    """Correct and total counts; add counts across batches, then read ``percent``."""

    correct: int
    total: int

    @property
    def percent(self) -> float:
        """100 * correct / total."""
        if self.total == 0:
            raise ValueError("accuracy of zero samples is undefined; evaluate at least one sample")
        return 100.0 * self.correct / self.total

    def __add__(self, other: AccuracyCount) -> AccuracyCount:  # type: ignore[override]
        return AccuracyCount(self.correct + other.correct, self.total + other.total)


@torch.no_grad()
def accuracy(logits: Tensor, labels: Tensor, topk: int = 1) -> AccuracyCount:
    """Count samples whose label is among the ``topk`` highest logits.

    Args:
        logits: [n, C] scores.
        labels: [n] integer class indices in [0, C).
    """
    if logits.dim() != 2 or labels.dim() != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be [n, C] and labels [n], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if not 1 <= topk <= logits.shape[1]:
        raise ValueError(f"topk must be in [1, C={logits.shape[1]}], got {topk}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]})")
    top = logits.topk(topk, dim=1).indices  # [n, k]
    correct = (top == labels.unsqueeze(1)).any(1).sum()
    return AccuracyCount(int(correct), int(labels.shape[0]))


def harmonic_mean(base: float, novel: float) -> float:
    """Harmonic mean ``2 b n / (b + n)`` of base and novel accuracy (CoCoOp, Zhou et al. 2022); 0 if both are 0."""
    base, novel = float(base), float(novel)
    if base < 0 or novel < 0:
        raise ValueError(f"accuracies must be non-negative, got base={base}, novel={novel}")
    if base + novel == 0:
        return 0.0
    return 2.0 * base * novel / (base + novel)
