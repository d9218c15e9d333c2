"""Unlabelled batches: which unlabelled images each step sees, and their weak and strong views.

Step s of epoch e draws `mu * batch_size` images from the strategy's pool: the pool is shuffled
under a generator seeded by (seed, e) and repeated as often as the epoch's steps need. Views are
pure functions of (seed, e, slot, image) too, so a run resumed at an epoch boundary sees exactly
the unlabelled batches of an uninterrupted one. Frozen-image methods read both views from the
feature cache (`trainer.train_views` cached views of each kind); the others load and augment the
images at every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from promptinfo.data import ImageDataset, Item, collate_skipping
from promptinfo.engine.data import Loading
from promptinfo.engine.device import mix_seed

UnlabelledBatch = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]
"""(weak view `[b, ...]`, strong view `[b, ...]` or None, positions `[b]` in the unlabelled set)."""


def unlabelled_order(pool: torch.Tensor, steps: int, size: int, seed: int, epoch: int) -> torch.Tensor:
    """Positions `[steps, size]` of the unlabelled images of each step of `epoch`, drawn from `pool`."""
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch, 11))
    repeats = math.ceil(steps * size / pool.numel())
    order = torch.cat([pool[torch.randperm(pool.numel(), generator=generator)] for _ in range(repeats)])
    return order[: steps * size].view(steps, size)


class NoLabelledBatches:
    """The labelled side of an unsupervised run: `steps` empty batches per epoch."""

    kind = "features"

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps):
            yield torch.empty(0), torch.empty(0, dtype=torch.long)


class FeatureViews:
    """Cached weak (and strong) view features `[views, n, d]`; each step picks one view per image."""

    kind = "features"

    def __init__(self, weak: torch.Tensor, strong: torch.Tensor | None, seed: int) -> None:
        self.weak, self.strong, self.seed = weak, strong, seed
        self.order = torch.empty(0, 0, dtype=torch.long)
        self.picks: tuple[torch.Tensor, torch.Tensor] | None = None

    def start_epoch(self, epoch: int, order: torch.Tensor) -> None:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 12))
        self.order = order
        self.picks = (torch.randint(self.weak.shape[0], order.shape, generator=generator),
                      torch.randint(self.weak.shape[0], order.shape, generator=generator))

    def batch(self, step: int) -> UnlabelledBatch:
        index = self.order[step]
        weak = self.weak[self.picks[0][step], index]
        strong = None if self.strong is None else self.strong[self.picks[1][step], index]
        return weak, strong, index


class _SlotSeededPairs(Dataset):
    """`([2 or 1, 3, H, W], -1, position)` for a key (epoch, slot, position): its views drawn under a seed
    fixed by the key, so a repeated image gets fresh views in another slot of the epoch."""

    def __init__(self, items: Sequence[Item], transforms: list[Callable], seed: int) -> None:
        self.base, self.transforms, self.seed = ImageDataset(items, transforms[0]), transforms, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int, int]):
        epoch, slot, index = key
        image = self.base.load(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, slot, index, 13))
            views = torch.stack([t(image) for t in self.transforms])
        return views, -1, index


class ImageViews:
    """Weak (and strong) augmentations of the unlabelled images, loaded at every step."""

    kind = "images"

    def __init__(self, items: Sequence[Item], weak: Callable, strong: Callable | None, seed: int,
                 loading: Loading) -> None:
        self.dataset = _SlotSeededPairs(items, [weak] if strong is None else [weak, strong], seed)
        self.loading = loading
        self.batches: Iterator | None = None

    def start_epoch(self, epoch: int, order: torch.Tensor) -> None:
        size = order.shape[1]
        keys = [[(epoch, step * size + j, int(i)) for j, i in enumerate(row)] for step, row in enumerate(order.tolist())]
        self.batches = iter(DataLoader(self.dataset, batch_sampler=keys, collate_fn=collate_skipping,
                                       **self.loading.loader_kwargs()))

    def batch(self, step: int) -> UnlabelledBatch:
        views, _, index = next(self.batches)  # [b, 1 or 2, 3, H, W]
        strong = views[:, 1] if views.shape[1] > 1 else None
        return views[:, 0], strong, index
