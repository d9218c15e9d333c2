"""`promptinfo-train`: train one run and evaluate it as its protocol says.

Examples::

    promptinfo-train dataset=oxford_pets method=maple protocol=base2novel seed=1
    promptinfo-train method=coop dataset=dtd protocol.shots=4 seed=2
    promptinfo-train -m method=cocoop protocol=base2novel dataset=eurosat,dtd seed=1,2,3
    promptinfo-train -m experiment=benchmark_few_shot method=coop hydra/launcher=local    # runs in parallel
    torchrun --nproc_per_node 4 -m promptinfo.cli.train dataset=imagenet method=maple     # one run, 4 GPUs
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from promptinfo.cli._hydra import (CONFIG_PATH, HYDRA_VERSION, exit_on_bad_command_line, register_configs_for,
                                   run_command)
from promptinfo.engine.schema import TrainConfig
from promptinfo.engine.validate import validate_train_config

logger = logging.getLogger("promptinfo.cli")


@hydra.main(version_base=HYDRA_VERSION, config_path=CONFIG_PATH, config_name="train")
def _train(cfg: DictConfig) -> None:
    run_command(_train_placed, cfg)


def _train_placed(cfg: DictConfig) -> dict:
    from promptinfo.engine import train  # torch and the engine load once the command line is checked

    with _placement(cfg):
        return train(cfg)


def _placement(cfg: DictConfig) -> contextlib.AbstractContextManager:
    """Where this process trains: as a rank of a torchrun launch, on a GPU of its own in a joblib sweep
    (`trainer.device=auto` with several GPUs visible), or as `trainer.device` says."""
    import torch

    from promptinfo.engine import distributed as dist

    env = dist.env_from_environ()
    if env is not None:
        dist.join_process_group(env, str(cfg.trainer.device))
        return contextlib.nullcontext()
    if str(cfg.trainer.device) == "auto" and _in_joblib_sweep() and torch.cuda.device_count() > 1:
        return _own_gpu(HydraConfig.get().job.num, torch.cuda.device_count())
    return contextlib.nullcontext()


def _in_joblib_sweep() -> bool:
    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN and "joblib" in str(hc.launcher.get("_target_", "")).lower()


@contextlib.contextmanager
def _own_gpu(job_num: int, n_gpus: int) -> Iterator[None]:
    """Hold a GPU slot (`distributed.claim_gpu`) and make its GPU the current device for the run.

    The device is set in the process rather than through CUDA_VISIBLE_DEVICES: joblib's workers
    run one job after another, and CUDA reads that variable once per process.
    """
    import torch

    from promptinfo.engine import distributed as dist

    with dist.claim_gpu(job_num, n_gpus) as index:
        torch.cuda.set_device(index)
        logger.info("sweep job %d trains on cuda:%d", job_num, index)
        yield


def main() -> None:
    """Console-script entry point (arguments are hydra overrides)."""
    exit_on_bad_command_line("train", sys.argv[1:], validate_train_config, TrainConfig)
    register_configs_for(sys.argv[1:])
    _train()


if __name__ == "__main__":
    main()
