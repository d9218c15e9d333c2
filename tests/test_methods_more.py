"""KgCoOp, VPT, IVLP and PromptSRC: logits and losses of the original formulations, and each paper's
method-specific properties (knowledge-guided term, frozen zero-shot text of VPT, independent deep
prompts, PromptSRC's frozen ensemble and Gaussian prompt aggregation)."""

import logging
import math

import pytest
import torch
import torch.nn.functional as F

from promptinfo.backbones import normalize
from promptinfo.errors import BackboneNotSupportedError, ConfigError
from promptinfo.methods import MethodOutput, create_method, load_prompt, save_prompt
from promptinfo.losses.consistency import knowledge_distance
from promptinfo.methods.promptsrc import gpa_weights, promptsrc_templates
from promptinfo.methods.zeroshot import zeroshot_classifier
from tests.conftest import make_backbone
from tests.reference_methods import ORIGINALS, load_values
from tests.reference_methods_more import (
    OriginalGPA,
    OriginalIVLP,
    OriginalPromptSRC,
    OriginalVPT,
    load_ivlp_values,
    original_kgcoop_score,
)

CLASSES = ["cat", "red panda", "sea_lion", "fire truck", "dog"]
ATOL = 1e-4
FEW_TEMPLATES = ["a photo of a {}.", "a drawing of the {}.", "itap of a {}."]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(backbone, n=3, seed=1):
    size = backbone.preprocess_cfg.size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _move(p, seed=4):
    """A random move (a constant shift would vanish in the next LayerNorm)."""
    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))


def _changed(a, b):
    return (a - b).abs().max() > 1e-3


