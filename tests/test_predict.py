"""promptinfo-predict: a trained prompt (or zero-shot CLIP) on the user's own images, from Python and the command line."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from promptinfo import create_method
from promptinfo.data import build_transform
from promptinfo.data.errors import CorruptImageError
from promptinfo.data.image_dataset import load_rgb
from promptinfo.data.image_files import NoImagesError, collect_images, read_class_list
from promptinfo.engine.predict import predict
from promptinfo.errors import CheckpointMismatchError, ConfigError
from promptinfo.methods import load_method, save_prompt
from tests.conftest import make_backbone
from tests.datagen import write_image

CLASSES = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Nine images in nested folders, one of another format."""
    root = tmp_path_factory.mktemp("photos")
    for i in range(8):
        write_image(root / ("a" if i % 2 else "b/c") / f"img{i}.jpg", size=40)
    write_image(root / "b" / "img8.jpg", size=40)
    (root / "b" / "img8.png").write_bytes((root / "b" / "img8.jpg").read_bytes())
    (root / "notes.txt").write_text("not an image list")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    backbone = make_backbone("pi-tiny-vit-s", seed=0)  # the engine's random weights (seed 0)
    method = create_method("coop", backbone, CLASSES, n_ctx=3)
    with torch.no_grad():
        method.prompt.ctx.add_(0.3 * torch.randn_like(method.prompt.ctx))
    path = tmp_path_factory.mktemp("ckpt") / "prompt.safetensors"
    save_prompt(method, path)
    return path


def _expected(checkpoint, paths, classnames=None):
    method = load_method(checkpoint, make_backbone("pi-tiny-vit-s", seed=0), classnames)
    transform = build_transform(method.backbone.preprocess_cfg, train=False)
    images = torch.stack([transform(load_rgb(p)) for p in paths])
    with torch.no_grad():
        return method(images).softmax(dim=1)


def test_folder_is_searched_recursively_in_path_order(photos):
    found = collect_images(photos)
    assert len(found) == 10 and found == sorted(found)
    assert all(p.endswith((".jpg", ".png")) for p in found)


def test_predictions_equal_the_method_on_the_images(photos, checkpoint, tmp_path):
    result = predict(photos, checkpoint, feature_cache=tmp_path / "cache", batch_size=4, device="cpu")
    assert result.classnames == CLASSES and result.paths == collect_images(photos)
    torch.testing.assert_close(result.probabilities, _expected(checkpoint, result.paths), rtol=1e-5, atol=1e-6)
    top = result.top(2)
    assert list(top.columns) == ["path", "class_1", "prob_1", "class_2", "prob_2"]
    best = result.probabilities.argmax(1).tolist()
    assert top["class_1"].tolist() == [CLASSES[i] for i in best]
    assert (top["prob_1"] >= top["prob_2"]).all()
    summary = result.summary()
    assert summary["images"].sum() == 10 and list(summary["images"]) == sorted(summary["images"], reverse=True)
    assert result.top(10).shape[1] == 1 + 2 * 3  # k is capped at the class count


def test_cached_features_are_reused_without_decoding_again(photos, checkpoint, tmp_path, monkeypatch):
    first = predict(photos, checkpoint, feature_cache=tmp_path / "cache", device="cpu")
    assert any((tmp_path / "cache").iterdir())
    import promptinfo.engine.predict as module

    monkeypatch.setattr(module, "find_unreadable", lambda *a, **k: pytest.fail("a cached set was decoded again"))
    second = predict(photos, checkpoint, feature_cache=tmp_path / "cache", device="cpu")
    assert torch.equal(first.probabilities, second.probabilities)


