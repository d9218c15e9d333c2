"""Supervised training from scratch into neural collapse, with the paper's metrics tracked every epoch.

`run_collapse(cfg)` trains a small CNN or a ResNet-18 with a linear head on a registered benchmark and
logs `promptinfo.metrics.CollapseTracker` per epoch (Song et al., arXiv 2409.16767); `CollapseConfig` is its
typed config. The command is `promptinfo-collapse`.
"""

from promptinfo.collapse.config import CollapseConfig, validate_collapse_config


def __getattr__(name: str):
    if name == "run_collapse":  # imported on use: the config alone stays light for `--help`
        from promptinfo.collapse.training import run_collapse

        return run_collapse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CollapseConfig", "run_collapse", "validate_collapse_config"]