def _labels(n=3, seed=1):
    return torch.randint(len(CLASSES), (n,), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _perturb(method, seed=2, scale=0.1):
    gen = torch.Generator().manual_seed(seed)
    for p in method.prompt.parameters():
        p.add_(torch.randn(p.shape, generator=gen) * scale)


# =========================================================================== KgCoOp
def test_kgcoop_logits_and_term_match_the_original(vit_backbone):
    method = create_method("kgcoop", vit_backbone, CLASSES)
    _perturb(method)
    ref = ORIGINALS["coop"](vit_backbone.model, vit_backbone.tokenizer, CLASSES, ctx_init="a photo of a").eval()
    load_values(ref, method)
    images = _images(vit_backbone)
    with torch.no_grad():
        out = method.forward_output(images)
        torch.testing.assert_close(out.logits, ref(images), atol=ATOL, rtol=0)
        kg = method.extra_losses(out, _labels())["kg"]
        score = original_kgcoop_score(vit_backbone.model, vit_backbone.tokenizer, CLASSES, "a photo of a {}.",
                                      out.text_features)
    assert score > 1e-3  # the perturbation moved the features away from the hand-crafted ones
    torch.testing.assert_close(kg, 8.0 * score, atol=1e-5, rtol=0)


def test_kgcoop_term_is_zero_at_the_hand_crafted_initialisation(vit_backbone):
    """Context "a photo of a" + template "a photo of a {}.": the learned classifier IS the hand-crafted one."""
    method = create_method("kgcoop", vit_backbone, CLASSES)
    images = _images(vit_backbone)
    with torch.no_grad():
        out = method.forward_output(images)
        assert method.extra_losses(out, _labels())["kg"].item() == 0.0
    loss = method.extra_losses(method.classify(out.image_features), _labels())["kg"]
    loss.backward()
    assert torch.count_nonzero(method.prompt.ctx.grad) == 0  # the minimum of the term


def test_kgcoop_frozen_features_follow_the_class_list_and_stay_out_of_checkpoints(tiny_backbone, tmp_path):
    template = "a photo of a {}, a type of pet."
    method = create_method("kgcoop", tiny_backbone, CLASSES, template=template, kg_weight=2.0)
    assert method.image_side_frozen
    assert set(method.prompt.state_dict()) == {"ctx"}
    assert "frozen_text" not in method.state_dict()
    expected = zeroshot_classifier(tiny_backbone, ["tabby", "bus"], [template])
    method.set_classnames(["tabby", "bus"])
    assert torch.equal(method.frozen_text, expected)
    _perturb(method)
    with torch.no_grad():  # the engine's cached-feature path: classify(features), then the method's terms
        out = method.classify(normalize(torch.randn(4, tiny_backbone.embed_dim)))
        kg = method.extra_losses(out, torch.tensor([0, 1, 0, 1]))["kg"]
    torch.testing.assert_close(kg, 2.0 * knowledge_distance(out.text_features, expected), atol=0, rtol=0)
    save_prompt(method, tmp_path / "p.safetensors")
    other = create_method("kgcoop", tiny_backbone, ["tabby", "bus"], template=template)
    load_prompt(other, tmp_path / "p.safetensors")
    assert torch.equal(other.prompt.ctx, method.prompt.ctx)


def test_knowledge_distance_is_one_minus_the_mean_cosine():
    gen = torch.Generator().manual_seed(0)
    a, b = normalize(torch.randn(6, 16, generator=gen)), normalize(torch.randn(6, 16, generator=gen))
    torch.testing.assert_close(knowledge_distance(a, b), 1 - F.cosine_similarity(a, b).mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(knowledge_distance(a, b), ((a - b) ** 2).sum(-1).mean() / 2, atol=1e-6, rtol=0)


def test_kgcoop_bad_options_fail_clearly(tiny_backbone):
    with pytest.raises(ConfigError, match="exactly once"):
        create_method("kgcoop", tiny_backbone, CLASSES, template="a photo of a cat.")
    with pytest.raises(ConfigError) as error:
        create_method("kgcoop", tiny_backbone, CLASSES, template="a photo of a cat.")
    assert str(error.value) == ("KgCoOp template='a photo of a cat.' must contain '{}' exactly once, where the "
                                "class name goes (e.g. 'a photo of a {}.').")
    with pytest.raises(ConfigError, match="non-negative"):
        create_method("kgcoop", tiny_backbone, CLASSES, kg_weight=-1.0)


@pytest.mark.parametrize("kg_weight", [0.0, 0.5])
def test_kgcoop_takes_any_non_negative_weight(kg_weight, tiny_backbone):
    method = create_method("kgcoop", tiny_backbone, CLASSES, n_ctx=4, ctx_init="", kg_weight=kg_weight)
    out = method.classify(normalize(torch.randn(4, tiny_backbone.embed_dim)))
    kg = method.extra_losses(out, torch.tensor([0, 1, 0, 1]))["kg"]
    torch.testing.assert_close(kg, kg_weight * knowledge_distance(out.text_features, method.frozen_text))


def test_kgcoop_frozen_side_takes_the_new_datasets_template(tiny_backbone):
    """Cross-dataset transfer: the hand-crafted features come from the target dataset's first template."""
    method = create_method("kgcoop", tiny_backbone, CLASSES, dataset_templates=["a photo of a {}, a type of pet."])
    method.set_classnames(["tabby", "bus"], ["a centered satellite photo of {}.", "a photo of a {}."])
    expected = zeroshot_classifier(tiny_backbone, ["tabby", "bus"], ["a centered satellite photo of {}."])
    assert torch.equal(method.frozen_text, expected)


def test_kgcoop_runs_on_a_resnet_backbone():
    backbone = make_backbone("pi-tiny-rn")
    method = create_method("kgcoop", backbone, CLASSES)
    out = method.forward_output(_images(backbone, n=2))
    assert out.logits.shape == (2, len(CLASSES)) and method.extra_losses(out, _labels(2))["kg"].item() == 0.0


# =========================================================================== VPT
@pytest.mark.parametrize("depth", [1, 3])
def test_vpt_matches_original(vit_backbone, depth):
    method = create_method("vpt", vit_backbone, CLASSES, n_ctx_vision=3, depth_vision=depth)
    _perturb(method)
    ref = OriginalVPT(vit_backbone.model, vit_backbone.tokenizer, CLASSES, n_ctx_vision=3, depth_vision=depth)
    load_ivlp_values(ref, method)
    images = _images(vit_backbone)
    with torch.no_grad():
        torch.testing.assert_close(method(images), ref(images), atol=ATOL, rtol=0)


def test_vpt_text_side_is_zero_shot_and_frozen(tiny_backbone):
    method = create_method("vpt", tiny_backbone, CLASSES, depth_vision=2)
    zeroshot = create_method("zeroshot", tiny_backbone, CLASSES)
    assert torch.equal(method.text_features(), zeroshot.text_features())
    assert not method.image_side_frozen
    assert set(method.prompt.state_dict()) == {"vision_ctx", "deep_vision.0"}
    images = _images(tiny_backbone)
    with torch.no_grad():
        before = method.encode_images(images)
        _move(method.prompt.deep_vision[0])
        assert _changed(before, method.encode_images(images))
        assert torch.equal(method.text_features(), zeroshot.text_features())


def test_vpt_bad_depths_and_resnets_fail_clearly(tiny_backbone):
    with pytest.raises(ConfigError, match=r"depth_vision=4, but the backbone has 3 vision layers"):
        create_method("vpt", tiny_backbone, CLASSES, depth_vision=4)
    with pytest.raises(ConfigError, match="depth_vision=0"):
        create_method("vpt", tiny_backbone, CLASSES, depth_vision=0)
    with pytest.raises(BackboneNotSupportedError, match="ViT"):
        create_method("vpt", make_backbone("pi-tiny-rn"), CLASSES, depth_vision=1)


def test_vpt_messages_name_the_method_and_one_prompt_token_is_enough(tiny_backbone):
    with pytest.raises(ConfigError) as err:
        create_method("vpt", tiny_backbone, CLASSES, depth_vision=4)
    assert str(err.value) == ("VPT depth_vision=4, but the backbone has 3 vision layers; choose "
                              "1 <= depth_vision <= 3 (1: input-level prompts only).")
    with pytest.raises(ConfigError) as err:
        create_method("vpt", tiny_backbone, CLASSES, n_ctx_vision=0, depth_vision=1)
    assert str(err.value) == "n_ctx_vision=0; vision prompting needs at least one prompt token."
    method = create_method("vpt", tiny_backbone, CLASSES, n_ctx_vision=1, depth_vision=2)
    assert method.prompt.vision_ctx.shape == method.prompt.deep_vision[0].shape == (1, tiny_backbone.vision_width)


def test_vpt_zero_shot_classifier_stays_out_of_checkpoints(tiny_backbone):
    """The frozen classifier is rebuilt from the class names; a checkpoint holds only the learned prompts."""
    method = create_method("vpt", tiny_backbone, CLASSES, depth_vision=2)
    own = {k for k in method.state_dict() if not k.startswith("backbone.")}
    assert own == {"prompt.vision_ctx", "prompt.deep_vision.0"}


# =========================================================================== IVLP
IVLP_CASES = [
    dict(n_ctx_text=2, n_ctx_vision=2, depth_text=1, depth_vision=1),
    dict(n_ctx_text=2, n_ctx_vision=3, depth_text=3, depth_vision=2),
    dict(n_ctx_text=4, n_ctx_vision=4, depth_text=2, depth_vision=3),
    dict(n_ctx_text=3, n_ctx_vision=2, depth_text=3, depth_vision=0),
]


@pytest.mark.parametrize("case", IVLP_CASES, ids=["shallow", "deep", "4+4", "language-only"])
def test_ivlp_matches_original(vit_backbone, case):
    method = create_method("ivlp", vit_backbone, CLASSES, **case)
    _perturb(method)
    ref = OriginalIVLP(vit_backbone.model, vit_backbone.tokenizer, CLASSES, **case)
    load_ivlp_values(ref, method)
    images = _images(vit_backbone)
    with torch.no_grad():
        torch.testing.assert_close(method(images), ref(images), atol=ATOL, rtol=0)


def test_ivlp_random_context_matches_original(tiny_backbone):
    case = dict(n_ctx_text=3, n_ctx_vision=2, depth_text=2, depth_vision=2)
    method = create_method("ivlp", tiny_backbone, CLASSES, ctx_init="", **case)
    assert method.prefix_text == "X X X"
    _perturb(method)
    ref = OriginalIVLP(tiny_backbone.model, tiny_backbone.tokenizer, CLASSES, ctx_init=None, **case)
    load_ivlp_values(ref, method)
    images = _images(tiny_backbone)
    with torch.no_grad():
        torch.testing.assert_close(method(images), ref(images), atol=ATOL, rtol=0)


def test_ivlp_depth_one_is_shallow_prompting(tiny_backbone):
    """Depth 1: the context and the vision tokens enter at the input only, exactly as shallow prompts."""
    method = create_method("ivlp", tiny_backbone, CLASSES, depth_text=1, depth_vision=1, n_ctx_vision=3)
    _perturb(method)
    assert len(method.prompt.deep_text) == 0 and len(method.prompt.deep_vision) == 0
    images = _images(tiny_backbone)
    with torch.no_grad():
        prompts, shared = method._assemble(method.prompt.ctx), method.shared_positions()
        text = normalize(tiny_backbone.encode_text_embeddings(prompts, method.tokens, shared=shared))
        image = normalize(tiny_backbone.encode_image(images, method.prompt.vision_ctx))
        out = method.forward_output(images)
    assert torch.equal(out.text_features, text) and torch.equal(out.image_features, image)


def test_ivlp_language_only_at_init_is_zero_shot(tiny_backbone):
    method = create_method("ivlp", tiny_backbone, CLASSES, depth_text=1, depth_vision=0)
    zeroshot = create_method("zeroshot", tiny_backbone, CLASSES)
    assert method.image_side_frozen and not hasattr(method.prompt, "vision_ctx")
    images = _images(tiny_backbone)
    with torch.no_grad():
        assert torch.equal(method(images), zeroshot(images))


def test_ivlp_prompts_are_independent(tiny_backbone):
    """No coupling: text prompts move only the text features, vision prompts only the image features."""
    method = create_method("ivlp", tiny_backbone, CLASSES, depth_text=3, depth_vision=3)
    images = _images(tiny_backbone)
    with torch.no_grad():
        text, image = method.text_features(), method.encode_images(images)
        _move(method.prompt.deep_text[1])
        assert torch.equal(method.encode_images(images), image)
        assert _changed(method.text_features(), text)
        text = method.text_features()
        _move(method.prompt.deep_vision[1])
        assert torch.equal(method.text_features(), text)
        assert _changed(method.encode_images(images), image)


def test_ivlp_bad_options_fail_clearly(tiny_backbone):
    with pytest.raises(ConfigError, match="depth_text=0"):
        create_method("ivlp", tiny_backbone, CLASSES, depth_text=0, depth_vision=1)
    with pytest.raises(ConfigError, match=r"depth_vision=5, but the backbone has 3 vision layers"):
        create_method("ivlp", tiny_backbone, CLASSES, depth_text=1, depth_vision=5)
    with pytest.raises(ConfigError, match="has only 4 tokens"):
        create_method("ivlp", tiny_backbone, CLASSES, n_ctx_text=5, depth_text=1, depth_vision=1)


@pytest.mark.parametrize("name, label", [("ivlp", "IVLP"), ("promptsrc", "PromptSRC")])
def test_ivlp_messages_name_the_method_and_the_option(tiny_backbone, name, label):
    """Full messages: the method (IVLP or PromptSRC, which inherits the checks) and the option to change."""
    cases = [
        (dict(depth_text=0, depth_vision=1),
         f"{label} depth_text=0, but the backbone has 3 text layers; choose 1 <= depth_text <= 3 "
         "(1: input-level prompts only)."),
        (dict(depth_text=1, depth_vision=5),
         f"{label} depth_vision=5, but the backbone has 3 vision layers; choose 1 <= depth_vision <= 3 "
         "(1: input-level prompts only)."),
        (dict(depth_text=1, depth_vision=-1), f"{label} depth_vision=-1; use 0 for an unprompted image encoder."),
        (dict(n_ctx_text=0, depth_text=1, depth_vision=1), f"n_ctx_text=0; {label} needs at least one context token."),
        (dict(n_ctx_text=5, depth_text=1, depth_vision=1),
         "n_ctx_text=5 but ctx_init='a photo of a' has only 4 tokens; use a longer phrase, n_ctx_text <= 4, "
         "or ctx_init='' for random context vectors."),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError) as err:
            create_method(name, tiny_backbone, CLASSES, ctx_init="a photo of a", **options)
        assert str(err.value) == message


# =========================================================================== PromptSRC
SRC_CASE = dict(n_ctx_text=4, n_ctx_vision=4, depth_text=3, depth_vision=2)


def _promptsrc(backbone, seed=0, **overrides):
    torch.manual_seed(seed)
    return create_method("promptsrc", backbone, CLASSES, **{**SRC_CASE, "templates": FEW_TEMPLATES, **overrides})


def test_promptsrc_logits_and_consistency_terms_match_the_original(vit_backbone):
    method = _promptsrc(vit_backbone)
    _perturb(method)
    ref = OriginalPromptSRC(vit_backbone.model, vit_backbone.tokenizer, CLASSES, FEW_TEMPLATES, **SRC_CASE)
    load_ivlp_values(ref, method)
    images, labels = _images(vit_backbone, n=4), _labels(4)
    out = method.forward_output(images)
    terms = method.extra_losses(out, labels)
    logits, _, text, image, kl = ref.losses(images, labels)
    torch.testing.assert_close(out.logits, logits, atol=ATOL, rtol=0)
    for name, expected in (("scl_text", text), ("scl_image", image), ("scl_logits", kl)):
        assert expected > 1e-4, name  # the perturbed prompts disagree with the frozen model
        torch.testing.assert_close(terms[name], expected, atol=1e-5, rtol=1e-4, msg=name)
    sum(terms.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.prompt.parameters())


def test_promptsrc_frozen_features(tiny_backbone):
    """Text: the mean of unnormalised template features, normalised. Image: the unprompted encoder, no grad."""
    method = _promptsrc(tiny_backbone)
    assert method.frozen_text is None  # computed on first use only
    feats = [tiny_backbone.encode_text(tiny_backbone.tokenize([t.format(c.replace("_", " ")) for c in CLASSES]))
             for t in FEW_TEMPLATES]
    expected_text = normalize(torch.stack(feats).mean(dim=0))
    torch.testing.assert_close(method.frozen_text_features(), expected_text, atol=1e-6, rtol=0)
    assert "frozen_text" not in method.state_dict()
    images = _images(tiny_backbone)
    out = method.forward_output(images)
    assert out.frozen_image_features is not None and not out.frozen_image_features.requires_grad
    torch.testing.assert_close(out.frozen_image_features, normalize(tiny_backbone.model.encode_image(images)),
                               atol=1e-6, rtol=0)
    method.set_classnames(["bus", "tulip"])
    assert method.frozen_text is None
    assert method.frozen_text_features().shape == (2, tiny_backbone.embed_dim)


def test_promptsrc_frozen_text_is_computed_at_full_precision_under_autocast(tiny_backbone):
    method = _promptsrc(tiny_backbone)
    images, labels = _images(tiny_backbone), _labels()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = method.extra_losses(method.forward_output(images), labels)
    assert all(torch.isfinite(v) for v in terms.values())
    assert method.frozen_text.dtype == torch.float32
    torch.testing.assert_close(method.frozen_text, _promptsrc(tiny_backbone).frozen_text_features(), atol=0, rtol=0)


def test_promptsrc_default_templates_are_the_60_of_the_paper():
    templates = promptsrc_templates()
    assert len(templates) == len(set(templates)) == 60
    assert templates[0] == "a photo of a {}." and templates[-1] == "itap of the {}."
    assert {"a bad photo of a {}.", "art of a {}.", "a pixelated photo of a {}."} <= set(templates)
    assert "a plushie {}." not in templates  # one of CLIP's last 20, which PromptSRC leaves out


def test_promptsrc_in_eval_mode_skips_the_frozen_pass(tiny_backbone):
    method = _promptsrc(tiny_backbone).eval()
    out = method.forward_output(_images(tiny_backbone))
    assert type(out) is MethodOutput and method.frozen_text is None
    with pytest.raises(ValueError, match="frozen model's image features"):
        method.extra_losses(out, _labels())


def test_promptsrc_without_vision_prompts_uses_cached_features(tiny_backbone):
    method = _promptsrc(tiny_backbone, depth_vision=0)
    assert method.image_side_frozen
    feats = normalize(tiny_backbone.model.encode_image(_images(tiny_backbone))).detach()
    terms = method.extra_losses(method.classify(feats), _labels())
    assert terms["scl_image"].item() == 0.0 and terms["scl_logits"].item() > 0


def _run_epochs(method, epochs, stop=None):
    """Stand-in for training epochs 1 .. stop of `epochs`: move the prompts (seeded by the epoch), then end
    the epoch; returns each epoch's prompt snapshot."""
    snapshots = []
    for epoch in range(1, (stop or epochs) + 1):
        _perturb(method, seed=epoch, scale=0.2)
        snapshots.append({k: v.detach().clone() for k, v in method.prompt.named_parameters()})
        method.on_epoch_end(epoch, epochs)
    return snapshots


def test_gpa_loads_the_gaussian_weighted_average_of_the_epochs(tiny_backbone):
    mean, std, epochs = 3.0, 1.5, 5
    method = _promptsrc(tiny_backbone, gpa_mean=mean, gpa_std=std)
    snapshots = _run_epochs(method, epochs)
    method.finalize()
    gauss = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for e in range(1, epochs + 1)]
    for name, p in method.prompt.named_parameters():
        expected = sum(g / sum(gauss) * snap[name] for g, snap in zip(gauss, snapshots, strict=True))
        torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=0, msg=name)
        assert not torch.allclose(p.detach(), snapshots[-1][name])  # not simply the last epoch
    torch.testing.assert_close(method.prompt.gpa_weight, torch.tensor(1.0), atol=1e-6, rtol=0)


