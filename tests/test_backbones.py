"""The backbone adapter must reproduce open_clip exactly, stay frozen, and fail with clear messages."""

import pytest
import torch

import promptinfo
from promptinfo.backbones import _hub as hub
from promptinfo.backbones import register_weights
from promptinfo.errors import BackboneNotSupportedError, ConfigError, WeightsUnavailableError
from tests.conftest import make_backbone

TEXTS = ["a photo of a dog.", "a much longer caption about a small red panda sitting on a branch", "x"]


@pytest.fixture(scope="module", params=["pi-tiny-vit-s", "pi-tiny-vit-m", "pi-tiny-rn", "pi-tiny-bidir-text"])
def any_backbone(request):
    return make_backbone(request.param)


def test_weights_frozen_and_eval(any_backbone):
    assert all(not p.requires_grad for p in any_backbone.parameters())
    any_backbone.train()
    assert not any_backbone.training and not any_backbone.model.training


def test_full_text_pass_equals_open_clip_exactly(any_backbone):
    tokens = any_backbone.tokenize(TEXTS)
    truncate, shared = any_backbone.truncate_text, any_backbone.shared_prefix
    any_backbone.truncate_text = any_backbone.shared_prefix = False
    try:
        with torch.no_grad():  # inference: open_clip's own batch-first layout
            assert torch.equal(any_backbone.encode_text(tokens), any_backbone.model.encode_text(tokens))
        # training passes run sequence-first: the same numbers up to float rounding
        torch.testing.assert_close(any_backbone.encode_text(tokens), any_backbone.model.encode_text(tokens),
                                   atol=1e-5, rtol=0)
        any_backbone.shared_prefix = shared  # the start token, common to all, once
        torch.testing.assert_close(any_backbone.encode_text(tokens), any_backbone.model.encode_text(tokens),
                                   atol=1e-5, rtol=0)
    finally:
        any_backbone.truncate_text, any_backbone.shared_prefix = truncate, shared


def test_truncated_text_pass_matches_full_pass(any_backbone):
    tokens = any_backbone.tokenize(TEXTS)
    torch.testing.assert_close(any_backbone.encode_text(tokens), any_backbone.model.encode_text(tokens), atol=1e-5, rtol=0)


def test_truncation_only_where_exact():
    assert make_backbone("pi-tiny-vit-s").truncate_text
    assert not make_backbone("pi-tiny-bidir-text").truncate_text  # bidirectional text, last-token pooling


def test_image_encoding_equals_open_clip_exactly(any_backbone):
    size = any_backbone.preprocess_cfg.size
    images = torch.randn(3, 3, size, size)
    assert torch.equal(any_backbone.encode_image(images), any_backbone.model.encode_image(images))


def test_widths_read_from_model():
    b = make_backbone("pi-tiny-vit-m")
    assert (b.embed_dim, b.text_width, b.vision_width, b.context_length) == (48, 64, 96, 77)
    assert (b.text_layers, b.vision_layers, b.grid_size) == (4, 4, (4, 4))
    assert b.preprocess_cfg.size == 48


