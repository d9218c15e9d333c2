"""The demo CLIP: pretraining learns held-out classes, is deterministic, and its checkpoint loads anywhere."""

import importlib.util
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

import promptinfo
from promptinfo import demo
from promptinfo.backbones import create_backbone
from promptinfo.data import procedural
from promptinfo.demo.pretraining import contrastive_loss
from promptinfo.errors import ConfigError

MICRO = replace(
    demo.VARIANTS["small"],
    benchmark=procedural.ProceduralSpec(train_per_class=1, val_per_class=1, test_per_class=2),
    steps=3,
    batch_size=32,
    warmup_steps=1,
)


@pytest.fixture(scope="module")
def small_checkpoint(demo_cache):
    """The small variant, pretrained once per test session (the slowest step of the file)."""
    return demo.ensure_demo_backbone("small", cache_dir=demo_cache, num_threads=1), demo_cache


@pytest.fixture(scope="module")
def micro_model():
    return demo.pretrain_demo_clip(MICRO, workers=1)


@pytest.mark.slow
def test_small_variant_beats_chance_on_held_out_classes(small_checkpoint):
    path, _ = small_checkpoint
    report = json.loads(path.with_suffix(".json").read_text())
    model = open_clip.create_model("pi-demo-small", pretrained=str(path)).eval()
    measured = demo.evaluate_demo_clip(model, demo.VARIANTS["small"])
    assert measured == {k: report[k] for k in measured}  # the report is what the weights do
    assert measured["chance_novel"] == pytest.approx(1 / 24)
    assert measured["accuracy_novel"] >= 4 * measured["chance_novel"]
    assert measured["accuracy_base"] >= 6 * measured["chance_base"]
    assert measured["accuracy_base_pretrained"] > measured["accuracy_base_unseen"] + 0.1  # room for prompt learning


@pytest.mark.slow
def test_pretraining_script_reports_the_cached_checkpoint(small_checkpoint, capsys):
    path, cache = small_checkpoint
    script = Path(__file__).parents[1] / "tools" / "pretrain_demo_clip.py"
    spec = importlib.util.spec_from_file_location("pretrain_demo_clip", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--variant", "small", "--cache-dir", str(cache), "--pretraining-classes", "half_base"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["checkpoint"] == str(path) and printed["fingerprint"] == demo.VARIANTS["small"].fingerprint()
    assert printed["accuracy_base_unseen"] < printed["accuracy_base_pretrained"]


@pytest.mark.slow
def test_cached_checkpoint_is_reused_and_named_by_recipe(small_checkpoint):
    path, cache = small_checkpoint
    stamp = path.stat().st_mtime_ns
    assert demo.ensure_demo_backbone("small", cache_dir=cache) == path
    assert path.stat().st_mtime_ns == stamp
    assert path.name == f"pi-demo-small-{demo.VARIANTS['small'].fingerprint()}.safetensors"
    assert demo.VARIANTS["small"].fingerprint() != replace(demo.VARIANTS["small"], seed=1).fingerprint()


@pytest.mark.slow
def test_checkpoint_loads_through_open_clip_and_create_backbone_with_identical_outputs(micro_model, tmp_path):
    model, report = micro_model
    path = tmp_path / "micro.safetensors"
    demo.save_demo_checkpoint(model, report, path)
    assert not any(p.requires_grad for p in model.parameters())  # returned frozen, as Backbone leaves it
    loaded = open_clip.create_model("pi-demo-small", pretrained=str(path)).eval().requires_grad_(False)
    preprocess = create_backbone("pi-demo-small").preprocess_cfg
    images = demo.to_model_input(np.stack([procedural.render("red", "star", s, 32) for s in range(3)]), preprocess)
    tokens = open_clip.tokenize(["a photo of a red star.", "a blue ring."])
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), model.encode_image(images))
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))
        assert torch.equal(loaded.logit_scale, model.logit_scale)
    backbone = create_backbone("pi-demo-small", pretrained=str(path))
    assert backbone.embed_dim == 64 and backbone.context_length == 77
    assert json.loads(path.with_suffix(".json").read_text())["fingerprint"] == MICRO.fingerprint()


