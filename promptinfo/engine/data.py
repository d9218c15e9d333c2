"""What the loop consumes: training batches (images or cached features) and evaluation features.

Data order and augmentation of epoch e are pure functions of (seed, e): the batch sampler draws its
permutation from a generator seeded by (seed, e) and hands `(epoch, index)` keys to the dataset,
which runs the random transform of each image under a seed fixed by (seed, epoch, index). So a run
resumed at an epoch boundary sees exactly the batches of an uninterrupted run, whatever the number
of loader workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from promptinfo.data import (
    BenchmarkData,
    FeatureCache,
    ImageDataset,
    Item,
    build_transform,
    collate_skipping,
    feature_key,
    few_shot_subset,
    load_benchmark,
    subsample_classes,
)
from promptinfo.engine import distributed as dist
from promptinfo.engine.device import mix_seed

SUBSAMPLE_NAMES = {"all": "all", "base": "base", "novel": "new"}
"""Our subsample names (`novel`, as in the CoCoOp paper) -> the data layer's (`new`, as in CoOp's code)."""


@dataclass(frozen=True)
class Loading:
    """Data-loading settings shared by every loader of a run."""

    batch_size: int
    eval_batch_size: int
    num_workers: int
    pin_memory: bool
    persistent_workers: bool

    def loader_kwargs(self) -> dict:
        kwargs = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            kwargs["persistent_workers"] = self.persistent_workers
        return kwargs


def load_split(name: str, root: str, shots: int, seed: int, subsample: str) -> BenchmarkData:
    """A benchmark after the CoOp protocol: `shots` per class (-1 or 0: all) drawn with `seed`, then a class subset."""
    data = load_benchmark(name, root)
    return few_shot_subset(data, shots=shots, seed=seed, subsample=SUBSAMPLE_NAMES[subsample])


def load_eval_split(name: str, root: str, subsample: str) -> BenchmarkData:
    """A benchmark's test split restricted to a class subset (no few-shot draw)."""
    return subsample_classes(load_benchmark(name, root), SUBSAMPLE_NAMES[subsample])


# --------------------------------------------------------------------------------------------- training
class EpochBatchSampler(Sampler):
    """Shuffled batches of `(epoch, index)` keys; the order of epoch e depends only on (seed, e).

    The last incomplete batch is dropped when there are at least `batch_size` items (as Dassl does).
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.drop_last = n >= batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, 1))
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.permutation().tolist()
        for b in range(len(self)):
            chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(self.epoch, i) for i in chunk]

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)


class EpochSeededImages(Dataset):
    """Images under a random transform whose draw is fixed by (seed, epoch, index)."""

    def __init__(self, items: Sequence[Item], transform: Callable, seed: int) -> None:
        self.base = ImageDataset(items, transform)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, index, 2))
            return self.base[index]


class ImageBatches:
    """Augmented training images, batch by batch."""

    kind = "images"

    def __init__(self, items: Sequence[Item], transform: Callable, seed: int, loading: Loading) -> None:
        dataset = EpochSeededImages(items, transform, seed)
        self.sampler = dist.shard_batches(EpochBatchSampler(len(items), loading.batch_size, seed))
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, collate_fn=collate_skipping,
                                 **loading.loader_kwargs())

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        for batch in self.loader:
            if batch is not None:
                yield batch[0], batch[1]


class FeatureBatches:
    """Cached features of augmented views (frozen image side): one view per image drawn each epoch."""

    kind = "features"

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, seed: int, batch_size: int) -> None:
        self.features, self.labels, self.seed = features, labels, seed  # [views, n, d], [n]
        self.sampler = dist.shard_batches(EpochBatchSampler(labels.shape[0], batch_size, seed))

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        n = self.labels.shape[0]
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 3))
        views = torch.randint(self.features.shape[0], (n,), generator=generator)
        for keys in self.sampler:
            index = torch.tensor([i for _, i in keys])
            yield self.features[views[index], index], self.labels[index]


# --------------------------------------------------------------------------------------------- features
class FeatureStore:
    """Frozen-encoder features of a run, from the disk cache (`FeatureCache`) shared by runs and methods."""

    def __init__(self, root: str, backbone, precision: str, encode_fn, preprocess_cfg, loading: Loading) -> None:
        self.cache = FeatureCache(root)
        self.backbone, self.precision = backbone, precision
        self.encode_fn, self.preprocess_cfg, self.loading = encode_fn, preprocess_cfg, loading

    def features(self, items: Sequence[Item], dataset: str, split: str) -> torch.Tensor:
        """Test-transform features `[n, d]` of `items` (encoded once, then read from the cache)."""
        entry = self.cache.get_or_compute(
            feature_key(self.backbone, self.precision, dataset, split), items, self.encode_fn,
            build_transform(self.preprocess_cfg, train=False), batch_size=self.loading.eval_batch_size,
            num_workers=self.loading.num_workers,
        )
        return entry.view(0)

    def has_features(self, items: Sequence[Item], dataset: str, split: str) -> bool:
        """Whether `features(items, dataset, split)` is already in the cache (it then decodes no image)."""
        key = feature_key(self.backbone, self.precision, dataset, split)
        return self.cache.path_for(key, items, build_transform(self.preprocess_cfg, train=False)).is_file()

    def train_views(self, items: Sequence[Item], dataset: str, views: int, seed: int, transform) -> torch.Tensor:
        """Features `[views, n, d]` of `views` views of every training image under the random `transform`."""
        entry = self.cache.get_or_compute(
            feature_key(self.backbone, self.precision, dataset, "train-augmented"), items, self.encode_fn,
            transform, batch_size=self.loading.eval_batch_size,
            views=views, seed=seed, num_workers=self.loading.num_workers,
        )
        return entry.features


def image_loader(items: Sequence[Item], preprocess_cfg, loading: Loading) -> DataLoader:
    """Test-transformed images in order, for methods whose image side is prompted."""
    dataset = ImageDataset(items, build_transform(preprocess_cfg, train=False))
    return DataLoader(dataset, batch_size=loading.eval_batch_size, shuffle=False, collate_fn=collate_skipping,
                      **loading.loader_kwargs())
