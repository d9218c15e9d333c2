"""`promptinfo-train`: train one run and evaluate it as its protocol says.

Examples::

    promptinfo-train dataset=oxford_pets method=maple protocol=base2novel seed=1
    promptinfo-train experiment=coop_vitb16_few_shot dataset=dtd protocol.shots=4 seed=2
    promptinfo-train -m experiment=cocoop_vitb16_base2novel dataset=eurosat,dtd seed=1,2,3
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from promptinfo.cli._hydra import CONFIG_PATH, HYDRA_VERSION, run_command
from promptinfo.engine import train


@hydra.main(version_base=HYDRA_VERSION, config_path=CONFIG_PATH, config_name="train")
def _train(cfg: DictConfig) -> None:
    run_command(train, cfg)


def main() -> None:
    """Console-script entry point (arguments are hydra overrides)."""
    _train()


if __name__ == "__main__":
    main()
