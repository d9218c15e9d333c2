"""The SLURM preset (hydra/launcher=slurm): the sbatch job array it would submit, without a cluster.

The launcher runs as in a real sweep up to the `sbatch` call, which is replaced by a recorder of the
generated submission file; the jobs' pickled overrides are read back from the submitit folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[test]' installs it")
from submitit.core.utils import DelayedSubmission
from submitit.slurm.slurm import SlurmExecutor

NARROWED = ["dataset=oxford_pets,dtd", "seed=1,2", "protocol.shots=16"]


class Submitted(Exception):
    """Stands for sbatch accepting the array."""


def task(cfg) -> None:
    """The task function the launcher pickles (never run here)."""


def composed(tmp_path: Path, *overrides: str):
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        return compose("train", overrides=["experiment=benchmark_few_shot", "hydra/launcher=slurm",
                                           f"runs_root={tmp_path}", *overrides], return_hydra_config=True)


def sweep_jobs(cfg, arguments: list[str]) -> list[list[str]]:
    """The per-job overrides hydra's basic sweeper makes of the preset's params and the command line."""
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    overrides = OverridesParser.create().parse_overrides([*params, *arguments])
    return BasicSweeper.split_arguments(overrides, max_batch_size=None)[0]


def sbatch_flags(text: str) -> dict[str, str]:
    flags = [line[len("#SBATCH --"):].split("=", 1) for line in text.splitlines() if line.startswith("#SBATCH --")]
    return {key: value for key, value in flags}


def submit(tmp_path: Path, monkeypatch, jobs: list[list[str]], *overrides: str) -> tuple[dict[str, str], str]:
    cfg = composed(tmp_path, *overrides)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=task, config=cfg)
    recorded = {}

    def record(self, command: str):
        recorded["sbatch"] = self._make_submission_file_text(command, "test")
        raise Submitted

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # as if srun were installed
    monkeypatch.setattr(SlurmExecutor, "_submit_command", record)
    with pytest.raises(Submitted):
        launcher.launch(jobs, initial_job_idx=0)
    return sbatch_flags(recorded["sbatch"]), recorded["sbatch"]


def test_the_full_benchmarks_are_job_arrays_of_165_and_33_runs(tmp_path):
    assert len(sweep_jobs(composed(tmp_path), [])) == 11 * 5 * 3
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        b2n = compose("train", overrides=["experiment=benchmark_base2novel"], return_hydra_config=True)
    assert len(sweep_jobs(b2n, [])) == 11 * 3


def test_slurm_preset_submits_one_gpu_job_per_run_as_a_throttled_array(tmp_path, monkeypatch):
    jobs = sweep_jobs(composed(tmp_path), NARROWED)
    assert len(jobs) == 4
    flags, text = submit(tmp_path, monkeypatch, jobs, "hydra.launcher.partition=gpu",
                         "hydra.launcher.array_parallelism=2", "hydra.launcher.timeout_min=120")
    assert flags["partition"] == "gpu" and flags["gpus-per-node"] == "1"
    assert flags["time"] == "120" and flags["array"] == "0-3%2"
    assert (flags["nodes"], flags["ntasks-per-node"], flags["cpus-per-task"], flags["mem"]) == ("1", "1", "8", "32GB")
    assert flags["signal"] == "USR2@120" and flags["job-name"] == "promptinfo"
    assert "srun" in text and "submitit.core._submit" in text
    log = Path(flags["output"])  # <runs_root>/.multirun/<time>/.submitit/<array job>_<task>/..._log.out
    assert log.parent.name == "%A_%a" and log.parent.parent.name == ".submitit"
    assert log.is_relative_to(tmp_path / ".multirun")

    pickles = sorted((tmp_path / ".multirun").rglob("*.pkl"))
    assert len(pickles) == 4
    submitted = [DelayedSubmission.load(p) for p in pickles]
    runs = {tuple(sorted(o for o in s.args[0] if o.split("=")[0] in ("dataset", "seed"))) for s in submitted}
    assert runs == {(f"dataset={d}", f"seed={s}") for d in ("oxford_pets", "dtd") for s in (1, 2)}
    assert {s._timeout_countdown for s in submitted} == {3}  # requeued up to 3 times; runs resume from checkpoints
    assert sorted(s.args[2] for s in submitted) == [0, 1, 2, 3]  # hydra.job.num of each array task


def test_defaults_and_overrides_of_the_preset(tmp_path):
    launcher = OmegaConf.to_container(composed(tmp_path, "hydra.launcher.gpus_per_node=2").hydra.launcher,
                                      resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["timeout_min"]) == (None, 2, 240)
    assert (launcher["array_parallelism"], launcher["max_num_timeout"]) == (64, 3)
    assert launcher["submitit_folder"].startswith(str(tmp_path / ".multirun"))
