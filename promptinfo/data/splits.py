"""Split files (``split_zhou_*.json``) and the original protocol's ways of building a split.

A split file is ``{"train": [...], "val": [...], "test": [...]}`` with items
``[path relative to the image folder, integer label, class name]`` (Zhou et al., CoOp, IJCV 2022).
When present it is used as is, so results match published ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

from promptinfo.errors import DamagedFileError
from promptinfo.io import read_json, write_json
from promptinfo.data.errors import DataNotFoundError, SplitFileError, prepare_command
from promptinfo.data.items import DatasetSplits, Item

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
REBUILD_SEED = 1
"""Seed of rebuilt splits. CoOp drew its splits from the run's seed; published runs used its files."""

_EXAMPLES = 5


def read_split_file(path: str | os.PathLike, image_root: str | os.PathLike) -> DatasetSplits:
    """Read a ``split_zhou_*.json`` file; item paths are joined onto ``image_root``.

    Raises:
        SplitFileError: malformed items, or labels and class names that disagree.
    """
    path = Path(path)
    try:
        raw = read_json(path)
    except (DamagedFileError, OSError) as e:
        raise SplitFileError(f"{path} cannot be read ({e}); delete it and fetch it again") from None
    if not isinstance(raw, dict) or any(s not in raw for s in SPLITS):
        raise SplitFileError(f"{path} must be a JSON object with keys {list(SPLITS)}; found {_keys(raw)}")
    splits = {s: _parse_items(raw[s], s, path, Path(image_root)) for s in SPLITS}
    check_labels(splits, str(path))
    return DatasetSplits(**splits, source=path.name)


def write_split_file(path: str | os.PathLike, splits: DatasetSplits, image_root: str | os.PathLike) -> None:
    """Write ``splits`` in the split-file format, paths relative to ``image_root`` (atomic)."""
    out = {s: [[relative_path(i.path, image_root), i.label, i.classname] for i in getattr(splits, s)] for s in SPLITS}
    write_json(path, out, indent=None)


def relative_path(path: str, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` with forward slashes, as split files store it."""
    return Path(os.path.relpath(path, root)).as_posix()


def check_labels(splits: dict[str, list[Item]], where: str) -> None:
    """Every label has one class name, every name one label, and labels run 0..n-1.

    Raises:
        SplitFileError: with counts and examples of the disagreements.
    """
    names: dict[int, Counter] = defaultdict(Counter)
    labels: dict[str, Counter] = defaultdict(Counter)
    for items in splits.values():
        for item in items:
            names[item.label][item.classname] += 1
            labels[item.classname][item.label] += 1
    bad_labels = {y: dict(c) for y, c in names.items() if len(c) > 1}
    bad_names = {n: dict(c) for n, c in labels.items() if len(c) > 1}
    problems = []
    if bad_labels:
        problems.append(f"{len(bad_labels)} labels carry several class names, e.g. {_first(bad_labels)}")
    if bad_names:
        problems.append(f"{len(bad_names)} class names carry several labels, e.g. {_first(bad_names)}")
    missing = sorted(set(range(len(names))) - set(names))
    if names and missing:
        problems.append(f"labels must run 0..{len(names) - 1} but {len(missing)} are absent, "
                        f"e.g. {missing[:_EXAMPLES]}")
    if problems:
        raise SplitFileError(f"{where}: " + "; ".join(problems) + ". Fetch the original split file again.")


def check_files_exist(items: Sequence[Item], dataset_dir: Path, key: str) -> None:
    """Raise when files listed in a split are missing (the original loader asserts the same).

    Raises:
        DataNotFoundError: with the number of missing files, examples and the prepare command.
    """
    missing = [i.path for i in items if not os.path.isfile(i.path)]
    if missing:
        raise DataNotFoundError(
            f"{len(missing)} of {len(items)} images listed for {key!r} are missing under {dataset_dir}, e.g. "
            f"{missing[:_EXAMPLES]}. The image tree is incomplete or laid out differently from the split file; "
            f"see datasets/README.md or run `{prepare_command(key, str(dataset_dir.parent))}`."
        )


def split_fingerprint(*groups: Sequence[Item], root: str | os.PathLike | None = None) -> str:
    """A short hash of item paths (relative to ``root`` if given), labels and names, to detect stale files."""
    h = hashlib.sha256()
    for group in groups:
        for item in group:
            path = relative_path(item.path, root) if root is not None else item.path
            h.update(f"{path}\0{item.label}\0{item.classname}\n".encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def split_trainval(trainval: Sequence[Item], p_val: float = 0.2, rng: random.Random | None = None):
    """Per class, hold out ``round(n * p_val)`` shuffled items as val (CoOp's ``split_trainval``).

    Returns:
        (train, val) lists.
    """
    rng = rng or random.Random(REBUILD_SEED)
    by_label: dict[int, list[Item]] = defaultdict(list)
    for item in trainval:
        by_label[item.label].append(item)
    train, val = [], []
    for label, items in by_label.items():
        n_val = round(len(items) * p_val)
        if n_val < 1:
            raise ValueError(f"class {label} has {len(items)} train+val images, too few to hold out {p_val:.0%}")
        items = list(items)
        rng.shuffle(items)
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def split_per_class(groups: Sequence[tuple[int, str, list[str]]], p_train=0.5, p_val=0.2, rng=None):
    """Shuffle each class's images and cut 50/20/30 (CoOp's ``read_and_split_data``).

    Args:
        groups: ``(label, classname, image paths)`` per class, in the order the original visits them
            (which decides how the shuffles consume the generator).

    Returns:
        (train, val, test) lists of items.
    """
    rng = rng or random.Random(REBUILD_SEED)
    train, val, test = [], [], []
    for label, name, paths in groups:
        paths = list(paths)
        rng.shuffle(paths)
        n_train, n_val = round(len(paths) * p_train), round(len(paths) * p_val)
        if n_train < 1 or n_val < 1 or len(paths) - n_train - n_val < 1:
            raise ValueError(f"class {name!r} has {len(paths)} images, too few for a 50/20/30 train/val/test cut")
        train += [Item(p, label, name) for p in paths[:n_train]]
        val += [Item(p, label, name) for p in paths[n_train : n_train + n_val]]
        test += [Item(p, label, name) for p in paths[n_train + n_val :]]
    return train, val, test


def _parse_items(raw, split: str, path: Path, root: Path) -> list[Item]:
    if not isinstance(raw, list):
        raise SplitFileError(f"{path}: {split!r} must be a list of [path, label, classname], got {type(raw).__name__}")
    items, bad, base = [], [], str(root)
    for n, entry in enumerate(raw):
        ok = isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[0], str)
        ok = ok and isinstance(entry[1], int) and not isinstance(entry[1], bool) and entry[1] >= 0
        if not ok:
            bad.append((n, entry))
            continue
        items.append(Item(os.path.join(base, entry[0]), entry[1], str(entry[2])))
    if bad:
        raise SplitFileError(
            f"{path}: {len(bad)} of {len(raw)} {split!r} items are not [relative path, non-negative int label, "
            f"class name], e.g. {bad[:3]}"
        )
    return items


def _first(mapping: dict) -> dict:
    return dict(list(mapping.items())[:_EXAMPLES])


def _keys(raw) -> list:
    return sorted(raw) if isinstance(raw, dict) else type(raw).__name__