def test_embedding_path_with_spliced_vectors_changes_only_through_prompt(tiny_backbone):
    tokens = tiny_backbone.tokenize(["X X a cat."])
    emb = tiny_backbone.token_embedding(tokens)
    base = tiny_backbone.encode_text_embeddings(emb, tokens)
    emb2 = emb.clone()
    emb2[:, 1:3] = torch.randn(2, tiny_backbone.text_width)
    assert not torch.allclose(tiny_backbone.encode_text_embeddings(emb2, tokens), base)
    emb3 = emb.clone()
    emb3[:, int(tiny_backbone.eot_positions(tokens)[0]) + 1 :] = 5.0  # after EOT: ignored by the causal mask
    torch.testing.assert_close(tiny_backbone.encode_text_embeddings(emb3, tokens), base, atol=1e-6, rtol=0)


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
def test_deep_text_prompts_replace_positions_before_each_layer(tiny_backbone, grad):
    tokens = tiny_backbone.tokenize(["X X a cat."])
    emb = tiny_backbone.token_embedding(tokens)
    deep = [torch.randn(2, tiny_backbone.text_width)]
    with torch.set_grad_enabled(grad):
        out = tiny_backbone.encode_text_embeddings(emb, tokens, deep_prompts=deep)
    # the same computation written out: block 0 on the input, then positions 1..2 replaced, then the rest
    t = tiny_backbone._text
    n = tokens.shape[1]
    x = emb + t.positional_embedding[:n]
    blocks = t.transformer.resblocks
    x = blocks[0](x, attn_mask=t.attn_mask[:n, :n])
    x = torch.cat([x[:, :1], deep[0][None], x[:, 3:]], dim=1)
    for block in blocks[1:]:
        x = block(x, attn_mask=t.attn_mask[:n, :n])
    x = t.ln_final(x)[0, tiny_backbone.eot_positions(tokens)[0]] @ t.text_projection
    torch.testing.assert_close(out[0], x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
def test_vision_prompts_appended_and_replaced(tiny_backbone, grad):
    images = torch.randn(2, 3, 32, 32)
    w = tiny_backbone.vision_width
    shallow = tiny_backbone.encode_image(images, prompts=torch.randn(3, w))
    assert shallow.shape == (2, tiny_backbone.embed_dim)
    prompts = torch.randn(2, 3, w)  # per-image prompts
    deep = [torch.randn(3, w), torch.randn(3, w)]
    with torch.set_grad_enabled(grad):
        out = tiny_backbone.encode_image(images, prompts=prompts, deep_prompts=deep)
    v = tiny_backbone.model.visual
    x = tiny_backbone._patch_tokens(v, images)
    x = v.ln_pre(torch.cat([x, prompts], dim=1))
    for i, block in enumerate(v.transformer.resblocks):
        if i >= 1:
            x = torch.cat([x[:, :-3], deep[i - 1].expand(2, -1, -1)], dim=1)
        x = block(x)
    expected = v.ln_post(x[:, 0]) @ v.proj
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="deep vision prompts"):
        tiny_backbone.encode_image(images, prompts=prompts, deep_prompts=deep * 2)


