"""The contract every registered method passes on two differently sized tiny ViT backbones.

A new method adds one row to `METHOD_ROWS`; the first test fails until it does.
"""

import inspect
import re

import pytest
import torch
import torch.nn.functional as F

from promptinfo.errors import CheckpointMismatchError, ConfigError
from promptinfo.methods import create_method, list_methods, load_prompt, save_prompt
from promptinfo.methods.registry import find_method_config, method_class, method_configs
from tests.conftest import make_backbone

# (registry name, config overrides): small settings so a training step takes milliseconds
METHOD_ROWS = [
    ("zeroshot", {}),
    ("zeroshot", {"templates": ["a photo of a {}.", "a drawing of a {}."]}),
    ("coop", {"n_ctx": 4}),
    ("coop", {"ctx_init": "a photo of a", "class_token_position": "middle"}),
    ("coop", {"n_ctx": 2, "csc": True}),
    ("cocoop", {}),
    ("maple", {"depth": 3}),
    ("kgcoop", {"n_ctx": 4, "ctx_init": ""}),  # random context: from "a photo of a" L_kg starts at its minimum
    ("prograd", {"n_ctx": 6}),
    ("vpt", {"n_ctx_vision": 2, "depth_vision": 3}),
    ("ivlp", {"depth_text": 3, "depth_vision": 2}),
    ("promptsrc", {"depth_text": 2, "depth_vision": 3}),
]
CLASSES = ["cat", "red panda", "sea_lion", "fire truck"]
OTHER_CLASSES = ["airplane", "tabby cat", "banana", "golden retriever", "tulip", "bus"]
BATCH = 8



def _row_id(row):
    name, cfg = row
    return "-".join([name] + [k if k == "templates" else f"{k}={v}" for k, v in cfg.items()])


@pytest.fixture(params=METHOD_ROWS, ids=_row_id)
def row(request):
    return request.param


def _build(row, backbone, classnames=CLASSES, seed=0):
    name, cfg = row
    torch.manual_seed(seed)
    return create_method(name, backbone, classnames, **cfg)


def _batch(backbone, seed=3):
    """A fixed synthetic batch: random images with random labels."""
    gen = torch.Generator().manual_seed(seed)
    size = backbone.preprocess_cfg.size
    images = torch.randn(BATCH, 3, size, size, generator=gen)
    labels = torch.randint(len(CLASSES), (BATCH,), generator=gen)
    return images, labels


def _loss(method, images, labels):
    output = method.forward_output(images)
    extra = method.extra_losses(output, labels)
    return F.cross_entropy(output.logits, labels) + sum(extra.values(), torch.zeros(()))


def _trainable(method):
    return [p for p in method.parameters() if p.requires_grad]


def _other_backbone_name(backbone):
    return "pi-tiny-vit-m" if backbone.name == "pi-tiny-vit-s" else "pi-tiny-vit-s"


# --------------------------------------------------------------------------- the table
def test_table_covers_every_registered_method():
    assert {name for name, _ in METHOD_ROWS} == set(list_methods())


def test_methods_never_choose_device_or_precision():
    """Precision and device are the engine's decision: no `.half()`, `.cuda()` or `.float16` in methods."""
    for name in list_methods():
        source = inspect.getsource(inspect.getmodule(method_class(name)))
        assert not re.search(r"\.(half|cuda|bfloat16|float16)\b", source), name


# --------------------------------------------------------------------------- forward
def test_output_shapes_and_normalisation(row, vit_backbone):
    method = _build(row, vit_backbone)
    images, _ = _batch(vit_backbone)
    with torch.no_grad():
        out = method.forward_output(images)
        assert out.logits.shape == (BATCH, len(CLASSES))
        assert torch.isfinite(out.logits).all()
        assert torch.equal(method(images), out.logits)
    d = vit_backbone.embed_dim
    assert out.image_features.shape == (BATCH, d)
    assert out.text_features.shape in {(len(CLASSES), d), (BATCH, len(CLASSES), d)}
    for feats in (out.image_features, out.text_features):
        torch.testing.assert_close(feats.norm(dim=-1), torch.ones(feats.shape[:-1]), atol=1e-5, rtol=0)


def test_runs_under_autocast(row, vit_backbone):
    method = _build(row, vit_backbone)
    images, _ = _batch(vit_backbone)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = method(images)
    assert logits.shape == (BATCH, len(CLASSES)) and torch.isfinite(logits).all()


# --------------------------------------------------------------------------- training
def test_only_the_prompt_is_trainable_and_gets_gradients(row, vit_backbone):
    method = _build(row, vit_backbone)
    prompt_params = {f"prompt.{n}" for n, _ in method.prompt.named_parameters()}
    assert {n for n, p in method.named_parameters() if p.requires_grad} == prompt_params
    assert not any(p.requires_grad for p in method.backbone.parameters())
    if not prompt_params:
        return  # zero-shot: nothing to learn
    loss = _loss(method, *_batch(vit_backbone))
    loss.backward()
    for name, p in method.prompt.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in method.prompt.parameters())
    assert all(p.grad is None for p in method.backbone.parameters())


def test_backbone_bit_identical_after_a_step(row, vit_backbone):
    method = _build(row, vit_backbone)
    before = {k: v.clone() for k, v in method.backbone.state_dict().items()}
    prompt_before = {k: v.clone() for k, v in method.prompt.state_dict().items()}
    optimizer = torch.optim.SGD(list(method.parameters()), lr=1.0)  # everything; frozen tensors get no grad
    if _trainable(method):
        _loss(method, *_batch(vit_backbone)).backward()
        optimizer.step()
    after = method.backbone.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    if _trainable(method):
        assert any(not torch.equal(prompt_before[k], v) for k, v in method.prompt.state_dict().items())


