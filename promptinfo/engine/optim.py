"""Optimiser over a method's parameter groups and the per-epoch learning-rate schedule of the CoOp protocol.

The schedule is Dassl's (used by CoOp, CoCoOp, MaPLe): `warmup_epochs` epochs at a constant
`warmup_lr`, then cosine annealing from `lr` with period `epochs`, stepped once per epoch, so epoch
e >= warmup uses `lr * (1 + cos(pi * (e - warmup) / epochs)) / 2` and never reaches zero. A group with
its own `lr` follows the same factors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from promptinfo.errors import ConfigError


def build_optimizer(groups: Iterable[dict], trainer) -> torch.optim.Optimizer:
    """SGD with momentum (default, CoOp) or AdamW over a method's parameter groups.

    Args:
        groups: `method.parameter_groups()`: dicts with `params` and optionally their own `lr` and
            `weight_decay`; the trainer's values fill what a group leaves out.
    """
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ConfigError("The method has no trainable parameters; use protocol=zeroshot to evaluate it untrained.")
    if trainer.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=trainer.lr, momentum=trainer.momentum, weight_decay=trainer.weight_decay)
    if trainer.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=trainer.lr, weight_decay=trainer.weight_decay)
    raise ConfigError(f"trainer.optimizer={trainer.optimizer!r}; choose sgd or adamw.")


class EpochSchedule:
    """Learning-rate factor of an epoch (relative to the peak `lr`); picklable for checkpoints."""

    def __init__(self, epochs: int, lr: float, warmup_epochs: int, warmup_lr: float, warmup_type: str,
                 scheduler: str) -> None:
        self.epochs, self.lr, self.scheduler = int(epochs), float(lr), scheduler
        self.warmup_epochs, self.warmup_lr, self.warmup_type = int(warmup_epochs), float(warmup_lr), warmup_type

    def __call__(self, epoch: int) -> float:
        """Factor for 0-based `epoch`."""
        if epoch < self.warmup_epochs:
            if self.warmup_type == "constant" or self.lr == 0:
                return self.warmup_lr / self.lr if self.lr else 0.0
            start = self.warmup_lr / self.lr  # linear from warmup_lr towards lr
            return start + (1.0 - start) * epoch / self.warmup_epochs
        if self.scheduler == "constant":
            return 1.0
        t = epoch - self.warmup_epochs
        return 0.5 * (1.0 + math.cos(math.pi * t / max(1, self.epochs)))


def build_scheduler(optimizer: torch.optim.Optimizer, trainer) -> LambdaLR:
    """A per-epoch `LambdaLR`; the loop calls `step()` once at the end of every epoch."""
    schedule = EpochSchedule(trainer.epochs, trainer.lr, trainer.warmup_epochs, trainer.warmup_lr,
                             trainer.warmup_type, trainer.scheduler)
    return LambdaLR(optimizer, lr_lambda=schedule)


def epoch_lr(trainer, epoch: int) -> float:
    """The learning rate of 0-based `epoch` (for logs and tests)."""
    schedule = EpochSchedule(trainer.epochs, trainer.lr, trainer.warmup_epochs, trainer.warmup_lr,
                             trainer.warmup_type, trainer.scheduler)
    return trainer.lr * schedule(epoch)
