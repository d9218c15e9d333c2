"""A disk cache of frozen-encoder image features, shared by methods, seeds and runs.

An entry is keyed by backbone, weights, precision, dataset and split (built by ``feature_key``, the one
builder every caller uses, so training, evaluation and inspection share entries) plus what this
module adds itself: the transform's description, a fingerprint of the items (absolute paths,
labels), the number of augmented views and their seed. Changing any of them (moving the data
folder too) gives a new entry. Entries are
written to a temporary file and moved into place under a file lock, so two runs filling the same
entry encode it once and nobody ever reads a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from promptinfo.data._io import lock_for
from promptinfo.data.image_dataset import ImageDataset, collate_skipping
from promptinfo.data.items import Item
from promptinfo.data.splits import split_fingerprint
from promptinfo.data.transforms import ImageTransform
from promptinfo.errors import DamagedFileError
from promptinfo.io import atomic_path, read_safetensors, remove_leftover_temps, set_aside

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
REQUIRED_KEYS = ("backbone", "weights", "dataset", "split")
EncodeFn = Callable[[torch.Tensor], torch.Tensor]  # [B, 3, H, W] -> [B, d]


def feature_key(backbone, precision: str, dataset: str, split: str) -> dict[str, str]:
    """The caller's part of the key of a backbone's L2-normalised image features of a dataset split.

    Args:
        backbone: anything with the ``name`` and ``weights_digest`` (content identity of the weights)
            of a ``promptinfo.Backbone``.
        precision: name of the precision the features were encoded in (``fp32``, ``bf16``, ...).
        dataset: the benchmark's registry key; the items' fingerprint (added by the cache) tells a
            subset, a few-shot draw or a base/novel half of it apart, so every run reading the same
            images shares one entry.
        split: ``test``, ``val``, ``train`` or ``train-augmented``.
    """
    return {"backbone": backbone.name, "weights": backbone.weights_digest, "precision": precision,
            "features": "normalized", "dataset": dataset, "split": split}


@dataclass(frozen=True)
class CachedFeatures:
    """Features of every item (and view).

    Attributes:
        features: ``[views, n, d]``; rows of skipped (unreadable) images are zero.
        labels: ``[n]`` item labels.
        valid: ``[n]`` False where an unreadable image was skipped.
        path: the cache file.
    """

    features: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    path: Path

    @property
    def num_views(self) -> int:
        return self.features.shape[0]

    def view(self, v: int = 0) -> torch.Tensor:
        """Features ``[n, d]`` of view ``v`` (the only view of a test transform)."""
        return self.features[v]

    def sample_views(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One randomly chosen augmented view per item, ``[n, d]`` (a fresh draw each epoch)."""
        n = self.features.shape[1]
        pick = torch.randint(self.num_views, (n,), generator=generator)
        return self.features[pick, torch.arange(n)]