@pytest.mark.slow
def test_pretraining_is_deterministic_with_or_without_loader_workers(micro_model):
    model, report = micro_model
    again, report_again = demo.pretrain_demo_clip(MICRO, workers=0)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert report_again["final_loss"] == report["final_loss"]


def test_pretraining_sees_half_of_the_base_classes_with_every_attribute_and_no_novel_class():
    recipe = demo.VARIANTS["default"]
    base, novel = procedural.base_novel_split(recipe.benchmark.classes)
    pairs = demo.pretraining_pairs(recipe)
    base_pairs = [(c.colour, c.shape) for c in base]
    assert len(pairs) == len(base) // 2 and set(pairs) < set(base_pairs)
    assert pairs == [p for p in base_pairs if p in pairs]  # label order
    assert {c for c, _ in pairs} == set(recipe.benchmark.colours)
    assert {s for _, s in pairs} == set(recipe.benchmark.shapes)
    assert not set(pairs) & {(c.colour, c.shape) for c in novel}
    assert demo.pretraining_pairs(replace(recipe, pretraining_classes="base")) == base_pairs
    images, tokens = demo.PretrainingBatches(MICRO, (0.5,) * 3, (0.25,) * 3)[2]
    assert images.shape == (32, 3, 32, 32) and tokens.shape == (32, 77)
    assert set(demo.PretrainingBatches(MICRO, (0.5,) * 3, (0.25,) * 3).pairs) == set(pairs)


def test_pretraining_classes_are_checked():
    with pytest.raises(ConfigError, match="half_base"):
        demo.pretraining_pairs(replace(MICRO, pretraining_classes="all"))
    two_by_two = replace(MICRO, benchmark=replace(MICRO.benchmark, colours=("red", "blue"), shapes=("circle", "star")))
    with pytest.raises(ConfigError, match=r"never see \['blue', 'star'\]"):
        demo.pretraining_pairs(two_by_two)
    both = [("red", "circle"), ("blue", "star")]
    assert demo.pretraining_pairs(replace(two_by_two, pretraining_classes="base")) == both


def test_creating_the_random_model_warns_about_nothing(caplog):
    with caplog.at_level(logging.INFO):
        demo.create_demo_model("pi-demo-small")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_model_input_matches_open_clip_eval_transform():
    images = np.stack([procedural.render("cyan", "cross", s, 32) for s in range(2)])
    transform = open_clip.image_transform(32, is_train=False)
    expected = torch.stack([transform(Image.fromarray(x)) for x in images])
    preprocess = create_backbone("pi-demo-small").preprocess_cfg
    torch.testing.assert_close(demo.to_model_input(images, preprocess), expected)


def test_clip_loss_is_symmetric_info_nce():
    torch.manual_seed(0)
    img, txt = torch.randn(5, 8), torch.randn(5, 8)
    scale = torch.tensor(2.0)
    logits = scale.exp() * torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
    by_hand = -(logits.log_softmax(1).diag().mean() + logits.log_softmax(0).diag().mean()) / 2
    torch.testing.assert_close(contrastive_loss(img, txt, scale), by_hand)


def test_unknown_variant_and_mismatched_resolution_are_rejected():
    with pytest.raises(ConfigError, match="small"):
        demo.get_recipe("huge")
    bad = replace(MICRO, benchmark=replace(MICRO.benchmark, resolution=48))
    with pytest.raises(ConfigError, match="resolution=32"):
        demo.pretrain_demo_clip(bad)


@pytest.mark.slow  # its fixture pretrains the small demo CLIP
def test_procedural_tag_resolves_to_the_cached_checkpoint(small_checkpoint):
    path, cache = small_checkpoint
    assert ("pi-demo-small", "procedural") in promptinfo.list_backbones(pretrained=True)
    by_tag = create_backbone("pi-demo-small", pretrained="procedural", cache_dir=str(cache))
    by_file = create_backbone("pi-demo-small", pretrained=str(path))
    assert by_tag.weights_id == "procedural" and by_tag.weights_digest == by_file.weights_digest
    for (name, a), (_, b) in zip(by_tag.state_dict().items(), by_file.state_dict().items()):
        assert torch.equal(a, b), name
