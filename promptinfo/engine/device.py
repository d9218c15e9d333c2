"""Device, precision and determinism: decided here and nowhere else.

Weights stay in fp32; on CUDA the forward passes run under autocast (bf16, or fp16 with a gradient
scaler). On the CPU everything runs in fp32.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from promptinfo.errors import ConfigError


@dataclass(frozen=True)
class Precision:
    """How forward passes run: `dtype` is the autocast dtype, None for plain fp32."""

    name: str
    dtype: torch.dtype | None

    def autocast(self, device: torch.device):
        """The autocast context for a forward pass (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """A scaler that is enabled only for fp16 (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(device.type, enabled=self.dtype is torch.float16)


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; an explicit device must exist.

    Raises:
        ConfigError: CUDA or MPS asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available here; use trainer.device=cpu or auto.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"trainer.device={name} but MPS is not available here; use trainer.device=cpu or auto.")
    return device


def resolve_precision(name: str, device: torch.device) -> Precision:
    """`auto` -> bf16 autocast on CUDA when supported (fp16 otherwise), fp32 elsewhere.

    Raises:
        ConfigError: bf16/fp16 asked for on a device without autocast support here.
    """
    if name == "auto":
        if device.type != "cuda":
            return Precision("fp32", None)
        name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp32":
        return Precision("fp32", None)
    if device.type != "cuda":
        raise ConfigError(
            f"trainer.precision={name} runs autocast on CUDA only; on {device.type} use trainer.precision=fp32 or auto."
        )
    return Precision(name, torch.bfloat16 if name == "bf16" else torch.float16)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_determinism(enabled: bool) -> None:
    """Deterministic kernels: same config and seed give the same numbers on the same machine."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled
    torch.use_deterministic_algorithms(enabled, warn_only=True)


def mix_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of integer parts (e.g. run seed, epoch, index)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with `num_threads` intra-op CPU threads (None: leave torch's setting), then restore it."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
