"""File helpers: atomic writes (a reader never sees a partial file), leftovers of killed writes,
damaged files set aside, JSON read with a clear error."""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

from promptinfo.errors import DamagedFileError

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"


def temp_name(path: Path, token: str) -> Path:
    """The temporary file `atomic_path` writes before it becomes `path` (the one builder of that name)."""
    return path.with_name(f".{path.name}.{token}{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; it replaces `path` only if the block succeeds.

    The target gets the mode a plain open() would give it (0666 less the umask), read from the temporary
    file as the kernel created it, so the process umask is never touched (other threads may create files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, mode = _create_temp(path)
    try:
        yield tmp
        os.chmod(tmp, mode)  # writers such as safetensors' save_file and torch.save recreate the file 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _create_temp(path: Path) -> tuple[Path, int]:
    while True:
        tmp = temp_name(path, secrets.token_hex(6))
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        mode = os.fstat(fd).st_mode & 0o777
        os.close(fd)
        return tmp, mode


def leftover_temps(path: str | os.PathLike) -> list[Path]:
    """Temporary files that killed `atomic_path` writes of `path` left behind."""
    path = Path(path)
    pattern = glob.escape(str(temp_name(path, "TOKEN"))).replace("TOKEN", "*")
    return sorted(Path(p) for p in glob.glob(pattern))  # the literal leading dot matches hidden names


def remove_leftover_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of killed writes of `path`; the caller must be its only writer
    (hold its lock). Returns what was removed."""
    removed = leftover_temps(path)
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    if removed:
        logger.info("removed %d temporary file(s) of interrupted writes of %s", len(removed), path)
    return removed


def set_aside(path: str | os.PathLike) -> Path:
    """Rename a damaged file to `<name>.damaged-<UTC time>` (kept as evidence, out of the way); returns the new path."""
    path = Path(path)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, target)
    return target


def read_safetensors(path: str | os.PathLike, fix: str) -> tuple[dict, dict[str, str]]:
    """The tensors and string metadata of a safetensors file (reading runs no code from the file).

    Raises:
        DamagedFileError: truncated or not a safetensors file; the message ends with `fix`.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError) as err:
        raise DamagedFileError(path, f"it is not a readable safetensors file ({err})", fix) from None


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (keys in insertion order; ``indent=None``: one line)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike, fix: str = "Delete it or replace it with a good copy.") -> Any:
    """Parse a JSON file.

    Raises:
        DamagedFileError: the file is not UTF-8 JSON (truncated, garbled); the message ends with `fix`.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFileError(path, f"it is not valid JSON ({err})", fix) from None