def test_gpa_matches_the_original_trainer(tiny_backbone):
    """The trainer weights whole state dicts each epoch; its final prompts equal ours."""
    method = _promptsrc(tiny_backbone, gpa_mean=2.0, gpa_std=1.0)
    original = OriginalGPA(2.0, 1.0, 4)
    for snap in _run_epochs(method, 4):
        original.end_of_epoch(snap)
    method.finalize()
    for name, p in method.prompt.named_parameters():
        torch.testing.assert_close(p.detach(), original.previous_model_gpa[name], atol=1e-6, rtol=0, msg=name)


def test_gpa_state_survives_a_checkpoint(tiny_backbone, tmp_path):
    """Resuming from a prompt checkpoint written after epoch 2 gives the uninterrupted run's aggregate."""
    straight = _promptsrc(tiny_backbone, gpa_mean=3.0, gpa_std=2.0)
    _run_epochs(straight, 5)
    straight.finalize()
    first = _promptsrc(tiny_backbone, gpa_mean=3.0, gpa_std=2.0)
    _run_epochs(first, 5, stop=2)  # then the run is killed
    save_prompt(first, tmp_path / "p.safetensors")
    resumed = _promptsrc(tiny_backbone, seed=1, gpa_mean=3.0, gpa_std=2.0)
    load_prompt(resumed, tmp_path / "p.safetensors")
    assert float(resumed.prompt.gpa_weight) > 0
    for epoch in (3, 4, 5):  # continue after epoch 2, with the same per-epoch moves
        _perturb(resumed, seed=epoch, scale=0.2)
        resumed.on_epoch_end(epoch, 5)
    resumed.finalize()
    for (name, a), b in zip(straight.prompt.named_parameters(), resumed.prompt.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_gpa_after_an_early_stop_averages_the_epochs_run(tiny_backbone, caplog):
    """Stopped after 2 of 5 epochs: the Gaussian weights of the epochs run, renormalised to sum to one."""
    mean, std, epochs = 4.0, 2.0, 5
    method = _promptsrc(tiny_backbone, gpa_mean=mean, gpa_std=std)
    snapshots = _run_epochs(method, epochs, stop=2)
    weights = gpa_weights(mean, std, epochs)[:2]
    with caplog.at_level(logging.INFO, logger="promptinfo.methods"):
        method.finalize()
    for name, p in method.prompt.named_parameters():
        expected = sum(w / sum(weights) * snap[name] for w, snap in zip(weights, snapshots, strict=True))
        torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=0, msg=name)
    message = f"PromptSRC: using the Gaussian-weighted prompt aggregate (weights summed to {sum(weights):.6f})"
    assert [r.getMessage() for r in caplog.records if r.name == "promptinfo.methods"] == [message]


