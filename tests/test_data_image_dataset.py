"""The image Dataset: tensors, labels and indices; unreadable files are named, and skipped only on request."""

import pytest
import torch
from torch.utils.data import DataLoader

from promptinfo.data import CorruptImageError, ImageDataset, Item, build_transform, collate_skipping
from tests.datagen import write_image

CFG = {"size": 8, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


@pytest.fixture
def items(tmp_path):
    out = []
    for i in range(5):
        write_image(tmp_path / f"img_{i}.jpg", size=12)
        out.append(Item(str(tmp_path / f"img_{i}.jpg"), i % 2, f"c{i % 2}"))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out.insert(2, Item(str(bad), 1, "c1"))
    return out


def test_returns_image_label_index(items):
    ds = ImageDataset(items[:2], build_transform(CFG, train=False))
    image, label, index = ds[1]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32 and label == 1 and index == 1


def test_grayscale_and_rgba_become_rgb(tmp_path):
    from PIL import Image

    Image.new("L", (9, 9), 100).save(tmp_path / "g.png")
    Image.new("RGBA", (9, 9), (1, 2, 3, 4)).save(tmp_path / "a.png")
    ds = ImageDataset([Item(str(tmp_path / n), 0, "x") for n in ("g.png", "a.png")], build_transform(CFG, False))
    assert ds[0][0].shape == ds[1][0].shape == (3, 8, 8)


def test_corrupt_file_is_named(items):
    ds = ImageDataset(items, build_transform(CFG, train=False))
    with pytest.raises(CorruptImageError, match="broken.jpg") as err:
        ds[2]
    assert "skip_corrupt" in str(err.value)


def test_missing_file_is_named(tmp_path):
    ds = ImageDataset([Item(str(tmp_path / "gone.jpg"), 0, "x")], build_transform(CFG, train=False))
    with pytest.raises(CorruptImageError, match="gone.jpg"):
        ds[0]


def test_skip_corrupt_leaves_it_out_of_batches(items, caplog):
    ds = ImageDataset(items, build_transform(CFG, train=False), skip_corrupt=True)
    assert ds[2] is None and "broken.jpg" in caplog.text
    batches = list(DataLoader(ds, batch_size=4, collate_fn=collate_skipping))
    indices = torch.cat([b[2] for b in batches]).tolist()
    assert indices == [0, 1, 3, 4, 5]
    assert collate_skipping([None, None]) is None
