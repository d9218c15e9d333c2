"""Download and lay out a benchmark in the CoOp layout, fetch its public files, and verify the counts.

``tools/prepare_data.py`` is the command-line face of ``prepare``. Images come from torchvision's
download code where torchvision knows the dataset; split files and class-name lists come from the
addresses in the benchmark definitions; ImageNet, its variants, Stanford Cars and the UCF101 frames
get exact manual instructions instead.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from promptinfo.io import read_json
from promptinfo.data.errors import DataNotFoundError, DownloadError, SplitFileError, prepare_command
from promptinfo.data.loading import count_differences, load_benchmark
from promptinfo.data.registry import Benchmark, RemoteFile, TorchvisionSource, get_benchmark

logger = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    """What ``prepare`` did and found.

    Attributes:
        actions: steps taken (downloads, moves, files written).
        problems: what is still wrong (failed downloads, missing images, counts that differ).
        manual: instructions for steps a person must take (empty when none).
        counts: (classes, train, val, test) found by the loader, if it could read the data.
    """

    key: str
    folder: Path
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    manual: str = ""
    counts: tuple[int, int, int, int] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"== {self.key} ({self.folder})"]
        lines += [f"  did: {a}" for a in self.actions] or ["  did: nothing"]
        if self.counts:
            lines.append("  found: {} classes, {} train / {} val / {} test images".format(*self.counts))
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        if self.manual:
            lines += ["  TO DO BY HAND:"] + [f"    {line}" for line in self.manual.splitlines()]
        lines.append("  status: ready" if self.ok else "  status: NOT ready")
        return "\n".join(lines)


def fetch_url(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (torchvision's downloader; replaced in tests)."""
    from torchvision.datasets.utils import download_url

    download_url(url, str(dest.parent), filename=dest.name)


def fetch_torchvision(dataset: str, target: Path, kwargs: dict) -> None:
    """Let ``torchvision.datasets.<dataset>`` download itself under ``target`` (replaced in tests)."""
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, dataset)(str(target), download=True, **kwargs)
    except ImportError as e:  # Flowers102 reads its .mat files with scipy after downloading them
        logger.info("torchvision %s downloaded, but could not open it (%s); laying out the files anyway", dataset, e)


def prepare(key: str, root: str | Path, download: bool = True, keep_downloads: bool = False) -> PrepareReport:
    """Bring benchmark ``key`` under ``root`` into the CoOp layout and check it.

    Args:
        download: fetch missing images and files from their public sources.
        keep_downloads: keep torchvision's archives in ``<root>/.downloads/<key>``.
    """
    bench = get_benchmark(key)
    folder = bench.dataset_dir(root)
    report = PrepareReport(key, folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not bench.generated and not _images_present(bench, folder):
        if download and bench.download is not None:
            _run_step(report, lambda: _download_images(bench, folder, keep_downloads))
        else:
            report.manual = _manual_text(bench, folder)
    if bench.prepare_hook is not None:  # local steps first: they may make a download unnecessary
        report.actions += bench.prepare_hook(folder)
    for remote in bench.files:
        if download and not (folder / remote.dest).exists() and _wanted(bench, folder, remote):
            _run_step(report, lambda r=remote: _fetch_file(r, folder))
    _verify(bench, root, report)
    return report


def _run_step(report: PrepareReport, step) -> None:
    try:
        report.actions += step()
    except DownloadError as e:
        report.problems.append(str(e))


def _images_present(bench: Benchmark, folder: Path) -> bool:
    image_root = folder / bench.image_dir
    probe = bench.required[0] if bench.required else bench.image_dir
    return (folder / probe).exists() and image_root.is_dir() and any(image_root.iterdir())


def _wanted(bench: Benchmark, folder: Path, remote: RemoteFile) -> bool:
    """Archives of raw lists (SUN397's partitions) only matter when the split file could not be had."""
    return not remote.extract or not (bench.split_file and (folder / bench.split_file).exists())


def _download_images(bench: Benchmark, folder: Path, keep: bool) -> list[str]:
    source: TorchvisionSource = bench.download
    staging = folder.parent / ".downloads" / bench.key
    staging.mkdir(parents=True, exist_ok=True)
    try:
        fetch_torchvision(source.dataset, staging, dict(source.kwargs))
    except Exception as e:  # network, checksum and server errors all end the same way for the user
        if not any(staging.iterdir()):
            staging.rmdir()
        raise DownloadError(
            f"downloading {bench.name} with torchvision.datasets.{source.dataset} failed: {e!r}. Check the network "
            f"(or proxy) and run `{prepare_command(bench.key, str(folder.parent))}` again, or download it by hand "
            f"as datasets/README.md ({bench.name}) describes and lay it out under {folder}."
        ) from e
    actions = [f"downloaded {bench.name} with torchvision.datasets.{source.dataset} into {staging}"]
    for src, dst in source.moves:
        actions += _move(staging / src, folder / dst if dst != "." else folder)
    if not keep:
        shutil.rmtree(staging, ignore_errors=True)
        actions.append(f"removed the download folder {staging} (use --keep-downloads to keep it)")
    return actions


def _move(src: Path, dst: Path) -> list[str]:
    if not src.exists():
        raise DownloadError(f"the download did not produce {src}; the source layout changed, see datasets/README.md")
    if dst.exists() and not (src.is_dir() and dst.is_dir()):
        return [f"kept the existing {dst}"]
    if src.is_dir() and dst.is_dir():  # merge a folder's children (e.g. FGVC's data/ into the benchmark folder)
        moved = [c.name for c in src.iterdir() if not (dst / c.name).exists()]
        for name in moved:
            shutil.move(str(src / name), str(dst / name))
        return [f"moved {len(moved)} entries of {src} into {dst}"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))
    return [f"moved {src} to {dst}"]