def test_training_passes_run_sequence_first_with_the_same_gradients(tiny_backbone):
    """Training passes run the blocks on [L, batch, width] (faster backward on the CPU) without changing any
    open_clip module (no `batch_first` flip: other threads may use them); the gradients equal those of
    open_clip's batch-first layout."""
    images = torch.randn(3, 3, 32, 32)
    w = tiny_backbone.vision_width
    blocks = tiny_backbone.model.visual.transformer.resblocks
    seen = []
    hook = blocks[0].ln_1.register_forward_pre_hook(
        lambda module, args: seen.append((blocks[0].attn.batch_first, tuple(args[0].shape))))

    def grads(layout: str) -> list[torch.Tensor]:
        prompts = torch.randn(2, w, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        deep = [torch.randn(2, w, generator=torch.Generator().manual_seed(2)).requires_grad_(True)]
        if layout == "ours":
            out = tiny_backbone.encode_image(images, prompts=prompts, deep_prompts=deep)
        else:  # written out batch-first
            v = tiny_backbone.model.visual
            x = v.ln_pre(torch.cat([tiny_backbone._patch_tokens(v, images), prompts.expand(3, -1, -1)], dim=1))
            for i, block in enumerate(v.transformer.resblocks):
                x = torch.cat([x[:, :-2], deep[0].expand(3, -1, -1)], dim=1) if i == 1 else x
                x = block(x)
            out = v.ln_post(x[:, 0]) @ v.proj
        out.square().sum().backward()
        return [prompts.grad, deep[0].grad]

    try:
        ours = grads("ours")
        assert seen[0] == (True, (1 + tiny_backbone.grid_size[0] * tiny_backbone.grid_size[1] + 2, 3, w))
        for a, b in zip(ours, grads("batch-first")):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        with torch.no_grad():
            tiny_backbone.encode_image(images, prompts=torch.zeros(2, w))
        assert seen[-1][1][0] == 3  # inference keeps open_clip's batch-first layout
    finally:
        hook.remove()


def test_resnet_tower_rejects_vision_prompts_naming_the_model():
    b = make_backbone("pi-tiny-rn")
    with pytest.raises(BackboneNotSupportedError, match="pi-tiny-rn.*ModifiedResNet"):
        b.encode_image(torch.randn(1, 3, 32, 32), prompts=torch.zeros(2, 16))


def test_same_seed_same_weights():
    a, b = make_backbone(seed=3), make_backbone(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_list_backbones_includes_open_clip_and_tiny_models():
    names = promptinfo.list_backbones()
    assert {"ViT-B-16", "ViT-L-14", "RN50", "pi-tiny-vit-s"} <= set(names)
    assert {("ViT-B-16", "openai"), ("pi-demo-default", "procedural")} <= set(promptinfo.list_backbones(pretrained=True))


def test_unknown_backbone_lists_close_matches():
    with pytest.raises(ConfigError, match="Unknown backbone 'ViT-B-61'.*ViT-B-16"):
        promptinfo.create_backbone("ViT-B-61")


def test_unknown_tag_lists_valid_tags():
    with pytest.raises(ConfigError, match="laion2b_s34b_b88k"):
        promptinfo.create_backbone("ViT-B-16", pretrained="no-such-tag")


def test_unreachable_weights_name_the_file_and_the_fix(monkeypatch, tmp_path):
    import open_clip.pretrained as pretrained_mod

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(pretrained_mod, "download_pretrained_from_url", offline)
    monkeypatch.setattr(pretrained_mod, "download_pretrained_from_hf", offline)
    monkeypatch.setattr(hub, "reachable", lambda host, timeout=hub.PROBE_TIMEOUT_S: False)  # no probe in tests
    with pytest.raises(WeightsUnavailableError) as info:
        promptinfo.create_backbone("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "ViT-B-32.pt" in message and "pretrained='/path/to/weights.pt'" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("host_answers", [False, True])
def test_an_unreachable_hub_is_read_from_the_cache_only_and_before_the_model_is_built(monkeypatch, tmp_path,
                                                                                       host_answers):
    """No minute of retries against a hub that does not answer: the hub client is switched to its local cache
    (it then fails at once for a missing file), and the weights are looked up before the model is built."""
    import open_clip
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    probed, seen = [], []
    monkeypatch.setattr(hub, "reachable", lambda host, timeout=hub.PROBE_TIMEOUT_S: probed.append(host) or host_answers)

    def fetch(cfg, cache_dir=None, **kwargs):
        seen.append(constants.HF_HUB_OFFLINE)
        raise FileNotFoundError("not in the local cache")

    monkeypatch.setattr(open_clip, "download_pretrained", fetch)
    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("model built before the weights"))
    with pytest.raises(WeightsUnavailableError, match="not in the local cache"):
        promptinfo.create_backbone("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    assert probed == ["huggingface.co"] and seen == [not host_answers]
    assert constants.HF_HUB_OFFLINE is False  # restored


def test_local_weights_file_and_missing_file(tmp_path):
    src = make_backbone("pi-tiny-vit-s", seed=5)
    path = tmp_path / "weights.pt"
    torch.save(src.model.state_dict(), path)
    loaded = promptinfo.create_backbone("pi-tiny-vit-s", pretrained=str(path))
    assert loaded.weights_id.startswith("file-")
    tokens = loaded.tokenize(TEXTS)
    assert torch.equal(loaded.encode_text(tokens), src.encode_text(tokens))
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        promptinfo.create_backbone(str(tmp_path / "missing.pt"))


def test_bad_precision():
    with pytest.raises(ConfigError, match="precision"):
        promptinfo.create_backbone("pi-tiny-vit-s", precision="fp8")


def test_registered_weights_tag_resolves_through_its_resolver(tmp_path):
    torch.manual_seed(3)
    source = promptinfo.create_backbone("pi-tiny-vit-s")
    path = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), path)
    calls = []

    def resolve(name, cache_dir):
        calls.append((name, cache_dir))
        return path

    register_weights("test-tag", ["pi-tiny-vit-s"], resolve)
    assert ("pi-tiny-vit-s", "test-tag") in promptinfo.list_backbones(pretrained=True)
    loaded = promptinfo.create_backbone("pi-tiny-vit-s", pretrained="test-tag", cache_dir=str(tmp_path))
    assert calls == [("pi-tiny-vit-s", str(tmp_path))] and loaded.weights_id == "test-tag"
    for (name, a), (_, b) in zip(loaded.state_dict().items(), source.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ConfigError, match="test-tag"):  # the tag serves only the models it was registered for
        promptinfo.create_backbone("pi-tiny-vit-m", pretrained="test-tag")
