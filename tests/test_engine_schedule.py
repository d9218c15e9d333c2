"""The per-epoch learning rate at the epochs where the plausible schedule variants part: a cosine whose
period is `epochs` (not `epochs - warmup`), counted from the end of the warm-up (not from epoch 0), after
a constant or linear warm-up of several epochs (Dassl's ConstantWarmupScheduler / LinearWarmupScheduler
around CosineAnnealingLR(T_max=max_epoch), stepped once per epoch)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from promptinfo.engine.optim import build_optimizer, build_scheduler, epoch_lr
from promptinfo.errors import ConfigError

LR, WARMUP_LR, EPOCHS = 0.002, 1e-5, 8


def _trainer(**kw):
    base = dict(epochs=EPOCHS, lr=LR, warmup_epochs=2, warmup_lr=WARMUP_LR, warmup_type="constant",
                scheduler="cosine", optimizer="sgd", momentum=0.9, weight_decay=5e-4)
    return SimpleNamespace(**{**base, **kw})


def _stepped(trainer) -> list[float]:
    """The learning rate each epoch trains at, as the loop sees it (one scheduler step per epoch)."""
    optimizer = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))]}], trainer)
    scheduler = build_scheduler(optimizer, trainer)
    seen = []
    for _ in range(trainer.epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def _cosine(epoch: int, warmup: int, period: int = EPOCHS) -> float:
    return LR * (1 + math.cos(math.pi * (epoch - warmup) / period)) / 2


@pytest.mark.parametrize("warmup_type", ["constant", "linear"])
def test_two_warmup_epochs_then_cosine_with_period_epochs(warmup_type):
    trainer = _trainer(warmup_type=warmup_type)
    warm = [WARMUP_LR, WARMUP_LR] if warmup_type == "constant" else [WARMUP_LR, (WARMUP_LR + LR) / 2]
    expected = warm + [_cosine(e, 2) for e in range(2, EPOCHS)]
    assert _stepped(trainer) == pytest.approx(expected, rel=1e-12)
    assert [epoch_lr(trainer, e) for e in range(EPOCHS)] == pytest.approx(expected, rel=1e-12)
    # the variants this pins out differ from it at the last epoch by far more than the tolerance
    for variant in (_cosine(EPOCHS - 1, 0), _cosine(EPOCHS - 1, 2, period=EPOCHS - 2)):
        assert abs(variant - expected[-1]) > 1e-4


def test_no_warmup_starts_at_the_peak_and_a_constant_schedule_stays_there():
    assert _stepped(_trainer(warmup_epochs=0)) == pytest.approx([_cosine(e, 0) for e in range(EPOCHS)], rel=1e-12)
    assert _stepped(_trainer(scheduler="constant")) == pytest.approx([WARMUP_LR] * 2 + [LR] * 6, rel=1e-12)


def test_a_zero_learning_rate_trains_at_zero_throughout():
    for warmup_type in ("constant", "linear"):
        assert _stepped(_trainer(lr=0.0, warmup_type=warmup_type)) == [0.0] * EPOCHS


def test_optimizers_take_the_trainer_settings_and_refusals_say_what_to_do():
    param = torch.nn.Parameter(torch.zeros(1))
    adamw = build_optimizer([{"params": [param]}], _trainer(optimizer="adamw", lr=0.003, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.defaults["lr"], adamw.defaults["weight_decay"]) == (0.003, 0.05)
    sgd = build_optimizer([{"params": [param]}], _trainer(lr=0.004, momentum=0.8, weight_decay=0.01))
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.004, 0.8, 0.01)
    with pytest.raises(ConfigError, match=r"^trainer\.optimizer='adam'; choose sgd or adamw\.$"):
        build_optimizer([{"params": [param]}], _trainer(optimizer="adam"))
    frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    with pytest.raises(ConfigError, match=r"^The method has no trainable parameters; use protocol=zeroshot to "
                                          r"evaluate it untrained\.$"):
        build_optimizer([{"params": [frozen]}], _trainer())