def test_gpa_before_any_epoch_keeps_the_prompts(tiny_backbone):
    """No epoch ended (a run of zero epochs): nothing to average, the prompts stay as they are."""
    method = _promptsrc(tiny_backbone)
    before = {k: v.detach().clone() for k, v in method.prompt.named_parameters()}
    method.finalize()
    assert all(torch.equal(p, before[n]) for n, p in method.prompt.named_parameters())


def test_gpa_off_keeps_the_last_prompts(tiny_backbone):
    method = _promptsrc(tiny_backbone, gpa=False)
    last = _run_epochs(method, 3)[-1]
    method.finalize()
    assert all(torch.equal(p, last[n]) for n, p in method.prompt.named_parameters())
    assert float(method.prompt.gpa_weight) == 0.0


def test_gpa_weights():
    w = gpa_weights(15, 1, 20)
    assert len(w) == 20 and math.isclose(sum(w), 1.0, abs_tol=1e-12) and max(w) == w[14]
    assert math.isclose(w[13], w[15]) and w[0] < 1e-40
    assert gpa_weights(6, 10, 1) == [1.0]
    far = gpa_weights(1000, 1, 5)  # the plain formula underflows to 0 / 0 here
    assert all(math.isfinite(v) for v in far) and math.isclose(far[-1], 1.0)
    with pytest.raises(ConfigError, match="gpa_std"):
        gpa_weights(15, 0, 20)
    with pytest.raises(ValueError) as err:
        gpa_weights(15, 1, 0)
    assert str(err.value) == "GPA needs at least one epoch, got 0."


