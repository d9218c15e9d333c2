"""The training engine: one loop for every method, evaluation, resume checkpoints and run folders.

Precision and device are decided here (`engine.device`) and nowhere else.
"""

from promptinfo.engine.checkpoint_eval import evaluate_checkpoint
from promptinfo.engine.config_store import register_configs
from promptinfo.engine.loop import FitState, NonFiniteLossError
from promptinfo.engine.rundir import RunFolder, RunFolderBusyError
from promptinfo.engine.training import train
from promptinfo.engine.validate import validate_eval_config, validate_train_config

register_configs()  # hydra composes the typed defaults and every registered method, strategy and benchmark

__all__ = [
    "FitState", "NonFiniteLossError", "RunFolder", "RunFolderBusyError", "evaluate_checkpoint", "train",
    "validate_eval_config", "validate_train_config",
]
