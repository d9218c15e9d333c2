"""A torch ``Dataset`` over benchmark items: decoded RGB image through a transform, label, index."""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, default_collate

from promptinfo.data.errors import CorruptImageError
from promptinfo.data.items import Item

logger = logging.getLogger(__name__)


def load_rgb(path: str) -> Image.Image:
    """Decode ``path`` fully into an RGB PIL image.

    Raises:
        CorruptImageError: the file is missing, truncated or not an image; the message names it.
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces the full decode inside the try
    except FileNotFoundError as e:
        raise CorruptImageError(f"image file {path} does not exist: {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(
            f"cannot decode image {path}: {e}. Replace the file, or pass dataset.skip_corrupt=true to leave it out"
        ) from e


class ImageDataset(Dataset):
    """``(image tensor [3, H, W], label, index)`` for each item.

    Args:
        items: the images and labels.
        transform: PIL image -> tensor (see ``build_transform``).
        skip_corrupt: instead of raising on an undecodable file, log it and yield ``None``;
            ``collate_skipping`` then leaves it out of the batch.
    """

    def __init__(self, items: Sequence[Item], transform: Callable, skip_corrupt: bool = False) -> None:
        self.items = list(items)
        self.transform = transform
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        image = self.load(index)
        return None if image is None else (self.transform(image), self.items[index].label, index)

    def load(self, index: int) -> Image.Image | None:
        """The decoded image of item ``index``; ``None`` for an unreadable file under ``skip_corrupt``."""
        try:
            return load_rgb(self.items[index].path)
        except CorruptImageError as e:
            if not self.skip_corrupt:
                raise
            logger.warning("skipping unreadable image (skip_corrupt=True): %s", e)
            return None


def collate_skipping(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``default_collate`` without the ``None`` samples of skipped images; ``None`` if none is left."""
    kept = [sample for sample in batch if sample is not None]
    if not kept:
        return None
    images, labels, indices = default_collate(kept)
    return images, labels, indices


class _Probe(Dataset):
    """``None`` for an image file that decodes, else ``(index, reason)``."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            load_rgb(self.paths[index])
        except CorruptImageError as err:
            return index, str(err.__cause__ or err)
        return None


def find_unreadable(paths: Sequence[str], num_workers: int = 0) -> dict[str, str]:
    """The files among ``paths`` that cannot be decoded, each with the reason (every file is fully decoded)."""
    loader = DataLoader(_Probe(paths), batch_size=64, num_workers=num_workers, collate_fn=list)
    found = (hit for batch in loader for hit in batch if hit is not None)
    return {paths[index]: reason for index, reason in found}
