"""`promptinfo-collapse`: supervised training from scratch into neural collapse, with the paper's metrics per epoch.

Examples::

    promptinfo-collapse                                          # small cnn, 10 procedural classes, offline
    promptinfo-collapse classifier.bias=false trainer.label_smoothing=0.1 out=runs/collapse/ls
    promptinfo-collapse -m seed=0,1,2
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from promptinfo.cli._hydra import CONFIG_PATH, HYDRA_VERSION, register_configs_for, run_command
from promptinfo.collapse.config import CollapseConfig

ConfigStore.instance().store(name="collapse_schema", node=CollapseConfig)


def _collapse_run(cfg: DictConfig) -> dict:
    from promptinfo.collapse.training import run_collapse  # torch and the data layer load after parsing

    return run_collapse(cfg)


@hydra.main(version_base=HYDRA_VERSION, config_path=CONFIG_PATH, config_name="collapse")
def _collapse(cfg: DictConfig) -> None:
    run_command(_collapse_run, cfg)


def main() -> None:
    """Console-script entry point (arguments are hydra overrides)."""
    register_configs_for(sys.argv[1:])
    _collapse()


if __name__ == "__main__":
    main()
