"""Each method must give the logits of the original formulation, and the method-specific properties of
the papers must hold (CoOp = zero-shot at init, CoCoOp without shift = CoOp, MaPLe's layer-wise prompts)."""

import pytest
import torch

from promptinfo.errors import BackboneNotSupportedError, ConfigError
from promptinfo.methods import create_method
from tests.conftest import make_backbone
from tests.reference_methods import ORIGINALS, load_values

CLASSES = ["cat", "red panda", "sea_lion", "fire truck", "dog"]
ATOL = 1e-4



def _images(backbone, n=3, seed=1):
    size = backbone.preprocess_cfg.size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _perturb(method, seed=2, scale=0.05):
    """Move every prompt tensor away from its initial value (the tests then compare trained-like values)."""
    gen = torch.Generator().manual_seed(seed)
    for p in method.prompt.parameters():
        p.add_(torch.randn(p.shape, generator=gen) * scale)


def _reference(name, backbone, method, **cfg):
    torch.manual_seed(0)
    ref = ORIGINALS[name](backbone.model, backbone.tokenizer, CLASSES, **cfg).eval()
    load_values(ref, method)
    return ref


# --------------------------------------------------------------------------- against the originals
COOP_CASES = [
    dict(ours=dict(n_ctx=4), ref=dict(n_ctx=4)),
    dict(ours=dict(ctx_init="a photo of a"), ref=dict(ctx_init="a photo of a")),
    dict(ours=dict(n_ctx=4, class_token_position="middle"), ref=dict(n_ctx=4, position="middle")),
    dict(ours=dict(n_ctx=3, class_token_position="front"), ref=dict(n_ctx=3, position="front")),
    dict(ours=dict(n_ctx=4, csc=True), ref=dict(n_ctx=4, csc=True)),
]


@pytest.mark.parametrize("case", COOP_CASES, ids=["end", "phrase", "middle", "front", "csc"])
def test_coop_matches_original(vit_backbone, case):
    method = create_method("coop", vit_backbone, CLASSES, **case["ours"])
    _perturb(method)
    ref = _reference("coop", vit_backbone, method, **case["ref"])
    images = _images(vit_backbone)
    with torch.no_grad():
        torch.testing.assert_close(method(images), ref(images), atol=ATOL, rtol=0)


@pytest.mark.parametrize("batch_images", [True, False])
def test_cocoop_matches_original_per_image_loop(vit_backbone, batch_images):
    method = create_method("cocoop", vit_backbone, CLASSES, batch_images=batch_images)
    _perturb(method, scale=0.3)
    ref = _reference("cocoop", vit_backbone, method)
    images = _images(vit_backbone, n=4)
    with torch.no_grad():
        torch.testing.assert_close(method(images), ref(images), atol=ATOL, rtol=0)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_maple_matches_original(vit_backbone, depth):
    method = create_method("maple", vit_backbone, CLASSES, depth=depth)
    _perturb(method, scale=0.1)
    ref = _reference("maple", vit_backbone, method, depth=depth)
    images = _images(vit_backbone)
    with torch.no_grad():
        torch.testing.assert_close(method(images), ref(images), atol=ATOL, rtol=0)


def test_maple_random_context_matches_original(tiny_backbone):
    method = create_method("maple", tiny_backbone, CLASSES, ctx_init="", n_ctx=3, depth=2)
    assert method.prefix_text == "X X X"
    _perturb(method)
    ref = _reference("maple", tiny_backbone, method, ctx_init=None, n_ctx=3, depth=2)
    images = _images(tiny_backbone)
    with torch.no_grad():
        torch.testing.assert_close(method(images), ref(images), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name, ours, ref", [
    ("coop", dict(ctx_init="a photo of a"), dict(ctx_init="a photo of a")),
    ("cocoop", {}, {}),
    ("maple", dict(depth=2), dict(depth=2)),
])
def test_phrase_initialisation_matches_original(tiny_backbone, name, ours, ref):
    """The context starts from the same word embeddings (MaPLe: the first two, "a photo")."""
    method = create_method(name, tiny_backbone, CLASSES, **ours)
    original = ORIGINALS[name](tiny_backbone.model, tiny_backbone.tokenizer, CLASSES, **ref)
    assert torch.equal(method.prompt.ctx, original.prompt_learner.ctx)
    assert method.prompt.ctx.shape == (2 if name == "maple" else 4, tiny_backbone.text_width)
    assert torch.equal(method.token_suffix, original.prompt_learner.token_suffix[:, : method.token_suffix.shape[1]])


def test_maple_initialisation_follows_original_rng_order(tiny_backbone):
    """Same seed, same initial coupling functions and deeper prompts as the original (which clones one layer)."""
    torch.manual_seed(5)
    method = create_method("maple", tiny_backbone, CLASSES, depth=3)
    torch.manual_seed(5)
    original = ORIGINALS["maple"](tiny_backbone.model, tiny_backbone.tokenizer, CLASSES, depth=3).prompt_learner
    ours = method.prompt.state_dict()
    for key, value in original.state_dict().items():
        if key not in ("token_prefix", "token_suffix"):
            assert torch.equal(ours[key], value), key
    first, second = method.prompt.compound_prompt_projections
    assert torch.equal(first.weight, second.weight)