def test_promptsrc_accepts_zero_and_fractional_loss_weights(tiny_backbone):
    """Non-negative weights are valid: 0 switches a term off, fractions scale it down."""
    weights = dict(text_loss_weight=0.0, image_loss_weight=0.5, logits_loss_weight=0.25)
    images, labels = _images(tiny_backbone), _labels()
    method = _promptsrc(tiny_backbone, **weights)
    unit = _promptsrc(tiny_backbone, **dict.fromkeys(weights, 1.0))
    terms, unit_terms = (m.extra_losses(m.forward_output(images), labels) for m in (method, unit))
    for name, weight in zip(("scl_text", "scl_image", "scl_logits"), weights.values()):
        assert unit_terms[name] > 0, name
        torch.testing.assert_close(terms[name], weight * unit_terms[name], atol=1e-7, rtol=1e-6, msg=name)


def test_promptsrc_bad_options_fail_clearly(tiny_backbone):
    with pytest.raises(ConfigError, match="gpa_std"):
        _promptsrc(tiny_backbone, gpa_std=-1.0)
    with pytest.raises(ConfigError, match="non-negative"):
        _promptsrc(tiny_backbone, image_loss_weight=-1.0)
    with pytest.raises(ConfigError) as err:
        _promptsrc(tiny_backbone, templates=["a photo."])
    assert str(err.value) == "PromptSRC templates must each contain '{}' exactly once, where the class name goes."
    with pytest.raises(ConfigError) as err:
        _promptsrc(tiny_backbone, templates=[])
    assert str(err.value) == "PromptSRC templates=[] is empty; give templates or null for the 60 ImageNet ones."
    method = _promptsrc(tiny_backbone)
    with pytest.raises(ValueError, match="epochs count from 1"):
        method.on_epoch_end(0, 5)


