"""The training engine: one loop for every method, evaluation, resume checkpoints and run folders.

Precision and device are decided here (`engine.device`) and nowhere else. The public names are imported on
first access, so that a light submodule (the configs' store, validation) does not load the whole engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "evaluate_checkpoint": "promptinfo.engine.checkpoint_eval", "FitState": "promptinfo.engine.loop",
    "NonFiniteLossError": "promptinfo.engine.loop", "RunFolder": "promptinfo.engine.rundir",
    "RunFolderBusyError": "promptinfo.engine.rundir", "train": "promptinfo.engine.training",
    "validate_eval_config": "promptinfo.engine.validate", "validate_train_config": "promptinfo.engine.validate",
}
"""Public name -> the module that defines it."""

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from promptinfo.engine.checkpoint_eval import evaluate_checkpoint
    from promptinfo.engine.loop import FitState, NonFiniteLossError
    from promptinfo.engine.rundir import RunFolder, RunFolderBusyError
    from promptinfo.engine.training import train
    from promptinfo.engine.validate import validate_eval_config, validate_train_config


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'promptinfo.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
