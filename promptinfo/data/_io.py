"""Small file-system helpers: sorted listings without hidden files, file locks (atomic writes: ``promptinfo.io``)."""

from __future__ import annotations

import os
from pathlib import Path

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


def lock_for(path: str | os.PathLike) -> FileLock:
    """An inter-process lock guarding ``path`` (a ``.lock`` file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_TIMEOUT_S)