# =========================================================================== end to end, with CMA and info terms
E2E_METHODS = {
    "kgcoop": [],
    "prograd": ["method.n_ctx=4", "method.ctx_from_template=false"],
    "vpt": ["method.depth_vision=2"],
    "ivlp": ["method.depth_text=2", "method.depth_vision=2"],
    "promptsrc": ["method.depth_text=2", "method.depth_vision=2", "method.gpa_mean=1.0"],
}
METHOD_TERMS = {"kgcoop": {"kg"}, "prograd": set(), "vpt": set(), "ivlp": set(), "promptsrc": {"scl_text", "scl_image", "scl_logits"}}
LOSS_TERMS = {"ce": {"ce"}, "cma": {"ce", "cma"}, "interplay": {"ce", "mir", "hdr"}}


@pytest.fixture(scope="module")
def e2e_root(tmp_path_factory):
    from hydra import initialize_config_module

    from tests.datagen import make_benchmark_tree

    root = tmp_path_factory.mktemp("e2e")
    make_benchmark_tree("oxford_pets", root / "data", n_per_class=10, num_classes=4, split_file=True)
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        yield root


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(E2E_METHODS))
def test_trains_end_to_end_with_and_without_cma_and_information_terms(method, e2e_root):
    """Base-to-novel on a generated benchmark with the tiny backbone, under CE, CE + CMA and CE + MIR/HDR."""
    import json

    from hydra import compose

    from promptinfo.engine import train

    for loss in LOSS_TERMS:
        cfg = compose("train", overrides=[
            "debug=tiny", f"dataset.root={e2e_root / 'data'}", f"runs_root={e2e_root / 'runs'}",
            f"feature_cache={e2e_root / 'features'}", "trainer.info_subset=16", "trainer.epochs=2",
            "protocol=base2novel", f"method={method}", *E2E_METHODS[method], f"loss={loss}", "loss.cma.weight=0.5",
            f"experiment_name=e2e_{loss}",
        ])
        results = train(cfg)
        assert results["status"] == "finished" and results["epochs"] == 2
        assert set(results["evaluations"]) == {"base", "novel"} and math.isfinite(results["harmonic_mean"])
        folder = e2e_root / "runs" / f"e2e_{loss}" / "oxford_pets" / method / "base2novel" / "shots2_seed1"
        last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
        terms = {k.removeprefix("loss/") for k in last if k.startswith("loss/")}
        assert terms == LOSS_TERMS[loss] | METHOD_TERMS[method], (loss, terms)
        assert all(math.isfinite(last[f"loss/{t}"]) for t in terms)
        assert (folder / "prompt.safetensors").is_file()


