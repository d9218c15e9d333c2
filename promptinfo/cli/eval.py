"""`promptinfo-eval`: evaluate a saved prompt checkpoint (or an untrained method) on a dataset and class subset.

Examples::

    promptinfo-eval dataset=oxford_pets protocol.subsample=novel \
        checkpoint=runs/coop_vitb16_base2novel/oxford_pets/coop/base2novel/shots16_seed1/prompt.safetensors
    promptinfo-eval method=zeroshot model=vit_b16 dataset=eurosat
"""

from __future__ import annotations

import functools
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from promptinfo.cli._hydra import (CONFIG_PATH, HYDRA_VERSION, exit_on_bad_command_line, register_configs_for,
                                   run_command)
from promptinfo.engine.schema import EvalConfig
from promptinfo.engine.validate import validate_eval_config


@hydra.main(version_base=HYDRA_VERSION, config_path=CONFIG_PATH, config_name="eval")
def _evaluate(cfg: DictConfig) -> None:
    from promptinfo.engine import evaluate_checkpoint  # torch and the engine load once the command line is checked

    overrides = list(HydraConfig.get().overrides.task)  # explicit choices, told apart from the config's defaults
    run_command(functools.partial(evaluate_checkpoint, overrides=overrides), cfg)


def main() -> None:
    """Console-script entry point (arguments are hydra overrides)."""
    exit_on_bad_command_line("eval", sys.argv[1:], validate_eval_config, EvalConfig)
    register_configs_for(sys.argv[1:])
    _evaluate()


if __name__ == "__main__":
    main()
