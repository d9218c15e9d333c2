"""Run folders (see RUNFOLDER.md): one per run, written by one process at a time.

Files: `config.yaml` (resolved config), `metrics.jsonl` (one line per epoch), `results.json`
(written atomically at the end), `prompt.safetensors`, `checkpoint.pt` (resume state), `train.log`.
A run writes into its folder only once it is accepted (`engine.training`): a refused run leaves it as it
was, and a refused run in a new folder removes the folder again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from promptinfo.errors import DamagedFileError, PromptInfoError
from promptinfo.io import atomic_path, read_json, remove_leftover_temps, write_json

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
PROMPT = "prompt.safetensors"
CHECKPOINT = "checkpoint.pt"
LOG = "train.log"
LOCK = ".lock"
TENSORBOARD = "tensorboard"
_OWNED = (CONFIG, METRICS, RESULTS, PROMPT, CHECKPOINT, LOG)


class RunFolderBusyError(PromptInfoError, RuntimeError):
    """Another process is writing into the same run folder."""


class RunFolder:
    """A run folder held under an exclusive lock while the run writes into it.

    Use as a context manager: entering takes the lock (failing at once when another process holds
    it), leaving releases it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = FileLock(str(self.path / LOCK), timeout=0)
        self._created: list[Path] = []

    def __enter__(self) -> RunFolder:
        self._created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunFolderBusyError(
                f"Another run is writing into {self.path} (lock {self.path / LOCK} is held). Two runs never share "
                "a folder: wait for it to finish, or choose another run_dir, seed or experiment_name."
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        if self._created and [p.name for p in self.path.iterdir()] == [LOCK]:  # a refused run in a new folder
            self.file(LOCK).unlink()
            for folder in self._created:  # leaf first; stops at a folder something else wrote into
                with contextlib.suppress(OSError):
                    folder.rmdir()
        self._lock.release()

    def file(self, name: str) -> Path:
        return self.path / name

    # ----------------------------------------------------------------- state
    def finished(self) -> bool:
        """Whether results.json says the run finished.

        Raises:
            DamagedFileError: results.json is not a JSON object.
        """
        return self.file(RESULTS).is_file() and self.read_results().get("status") == "finished"

    def read_results(self) -> dict:
        """results.json's content.

        Raises:
            DamagedFileError: it is not a JSON object.
        """
        path = self.file(RESULTS)
        results = read_json(path, fix=_REDO)
        if not isinstance(results, dict):
            raise DamagedFileError(path, f"expected a JSON object, found {type(results).__name__}", _REDO)
        return results

    def clear(self) -> None:
        """Remove the files a run writes, and temporary files of interrupted writes (for `overwrite=true`)."""
        self.remove_leftover_temps()
        for name in _OWNED:
            if self.file(name).exists():
                self.file(name).unlink()
        if self.file(TENSORBOARD).is_dir():
            shutil.rmtree(self.file(TENSORBOARD))

    def remove_leftover_temps(self) -> None:
        """Remove the temporary files that writes killed midway left (we hold the folder's lock)."""
        for name in _OWNED:
            remove_leftover_temps(self.file(name))

    # ----------------------------------------------------------------- writing
    def write_config(self, cfg: DictConfig) -> None:
        with atomic_path(self.file(CONFIG)) as tmp:
            tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))

    def write_results(self, results: dict) -> None:
        write_json(self.file(RESULTS), results)

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one epoch's line to metrics.jsonl (flushed and synced, so a kill loses no line)."""
        with open(self.file(METRICS), "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep only the lines of epochs <= `last_epoch` (a resumed run rewrites the later ones)."""
        self.write_metric_lines(self.metric_lines_until(last_epoch))

    def metric_lines_until(self, last_epoch: int) -> list[str]:
        """The lines of epochs 0..`last_epoch` (checked, nothing written); a line cut short by a kill is dropped.

        Raises:
            DamagedFileError: a complete line is not a JSON object with an epoch, or an epoch's line is missing.
        """
        path = self.file(METRICS)
        if not path.is_file():
            if last_epoch >= 0:
                raise DamagedFileError(path, f"it is missing, but the checkpoint has finished epoch {last_epoch}",
                                       _RESTART)
            return []
        try:
            *complete, _cut = path.read_text(encoding="utf-8").split("\n")  # _cut: "" or a line a kill cut short
        except UnicodeDecodeError as err:
            raise DamagedFileError(path, f"it is not UTF-8 text ({err})", _RESTART) from None
        kept = []
        for number, line in enumerate(complete, start=1):
            epoch = _epoch_of(line)
            if epoch is None and line.strip():
                raise DamagedFileError(path, f"line {number} is not a JSON object with an epoch: {line[:60]!r}",
                                       _RESTART)
            if epoch is not None and epoch <= last_epoch:
                kept.append(line)
        epochs = [_epoch_of(line) for line in kept]
        if epochs != list(range(last_epoch + 1)):
            raise DamagedFileError(path, f"it holds epochs {epochs}, but the checkpoint has finished epochs "
                                   f"0..{last_epoch}", _RESTART)
        return kept

    def write_metric_lines(self, lines: list[str]) -> None:
        """Replace metrics.jsonl by `lines` (atomic; nothing is written when neither exists)."""
        path = self.file(METRICS)
        if lines or path.is_file():
            with atomic_path(path) as tmp:
                tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # ----------------------------------------------------------------- log file
    def hold_log(self, level: int = logging.INFO) -> logging.handlers.MemoryHandler:
        """Hold the `promptinfo` loggers' records in memory until `attach_log(held=...)` writes them to
        train.log; a run refused before that leaves train.log as it was."""
        handler = logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1, target=None)
        handler.setLevel(level)
        _add_package_handler(handler, level)
        return handler

    def attach_log(self, level: int = logging.INFO,
                   held: logging.handlers.MemoryHandler | None = None) -> logging.Handler:
        """Send the `promptinfo` loggers' records to train.log (appending across resumes), after the records
        `held` kept (which is then detached)."""
        handler = logging.FileHandler(self.file(LOG), encoding="utf-8")
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        if held is not None:
            for record in held.buffer:
                handler.handle(record)
            self.detach_log(held)
        _add_package_handler(handler, level)
        return handler

    @staticmethod
    def detach_log(handler: logging.Handler) -> None:
        """Remove a handler `hold_log` or `attach_log` added (again: a no-op) and give the `promptinfo` logger
        back the level it had before, so a caller's logging (a notebook's, a test runner's) is left as it was."""
        logger = logging.getLogger("promptinfo")
        if handler in logger.handlers:
            logger.removeHandler(handler)
            logger.setLevel(handler.level_before)
        handler.close()


def _add_package_handler(handler: logging.Handler, level: int) -> None:
    """Add `handler` to the `promptinfo` logger, lowering the logger's level to `level` while it is attached."""
    logger = logging.getLogger("promptinfo")
    handler.level_before = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)


_REDO = "Pass overwrite=true to redo the run (this replaces the run folder's files), or use another run_dir."
_RESTART = ("The run cannot resume with its metrics. Pass overwrite=true to start this run folder afresh (this "
            "replaces its files), or use another run_dir.")


def _epoch_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None
