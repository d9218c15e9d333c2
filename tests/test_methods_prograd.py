"""ProGrad through the engine's generic optimisation hooks: the authors' update, step by step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

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
from promptinfo.methods.zeroshot import zeroshot_classifier
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


def test_bad_options_messages_name_the_fix(tiny_backbone):
    with pytest.raises(ConfigError) as error:
        _prograd(tiny_backbone, n_ctx=2)
    assert str(error.value) == ("n_ctx=2 is shorter than the template's 4 leading tokens ('a photo of a'); "
                                "use n_ctx >= 4 or ctx_from_template=false.")
    with pytest.raises(ConfigError) as error:  # a template without leading words still needs a context
        _prograd(tiny_backbone, n_ctx=0, template="{}.")
    assert str(error.value) == "n_ctx=0; a prompt needs at least one context vector."


def _words(backbone, phrase):
    tokens = backbone.tokenize([phrase])
    n = int(backbone.eot_positions(tokens)[0]) - 1
    return backbone.token_embedding(tokens)[0, 1 : 1 + n].float()


def test_teacher_and_context_come_from_the_datasets_template(tiny_backbone):
    """The benchmarks hand ProGrad the authors' template as the dataset's; it is the teacher and the init."""
    template = "a type of pet, a photo of a {}."
    method = create_method("prograd", tiny_backbone, CLASSES, dataset_templates=[template], n_ctx=10)
    assert torch.equal(method.zeroshot_text, zeroshot_classifier(tiny_backbone, CLASSES, [template]))
    words = _words(tiny_backbone, "a type of pet, a photo of a")
    assert torch.equal(method.prompt.ctx[10 - len(words):].detach(), words)


@pytest.mark.parametrize("template, n_ctx, leading", [
    ("a photo of a {}.", 4, "a photo of a"),  # exactly as many vectors as the template's leading tokens
    ("{}.", 1, ""), ("{}, a type of pet.", 6, ""),  # no leading words: all zeros
])
def test_context_from_template_sizes(template, n_ctx, leading, tiny_backbone):
    ctx = _prograd(tiny_backbone, template=template, n_ctx=n_ctx).prompt.ctx.detach()
    expected = torch.zeros(n_ctx, tiny_backbone.text_width)
    if leading:
        expected[n_ctx - len(_words(tiny_backbone, leading)):] = _words(tiny_backbone, leading)
    assert torch.equal(ctx, expected)


def test_a_ctx_init_phrase_is_coops_initialisation(tiny_backbone):
    method = _prograd(tiny_backbone, ctx_init="a sketch of the")
    assert torch.equal(method.prompt.ctx.detach(), _words(tiny_backbone, "a sketch of the"))
    assert method.prefix_text == "a sketch of the"


def test_projection_of_a_unit_gradient_and_the_gradients_dtype():
    d = torch.tensor([-1.0, 1.0])
    g = torch.tensor([1.0, 0.0])  # norm exactly 1, conflicting
    torch.testing.assert_close(project_conflicting(g, d), torch.tensor([0.5, 0.5]), atol=1e-7, rtol=0)
    for dtype in (torch.float64, torch.bfloat16, torch.float16):  # p.grad must keep p's dtype
        assert project_conflicting(g.to(dtype), d).dtype == dtype
    exact = torch.tensor([1 + 1e-12, 0.0], dtype=torch.float64)  # orthogonal to [0, 1]: returned bit for bit
    assert torch.equal(project_conflicting(exact, torch.tensor([0.0, 1.0])), exact)


def _manual_step(method, chunks):
    """One optimiser step's backward passes over `chunks` (summed CE), then the method's projection."""
    for images, labels in chunks:
        out = method.forward_output(images)
        method.extra_losses(out, labels)
        F.cross_entropy(out.logits, labels, reduction="sum").backward()
    raw = method.prompt.ctx.grad.clone()
    method.after_backward()
    return raw, method.prompt.ctx.grad


def _teacher_direction(method, images, labels):
    """The gradient of L_kl summed over every sample of the step (the authors' full-batch direction)."""
    out = method.forward_output(images)
    teacher = method.classify(out.image_features, method.zeroshot_text).logits.detach()
    loss = distillation_loss(out.logits, teacher, method.config.temperature) * labels.shape[0]
    return torch.autograd.grad(loss, method.prompt.ctx)[0]


def test_uneven_micro_batches_and_in_place_zeroed_gradients_give_the_full_batch_direction(tiny_backbone):
    method = _prograd(tiny_backbone).train()
    for step, (images, labels) in enumerate(_conflicting_batches(tiny_backbone, method, n=2, size=6)):
        if step:
            method.prompt.ctx.grad.zero_()  # a loop with zero_grad(set_to_none=False)
        direction = _teacher_direction(method, images, labels)
        raw, projected = _manual_step(method, [(images[:5], labels[:5]), (images[5:], labels[5:])])
        assert not torch.allclose(projected, raw)  # the step conflicts with the teacher
        expected = project_conflicting(raw, direction)
        torch.testing.assert_close(projected, expected, atol=1e-3 * raw.abs().max().item(), rtol=0)
