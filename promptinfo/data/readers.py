"""Readers shared by several benchmark definitions: class folders, ImageNet-style trees, official lists."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

from promptinfo.data._io import list_subfolders, list_visible
from promptinfo.data.errors import DataNotFoundError, SplitFileError
from promptinfo.data.items import DatasetSplits, Item
from promptinfo.data.splits import split_per_class, split_trainval


def image_files(folder: str | os.PathLike) -> list[str]:
    """Absolute paths of the visible files in ``folder``, sorted."""
    folder = str(folder)
    return [os.path.join(folder, n) for n in list_visible(folder) if os.path.isfile(os.path.join(folder, n))]


def per_class_split(
    image_dir: str, ignored: Sequence[str] = (), renames: Mapping[str, str] | None = None
) -> Callable[[Path], DatasetSplits]:
    """A reader that cuts every class folder of ``image_dir`` 50/20/30 (CoOp's ``read_and_split_data``).

    Classes are the sorted folder names minus ``ignored``; ``renames`` maps folder names to class names.
    """
    return partial(_read_per_class_split, image_dir=image_dir, ignored=tuple(ignored), renames=dict(renames or {}))


def _read_per_class_split(folder: Path, image_dir: str, ignored: tuple, renames: dict) -> DatasetSplits:
    root = folder / image_dir
    classes = [c for c in list_subfolders(root) if c not in ignored]
    groups = [(label, renames.get(c, c), image_files(root / c)) for label, c in enumerate(classes)]
    train, val, test = split_per_class(groups)
    return DatasetSplits(train, val, test, source="rebuilt", listed=True)


def lists_with_holdout(read_lists: Callable[[Path], tuple[list[Item], list[Item]]]) -> Callable[[Path], DatasetSplits]:
    """A reader for official train+val / test lists, holding out 20% of each class as val (``split_trainval``)."""

    def read(folder: Path) -> DatasetSplits:
        trainval, test = read_lists(folder)
        train, val = split_trainval(trainval)
        return DatasetSplits(train, val, test, source="rebuilt")

    return read


def read_text_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_imagenet_classnames(path: Path) -> dict[str, str]:
    """``classnames.txt``: lines ``<wnid> <class name>``, in label order."""
    if not path.is_file():
        raise DataNotFoundError(
            f"missing {path}: the list of '<wnid> <class name>' lines (CLIP's ImageNet names). "
            f"`python tools/prepare_data.py imagenet --root {path.parent.parent}` fetches it into imagenet/, and "
            "preparing an ImageNet variant copies it from there."
        )
    names = {}
    for line in read_text_lines(path):
        wnid, _, name = line.partition(" ")
        names[wnid] = name.strip()
    return names


def read_class_folders(root: Path, folders: Sequence[str], classnames: Mapping[str, str], where: str) -> list[Item]:
    """Items of ``root/<folder>/*`` with label = position of the folder in ``folders``.

    Raises:
        SplitFileError: a folder has no entry in ``classnames``.
    """
    unknown = [f for f in folders if f not in classnames]
    if unknown:
        raise SplitFileError(
            f"{where}: {len(unknown)} class folders are not in classnames.txt, e.g. {unknown[:5]}; "
            "use the classnames.txt of the CoOp layout (1000 lines '<wnid> <name>')"
        )
    items = []
    for label, folder in enumerate(folders):
        items += [Item(p, label, classnames[folder]) for p in image_files(root / folder)]
    return items


def imagenet_style_test(image_dir: str) -> Callable[[Path], DatasetSplits]:
    """A test-only reader for ``image_dir/<wnid>/*`` trees labelled by sorted folder (Sketch, -A, -R).

    Classes are the folders present, so ImageNet-A and -R get their 200 classes re-indexed 0..199
    with the names of those 200 classes.
    """

    def read(folder: Path) -> DatasetSplits:
        classnames = read_imagenet_classnames(folder / "classnames.txt")
        root = folder / image_dir
        items = read_class_folders(root, list_subfolders(root), classnames, str(root))
        return DatasetSplits([], [], items, source="class folders", listed=True)

    return read
