"""Every method starts where the authors' code starts: context sizes, init words and the standard deviation
of every randomly initialised prompt, both in the method's `Config` dataclass and in the config that
`promptinfo-train method=<name>` composes.

The authors' values, file by file:
- CoOp: KaiyangZhou/CoOp train.py (`TRAINER.COOP.N_CTX = 16`, `CTX_INIT = ""`, `CSC = False`,
  `CLASS_TOKEN_POSITION = "end"`), trainers/coop.py (`nn.init.normal_(ctx_vectors, std=0.02)`, also for CSC).
- CoCoOp: KaiyangZhou/CoOp configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml (N_CTX 4, CTX_INIT
  "a photo of a"), trainers/cocoop.py (random context std 0.02; meta-net Linear(d, d // 16), ReLU,
  Linear(d // 16, w) with PyTorch's default initialisation).
- MaPLe: muzairkhattak/multimodal-prompt-learning configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml
  (N_CTX 2, CTX_INIT "a photo of a", PROMPT_DEPTH 9), trainers/maple.py (random context and every
  `compound_prompts_text` std 0.02).
- IVLP: same repository, configs/trainers/IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml (2 + 2 tokens, depth 12
  on both sides), trainers/independentVL.py and clip/model.py (text and vision prompts std 0.02).
- VPT: same repository, configs/trainers/VPT/vit_b16_c2_ep5_batch4_4.yaml (N_CTX_VISION 8, depth 12),
  clip/model.py (`VPT_shallow` and the deeper vision prompts std 0.02).
- PromptSRC: muzairkhattak/PromptSRC configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml (4 + 4
  tokens, depth 9 on both sides), trainers/promptsrc.py and clip/model.py (std 0.02).
- KgCoOp: htyao89/KgCoOp scripts/base2new_train.sh (NCTX=4, CTP=end, CSC=False), trainers/kgcoop.py
  (the phrase "a photo of a"; random context std 0.02).
- ProGrad: BeierZhu/Prompt-align ProGrad.public/scripts/prograd.sh and README.md (NCTX=16, CTP=end,
  CSC=False, LAMBDA=1.0), configs/trainers/ProGrad/rn50.yaml (CTX_INIT: True, LOSS.T 1.0),
  trainers/prograd.py (with CTX_INIT: zeros, then the template's words before "{}" in the last vectors;
  without: std 0.02).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hydra import compose, initialize_config_module

from promptinfo.engine import validate_train_config
from promptinfo.engine.build import method_from_config
from promptinfo.errors import BackboneNotSupportedError, ConfigError
from promptinfo.methods import create_method, list_methods
from promptinfo.methods.cocoop import _meta_net
from promptinfo.methods.registry import method_class
from tests.conftest import make_backbone

STD = 0.02  # every random prompt of every original
PHRASE = "a photo of a"
AUTHORS = {
    "coop": dict(n_ctx=16, ctx_init=None, csc=False, class_token_position="end", init_std=STD),
    "cocoop": dict(n_ctx=4, ctx_init=PHRASE, init_std=STD),
    "maple": dict(n_ctx=2, ctx_init=PHRASE, depth=9, init_std=STD),
    "ivlp": dict(n_ctx_text=2, n_ctx_vision=2, depth_text=12, depth_vision=12, ctx_init=PHRASE, init_std=STD),
    "vpt": dict(n_ctx_vision=8, depth_vision=12, init_std=STD),
    "promptsrc": dict(n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9, ctx_init=PHRASE, init_std=STD),
    "kgcoop": dict(n_ctx=4, ctx_init=PHRASE, csc=False, class_token_position="end", init_std=STD),
    "prograd": dict(n_ctx=16, ctx_init=None, ctx_from_template=True, csc=False, class_token_position="end",
                    init_std=STD, temperature=1.0, projection_weight=1.0),
}
# Overrides that make every prompt random and fit the tiny backbone (3 text and 3 vision layers); the
# context sizes are raised so each method draws a few thousand numbers and their spread is measured to ~2%.
RANDOM = {
    "coop": ["method.n_ctx=24"],
    "cocoop": ["method.ctx_init=", "method.n_ctx=24"],
    "maple": ["method.ctx_init=", "method.n_ctx=12", "method.depth=3"],
    "ivlp": ["method.ctx_init=", "method.n_ctx_text=12", "method.n_ctx_vision=12", "method.depth_text=3",
             "method.depth_vision=3"],
    "vpt": ["method.n_ctx_vision=12", "method.depth_vision=3"],
    "promptsrc": ["method.ctx_init=", "method.n_ctx_text=12", "method.n_ctx_vision=12", "method.depth_text=3",
                  "method.depth_vision=3"],
    "kgcoop": ["method.ctx_init=", "method.n_ctx=24"],
    "prograd": ["method.ctx_from_template=false", "method.n_ctx=24"],
}
RANDOM_TENSORS = {  # the prompt tensors the originals draw from N(0, 0.02^2), by promptinfo's names
    "coop": ["ctx"],
    "cocoop": ["ctx"],
    "maple": ["ctx", "compound_prompts_text.0", "compound_prompts_text.1"],
    "ivlp": ["ctx", "deep_text.0", "deep_text.1", "vision_ctx", "deep_vision.0", "deep_vision.1"],
    "vpt": ["vision_ctx", "deep_vision.0", "deep_vision.1"],
    "promptsrc": ["ctx", "deep_text.0", "deep_text.1", "vision_ctx", "deep_vision.0", "deep_vision.1"],
    "kgcoop": ["ctx"],
    "prograd": ["ctx"],
}
CLASSES = ["cat", "red panda", "fire truck"]


@pytest.fixture(scope="module")
def backbone():
    return make_backbone()


@pytest.fixture(scope="module")
def composed():
    """`method=<name>` (plus overrides) as `promptinfo-train` composes and validates it: (name, options)."""
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        yield lambda name, *overrides: method_from_config(
            validate_train_config(compose("train", overrides=[f"method={name}", *overrides])).method
        )


def test_the_tables_cover_every_trainable_method():
    assert set(AUTHORS) == set(RANDOM) == set(RANDOM_TENSORS) == set(list_methods()) - {"zeroshot"}


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_dataclass_defaults_are_the_authors(name):
    defaults = {f.name: f.default for f in dataclasses.fields(method_class(name).Config)}
    assert {key: defaults[key] for key in AUTHORS[name]} == AUTHORS[name]


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_composed_config_is_the_authors(name, composed):
    registry_name, options = composed(name)
    assert registry_name == name
    assert {key: options[key] for key in AUTHORS[name]} == AUTHORS[name]


def _random_values(method, name: str) -> torch.Tensor:
    tensors = dict(method.prompt.named_parameters())
    assert set(RANDOM_TENSORS[name]) <= set(tensors), sorted(tensors)
    return torch.cat([tensors[key].detach().flatten() for key in RANDOM_TENSORS[name]])


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_random_prompts_have_the_authors_spread_from_dataclass_and_composed_config(name, backbone, composed):
    _, options = composed(name, *RANDOM[name])
    direct = {k.removeprefix("method."): v for k, v in (o.split("=") for o in RANDOM[name])}
    direct = {k: {"false": False}.get(v, int(v) if v.isdigit() else v) for k, v in direct.items()}
    for built in (options, direct):  # composed config; dataclass defaults for everything not overridden
        torch.manual_seed(0)
        values = _random_values(create_method(name, backbone, CLASSES, **built), name)
        assert values.numel() >= 1000
        assert values.std().item() == pytest.approx(STD, rel=0.06), built
        assert abs(values.mean().item()) < 4 * STD / values.numel() ** 0.5


@pytest.mark.parametrize("name", ["cocoop", "maple", "ivlp", "promptsrc", "kgcoop"])
def test_phrase_initialisation_uses_the_authors_words(name, backbone, composed):
    """The context starts as the word embeddings of "a photo of a" (its first n_ctx tokens)."""
    _, options = composed(name, *[o for o in RANDOM[name] if "depth" in o])
    method = create_method(name, backbone, CLASSES, **options)
    n_ctx = AUTHORS[name].get("n_ctx", AUTHORS[name].get("n_ctx_text"))
    words = backbone.token_embedding(backbone.tokenize([PHRASE]))[0, 1 : 1 + n_ctx]
    assert torch.equal(method.prompt.ctx.detach(), words.float())
    assert method.prefix_text == PHRASE


@pytest.mark.parametrize("template", [None, "a centered satellite photo of {}."])
def test_prograd_context_starts_as_zeros_then_the_template_words(template, backbone, composed):
    """The authors' CTX_INIT: 16 vectors, the words before "{}" in the last ones (one per token), zeros first."""
    _, options = composed("prograd", *([f"method.template='{template}'"] if template else []))
    method = create_method("prograd", backbone, CLASSES, **options)
    phrase = (template or "a photo of a {}.").split("{}")[0].strip()
    tokens = backbone.tokenize([phrase])[0]
    n_words = int((tokens != 0).sum()) - 2  # without [SOS] and [EOS]
    words = backbone.token_embedding(tokens[None])[0, 1 : 1 + n_words].float()
    ctx = method.prompt.ctx.detach()
    assert ctx.shape == (16, backbone.text_width) and n_words == len(phrase.split())
    assert torch.equal(ctx[: 16 - n_words], torch.zeros(16 - n_words, backbone.text_width))
    assert torch.equal(ctx[16 - n_words :], words)
    assert method.prefix_text == " ".join(["X"] * 16)