# --------------------------------------------------------------------------- method-specific properties
def test_coop_phrase_init_equals_zeroshot_exactly(vit_backbone):
    coop = create_method("coop", vit_backbone, CLASSES, ctx_init="a photo of a")
    zeroshot = create_method("zeroshot", vit_backbone, CLASSES, templates=["a photo of a {}."])
    images = _images(vit_backbone)
    with torch.no_grad():
        assert torch.equal(coop(images), zeroshot(images))


def test_cocoop_with_zeroed_meta_net_equals_coop(vit_backbone):
    cocoop = create_method("cocoop", vit_backbone, CLASSES)
    coop = create_method("coop", vit_backbone, CLASSES, ctx_init="a photo of a")
    _perturb(cocoop)
    with torch.no_grad():
        cocoop.prompt.meta_net.linear2.weight.zero_()
        cocoop.prompt.meta_net.linear2.bias.zero_()
        coop.prompt.ctx.copy_(cocoop.prompt.ctx)
        images = _images(vit_backbone, n=4)
        out = cocoop.forward_output(images)
        assert out.text_features.shape == (4, len(CLASSES), vit_backbone.embed_dim)
        torch.testing.assert_close(out.logits, coop(images), atol=1e-5, rtol=0)


def test_cocoop_image_chunks_give_the_same_logits(tiny_backbone):
    """One pass for all images, two images per pass, or the original's one pass per image."""
    method = create_method("cocoop", tiny_backbone, CLASSES)
    _perturb(method, scale=0.3)
    images = _images(tiny_backbone, n=5)
    with torch.no_grad():
        full = method(images)
        method.config.max_text_batch = 2 * len(CLASSES)
        assert method._images_per_pass() == 2
        torch.testing.assert_close(method(images), full, atol=1e-5, rtol=0)
        method.config.batch_images = False
        torch.testing.assert_close(method(images), full, atol=1e-5, rtol=0)
    assert not torch.allclose(full[0], full[1])


@pytest.mark.parametrize("options, passes", [
    (dict(batch_images=False), [1, 1, 1]),  # the original's loop: one image per text pass
    (dict(max_text_batch=2 * len(CLASSES)), [2, 1]),
    (dict(max_text_batch=len(CLASSES) - 1), [1, 1, 1]),  # fewer sequences than classes: still one image
    (dict(max_text_batch=1), [1, 1, 1]),
])
def test_cocoop_text_passes_hold_at_most_max_text_batch_sequences(tiny_backbone, monkeypatch, options, passes):
    """Images per text pass: max_text_batch // classes, at least one; batch_images=False: one."""
    method = create_method("cocoop", tiny_backbone, CLASSES, **options)
    sizes, encode = [], tiny_backbone.encode_text_embeddings

    def counting(prompts, *args, **kwargs):  # prompts [b, C, L, w]
        sizes.append(prompts.shape[0])
        return encode(prompts, *args, **kwargs)

    monkeypatch.setattr(tiny_backbone, "encode_text_embeddings", counting)
    with torch.no_grad():
        method(_images(tiny_backbone, n=3))
    assert sizes == passes


def test_cocoop_needs_image_features(tiny_backbone):
    method = create_method("cocoop", tiny_backbone, CLASSES)
    with pytest.raises(ValueError) as err:
        method.text_features()
    assert str(err.value) == (
        "CoCoOp builds one classifier per image: pass the normalised image features [batch, d].")
    with pytest.raises(ConfigError) as err:
        create_method("cocoop", tiny_backbone, CLASSES, max_text_batch=0)
    assert str(err.value) == "max_text_batch=0; it must be a positive number of sequences."


def test_cocoop_takes_image_features_of_any_float_precision(tiny_backbone):
    """Features from a bf16 image pass are cast to the prompts' precision for the meta-network."""
    method = create_method("cocoop", tiny_backbone, CLASSES)
    _perturb(method, scale=0.3)
    feats = torch.nn.functional.normalize(torch.randn(2, tiny_backbone.embed_dim), dim=-1).bfloat16()
    with torch.no_grad():
        torch.testing.assert_close(method.text_features(feats), method.text_features(feats.float()), atol=0, rtol=0)


def test_cocoop_runs_on_a_resnet_backbone():
    backbone = make_backbone("pi-tiny-rn")
    method = create_method("cocoop", backbone, CLASSES)
    assert method(_images(backbone, n=2)).shape == (2, len(CLASSES))


