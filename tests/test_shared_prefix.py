"""The shared-prefix lever: leading positions that every class prompt holds alike run once, and the
numbers (logits and every prompt gradient) stay those of the full pass up to float32 rounding."""

from __future__ import annotations

import pytest
import torch

from promptinfo.methods import create_method
from tests.conftest import make_backbone

CLASSES = ["tabby cat", "golden retriever dog", "red panda", "sports car", "x"]
SAME_FIRST_WORD = ["great white shark", "great grey owl", "great egret"]  # the common tokens reach into the names
CASES = [
    ("coop", {}), ("coop", {"class_token_position": "middle"}), ("coop", {"class_token_position": "front"}),
    ("coop", {"csc": True}), ("coop", {"ctx_init": "a photo of a"}), ("kgcoop", {}), ("cocoop", {}),
    ("maple", {"depth": 3}), ("ivlp", {"depth_text": 3, "depth_vision": 2}),
    ("ivlp", {"n_ctx_text": 4, "depth_text": 2, "depth_vision": 0}),
    ("promptsrc", {"depth_text": 3, "depth_vision": 2}),
]


def _run(name: str, options: dict, classes, lever: bool, truncate: bool = True, buckets: int = 4):
    backbone = make_backbone("pi-tiny-vit-s")
    backbone.shared_prefix, backbone.truncate_text, backbone.text_buckets = lever, truncate, buckets
    torch.manual_seed(3)
    method = create_method(name, backbone, classes, **options)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = method(images)
    method.zero_grad(set_to_none=True)
    (logits.logsumexp(dim=1).sum() + logits[:, 0].sum()).backward()
    return logits.detach(), {k: p.grad.clone() for k, p in method.prompt.named_parameters() if p.grad is not None}


def _assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))


def _assert_same_numbers(name, options, classes, **kwargs):
    logits_off, grads_off = _run(name, options, classes, lever=False, **kwargs)
    logits_on, grads_on = _run(name, options, classes, lever=True, **kwargs)
    _assert_close(logits_on, logits_off)
    assert grads_on.keys() == grads_off.keys() and grads_off["ctx"].abs().max() > 0
    for key in grads_off:
        _assert_close(grads_on[key], grads_off[key])


@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in CASES])
def test_lever_keeps_logits_and_gradients(name, options):
    _assert_same_numbers(name, options, CLASSES)


@pytest.mark.parametrize(("truncate", "buckets"), [(False, 1), (True, 1), (True, 4)])
@pytest.mark.parametrize("name", ["coop", "cocoop", "maple"])
def test_lever_composes_with_truncation_and_length_buckets(name, truncate, buckets):
    classes = [" ".join(["word"] * (1 + i % 7)) + f" {i}" for i in range(36)]  # 36 prompts of 7 lengths
    options = {"depth": 3} if name == "maple" else {}
    _assert_same_numbers(name, options, classes, truncate=truncate, buckets=buckets)


def test_common_words_after_the_context_are_shared_too():
    _assert_same_numbers("coop", {}, SAME_FIRST_WORD)
    method = create_method("coop", make_backbone("pi-tiny-vit-s"), SAME_FIRST_WORD, n_ctx=4)
    assert method.shared_positions() == 1 + 4 + 1  # start token, context, "great"
    assert method.shared_positions("middle") == 1 + 2 and method.shared_positions("end", class_specific=True) == 1


def _block_inputs(method, image_features=None) -> list[tuple[int, ...]]:
    """Shapes entering the first text block's LayerNorm during one text pass."""
    shapes = []
    ln = method.backbone.model.transformer.resblocks[0].ln_1
    hook = ln.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    try:
        method.text_features(image_features)
    finally:
        hook.remove()
    return shapes


def test_shared_positions_run_once_per_group():
    backbone = make_backbone("pi-tiny-vit-s")
    backbone.text_buckets = 1
    coop = create_method("coop", backbone, CLASSES, n_ctx=8)
    width = backbone.text_width
    longest = coop.tokens.shape[1]
    assert _block_inputs(coop) == [(1, 1, 9, width), (1, len(CLASSES), longest - 9, width)]
    cocoop = create_method("cocoop", backbone, CLASSES)  # "a photo of a": 4 context vectors per image
    feats = torch.nn.functional.normalize(torch.randn(2, backbone.embed_dim), dim=-1)
    assert _block_inputs(cocoop, feats) == [(2, 1, 5, width), (2, len(CLASSES), cocoop.tokens.shape[1] - 5, width)]
    backbone.shared_prefix = False
    assert _block_inputs(coop) == [(longest, len(CLASSES), width)]  # one pass over every position (sequence-first)


def test_a_single_class_keeps_its_end_token_out_of_the_shared_positions():
    """With one class every position is common; the pooled end-of-text position still runs per prompt."""
    _assert_same_numbers("coop", {}, ["tabby cat"])


def test_lever_is_on_only_where_exact():
    assert make_backbone("pi-tiny-vit-s").shared_prefix
    bidirectional = make_backbone("pi-tiny-bidir-text")  # no causal mask: later positions change earlier ones
    assert not bidirectional.shared_prefix_exact and not bidirectional.shared_prefix


def test_per_prompt_deep_prompts_cannot_replace_shared_positions():
    backbone = make_backbone("pi-tiny-vit-s")
    tokens = backbone.tokenize(CLASSES[:4])
    embeddings = backbone.token_embedding(tokens)
    deep = [torch.randn(len(CLASSES[:4]), 2, backbone.text_width)]
    with pytest.raises(ValueError, match="shared=3.*shared <= 1"):
        backbone.encode_text_embeddings(embeddings, tokens, deep, prompt_start=1, shared=3)
    # placed after the shared positions they are fine, and equal to the full pass
    on = backbone.encode_text_embeddings(embeddings, tokens, deep, prompt_start=1, shared=1)
    backbone.shared_prefix = False
    _assert_close(on, backbone.encode_text_embeddings(embeddings, tokens, deep, prompt_start=1, shared=1))


def test_grouped_embeddings_equal_their_flattened_rows():
    backbone = make_backbone("pi-tiny-vit-s")
    tokens = backbone.tokenize(CLASSES)
    embeddings = backbone.token_embedding(tokens)
    groups = torch.stack([embeddings, embeddings + 0.01 * torch.randn_like(embeddings)])  # [2, C, L, w]
    flat = torch.stack([backbone.encode_text_embeddings(g, tokens) for g in groups])
    _assert_close(backbone.encode_text_embeddings(groups, tokens), flat)
