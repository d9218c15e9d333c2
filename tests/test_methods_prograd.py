"""ProGrad through the engine's generic optimisation hooks: the authors' update, step by step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from promptinfo.engine import (
    Fit,
    FitState,
    Objective,
    Precision,
    Progress,
    Runtime,
    build_optimizer,
    build_scheduler,
    train_epoch,
)
from promptinfo.errors import ConfigError
from promptinfo.losses import InformationTerms
from promptinfo.methods import create_method
from promptinfo.methods.prograd import distillation_loss, project_conflicting
from tests.conftest import ListBatches
from tests.reference_prograd import OriginalProGrad, prograd_loss, prograd_step

CLASSES = ["cat", "red panda", "sea lion", "fire truck", "dog"]
TEMPLATE = "a photo of a {}."
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4  # Dassl's SGD (momentum, decay); a larger lr for visible steps
ATOL = 5e-5  # our text pass stops at the end-of-text token, the original's runs all 77 positions


def _trainer(lr=LR):
    return SimpleNamespace(epochs=1, lr=lr, warmup_epochs=0, warmup_lr=1e-5, warmup_type="constant",
                           scheduler="constant", optimizer="sgd", momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def _conflicting_batches(backbone, method, n=3, size=6):
    """Batches labelled with the class zero-shot CLIP ranks last, so CE and the teacher pull apart."""
    gen = torch.Generator().manual_seed(5)
    res = backbone.preprocess_cfg.size
    batches = []
    for _ in range(n):
        images = torch.randn(size, 3, res, res, generator=gen)
        with torch.no_grad():
            teacher = method.classify(method.encode_images(images), method.zeroshot_text).logits
        batches.append((images, teacher.argmin(dim=1)))
    return batches


def _engine_steps(method, batches, grad_accum=1):
    rt = Runtime(torch.device("cpu"), Precision("fp32", None), None, None)
    optimizer = build_optimizer(method.parameter_groups(), _trainer())
    fit = Fit(Objective(None, InformationTerms()), optimizer, build_scheduler(optimizer, _trainer()),
              rt.precision.grad_scaler(rt.device), rt, epochs=1, grad_accum=grad_accum)
    train_epoch(method, ListBatches(batches, kind="images"), fit, FitState(), Progress("none", 1), lr=LR)


def _prograd(backbone, **cfg):
    return create_method("prograd", backbone, CLASSES, dataset_templates=[TEMPLATE], **cfg)


def test_context_starts_as_the_authors_template_initialisation(vit_backbone):
    method = _prograd(vit_backbone)
    ref = OriginalProGrad(vit_backbone.model, vit_backbone.tokenizer, CLASSES, TEMPLATE)
    assert method.prompt.ctx.shape == (16, vit_backbone.text_width)
    assert torch.equal(method.prompt.ctx, ref.prompt_learner.ctx)
    assert not method.prompt.ctx[:12].any() and method.prompt.ctx[12:].abs().sum() > 0


@pytest.mark.parametrize("lambda_", [1.0, 0.8])
def test_training_steps_through_the_engine_match_the_authors_update(vit_backbone, lambda_):
    method = _prograd(vit_backbone, projection_weight=lambda_)
    ref = OriginalProGrad(vit_backbone.model, vit_backbone.tokenizer, CLASSES, TEMPLATE)
    batches = _conflicting_batches(vit_backbone, method)
    optim = torch.optim.SGD(ref.prompt_learner.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    projected = sum(prograd_step(ref, optim, images, labels, lambda_) for images, labels in batches)
    _engine_steps(method, batches)
    assert projected >= 2  # the projection is exercised, not only plain CE steps
    torch.testing.assert_close(method.prompt.ctx, ref.prompt_learner.ctx, atol=ATOL, rtol=0)  # steps move it ~1
    coop = _prograd(vit_backbone, projection_weight=0.0)  # the same steps without projection land elsewhere
    _engine_steps(coop, batches)
    assert (coop.prompt.ctx - ref.prompt_learner.ctx).abs().max() > 1000 * ATOL


def test_accumulated_micro_batches_give_the_full_batch_step(tiny_backbone):
    one, two = _prograd(tiny_backbone), _prograd(tiny_backbone)
    batches = _conflicting_batches(tiny_backbone, one, size=8)
    _engine_steps(one, batches)
    _engine_steps(two, batches, grad_accum=2)
    torch.testing.assert_close(one.prompt.ctx, two.prompt.ctx, atol=ATOL, rtol=0)


def test_distillation_loss_is_the_authors():
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)
    labels = torch.tensor([0, 1, 2, 3])
    for t in (1.0, 2.0):
        torch.testing.assert_close(distillation_loss(student, teacher, t), prograd_loss(student, teacher, labels, t)[1])


def test_projection_removes_only_the_conflicting_component():
    d = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    g = torch.tensor([[-2.0, 3.0], [1.0, 0.0]])
    assert torch.equal(project_conflicting(g, d), torch.tensor([[0.0, 3.0], [1.0, 0.0]]))  # now orthogonal to d
    assert torch.equal(project_conflicting(g, d, 0.5), torch.tensor([[-1.0, 3.0], [1.0, 0.0]]))
    assert torch.equal(project_conflicting(-g, d), -g)  # agreeing: untouched
    assert torch.equal(project_conflicting(g, torch.zeros_like(d)), g)  # no teacher direction: untouched


def test_evaluation_and_inference_record_no_teacher_gradient(tiny_backbone):
    method = _prograd(tiny_backbone).eval()
    images, labels = _conflicting_batches(tiny_backbone, method, n=1)[0]
    assert method.extra_losses(method.forward_output(images), labels) == {}
    assert method._kl_grads is None


def test_bad_options_fail_clearly(tiny_backbone):
    with pytest.raises(ConfigError, match="exactly once"):
        _prograd(tiny_backbone, template="a photo.")
    with pytest.raises(ConfigError, match="temperature"):
        _prograd(tiny_backbone, temperature=0.0)
    with pytest.raises(ConfigError, match="n_ctx=2"):
        _prograd(tiny_backbone, n_ctx=2)
