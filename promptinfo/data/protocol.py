"""The CoOp protocol: k-shot sampling and base-to-novel class subsampling, drawing the very same images.

The original (Zhou et al., CoOp / CoCoOp; Dassl's ``generate_fewshot_dataset``) seeds Python's
``random`` with the run seed, groups the train items by label in order of first appearance,
calls ``random.sample(items, k)`` per label, then does the same on val with ``min(k, 4)``
continuing the generator; only then are base or novel classes kept (base: the first
``ceil(n / 2)`` sorted labels, novel: the rest, each relabelled from 0) on train, val and test.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from promptinfo.data._io import lock_for
from promptinfo.io import atomic_path, read_json, remove_leftover_temps, set_aside
from promptinfo.data.items import Item
from promptinfo.data.loading import BenchmarkData
from promptinfo.data.splits import relative_path, split_fingerprint
from promptinfo.errors import ConfigError, DamagedFileError

logger = logging.getLogger(__name__)

SUBSAMPLES = ("all", "base", "new")
VAL_SHOTS_CAP = 4
INDEX_FORMAT = 1


def draw_per_class(items: Sequence[Item], shots: int, rng: random.Random, repeat: bool = False) -> list[Item]:
    """``shots`` items per label, labels in order of first appearance (Dassl's ``generate_fewshot_dataset``).

    A label with fewer than ``shots`` items keeps all of them, or, with ``repeat``, draws ``shots``
    with replacement (``random.choices``).
    """
    groups: dict[int, list[Item]] = defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    out: list[Item] = []
    for group in groups.values():
        if len(group) >= shots:
            out += rng.sample(group, shots)
        elif repeat:
            out += rng.choices(group, k=shots)
        else:
            out += group
    return out


def draw_few_shot(data: BenchmarkData, shots: int, seed: int, repeat: bool = False) -> tuple[list[Item], list[Item]]:
    """The original's k-shot train and ``min(k, 4)``-shot val draws from one generator seeded with ``seed``.

    ImageNet (``val_is_test``) draws no val: its val set stays the test set.
    """
    rng = random.Random(seed)  # same stream as random.seed(seed) on the global generator
    train = draw_per_class(data.train, shots, rng, repeat)
    val = data.test if data.val_is_test else draw_per_class(data.val, min(shots, VAL_SHOTS_CAP), rng, repeat)
    return train, val


def subsample_classes(data: BenchmarkData, subsample: str) -> BenchmarkData:
    """Keep base (first ``ceil(n/2)`` sorted labels) or new classes on every split, relabelled from 0."""
    if subsample not in SUBSAMPLES:
        raise ConfigError(f"subsample must be one of {SUBSAMPLES}, got {subsample!r}")
    if subsample == "all":
        return data
    labels = sorted({i.label for i in (data.train or data.test)})
    half = math.ceil(len(labels) / 2)
    kept = labels[:half] if subsample == "base" else labels[half:]
    new_label = {old: new for new, old in enumerate(kept)}

    def keep(items: list[Item]) -> list[Item]:
        return [Item(i.path, new_label[i.label], i.classname) for i in items if i.label in new_label]

    return replace(
        data, train=keep(data.train), val=keep(data.val), test=keep(data.test),
        classnames=[data.classnames[old] for old in kept], subsample=subsample,
    )


def few_shot_subset(
    data: BenchmarkData,
    shots: int,
    seed: int,
    subsample: str = "all",
    cache_dir: str | Path | None = None,
    repeat: bool = False,
) -> BenchmarkData:
    """Apply the CoOp protocol: k-shot train/val (``shots < 1``: all data), then base/new/all classes.

    The drawn subset is stored as a readable JSON index, ``shot_{k}-seed_{seed}.json`` in
    ``cache_dir`` (default ``<benchmark folder>/split_fewshot/``), and reused by later runs and
    other methods as long as the split it came from is unchanged.

    Raises:
        ConfigError: a bad ``subsample``, or few-shot training on a test-only benchmark.
    """
    if subsample not in SUBSAMPLES:
        raise ConfigError(f"subsample must be one of {SUBSAMPLES}, got {subsample!r}")
    if shots >= 1:
        if data.test_only:
            raise ConfigError(f"{data.key} is test-only: it has no train split to draw {shots} shots from")
        folder = Path(cache_dir) if cache_dir is not None else data.root / "split_fewshot"
        train, val = _load_or_draw(data, shots, seed, folder / f"shot_{shots}-seed_{seed}.json", repeat)
        data = replace(data, train=train, val=val, shots=shots, seed=seed)
        _warn_short_classes(data, shots)
    return subsample_classes(data, subsample)


def images_per_class(items: Sequence[Item], num_classes: int) -> list[int]:
    """How many of ``items`` each label 0..num_classes-1 has."""
    counts = Counter(item.label for item in items)
    return [counts.get(label, 0) for label in range(num_classes)]


def effective_shots(data: BenchmarkData) -> dict[str, int]:
    """The fewest and most training images of any class (``{"min": .., "max": ..}``), as a run trains on them."""
    counts = images_per_class(data.train, data.num_classes)
    return {"min": min(counts), "max": max(counts)}


def _warn_short_classes(data: BenchmarkData, shots: int) -> None:
    counts = images_per_class(data.train, data.num_classes)
    short = [f"{data.classnames[label]} ({n})" for label, n in enumerate(counts) if n < shots]
    if short:
        logger.warning("%s: %d of %d classes have fewer than %d training images, so they train on fewer shots: %s. "
                       "results.json records the effective shots per class (shots_effective).", data.key,
                       len(short), data.num_classes, shots, ", ".join(short))


def _load_or_draw(data: BenchmarkData, shots: int, seed: int, path: Path, repeat: bool):
    fingerprint = split_fingerprint(data.train, data.val, root=data.image_root)
    with contextlib.suppress(DamagedFileError):  # checked again, set aside and warned about under the lock
        stored = _read_index(path, data, shots, seed, fingerprint, repeat, quiet=True)
        if stored is not None:
            return stored
    meta = {"format": INDEX_FORMAT, "benchmark": data.key, "shots": shots, "seed": seed, "repeat": repeat,
            "source_split": data.split_source, "source_fingerprint": fingerprint}
    try:
        with lock_for(path):
            stored = _read_index_or_set_aside(path, data, shots, seed, fingerprint, repeat)
            if stored is not None:  # another run may have written it
                return stored
            train, val = draw_few_shot(data, shots, seed, repeat)
            remove_leftover_temps(path)
            _write_index(path, meta, train, None if data.val_is_test else val, data.image_root)
    except OSError as e:
        logger.warning("%s: cannot write the few-shot index %s (%s); pass a writable cache_dir to keep it",
                       data.key, path, e)
        return draw_few_shot(data, shots, seed, repeat)
    logger.info("%s: saved the %d-shot draw of seed %d to %s", data.key, shots, seed, path)
    return train, val


def _read_index_or_set_aside(path: Path, data: BenchmarkData, *args):
    """`_read_index`, but a damaged index is renamed out of the way (kept to look at) and None returned."""
    try:
        return _read_index(path, data, *args)
    except DamagedFileError as err:
        aside = set_aside(path)
        logger.warning("%s: the few-shot index %s is damaged (%s); set it aside as %s and drawing again",
                       data.key, path, err.problem, aside.name)
        return None


def _read_index(path: Path, data: BenchmarkData, shots: int, seed: int, fingerprint: str, repeat: bool,
                quiet: bool = False):
    """The stored (train, val) draw; None when absent or drawn with other settings (a warning, or a debug line
    when ``quiet``: the first, lock-free read, which the read under the lock repeats).

    Raises:
        DamagedFileError: the file is not JSON or lacks well-formed item rows.
    """
    if not path.is_file():
        return None
    index = read_json(path)
    if not isinstance(index, dict):
        raise DamagedFileError(path, f"expected a JSON object, found {type(index).__name__}", _INDEX_FIX)
    wanted = {"format": INDEX_FORMAT, "shots": shots, "seed": seed, "repeat": repeat, "source_fingerprint": fingerprint}
    stale = {k: index.get(k) for k, v in wanted.items() if index.get(k) != v}
    if stale:
        log = logger.debug if quiet else logger.warning
        log("%s: %s was drawn from another split or setting (%s); drawing again", data.key, path, stale)
        return None
    train = _index_items(index.get("train"), data.image_root, path)
    return train, data.test if data.val_is_test else _index_items(index.get("val"), data.image_root, path)


_INDEX_FIX = "It is set aside and drawn again from the split (same seed, same images)."


def _index_items(rows, root: Path, path: Path) -> list[Item]:
    def well_formed(row) -> bool:
        return (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and isinstance(row[2], str)
                and isinstance(row[1], int) and not isinstance(row[1], bool))

    if not isinstance(rows, list) or not all(well_formed(row) for row in rows):
        raise DamagedFileError(path, "its item lists are not [path, label, class name] rows", _INDEX_FIX)
    return [Item(str(root / p), y, c) for p, y, c in rows]


def _write_index(path: Path, meta: dict, train: list[Item], val: list[Item] | None, root: Path) -> None:
    """JSON with one item per line, so the drawn images are easy to read and diff."""

    def rows(items: list[Item]) -> str:
        lines = [json.dumps([relative_path(i.path, root), i.label, i.classname]) for i in items]
        return "[\n    " + ",\n    ".join(lines) + "\n  ]" if lines else "[]"

    head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items())
    body = f'{{\n{head},\n  "train": {rows(train)},\n  "val": {rows(val) if val is not None else "null"}\n}}\n'
    with atomic_path(path) as tmp:
        tmp.write_text(body, encoding="utf-8")
