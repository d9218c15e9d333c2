"""The training engine: one loop for every method, evaluation, resume checkpoints and run folders.

Precision and device are decided here (`engine.device`) and nowhere else.

The public API: `train(cfg)` and `evaluate_checkpoint(cfg)` run whole jobs from a composed config; the
names below them are the building blocks those two are made of (typed configs, builders, the runtime,
the loop and its parts, the data sources, evaluation), for tools that drive the engine a step at a time
(`tools/bench.py`). Everything else under `promptinfo.engine` is private.
"""

from promptinfo.engine.build import build_backbone, build_method, build_run, build_runtime
from promptinfo.engine.checkpoint_eval import evaluate_checkpoint
from promptinfo.engine.config_store import register_configs
from promptinfo.engine.data import FeatureBatches, FeatureStore, ImageBatches, image_loader
from promptinfo.engine.device import Precision, seed_everything
from promptinfo.engine.evaluate import classify_features, evaluate, shared_text_features
from promptinfo.engine.loop import Fit, FitState, NonFiniteLossError, train_epoch
from promptinfo.engine.objective import Objective
from promptinfo.engine.optim import build_optimizer, build_scheduler
from promptinfo.engine.progress import Progress
from promptinfo.engine.rundir import RunFolder, RunFolderBusyError
from promptinfo.engine.runtime import Runtime
from promptinfo.engine.schema import LossConfig, ModelConfig, TrainerConfig
from promptinfo.engine.training import train
from promptinfo.engine.validate import validate_eval_config, validate_train_config

register_configs()  # hydra composes the typed defaults and every registered method, strategy and benchmark

__all__ = [
    "FeatureBatches", "FeatureStore", "Fit", "FitState", "ImageBatches", "LossConfig", "ModelConfig",
    "NonFiniteLossError", "Objective", "Precision", "Progress", "RunFolder", "RunFolderBusyError", "Runtime",
    "TrainerConfig", "build_backbone", "build_method", "build_optimizer", "build_run", "build_runtime",
    "build_scheduler", "classify_features", "evaluate", "evaluate_checkpoint", "image_loader", "seed_everything",
    "shared_text_features", "train", "train_epoch", "validate_eval_config", "validate_train_config",
]
