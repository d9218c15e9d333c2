"""The training engine: one loop for every method, evaluation, resume checkpoints and run folders.

Precision and device are decided here (`engine.device`) and nowhere else.

The public API: `train(cfg)` and `evaluate_checkpoint(cfg)` run whole jobs from a composed config; the
names below them are the building blocks those two are made of (typed configs, builders, the runtime,
the loop and its parts, the data sources, evaluation), for tools that drive the engine a step at a time
(`tools/bench.py`). Everything else under `promptinfo.engine` is private. The names are imported on first
access, so that the light parts (the typed configs, validation, run folders) load without torch.
"""

from promptinfo.lazy import exports_on_demand

__all__ = [
    "FeatureBatches", "FeatureStore", "Fit", "FitState", "ImageBatches", "LossConfig", "ModelConfig",
    "NonFiniteLossError", "Objective", "Precision", "Progress", "RunFolder", "RunFolderBusyError", "Runtime",
    "TrainerConfig", "build_backbone", "build_method", "build_optimizer", "build_run", "build_runtime",
    "build_scheduler", "classify_features", "evaluate", "evaluate_checkpoint", "image_loader", "seed_everything",
    "shared_text_features", "train", "train_epoch", "validate_eval_config", "validate_train_config",
]

__getattr__, __dir__ = exports_on_demand(__name__, {
    "promptinfo.engine.build": ("build_backbone", "build_method", "build_run", "build_runtime"),
    "promptinfo.engine.prompt_eval": ("evaluate_checkpoint",),
    "promptinfo.engine.data": ("FeatureBatches", "FeatureStore", "ImageBatches", "image_loader"),
    "promptinfo.engine.device": ("Precision", "seed_everything"),
    "promptinfo.engine.evaluate": ("classify_features", "evaluate", "shared_text_features"),
    "promptinfo.engine.loop": ("Fit", "FitState", "NonFiniteLossError", "train_epoch"),
    "promptinfo.engine.objective": ("Objective",),
    "promptinfo.engine.optim": ("build_optimizer", "build_scheduler"),
    "promptinfo.engine.progress": ("Progress",),
    "promptinfo.engine.rundir": ("RunFolder", "RunFolderBusyError"),
    "promptinfo.engine.runtime": ("Runtime",),
    "promptinfo.engine.schema": ("LossConfig", "ModelConfig", "TrainerConfig"),
    "promptinfo.engine.training": ("train",),
    "promptinfo.engine.validate": ("validate_eval_config", "validate_train_config"),
})
