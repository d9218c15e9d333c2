"""Transforms: the test transform is open_clip's own; the train transform is CoOp's augmentation."""

import pytest
import torch
from PIL import Image

from promptinfo.data import Preprocess, build_transform
from promptinfo.errors import ConfigError

OPENAI = {"size": (224, 224), "mode": "RGB", "mean": (0.48145466, 0.4578275, 0.40821073),
          "std": (0.26862954, 0.26130258, 0.27577711), "interpolation": "bicubic", "resize_mode": "shortest",
          "fill_color": 0}


def gradient_image(w=40, h=30):
    x = torch.linspace(0, 255, w).repeat(h, 1)
    y = torch.linspace(0, 255, h).unsqueeze(1).repeat(1, w)
    rgb = torch.stack([x, y, (x + y) / 2], dim=-1).to(torch.uint8).numpy()
    return Image.fromarray(rgb)


@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_test_transform_matches_open_clip(resize_mode, interpolation):
    from open_clip import image_transform

    cfg = {**OPENAI, "size": (16, 16), "resize_mode": resize_mode, "interpolation": interpolation}
    ours = build_transform(cfg, train=False)
    theirs = image_transform(16, is_train=False, mean=cfg["mean"], std=cfg["std"], resize_mode=resize_mode,
                             interpolation=interpolation)
    image = gradient_image()
    assert not ours.random
    assert torch.equal(ours(image), theirs(image))
    assert ours(image).shape == (3, 16, 16)


def test_test_transform_resizes_shortest_side_then_centre_crops():
    cfg = {**OPENAI, "size": 8}
    out = build_transform(cfg, train=False)(gradient_image(40, 20))
    mean, std = torch.tensor(OPENAI["mean"]).view(3, 1, 1), torch.tensor(OPENAI["std"]).view(3, 1, 1)
    pixels = out * std + mean
    assert out.shape == (3, 8, 8)
    assert 0.3 < pixels[0].mean() < 0.7  # the centre of a left-to-right ramp


def test_train_transform_is_random_crop_and_flip():
    tf = build_transform(OPENAI | {"size": 12}, train=True)
    image = gradient_image()
    torch.manual_seed(0)
    a = tf(image)
    torch.manual_seed(0)
    b = tf(image)
    c = tf(image)
    assert tf.random and a.shape == (3, 12, 12)
    assert torch.equal(a, b) and not torch.equal(b, c)
    steps = [type(t).__name__ for t in tf.fn.transforms]
    assert steps == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    crop = tf.fn.transforms[0]
    assert crop.scale == (0.08, 1.0) and crop.interpolation.value == "bicubic"


def test_flip_only_when_crop_covers_everything():
    tf = build_transform(OPENAI | {"size": 10}, train=True, scale=(1.0, 1.0), hflip=1.0)
    image = gradient_image(10, 10)
    test = build_transform(OPENAI | {"size": 10}, train=False)
    flipped = tf(image)
    assert torch.allclose(flipped, torch.flip(test(image), dims=[2]), atol=1e-6)


def test_descriptions_identify_the_transform():
    a = build_transform(OPENAI, train=False).description
    assert a == build_transform(dict(OPENAI), train=False).description
    assert a != build_transform(OPENAI | {"size": 336}, train=False).description
    assert a != build_transform(OPENAI | {"interpolation": "bilinear"}, train=False).description
    assert a != build_transform(OPENAI, train=True).description
    assert build_transform(OPENAI, train=True).description != build_transform(OPENAI, True, scale=(0.5, 1)).description


def test_accepts_backbone_style_objects_and_rejects_incomplete_configs():
    class Cfg:
        size, mean, std, interpolation, resize_mode = 224, OPENAI["mean"], OPENAI["std"], "bicubic", "shortest"

    assert Preprocess.from_config(Cfg()) == Preprocess.from_config(OPENAI)
    with pytest.raises(ConfigError, match="size"):
        build_transform({"mean": (0.5,) * 3, "std": (0.5,) * 3}, train=False)
    with pytest.raises(ConfigError, match="interpolation"):
        build_transform(OPENAI | {"interpolation": "lanczos"}, train=False)
    with pytest.raises(ConfigError, match="scale"):
        build_transform(OPENAI, train=True, scale=(0.0, 1.0))