def test_a_few_steps_lower_the_loss(row, vit_backbone):
    method = _build(row, vit_backbone)
    if not _trainable(method):
        assert list(method.prompt.parameters()) == []
        return
    images, labels = _batch(vit_backbone)
    optimizer = torch.optim.Adam(_trainable(method), lr=0.01)
    losses = []
    for _ in range(15):
        loss = _loss(method, images, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


# --------------------------------------------------------------------------- class sets and checkpoints
def _train_a_little(method):
    """Move the prompts off their initial values so round trips are not trivially equal."""
    with torch.no_grad():
        gen = torch.Generator().manual_seed(7)
        for p in method.prompt.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def test_set_classnames_keeps_the_prompts(row, vit_backbone):
    method = _build(row, vit_backbone)
    _train_a_little(method)
    images, _ = _batch(vit_backbone)
    prompt_before = {k: v.clone() for k, v in method.prompt.state_dict().items()}
    with torch.no_grad():
        base = method(images)
        if method.class_specific:
            with pytest.raises(ConfigError, match="Class-specific"):
                method.set_classnames(OTHER_CLASSES)
            return
        method.set_classnames(OTHER_CLASSES)
        novel = method(images)
        assert novel.shape == (BATCH, len(OTHER_CLASSES))
        assert all(torch.equal(prompt_before[k], v) for k, v in method.prompt.state_dict().items())
        method.set_classnames(CLASSES)
        assert torch.equal(method(images), base)


def test_class_specific_contexts_take_renamed_classes_but_no_other_count(vit_backbone):
    method = create_method("coop", vit_backbone, CLASSES, n_ctx=2, csc=True)  # ctx [4 classes, 2, w]
    renamed = ["kitten", "lesser panda", "sea lion", "fire engine"]
    method.set_classnames(renamed)
    assert method.classnames == renamed and method.tokens.shape[0] == 4
    with pytest.raises(ConfigError) as error:
        method.set_classnames(OTHER_CLASSES)
    assert str(error.value) == (
        "Class-specific contexts were learned for 4 classes and cannot be used for 6 other classes; "
        "train with csc=false to transfer prompts.")


def test_unknown_class_token_position_lists_the_choices(vit_backbone):
    with pytest.raises(ConfigError) as error:
        create_method("coop", vit_backbone, CLASSES, class_token_position="back")
    assert str(error.value) == "class_token_position='back'; choose one of ('end', 'middle', 'front')."


def test_module_state_dict_moves_onto_another_class_list(row, vit_backbone):
    """Class-dependent buffers (token ids, frozen text features) are rebuilt, never saved: a whole-module
    `state_dict` loads with `nn.Module.load_state_dict` into the method built for other classes."""
    method = _build(row, vit_backbone)
    if method.class_specific:
        return
    _train_a_little(method)
    other = _build(row, vit_backbone, classnames=OTHER_CLASSES, seed=1)
    other.load_state_dict(method.state_dict())
    method.set_classnames(OTHER_CLASSES)
    images, _ = _batch(vit_backbone)
    with torch.no_grad():
        assert torch.equal(other(images), method(images))


def test_checkpoint_round_trip(row, vit_backbone, tmp_path):
    method = _build(row, vit_backbone)
    _train_a_little(method)
    path = tmp_path / "prompt.safetensors"
    save_prompt(method, path)
    fresh = _build(row, vit_backbone, seed=1)
    meta = load_prompt(fresh, path)
    assert (meta["method"], meta["backbone"]) == (row[0], vit_backbone.name)
    assert meta["classnames"] == method.classnames
    images, _ = _batch(vit_backbone)
    with torch.no_grad():
        assert torch.equal(fresh(images), method(images))


def test_checkpoint_onto_another_class_list(row, vit_backbone, tmp_path):
    method = _build(row, vit_backbone)
    _train_a_little(method)
    path = tmp_path / "prompt.safetensors"
    save_prompt(method, path)
    other = _build(row, vit_backbone, classnames=OTHER_CLASSES, seed=1)
    if method.class_specific:
        with pytest.raises(CheckpointMismatchError, match="class-specific"):
            load_prompt(other, path)
        return
    load_prompt(other, path)
    method.set_classnames(OTHER_CLASSES)
    images, _ = _batch(vit_backbone)
    with torch.no_grad():
        assert torch.equal(other(images), method(images))


def test_checkpoint_onto_another_backbone_fails(row, vit_backbone, tmp_path):
    method = _build(row, vit_backbone)
    path = tmp_path / "prompt.safetensors"
    save_prompt(method, path)
    other = _build(row, make_backbone(_other_backbone_name(vit_backbone)))
    with pytest.raises(CheckpointMismatchError, match="Prompts do not transfer between backbones"):
        load_prompt(other, path)


def test_create_method_reads_a_none_option_as_the_default(tiny_backbone):
    """As timm's create_model: `n_ctx=None` keeps the Config's 16, it is not passed on as None."""
    backbone = tiny_backbone
    method = create_method("coop", backbone, CLASSES, n_ctx=None, ctx_init=None, init_std=None)
    assert method.prompt.ctx.shape == (16, backbone.text_width) and method.config.init_std == 0.02


def test_each_method_config_is_found_by_its_key_and_an_unknown_key_has_none():
    configs = method_configs()
    assert sorted(configs) == list_methods()
    for name in list_methods():
        assert find_method_config(name) is configs[name] is method_class(name).Config, name
    assert find_method_config("copo") is None