def _fetch_file(remote: RemoteFile, folder: Path) -> list[str]:
    dest = folder / remote.dest
    by_hand = f"download {remote.page or remote.url} by hand and save it as {dest}"
    try:
        fetch_url(remote.url, dest)
    except Exception as e:  # URLError, HTTPError, checksum errors, ...
        _remove(dest)
        raise DownloadError(f"could not fetch {remote.url} ({e!r}); {by_hand}") from e
    if not remote.extract:
        _validate(dest, by_hand)
        return [f"fetched {remote.dest} from {remote.url}"]
    return _extract(dest, folder) + [f"fetched and unpacked {remote.dest} from {remote.url}"]


def _validate(dest: Path, by_hand: str) -> None:
    """Catch HTML pages served instead of the file (quota or consent pages)."""
    try:
        if dest.suffix == ".json":
            read_json(dest)
        elif dest.name == "classnames.txt" and not dest.read_text(encoding="utf-8").startswith("n"):
            raise ValueError("not a '<wnid> <name>' list")
    except (ValueError, UnicodeDecodeError) as e:
        _remove(dest)
        raise DownloadError(f"{dest.name} came back malformed ({e}); {by_hand}") from e


def _extract(archive: Path, folder: Path) -> list[str]:
    from torchvision.datasets.utils import extract_archive

    before = set(os.listdir(folder))
    extract_archive(str(archive), str(folder), remove_finished=True)
    new_dirs = [folder / n for n in set(os.listdir(folder)) - before if (folder / n).is_dir()]
    if len(new_dirs) == 1 and new_dirs[0].name == archive.stem:  # unwrap a single top folder (Partitions/)
        for child in new_dirs[0].iterdir():
            shutil.move(str(child), str(folder / child.name))
        new_dirs[0].rmdir()
    return [f"unpacked {archive.name} into {folder}"]


def _remove(path: Path) -> None:
    if path.is_file():
        path.unlink()


def _manual_text(bench: Benchmark, folder: Path) -> str:
    if bench.manual:
        return bench.manual.format(dir=folder)
    return f"download {bench.name} as datasets/README.md describes and lay it out under {folder}"


def _verify(bench: Benchmark, root: str | Path, report: PrepareReport) -> None:
    try:
        data = load_benchmark(bench.key, root)
    except (DataNotFoundError, SplitFileError, ImportError, OSError, ValueError) as e:
        report.problems.append(f"cannot read it yet: {e}")
        return
    report.counts = (data.num_classes, len(data.train), len(data.val), len(data.test))
    diffs = count_differences(bench, data)
    if diffs:
        report.problems.append("counts differ from the paper's: " + ", ".join(diffs))