def test_maple_depth_one_uses_input_prompts_only(vit_backbone):
    method = create_method("maple", vit_backbone, CLASSES, depth=1)
    assert len(method.prompt.compound_prompts_text) == 0
    assert len(method.prompt.compound_prompt_projections) == 0
    images = _images(vit_backbone)
    with torch.no_grad():
        shallow, deeper = method.vision_prompts()
        assert deeper == []
        blocks, record = _record_block_inputs(vit_backbone)
        try:
            method(images)
        finally:
            _remove(blocks, vit_backbone)
        for tower, n_layers in (("text", vit_backbone.text_layers), ("vision", vit_backbone.vision_layers)):
            calls = record[tower]
            assert len(calls) == n_layers
            for i in range(1, n_layers):  # every later block sees exactly the previous block's output
                torch.testing.assert_close(calls[i][0], _rerun(calls[i - 1]), atol=0, rtol=0)
        first_vision_input = record["vision"][0][0]
        expected = vit_backbone.model.visual.ln_pre(shallow).expand(len(images), -1, -1)
        torch.testing.assert_close(first_vision_input[:, -method.n_ctx :], expected, atol=1e-6, rtol=0)


def test_maple_deeper_prompts_replace_exactly_their_layers(vit_backbone):
    """Before layer k (1 <= k < depth) the prompt slots hold prompt k; no other layer and no other slot changes."""
    depth = 3
    method = create_method("maple", vit_backbone, CLASSES, depth=depth)
    _perturb(method)
    n = method.n_ctx
    images = _images(vit_backbone)
    with torch.no_grad():
        _, deep_vision = method.vision_prompts()
        deep_text = list(method.prompt.compound_prompts_text)
        blocks, record = _record_block_inputs(vit_backbone)
        try:
            method(images)
        finally:
            _remove(blocks, vit_backbone)
    slots = {"text": slice(1, 1 + n), "vision": slice(-n, None)}
    prompts = {"text": deep_text, "vision": deep_vision}
    for tower, calls in record.items():
        for i in range(1, len(calls)):
            expected = _rerun(calls[i - 1])
            if i < depth:
                expected[:, slots[tower]] = prompts[tower][i - 1]
            torch.testing.assert_close(calls[i][0], expected, atol=0, rtol=0, msg=f"{tower} layer {i}")
        first_deep = prompts[tower][0].expand(len(calls[1][0]), -1, -1)
        assert torch.equal(calls[1][0][:, slots[tower]], first_deep)


def test_maple_depth_beyond_the_backbone_fails_clearly(tiny_backbone):
    with pytest.raises(ConfigError, match=r"3 text and 3 vision layers; choose 1 <= depth <= 3"):
        create_method("maple", tiny_backbone, CLASSES, depth=9)
    with pytest.raises(ConfigError, match="depth=0"):
        create_method("maple", tiny_backbone, CLASSES, depth=0)


def test_maple_context_longer_than_the_phrase_fails_clearly(tiny_backbone):
    with pytest.raises(ConfigError, match="has only 4 tokens"):
        create_method("maple", tiny_backbone, CLASSES, n_ctx=5, depth=1)


def test_maple_on_a_resnet_backbone_fails_clearly():
    with pytest.raises(BackboneNotSupportedError, match="ViT"):
        create_method("maple", make_backbone("pi-tiny-rn"), CLASSES, depth=1)


def test_maple_encodes_images_with_given_vision_prompts(tiny_backbone):
    """Prompts passed in replace the method's own (computed once, reused for many image batches)."""
    method = create_method("maple", tiny_backbone, CLASSES, depth=2)
    _perturb(method)
    images = _images(tiny_backbone)
    with torch.no_grad():
        shallow, deeper = method.vision_prompts()
        gen = torch.Generator().manual_seed(5)  # random values: a constant shift vanishes in LayerNorm
        other = (torch.randn(shallow.shape, generator=gen), [torch.randn(d.shape, generator=gen) for d in deeper])
        expected = torch.nn.functional.normalize(tiny_backbone.encode_image(images, *other), dim=-1)
        torch.testing.assert_close(method.encode_images(images, other), expected, atol=1e-6, rtol=0)
        assert (method.encode_images(images, other) - method.encode_images(images)).abs().max() > 1e-3


def test_maple_image_features_depend_on_the_prompts(tiny_backbone):
    method = create_method("maple", tiny_backbone, CLASSES, depth=2)
    images = _images(tiny_backbone)
    with torch.no_grad():
        before = method.encode_images(images)
        method.prompt.proj.weight.add_(torch.randn(method.prompt.proj.weight.shape))
        assert not torch.allclose(before, method.encode_images(images))
    assert not method.image_side_frozen


# --------------------------------------------------------------------------- hooks on the backbone blocks
def _record_block_inputs(backbone):
    """Forward pre-hooks keeping (input, kwargs, block) of every text and vision block call; the text
    pass runs whole (without the shared-prefix lever, whose equality to it `test_shared_prefix` checks)
    until `_remove`."""
    backbone.shared_prefix = False
    record = {"text": [], "vision": []}
    handles = []
    towers = {"text": backbone.model.transformer, "vision": backbone.model.visual.transformer}
    for tower, transformer in towers.items():
        for block in transformer.resblocks:
            def hook(module, args, kwargs, tower=tower):
                record[tower].append((args[0].clone(), dict(kwargs), module))
            handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
    return handles, record


def _remove(handles, backbone):
    for h in handles:
        h.remove()
    backbone.shared_prefix = backbone.shared_prefix_exact


def _rerun(call):
    """The output of a recorded block call, recomputed."""
    x, kwargs, block = call
    return block(x, **kwargs).clone()