class FeatureCache:
    """Image features on disk under ``root``, computed once per key.

    Args:
        root: cache folder (created when needed).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path_for(self, key_parts: Mapping[str, Any], items: Sequence[Item], transform: ImageTransform,
                 views: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
        """The file that holds (or will hold) this entry."""
        return self._entry(key_parts, items, transform, views, seed, dtype)[1]

    def load(self, key_parts: Mapping[str, Any], items: Sequence[Item], transform: ImageTransform,
             views: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32) -> CachedFeatures | None:
        """The cached entry, or ``None`` when it has not been computed (or was damaged, and is now set aside)."""
        key, path = self._entry(key_parts, items, transform, views, seed, dtype)
        return _lookup(path, key, items)

    def _entry(self, key_parts, items, transform, views, seed, dtype) -> tuple[dict, Path]:
        key = _full_key(key_parts, items, transform, views, seed, dtype)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key['dataset']}-{key['split']}")
        return key, self.root / f"{stem}-{digest}.safetensors"

    def get_or_compute(
        self,
        key_parts: Mapping[str, Any],
        items: Sequence[Item],
        encode_fn: EncodeFn,
        transform: ImageTransform,
        *,
        batch_size: int = 64,
        views: int = 1,
        seed: int = 0,
        num_workers: int = 0,
        skip_corrupt: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> CachedFeatures:
        """Load the entry, or encode the images (once, even across concurrent runs) and store it.

        Args:
            key_parts: ``feature_key(...)``, or any mapping with at least ``backbone``, ``weights``,
                ``dataset`` and ``split`` (strings).
            encode_fn: frozen image encoder, ``[B, 3, H, W]`` CPU float tensor -> ``[B, d]``; it moves
                the batch to its device itself. Called under ``torch.no_grad()``.
            transform: test transform (``views=1``) or a random training transform.
            views: augmented views per image (needs a random transform); training draws among them.
            seed: seed of the augmented views; view ``v`` of item ``i`` is a pure function of it.
        """
        if views < 1 or (views > 1 and not transform.random):
            raise ValueError(f"views={views}: use 1 view with a deterministic transform, >= 1 with a random one")
        key, path = self._entry(key_parts, items, transform, views, seed, dtype)
        cached = _lookup(path, key, items)
        if cached is not None:
            return cached
        with lock_for(path):
            cached = _read_or_set_aside(path, key, items) if path.is_file() else None
            if cached is not None:  # filled by a concurrent run while we waited
                return cached
            remove_leftover_temps(path)  # of a fill that was killed: we hold the entry's lock
            start = time.perf_counter()
            feats, valid = _encode(items, encode_fn, transform, batch_size, views, seed, num_workers, skip_corrupt)
            labels = torch.tensor([i.label for i in items], dtype=torch.long)
            tensors = {"features": feats.to(dtype).contiguous(), "labels": labels, "valid": valid}
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp), metadata={"key": json.dumps(key, sort_keys=True)})
            logger.info("encoded %d images x %d views in %.1fs -> %s", len(items), views, time.perf_counter() - start,
                        path)
        return CachedFeatures(tensors["features"], labels, valid, path)


def _full_key(key_parts, items, transform, views, seed, dtype) -> dict:
    missing = [k for k in REQUIRED_KEYS if not str(key_parts.get(k, "") or "")]
    if missing:
        raise ValueError(f"feature-cache key lacks {missing}; give {list(REQUIRED_KEYS)} so entries never mix")
    key = {k: str(v) for k, v in key_parts.items()}
    key.update(transform=transform.description, items=split_fingerprint(items), n=len(items), views=views,
               seed=seed if transform.random else None, dtype=str(dtype), format=CACHE_FORMAT)
    return key


_ENTRY_FIX = "It is set aside and computed again."


def _lookup(path: Path, key: dict, items: Sequence[Item]) -> CachedFeatures | None:
    """The entry, or None when absent or damaged (a damaged one is set aside under the entry's lock)."""
    if not path.is_file():
        return None
    with contextlib.suppress(DamagedFileError):
        return _read_entry(path, key, items)
    with lock_for(path):  # a concurrent run may have replaced it meanwhile: read again under the lock
        return _read_or_set_aside(path, key, items) if path.is_file() else None


def _read_or_set_aside(path: Path, key: dict, items: Sequence[Item]) -> CachedFeatures | None:
    """The entry at ``path``; a damaged one is renamed out of the way (kept to look at) and None returned.
    Call under the entry's lock."""
    try:
        return _read_entry(path, key, items)
    except DamagedFileError as err:
        aside = set_aside(path)
        logger.warning("feature cache entry %s is damaged (%s); set it aside as %s and encoding the images again",
                       path, err.problem, aside.name)
        return None


def _read_entry(path: Path, key: dict, items: Sequence[Item]) -> CachedFeatures:
    """Read and check an entry: its key, tensor names, shapes and labels.

    Raises:
        DamagedFileError: unreadable, or not the entry its name promises.
    """
    tensors, metadata = read_safetensors(path, _ENTRY_FIX)
    try:
        stored = json.loads(metadata.get("key", "{}"))
    except json.JSONDecodeError:
        stored = None
    if stored != key:
        raise DamagedFileError(path, f"its metadata names another entry ({stored})", _ENTRY_FIX)
    n = len(items)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    features = shapes.get("features", ())
    if len(features) != 3 or features[:2] != (key["views"], n) or not shapes.get("labels") == shapes.get("valid") == (n,):
        raise DamagedFileError(path, f"tensor shapes {shapes} do not fit {key['views']} views of {n} items",
                               _ENTRY_FIX)
    labels = torch.tensor([i.label for i in items], dtype=torch.long)
    if not torch.equal(tensors["labels"], labels):
        raise DamagedFileError(path, "its labels disagree with the items'", _ENTRY_FIX)
    return CachedFeatures(tensors["features"], tensors["labels"], tensors["valid"].bool(), path)


class _Views(Dataset):
    """``(views [V, 3, H, W], label, index)``: every view of an item from a single decode of its file.

    View ``v`` runs the random transform under a seed fixed by (seed, v, index), so it does not depend
    on the other views, the batch or the loader workers.
    """

    def __init__(self, base: ImageDataset, seed: int, views: int) -> None:
        self.base, self.seed, self.views = base, seed, views

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image = self.base.load(index)
        if image is None:
            return None
        out = []
        for v in range(self.views):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed((self.seed * 1_000_003 + v) * 1_000_033 + index)
                out.append(self.base.transform(image))
        return torch.stack(out), self.base.items[index].label, index


@torch.no_grad()
def _encode(items, encode_fn, transform, batch_size, views, seed, num_workers, skip_corrupt):
    """Features ``[views, n, d]`` and a validity mask ``[n]``; each file is decoded once for all its views,
    and a batch holds ``batch_size`` images (``batch_size // views`` items' views)."""
    base = ImageDataset(items, transform, skip_corrupt=skip_corrupt)
    dataset = _Views(base, seed, views) if transform.random else base
    loader = DataLoader(dataset, batch_size=max(1, batch_size // views), num_workers=num_workers,
                        collate_fn=collate_skipping, generator=torch.Generator().manual_seed(seed))
    n = len(items)
    feats: torch.Tensor | None = None
    valid = torch.zeros(n, dtype=torch.bool)
    for batch in loader:
        if batch is None:
            continue
        images, _, index = batch  # [b, views, 3, H, W] (random transform) or [b, 3, H, W]
        images = images.flatten(0, 1) if transform.random else images
        out = encode_fn(images)
        if out.ndim != 2 or out.shape[0] != images.shape[0]:
            raise ValueError(f"encode_fn must map [B, 3, H, W] to [B, d]; got {tuple(out.shape)}")
        if feats is None:
            feats = torch.zeros(views, n, out.shape[1])
        feats[:, index] = out.detach().float().cpu().view(len(index), views, -1).transpose(0, 1)
        valid[index] = True
    if feats is None:
        raise ValueError(f"no image of the {n} items could be read; nothing to cache")
    return feats, valid
