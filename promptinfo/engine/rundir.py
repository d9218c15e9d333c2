"""Run folders (see RUNFOLDER.md): one per run, written by one process at a time.

Files: `config.yaml` (resolved config), `metrics.jsonl` (one line per epoch), `results.json`
(written atomically at the end), `prompt.safetensors`, `checkpoint.pt` (resume state), `train.log`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from promptinfo.errors import PromptInfoError
from promptinfo.io import atomic_path, read_json, write_json

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

    def __enter__(self) -> RunFolder:
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
        self._lock.release()

    def file(self, name: str) -> Path:
        return self.path / name

    # ----------------------------------------------------------------- state
    def finished(self) -> bool:
        """Whether results.json says the run finished."""
        results = self.file(RESULTS)
        return results.is_file() and read_json(results).get("status") == "finished"

    def clear(self) -> None:
        """Remove the files a run writes (for `overwrite=true`)."""
        for name in _OWNED:
            if self.file(name).exists():
                self.file(name).unlink()
        if self.file(TENSORBOARD).is_dir():
            shutil.rmtree(self.file(TENSORBOARD))

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
        path = self.file(METRICS)
        if not path.is_file():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if _epoch_of(line) is not None and _epoch_of(line) <= last_epoch]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))

    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # ----------------------------------------------------------------- log file
    def attach_log(self, level: int = logging.INFO) -> logging.Handler:
        """Send the `promptinfo` loggers' records to train.log (appending across resumes)."""
        handler = logging.FileHandler(self.file(LOG), encoding="utf-8")
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("promptinfo")
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
        return handler

    @staticmethod
    def detach_log(handler: logging.Handler) -> None:
        logging.getLogger("promptinfo").removeHandler(handler)
        handler.close()


def _epoch_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None
