"""Small file-system helpers: sorted listings without hidden files, atomic writes, file locks."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

LOCK_TIMEOUT_S = 3600.0
"""How long a writer waits for another process that fills the same file (an hour of encoding)."""


def list_visible(folder: str | os.PathLike) -> list[str]:
    """Names in ``folder`` that do not start with a dot, sorted (so results do not depend on the file system)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def list_subfolders(folder: str | os.PathLike) -> list[str]:
    """Visible sub-folder names of ``folder``, sorted."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place.

    Readers see either the old file or the complete new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON atomically."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent)
            f.write("\n")

    atomic_write(path, _write)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def lock_for(path: str | os.PathLike) -> FileLock:
    """An inter-process lock guarding ``path`` (a ``.lock`` file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_TIMEOUT_S)
