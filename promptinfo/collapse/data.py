"""A benchmark's train and test images decoded once into memory, normalised by the training set's statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from promptinfo.data import Item, load_benchmark, load_rgb
from promptinfo.errors import ConfigError


@dataclass(frozen=True)
class LabelledImages:
    """Images [n, 3, s, s] (float32, normalised) and labels [n]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def decode(items: Sequence[Item], size: int) -> torch.Tensor:
    """uint8 images [n, 3, size, size], resized (bicubic) where their size differs."""
    arrays = []
    for item in items:
        image = load_rgb(item.path)
        if image.size != (size, size):
            image = image.resize((size, size), Image.BICUBIC)
        arrays.append(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


def load_classification_data(name: str, root: str, num_classes: int | None, size: int):
    """(train, test, class names) of benchmark `name`, restricted to its first `num_classes` classes."""
    data = load_benchmark(name, root)
    keep = data.num_classes if num_classes is None else num_classes
    if not 2 <= keep <= data.num_classes:
        raise ConfigError(f"data.num_classes={num_classes}: {name} has {data.num_classes} classes; "
                          f"choose 2 to {data.num_classes}, or null for all")
    train = [item for item in data.train if item.label < keep]
    test = [item for item in data.test if item.label < keep]
    raw_train, raw_test = decode(train, size).float() / 255, decode(test, size).float() / 255
    mean, std = raw_train.mean((0, 2, 3), keepdim=True), raw_train.std((0, 2, 3), keepdim=True).clamp_min(1e-3)
    labelled = [LabelledImages((raw - mean) / std, torch.tensor([item.label for item in items]))
                for raw, items in ((raw_train, train), (raw_test, test))]
    return labelled[0], labelled[1], data.classnames[:keep]
