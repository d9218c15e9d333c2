"""The one training loop shared by every method.

Per epoch: set the epoch's learning rate (the scheduler steps once per epoch, visibly, at the end),
run the optimiser steps (forward, objective, backward, the method's `after_backward`, clip, step), let the method update itself (`on_epoch_end`), then hand a summary row to
the callback, which writes metrics and the resume checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from promptinfo.engine import distributed as dist
from promptinfo.engine.objective import Objective
from promptinfo.engine.progress import Progress
from promptinfo.engine.runtime import Runtime
from promptinfo.errors import PromptInfoError


class NonFiniteLossError(PromptInfoError, FloatingPointError):
    """The training loss became NaN or infinite."""


class Batches(Protocol):
    kind: str

    def __len__(self) -> int: ...

    def epoch(self, epoch: int): ...


@dataclass
class FitState:
    """Counters of a run: finished epochs and optimiser steps."""

    epoch: int = 0
    step: int = 0


@dataclass
class EpochStats:
    """Sums over an epoch's samples, turned into means by `row`."""

    samples: int = 0
    correct: int = 0
    loss: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, n: int, correct: int, loss: float, terms: dict[str, torch.Tensor], weights: dict[str, float]) -> None:
        self.samples += n
        self.correct += correct
        self.loss += loss * n
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + float(value) * n
        self.weights.update(weights)

    def row(self) -> dict:
        n = max(self.samples, 1)
        row = {"loss": self.loss / n}
        row.update({f"loss/{k}": v / n for k, v in self.terms.items()})
        row.update({f"weight/{k}": w for k, w in self.weights.items()})
        if self.samples:  # an unsupervised run has no labelled image
            row["train_acc"] = 100.0 * self.correct / n
        return row


@dataclass
class Fit:
    """Everything the loop needs besides the method and its data."""

    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    rt: Runtime
    epochs: int
    grad_accum: int = 1
    clip_grad_norm: float | None = None
    unlabelled: object | None = None  # a `SemiStep` when the protocol has unlabelled images


def fit(method, batches: Batches, f: Fit, state: FitState, progress: Progress,
        on_epoch_end: Callable[[FitState, dict], None]) -> FitState:
    """Train from `state.epoch` to `f.epochs`; `on_epoch_end(state, row)` runs after every epoch."""
    while state.epoch < f.epochs:
        lr = f.optimizer.param_groups[0]["lr"]
        stats = train_epoch(method, batches, f, state, progress, lr)
        method.on_epoch_end(state.epoch + 1, f.epochs)
        f.scheduler.step()
        state.epoch += 1
        row = {"epoch": state.epoch, "step": state.step, "lr": lr, **stats.row()}
        if f.unlabelled is not None:  # the step's objective is the labelled mean plus the unlabelled one
            row.update(f.unlabelled.row())
            row["loss"] += row["loss_unlabelled"]
        row["time_s"] = progress.end_epoch()
        on_epoch_end(state, row)
    return state


def train_epoch(method, batches: Batches, f: Fit, state: FitState, progress: Progress, lr: float) -> EpochStats:
    """One pass over the epoch's batches; returns the epoch's loss terms and training accuracy.

    With unlabelled images (`f.unlabelled`), each step adds the loss of its unlabelled batch; an
    unsupervised run's labelled batches are empty.
    """
    if f.unlabelled is not None:
        f.unlabelled.start_epoch(method, state.epoch, f.epochs, len(batches))
    method.train()
    params = [p for p in method.prompt.parameters() if p.requires_grad]
    stats = EpochStats()
    progress.start_epoch(state.epoch + 1, f.epochs, len(batches))
    for i, (inputs, labels) in enumerate(batches.epoch(state.epoch), start=1):
        f.optimizer.zero_grad(set_to_none=True)
        for x, y in zip(inputs.chunk(f.grad_accum), labels.chunk(f.grad_accum)) if labels.numel() else ():
            y = y.to(f.rt.device, non_blocking=True)
            output = f.rt.forward(method, x, batches.kind)
            loss = f.objective(method, output, y)
            _check_finite(loss.total, loss.terms, state, i)
            f.scaler.scale(loss.total * (y.shape[0] / labels.shape[0])).backward()
            correct = int((output.logits.argmax(dim=1) == y).sum())
            stats.add(y.shape[0], correct, float(loss.total.detach()), {k: v.detach() for k, v in loss.terms.items()},
                      loss.weights)
        unlabelled = f.unlabelled.loss(method, i - 1) if f.unlabelled is not None else None
        if unlabelled is not None:
            _check_finite(unlabelled.total, unlabelled.terms, state, i)
            f.scaler.scale(unlabelled.total).backward()
        dist.sync_gradients(params, labels.shape[0])  # no-op in one process
        method.after_backward()
        _optimizer_step(f, params)
        state.step += 1
        progress.update(i, labels.shape[0], stats.loss / max(stats.samples, 1), lr)
    return dist.reduce_epoch_stats(stats)


def _optimizer_step(f: Fit, params: list[torch.nn.Parameter]) -> None:
    if f.clip_grad_norm is not None:
        f.scaler.unscale_(f.optimizer)
        torch.nn.utils.clip_grad_norm_(params, f.clip_grad_norm)
    f.scaler.step(f.optimizer)
    f.scaler.update()


def _check_finite(total: torch.Tensor, terms: dict[str, torch.Tensor], state: FitState, batch: int) -> None:
    value = float(total.detach())
    if math.isfinite(value):
        return
    parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
    raise NonFiniteLossError(
        f"The training loss is {value} at epoch {state.epoch + 1}, batch {batch} (step {state.step + 1}); terms: "
        f"{parts}. Training stopped after {state.epoch} finished epoch(s). Lower trainer.lr, use "
        "trainer.precision=fp32 or set trainer.clip_grad_norm, and rerun with overwrite=true."
    )
