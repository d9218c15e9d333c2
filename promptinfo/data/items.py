"""The records every reader returns: one labelled image, and the three splits of a benchmark."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """One labelled image.

    Attributes:
        path: absolute path of the image file.
        label: class index, 0-based and contiguous over the benchmark.
        classname: the class name as the original loaders store it (underscores kept; prompts
            replace them by spaces).
    """

    path: str
    label: int
    classname: str


@dataclass(frozen=True)
class DatasetSplits:
    """What a benchmark reader returns.

    Attributes:
        train, val, test: items of each split, in the order of the split file (or of the official
            lists), which the few-shot sampler depends on.
        source: where the split came from, e.g. ``"split_zhou_OxfordPets.json"``,
            ``"official lists"`` or ``"rebuilt"``.
        listed: every path came from listing a folder, so the files are known to exist.
    """

    train: list[Item]
    val: list[Item]
    test: list[Item]
    source: str = ""
    listed: bool = False

    def all_items(self) -> list[Item]:
        return [*self.train, *self.val, *self.test]


def classnames_by_label(items: list[Item]) -> list[str]:
    """Class names ordered by label; labels must run 0..n-1 and each carry one name.

    Raises:
        ValueError: a label has two names, or some label in 0..max is absent.
    """
    names: dict[int, str] = {}
    for item in items:
        known = names.setdefault(item.label, item.classname)
        if known != item.classname:
            raise ValueError(f"label {item.label} is named both {known!r} and {item.classname!r}")
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise ValueError(f"labels must run 0..{len(names) - 1}; missing {missing[:5]} (max {max(names)})")
    return [names[label] for label in range(len(names))]