def test_transferable_prompt_takes_new_classes_and_class_specific_refuses(photos, checkpoint, tmp_path):
    result = predict(photos / "a", checkpoint, ["red car", "blue bus"], feature_cache=None, device="cpu")
    assert result.probabilities.shape == (4, 2) and result.classnames == ["red car", "blue bus"]
    torch.testing.assert_close(result.probabilities, _expected(checkpoint, result.paths, ["red car", "blue bus"]),
                               rtol=1e-5, atol=1e-6)
    backbone = make_backbone("pi-tiny-vit-s", seed=0)
    csc = tmp_path / "csc.safetensors"
    save_prompt(create_method("coop", backbone, CLASSES, n_ctx=2, csc=True), csc)
    with pytest.raises(CheckpointMismatchError, match="class-specific prompts for 3 classes"):
        predict(photos / "a", csc, ["red car", "blue bus"], device="cpu")


def test_zero_shot_needs_classes_and_a_backbone(photos):
    with pytest.raises(ConfigError, match="needs the class names"):
        predict(photos, model="pi-tiny-vit-s")
    with pytest.raises(ConfigError, match="needs a backbone"):
        predict(photos, classnames=CLASSES)
    result = predict(photos / "a", classnames=CLASSES, model="pi-tiny-vit-s", feature_cache=None, device="cpu")
    assert result.probabilities.shape == (4, 3)
    torch.testing.assert_close(result.probabilities.sum(1), torch.ones(4))


def test_unreadable_images_are_all_named_or_skipped(photos, checkpoint, tmp_path):
    folder = tmp_path / "mixed"
    for i in range(3):
        write_image(folder / f"ok{i}.jpg", size=40)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    with pytest.raises(CorruptImageError, match=r"(?s)2 image\(s\) cannot be decoded.*broken.jpg.*empty.png.*--skip-unreadable"):
        predict(folder, checkpoint, device="cpu", feature_cache=None)
    result = predict(folder, checkpoint, device="cpu", feature_cache=None, skip_unreadable=True)
    assert len(result.paths) == 3 and sorted(p.rsplit("/", 1)[1] for p in result.skipped) == ["broken.jpg", "empty.png"]


def test_list_files_and_class_lists(photos, tmp_path):
    listing = tmp_path / "images.txt"
    listing.write_text(f"# my images\n{photos / 'a' / 'img1.jpg'}\n\nrelative.jpg\n")
    write_image(tmp_path / "relative.jpg", size=40)
    assert collect_images(listing) == [str(photos / "a" / "img1.jpg"), str(tmp_path / "relative.jpg")]
    listing.write_text("missing.jpg\n")
    with pytest.raises(NoImagesError, match="names 1 missing file"):
        collect_images(listing)
    with pytest.raises(NoImagesError, match="does not exist"):
        collect_images(tmp_path / "nowhere")
    (tmp_path / "classes.txt").write_text("tabby cat\nhusky\n")
    assert read_class_list(str(tmp_path / "classes.txt")) == ["tabby cat", "husky"]
    assert read_class_list("cat, dog ,bird") == ["cat", "dog", "bird"]
    with pytest.raises(ConfigError, match=r"repeats \['cat'\]"):
        read_class_list("cat,dog,cat")


def test_command_line_writes_predictions_summary_and_exits_2_on_user_errors(photos, checkpoint, tmp_path, capsys):
    from promptinfo.cli.predict import main

    out = tmp_path / "out"
    assert main([str(photos), "--checkpoint", str(checkpoint), "--out", str(out), "--top-k", "2", "--device", "cpu",
                 "--feature-cache", str(tmp_path / "cache")]) == 0
    frame = pd.read_csv(out / "predictions.csv")
    assert len(frame) == 10 and list(frame.columns) == ["path", "class_1", "prob_1", "class_2", "prob_2"]
    assert (out / "summary.md").read_text().startswith("### Top-1 predictions of 10 image(s) (0 skipped)")
    assert pd.read_csv(out / "summary.csv")["images"].sum() == 10
    assert "Top-1 predictions" in capsys.readouterr().out
    assert main([str(photos), "--model", "pi-tiny-vit-s", "--out", str(out)]) == 2
    assert "needs the class names" in capsys.readouterr().err
