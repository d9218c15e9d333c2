"""Resume checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is written atomically at the end of every epoch and holds the prompt, optimiser,
scheduler and gradient-scaler states, the epoch and step counters and every random-number
generator's state, all as tensors and plain Python values so it loads with `weights_only=True`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from promptinfo.errors import CheckpointMismatchError, DamagedFileError
from promptinfo.io import atomic_path

FORMAT_VERSION = 1


def rng_state() -> dict:
    """The state of Python's, NumPy's and torch's global generators (CPU and every CUDA device)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        # the current device's generator only: reading all of them would open a context on every GPU
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators saved by `rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0])


def save_resume_checkpoint(path: str | os.PathLike, *, method, optimizer, scheduler, scaler, epoch: int,
                           step: int, fingerprint: str, extra: dict | None = None) -> None:
    """Write the resume state after `epoch` epochs (1-based count of finished epochs), atomically.

    `extra` holds further training state as tensors (e.g. the pseudo-labelling strategy's, under "pseudo").
    """
    state = {
        "format": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "epoch": int(epoch),
        "step": int(step),
        "prompt": {k: v.detach().cpu() for k, v in method.prompt.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        "rng": rng_state(),
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


_STATE_KEYS = ("format", "fingerprint", "epoch", "step", "prompt", "optimizer", "scheduler", "scaler", "rng")
"""What `save_resume_checkpoint` writes."""


def load_resume_checkpoint(path: str | os.PathLike, fingerprint: str) -> dict:
    """Read a resume checkpoint and check that it belongs to a run with the same training config.

    Nothing is changed on disk: a refused checkpoint stays where it is, as evidence.

    Raises:
        DamagedFileError: the file is truncated or garbled, or lacks part of the state.
        CheckpointMismatchError: the checkpoint was written by a run with another config.
    """
    fix = ("The run cannot resume from it. Pass overwrite=true to start this run folder afresh (it replaces the "
           "folder's files; copy the checkpoint elsewhere first to keep it), or use another run_dir.")
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # bad bytes raise UnpicklingError, RuntimeError, EOFError, ...
        problem = f"torch cannot read it ({type(err).__name__}): it is truncated or not a checkpoint"
        raise DamagedFileError(path, problem, fix) from None
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise DamagedFileError(path, f"it lacks parts of the resume state (found {found})", fix)
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointMismatchError(f"{path} has checkpoint format {state.get('format')}, expected {FORMAT_VERSION}. "
                                      "Pass overwrite=true to start this run folder afresh.")
    if state["fingerprint"] != fingerprint:
        raise CheckpointMismatchError(
            f"{path} was written by a run with a different training config (fingerprint {state['fingerprint']} "
            f"vs {fingerprint}). Give this run its own folder (label=NAME names the variant in folders and tables; "
            "or run_dir=PATH), or pass overwrite=true to start this folder afresh."
        )
    return state


def restore(state: dict, *, method, optimizer, scheduler, scaler) -> tuple[int, int]:
    """Load a resume state into the training objects; returns (finished epochs, step)."""
    method.prompt.load_state_dict(state["prompt"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"] and scaler is not None:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return int(state["epoch"]), int(state["step"])
