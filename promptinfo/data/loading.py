"""``load_benchmark``: a registered benchmark read from disk, checked, with its class names and templates."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from promptinfo.data.errors import DataNotFoundError, prepare_command
from promptinfo.data.items import DatasetSplits, Item
from promptinfo.data.registry import Benchmark, get_benchmark
from promptinfo.data.splits import check_files_exist, check_labels
from promptinfo.data.templates import class_prompts, select_templates

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkData:
    """One benchmark's items, class names and prompt templates, possibly after the few-shot protocol.

    Attributes:
        key: registry key.
        root: the benchmark folder (``<data root>/<folder>``).
        image_root: folder that split-file paths are relative to.
        train, val, test: items; for ImageNet ``val`` is the test set (as in CoOp).
        classnames: names ordered by label (underscores kept; ``prompts`` replaces them).
        templates: prompt templates, each with one ``{}``.
        method_templates: method key -> the template its authors use here instead (see ``templates_for``).
        split_source: where the split came from.
        shots, seed, subsample: the protocol applied (``shots=-1``: all images).
    """

    key: str
    root: Path
    image_root: Path
    train: list[Item]
    val: list[Item]
    test: list[Item]
    classnames: list[str]
    templates: list[str]
    split_source: str
    val_is_test: bool = False
    test_only: bool = False
    method_templates: Mapping[str, str] = field(default_factory=dict)
    shots: int = -1
    seed: int | None = None
    subsample: str = "all"

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def split(self, name: str) -> list[Item]:
        """Items of split ``name`` (train, val or test)."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    def templates_for(self, method: str) -> list[str]:
        """The templates method ``method`` prompts this benchmark with: its authors' own where they differ
        (``Benchmark.method_templates``, e.g. KgCoOp on DTD), else ``templates``."""
        own = self.method_templates.get(method)
        return [own] if own is not None else list(self.templates)

    def prompts(self, template: str | None = None) -> list[str]:
        """Class prompts from ``template`` (default: the first template)."""
        return class_prompts(template or self.templates[0], self.classnames)


def load_benchmark(
    name: str,
    root: str | Path,
    *,
    template_set: str = "single",
    check_files: bool = True,
    strict_counts: bool = False,
) -> BenchmarkData:
    """Read benchmark ``name`` from ``root/<folder>`` (its layout: ``datasets/README.md``).

    Args:
        template_set: ``single`` (the hand-crafted template), ``imagenet80`` or ``imagenet7``.
        check_files: verify that every image named by a split file exists (as the original does).
        strict_counts: raise instead of warning when class or split counts differ from the paper's.

    Raises:
        DataNotFoundError: the folder, files it needs, or listed images are missing; the message names
            the expected path and the command that prepares it.
        SplitFileError: the split file is malformed or inconsistent.
        ConfigError: unknown ``name`` or ``template_set``.
    """
    bench = get_benchmark(name)
    splits = bench.read(root)
    folder = bench.dataset_dir(root)
    groups = {"train": splits.train, "val": splits.val, "test": splits.test}
    check_labels(groups, f"{bench.name} ({splits.source})")
    if not splits.test:
        raise DataNotFoundError(f"{bench.name} at {folder} has no test images; see `{prepare_command(bench.key)}`")
    if check_files and not splits.listed:
        check_files_exist(splits.all_items(), folder, bench.key)
    val = splits.test if bench.val_is_test else splits.val
    data = BenchmarkData(
        key=bench.key,
        root=folder,
        image_root=folder / bench.image_dir,
        train=splits.train,
        val=val,
        test=splits.test,
        classnames=_classnames(splits),
        split_source=splits.source,
        val_is_test=bench.val_is_test,
        test_only=bench.test_only,
        **benchmark_templates(bench, template_set),
    )
    _check_counts(bench, data, strict_counts)
    return data


def benchmark_templates(bench: Benchmark, template_set: str = "single") -> dict:
    """The template fields of ``bench``'s ``BenchmarkData``: ``templates`` (its hand-crafted template, or the
    ensemble ``template_set``) and ``method_templates`` (the methods' authors' own, see ``templates_for``)."""
    own = select_templates(bench.template, template_set, is_imagenet=bench.key == "imagenet")
    return {"templates": own, "method_templates": dict(bench.method_templates)}


def _classnames(splits: DatasetSplits) -> list[str]:
    names: dict[int, str] = {}
    for item in splits.all_items():
        names.setdefault(item.label, item.classname)
    return [names[label] for label in range(len(names))]


def count_differences(bench: Benchmark, data: BenchmarkData) -> list[str]:
    """Class and split counts that differ from the paper's, as ``"train 35 (paper: 2820)"``."""
    found = (data.num_classes, len(data.train), len(data.val), len(data.test))
    expected = (bench.num_classes, *(bench.sizes or (None, None, None)))
    names = ("classes", "train", "val", "test")
    return [f"{n} {f} (paper: {e})" for n, f, e in zip(names, found, expected) if e is not None and f != e]


def _check_counts(bench: Benchmark, data: BenchmarkData, strict: bool) -> None:
    diffs = count_differences(bench, data)
    if not diffs:
        return
    message = f"{bench.name} at {data.root}: " + ", ".join(diffs) + "; published numbers used the full data"
    if strict:
        raise DataNotFoundError(message + f". Prepare it with `{prepare_command(bench.key, str(data.root.parent))}`.")
    logger.warning(message)
