"""The benchmark registry: one declarative ``Benchmark`` per dataset, looked up by its lowercase key.

Adding a benchmark is one file in ``promptinfo/data/benchmarks/`` that calls
``register_benchmark(Benchmark(...))``; the package finds it, and hydra offers it as ``dataset=<key>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from promptinfo.data.errors import DataNotFoundError, prepare_command
from promptinfo.data.items import DatasetSplits
from promptinfo.data.splits import read_split_file, write_split_file
from promptinfo.errors import ConfigError

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, "Benchmark"] = {}
CMA_SHOTS = (1, 2, 4, 8, 16)
"""Shot counts of a per-shot CMA lambda tuple."""


@dataclass(frozen=True)
class RemoteFile:
    """A single file fetched from a public address into the benchmark folder.

    Attributes:
        url: direct download address.
        dest: path relative to the benchmark folder.
        page: address a person opens to fetch it by hand (defaults to ``url``).
        extract: the file is an archive to unpack into the benchmark folder (then deleted).
    """

    url: str
    dest: str
    page: str = ""
    extract: bool = False


def google_drive(file_id: str, dest: str) -> RemoteFile:
    """A file the CoOp authors share on Google Drive (split files, class-name lists)."""
    return RemoteFile(
        url=f"https://drive.google.com/uc?export=download&id={file_id}",
        dest=dest,
        page=f"https://drive.google.com/file/d/{file_id}/view",
    )


@dataclass(frozen=True)
class TorchvisionSource:
    """Images downloaded by a ``torchvision.datasets`` class, then moved into the CoOp layout.

    Attributes:
        dataset: class name in ``torchvision.datasets``.
        moves: ``(path under the download folder, path under the benchmark folder)`` pairs.
        kwargs: extra constructor arguments (e.g. a split).
    """

    dataset: str
    moves: tuple[tuple[str, str], ...]
    kwargs: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """Everything the toolkit knows about one benchmark.

    Attributes:
        key: registry key used in configs (lowercase).
        name: the dataset's name in CoOp's code (``"OxfordPets"``), used in messages.
        folder: folder under the data root (CoOp's DATASETS.md).
        template: the hand-crafted prompt template of CoOp's zero-shot CLIP.
        method_templates: method registry key -> the template that method's authors use on this benchmark
            where it differs from ``template`` (KgCoOp's own table).
        cma_lambda: the CMA authors' lambda for CoOp few-shot training (Song et al., arXiv 2409.16767): one
            value, or one per shot count in ``CMA_SHOTS``; None where they give none.
        read_fn: reads the benchmark from its folder without a split file (official lists, or the
            original per-class random split); test-only benchmarks are always read this way.
        image_dir: folder, relative to ``folder``, that split-file paths are relative to.
        split_file: name of the ``split_zhou_*.json`` file, if the benchmark has one.
        num_classes, sizes: expected class count and (train, val, test) sizes from the CoOp paper.
        required: paths ``read_fn`` needs, relative to ``folder``.
        val_is_test: the test set doubles as validation set (ImageNet).
        test_only: only a test split exists (domain-shift variants).
        download: how to fetch the images automatically, if a public source exists.
        files: extra public files (split file, class-name list) fetched by ``prepare``.
        manual: instructions printed when images must be fetched by hand (``{dir}`` is the folder).
        prepare_hook: extra local preparation run by ``prepare`` (e.g. writing ``classnames.txt``);
            returns the actions it took.
        generated: ``read_fn`` creates the data itself (procedural benchmarks), so the folder need
            not exist beforehand and nothing is downloaded.
    """

    key: str
    name: str
    folder: str
    template: str
    read_fn: Callable[[Path], DatasetSplits]
    method_templates: Mapping[str, str] = field(default_factory=dict)
    cma_lambda: float | tuple[float, ...] | None = None
    image_dir: str = ""
    split_file: str | None = None
    num_classes: int | None = None
    sizes: tuple[int, int, int] | None = None
    required: tuple[str, ...] = ()
    val_is_test: bool = False
    test_only: bool = False
    download: TorchvisionSource | None = None
    files: tuple[RemoteFile, ...] = field(default_factory=tuple)
    manual: str = ""
    prepare_hook: Callable[[Path], list[str]] | None = None
    generated: bool = False

    def dataset_dir(self, root: str | Path) -> Path:
        return Path(root).expanduser().resolve() / self.folder

    def read(self, root: str | Path) -> DatasetSplits:
        """Read the splits: the split file when present, else rebuild it the original way and save it.

        Raises:
            DataNotFoundError: the folder or the files needed to read it are missing.
        """
        folder = self.dataset_dir(root)
        if self.generated:
            return self.read_fn(folder)
        if not folder.is_dir():
            raise DataNotFoundError(
                f"{self.name} not found: expected folder {folder}. Prepare it with "
                f"`{prepare_command(self.key, str(folder.parent))}` (layouts: datasets/README.md)."
            )
        split_path = folder / self.split_file if self.split_file else None
        if split_path is not None and split_path.is_file():
            return read_split_file(split_path, folder / self.image_dir)
        self._check_required(folder)
        splits = self.read_fn(folder)
        if split_path is not None:
            self._save_rebuilt(splits, split_path, folder)
        return splits

    def _save_rebuilt(self, splits: DatasetSplits, split_path: Path, folder: Path) -> None:
        try:
            write_split_file(split_path, splits, folder / self.image_dir)
            saved = f"saved to {split_path}"
        except OSError as e:
            saved = f"NOT saved ({split_path}: {e})"
        page = self._split_page()
        logger.warning(
            "%s: %s was missing, so the split was rebuilt the way the original code does (%s). Published numbers "
            "used the original file%s; fetch it with `%s` to reproduce them exactly.",
            self.name, self.split_file, saved, f" ({page})" if page else "",
            prepare_command(self.key, str(folder.parent)),
        )

    def _check_required(self, folder: Path) -> None:
        missing = [r for r in self.required if not (folder / r).exists()]
        if missing:
            wanted = f" (or the split file {self.split_file})" if self.split_file else ""
            raise DataNotFoundError(
                f"{self.name} at {folder} is incomplete: missing {', '.join(missing)}{wanted}. Prepare it with "
                f"`{prepare_command(self.key, str(folder.parent))}` (layouts: datasets/README.md)."
            )

    def _split_page(self) -> str:
        for f in self.files:
            if f.dest == self.split_file:
                return f.page or f.url
        return ""


def register_benchmark(benchmark: Benchmark, *, overwrite: bool = False) -> Benchmark:
    """Add ``benchmark`` to the registry and return it.

    Raises:
        ConfigError: the key is taken (pass ``overwrite=True`` to replace it) or not lowercase.
    """
    if benchmark.key != benchmark.key.lower() or not benchmark.key:
        raise ConfigError(f"benchmark keys are lowercase and non-empty; got {benchmark.key!r}")
    if benchmark.key in _REGISTRY and not overwrite:
        raise ConfigError(f"benchmark {benchmark.key!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[benchmark.key] = benchmark
    return benchmark


def get_benchmark(key: str) -> Benchmark:
    """The registered benchmark ``key``.

    Raises:
        ConfigError: unknown key; the message lists the known ones.
    """
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ConfigError(f"unknown dataset {key!r}; known datasets: {', '.join(list_datasets())}") from None


def cma_lambda(dataset: str, shots: int) -> float:
    """The CMA authors' weight for CoOp few-shot training on ``dataset`` with ``shots`` per class.

    Benchmarks with a single value use it for any shot count; DTD and UCF101 have one value per shot count in
    ``CMA_SHOTS`` and reject others.

    Raises:
        ValueError: unknown dataset, no published value, or a shot count without one.
    """
    known = sorted(k for k, b in _REGISTRY.items() if b.cma_lambda is not None)
    value = _REGISTRY[dataset].cma_lambda if dataset in _REGISTRY else None
    if value is None:
        raise ValueError(f"no CMA lambda for dataset {dataset!r}; known: {known} (or set lambda explicitly)")
    if int(shots) != shots or shots < 1:
        raise ValueError(f"shots must be a positive integer, got {shots}")
    if isinstance(value, float):
        return value
    if shots not in CMA_SHOTS:
        raise ValueError(f"{dataset} has CMA lambdas only for shots in {CMA_SHOTS}, got {shots}; set lambda explicitly")
    return value[CMA_SHOTS.index(shots)]


def list_datasets() -> list[str]:
    """Keys of all registered benchmarks, sorted."""
    return sorted(_REGISTRY)
