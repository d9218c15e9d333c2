"""Progress reporting: a bar with throughput on terminals, plain log lines otherwise, optional TensorBoard."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from promptinfo.errors import ConfigError

logger = logging.getLogger("promptinfo.engine")


class Progress:
    """Per-step progress of one epoch.

    Args:
        mode: auto (bar when stderr is a terminal, else log lines), bar, log or none.
        log_every: steps between log lines in log mode.
    """

    def __init__(self, mode: str, log_every: int) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.log_every = mode, log_every
        self._bar = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.images, self.start = 0, time.perf_counter()
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", leave=False, dynamic_ncols=True)

    def update(self, step_in_epoch: int, images: int, loss: float, lr: float) -> None:
        self.images += images
        rate = self.images / max(time.perf_counter() - self.start, 1e-9)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}", refresh=False)
            self._bar.update(1)
        elif self.mode == "log" and (step_in_epoch % self.log_every == 0 or step_in_epoch == self.steps):
            logger.info("epoch %d/%d step %d/%d loss %.4f lr %.3e %.1f img/s", self.epoch, self.epochs,
                        step_in_epoch, self.steps, loss, lr, rate)

    def end_epoch(self) -> float:
        """Close the bar; returns the epoch's wall time in seconds."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        return time.perf_counter() - self.start


class ScalarWriter:
    """TensorBoard scalars of each metrics row (only when `trainer.tensorboard` is on)."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "trainer.tensorboard=true needs the tensorboard package: `pip install tensorboard`, "
                "or leave trainer.tensorboard=false (metrics.jsonl holds the same numbers)."
            ) from None
        self._writer = SummaryWriter(log_dir=str(folder))

    def write(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, global_step=row["epoch"])
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