def test_coop_default_prompt_is_sixteen_placeholders_and_csc_contexts_are_drawn_per_class(backbone):
    method = create_method("coop", backbone, CLASSES)
    assert method.prefix_text == " ".join(["X"] * 16) and method.prompt.ctx.shape == (16, backbone.text_width)
    torch.manual_seed(0)
    csc = create_method("coop", backbone, CLASSES, n_ctx=8, csc=True).prompt.ctx.detach()
    assert csc.shape == (3, 8, backbone.text_width)
    assert not torch.equal(csc[0], csc[1])  # one independent draw per class, as trainers/coop.py does
    assert csc.std().item() == pytest.approx(STD, rel=0.1)


def test_cocoop_meta_net_has_the_authors_shape_and_default_linear_init(backbone):
    torch.manual_seed(0)
    net = create_method("cocoop", backbone, CLASSES).prompt.meta_net
    names = [name for name, _ in net.named_children()]
    assert names == ["linear1", "relu", "linear2"]
    d, hidden = backbone.embed_dim, backbone.embed_dim // 16
    assert (net.linear1.in_features, net.linear1.out_features) == (d, hidden)
    assert (net.linear2.in_features, net.linear2.out_features) == (hidden, backbone.text_width)
    for layer in (net.linear1, net.linear2):  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = layer.in_features**-0.5
        assert layer.weight.abs().max().item() <= bound and layer.weight.abs().max().item() > 0.5 * bound