# --------------------------------------------------------------------------- the shared interface (base.py)
def test_classify_adds_the_backbones_logit_bias():
    """SigLIP-style towers carry a learned logit bias: logits = scale * cos + bias."""
    backbone = make_backbone()
    method = create_method("zeroshot", backbone, CLASSES)
    features = normalize(torch.randn(4, backbone.embed_dim))
    backbone.model.logit_bias = torch.tensor(-3.0)
    logits = method.classify(features).logits
    expected = backbone.logit_scale * features @ method.classifier.t() - 3.0
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)


def test_classify_computes_in_the_classifiers_precision(tiny_backbone):
    """Half-precision features (a feature cache kept small) are cast to the classifier's dtype."""
    method = create_method("zeroshot", tiny_backbone, CLASSES)
    half = normalize(torch.randn(4, tiny_backbone.embed_dim)).half()
    out = method.classify(half)
    assert out.logits.dtype == torch.float32 and out.image_features is half
    torch.testing.assert_close(out.logits, method.classify(half.float()).logits, atol=0, rtol=0)


def test_prompted_image_side_without_frozen_features_says_how_to_get_them(tiny_backbone):
    method = create_method("ivlp", tiny_backbone, CLASSES, depth_text=1, depth_vision=1).eval()
    with pytest.raises(ValueError) as error:
        method.frozen_image_features(method.forward_output(_images(tiny_backbone)))
    assert str(error.value) == (
        "ivlp's image side is prompted, so consistency terms need the frozen model's image features: set "
        "method.keep_frozen_image_features = True and compute the output with method.forward_output(images) "
        "in training mode, not from cached features.")


def test_bad_class_lists_and_templates_are_named():
    backbone = make_backbone()
    with pytest.raises(ValueError) as error:
        create_method("zeroshot", backbone, [])
    assert str(error.value) == "A method needs at least one class name."
    with pytest.raises(ValueError) as error:
        create_method("zeroshot", backbone, CLASSES, dataset_templates=["a photo of a {}.", "a photo.", "{} {}"])
    assert str(error.value) == "Templates must each hold '{}' once, where the class name goes; got ['a photo.', '{} {}']."
