"""Images named by the user: one file, a folder searched recursively, or a list file of paths."""

from __future__ import annotations

import os
from pathlib import Path

from promptinfo.errors import ConfigError, PromptInfoError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LIST_SUFFIXES = (".txt", ".lst", ".list")


class NoImagesError(PromptInfoError, FileNotFoundError):
    """The named images could not be found."""


def collect_images(source: str | os.PathLike) -> list[str]:
    """Absolute paths of the images `source` names, in a stable order.

    Args:
        source: an image file; a folder (every image below it, recursively, sorted by path); or a text file
            (`.txt`, `.lst`, `.list`) with one image path per line, relative paths being relative to the list's
            folder (blank lines and lines starting with `#` are skipped), kept in the list's order.

    Raises:
        NoImagesError: nothing exists at `source`, a folder holds no image, or a list names missing files.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        found = sorted(str(p.resolve()) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise NoImagesError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)}), not even in subfolders.")
        return found
    if not path.is_file():
        raise NoImagesError(f"{path} does not exist; give an image, a folder of images or a list file of paths.")
    if path.suffix.lower() in LIST_SUFFIXES:
        return _listed(path)
    return [str(path.resolve())]


def _listed(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    paths = [(path.parent / line).resolve() for line in lines if line and not line.startswith("#")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise NoImagesError(f"{path} names {len(missing)} missing file(s): {missing[:5]}{' ...' if len(missing) > 5 else ''}.")
    if not paths:
        raise NoImagesError(f"{path} lists no image paths (one path per line).")
    return [str(p) for p in paths]


def read_class_list(spec: str) -> list[str]:
    """Class names from a text file (one per line) or a comma-separated list (`cat,dog,red circle`)."""
    path = Path(spec).expanduser()
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines()]
    else:
        names = [name.strip() for name in spec.split(",")]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ConfigError(f"no class names in {spec!r}; give a file with one class per line or 'cat,dog,bird'.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"class list {spec!r} repeats {repeated}; each class must appear once.")
    return names