SHALLOW = {"maple": dict(depth=1), "ivlp": dict(depth_text=1, depth_vision=1)}  # fits the tiny backbone


@pytest.mark.parametrize("name, options", [
    ("coop", dict(n_ctx=24)), ("maple", dict(ctx_init="", n_ctx=12, **SHALLOW["maple"])),
    ("ivlp", dict(ctx_init="", n_ctx_text=12, **SHALLOW["ivlp"])),
])
def test_a_configured_init_std_is_the_random_context_spread(name, options, backbone):
    torch.manual_seed(0)
    ctx = create_method(name, backbone, CLASSES, init_std=0.5, **options).prompt.ctx.detach()
    assert ctx.std().item() == pytest.approx(0.5, rel=0.06)


@pytest.mark.parametrize("name, option", [("coop", "n_ctx"), ("cocoop", "n_ctx"), ("maple", "n_ctx"),
                                          ("ivlp", "n_ctx_text")])
def test_one_context_vector_is_enough_and_none_is_refused(name, option, backbone):
    options = dict(ctx_init="", **SHALLOW.get(name, {}))
    ctx = create_method(name, backbone, CLASSES, **options, **{option: 1}).prompt.ctx
    assert ctx.shape == (1, backbone.text_width)
    message = {
        "coop": "n_ctx=0; a prompt needs at least one context vector.",
        "cocoop": "n_ctx=0; a prompt needs at least one context vector.",
        "maple": "n_ctx=0; MaPLe needs at least one context token.",
        "ivlp": "n_ctx_text=0; IVLP needs at least one context token.",
    }[name]
    with pytest.raises(ConfigError) as error:
        create_method(name, backbone, CLASSES, **options, **{option: 0})
    assert str(error.value) == message


def test_coop_with_a_phrase_takes_the_context_length_from_the_phrase(backbone):
    """As trainers/coop.py: with CTX_INIT the phrase's tokens are the context, whatever N_CTX says."""
    for n_ctx in (0, 16):
        method = create_method("coop", backbone, CLASSES, ctx_init=PHRASE, n_ctx=n_ctx)
        assert method.n_ctx == 4 and method.prompt.ctx.shape == (4, backbone.text_width)


def test_cocoop_meta_net_needs_an_embedding_width_of_16():
    """embed_dim // 16 hidden units: 16 .. 31 give one, narrower backbones none (a clear error)."""
    net = _meta_net(16, 8)
    assert (net.linear1.out_features, net.linear2.in_features, net.linear2.out_features) == (1, 1, 8)
    assert _meta_net(31, 8).linear1.out_features == 1
    with pytest.raises(BackboneNotSupportedError) as err:
        _meta_net(15, 8)
    assert str(err.value) == (
        "CoCoOp's meta-network has embed_dim // 16 hidden units; this backbone's embed_dim=15 gives none. "
        "Use a backbone with an embedding width of at least 16.")
