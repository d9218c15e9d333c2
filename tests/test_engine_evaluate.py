"""Evaluation counts every test image exactly, over splits several evaluation batches long with uneven
classes, for a cached (frozen) image side, a prompted image side and per-image classifiers (CoCoOp); its
information metrics use the fixed subset's own classifier rows."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from promptinfo.data import BenchmarkData, Item, build_transform
from promptinfo.engine.build import attach_feature_store, build_runtime
from promptinfo.engine.evaluate import evaluate
from promptinfo.engine.info import fixed_subset, information_metrics
from promptinfo.metrics import label_weights
from promptinfo.engine.schema import TrainerConfig
from promptinfo.methods import create_method
from tests.conftest import make_backbone
from tests.datagen import write_image

CLASSES = ["red circle", "blue square", "green star"]
PER_CLASS = (11, 3, 9)  # 23 test images: six evaluation batches of 4, the last one short
EVAL_BATCH = 4
METHODS = {"coop": dict(n_ctx=4), "cocoop": dict(n_ctx=4, ctx_init=""), "maple": dict(depth=2)}


@pytest.fixture(scope="module")
def backbone():
    return make_backbone()


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> BenchmarkData:
    root = tmp_path_factory.mktemp("eval")
    items = []
    for label, count in enumerate(PER_CLASS):
        for i in range(count):
            path = root / f"c{label}_{i}.png"
            write_image(path, size=16)
            items.append(Item(str(path), label, CLASSES[label]))
    items = [items[i] for i in torch.randperm(len(items), generator=torch.Generator().manual_seed(0)).tolist()]
    return BenchmarkData(key="generated", root=root, image_root=root, train=[], val=[], test=items,
                         classnames=list(CLASSES), templates=["a photo of a {}."], split_source="test")


def _prompted(name: str, backbone):
    torch.manual_seed(3)
    method = create_method(name, backbone, CLASSES, **METHODS[name])
    with torch.no_grad():  # away from the initialisation, so that predictions differ between images
        for p in method.prompt.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(4)) * 0.5)
    return method.eval()


def _direct(method, split: BenchmarkData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, logits and labels of the whole split in one pass, without the engine."""
    transform = build_transform(method.backbone.preprocess_cfg, train=False)
    images = torch.stack([transform(_load(item)) for item in split.test])
    with torch.no_grad():
        feats = method.encode_images(images)
        logits = method.classify(feats).logits
    return feats, logits, torch.tensor([item.label for item in split.test])


def _load(item: Item) -> Image.Image:
    with Image.open(item.path) as image:
        return image.convert("RGB")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_evaluation_counts_every_batch_of_an_uneven_split(name, backbone, split, tmp_path):
    method = _prompted(name, backbone)
    _, logits, labels = _direct(method, split)
    predictions = logits.argmax(1)
    assert len(set(predictions.tolist())) > 1  # the check below sees which image got which label
    rt = build_runtime(TrainerConfig(device="cpu", eval_batch_size=EVAL_BATCH, num_workers=0), backbone)
    attach_feature_store(rt, method, str(tmp_path / "features"))
    result = evaluate(method, split, rt, subsample="all", info_subset=0, seed=1)
    assert result.total == sum(PER_CLASS) == len(split.test)
    assert result.correct == int((predictions == labels).sum())
    first = predictions[:EVAL_BATCH] == labels[:EVAL_BATCH]
    assert (result.correct, result.total) != (int(first.sum()), EVAL_BATCH)


@pytest.mark.parametrize("name", ["coop", "cocoop"])
def test_evaluation_information_metrics_pair_each_subset_image_with_its_label_row(name, backbone, split, tmp_path):
    method = _prompted(name, backbone)
    feats, _, labels = _direct(method, split)
    index = fixed_subset(len(labels), 13, seed=5)
    assert index.max() >= EVAL_BATCH and len(set(labels[index].tolist())) == 3  # spans batches and classes
    with torch.no_grad():
        text = method.text_features(feats[index]) if name == "cocoop" else method.text_features()
    expected = information_metrics(feats[index], label_weights(text, labels[index]))
    rt = build_runtime(TrainerConfig(device="cpu", eval_batch_size=EVAL_BATCH, num_workers=0), backbone)
    attach_feature_store(rt, method, str(tmp_path / "features"))
    metrics = evaluate(method, split, rt, subsample="all", info_subset=13, seed=5).metrics
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-5), key
