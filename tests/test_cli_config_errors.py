"""Command-line mistakes get our answers before hydra runs: valid choices, did-you-mean, exit 2, no run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from promptinfo.cli._hydra import check_command_line
from promptinfo.engine import validate_eval_config, validate_train_config
from promptinfo.engine.schema import EvalConfig, TrainConfig
from promptinfo.errors import ConfigError


def train_error(*args: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_command_line("train", list(args), validate_train_config, TrainConfig)
    return str(info.value)


def test_a_good_command_line_passes_the_check():
    check_command_line("train", ["method=maple", "protocol=base2novel", "dataset=dtd", "trainer.lr=0.01"],
                       validate_train_config, TrainConfig)
    check_command_line("train", ["-m", "dataset=dtd,eurosat", "seed=1,2", "hydra/launcher=local",
                                 "+trainer.epochs_by_dataset.dtd=3"], validate_train_config, TrainConfig)
    check_command_line("train", ["--cfg", "job", "method=nonsense"], validate_train_config, TrainConfig)  # hydra's


def test_misspelled_group_choices_get_the_valid_ones_and_a_did_you_mean():
    message = train_error("method=copo")
    assert "Unknown method='copo'" in message and "Did you mean ['coop'" in message and "zeroshot" in message
    message = train_error("dataset=oxford_pet")
    assert "Unknown dataset='oxford_pet'" in message and "Did you mean ['oxford_pets'" in message
    assert "Did you mean ['oxford_pets'" in train_error("-m", "dataset=dtd,oxford_pet")  # every choice of a sweep
    assert "Did you mean ['few_shot'" in train_error("protocol=fewshot")
    assert "Did you mean ['demo']" in train_error("experiment=demoo")
    with pytest.raises(ConfigError, match="Did you mean \\['zeroshot'\\]"):
        check_command_line("eval", ["method=zeroshott"], validate_eval_config, EvalConfig)


def test_unknown_keys_get_the_valid_keys_and_a_did_you_mean_not_hydras_plus_advice():
    for args in (["trainer.lrr=0.1"], ["+trainer.lrr=0.1"]):
        message = train_error(*args)
        assert "Unknown config key 'trainer.lrr'" in message and "Did you mean 'lr'?" in message, args
        assert "'warmup_lr'" in message and "+trainer" not in message, args
    message = train_error("method=maple", "method.n_ctxx=3")
    assert "'method.n_ctxx'" in message and "Did you mean 'n_ctx'?" in message and "'depth'" in message
    assert "Unknown config key 'seeed'" in train_error("seeed=2")
    message = train_error("trainer.epochs_by_dataset.dtd=3")
    assert "is a mapping" in message and "+trainer.epochs_by_dataset.dtd=" in message
    assert "holds a value, not a section" in train_error("trainer.lr.x=1")


def test_invalid_values_and_syntax_are_config_errors():
    assert "trainer.precision='fp8'" in train_error("trainer.precision=fp8")
    assert "'trainer.lr'" in train_error("trainer.lr=fast")
    assert "Could not parse the command line" in train_error("trainer.lr=[0.1")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


def promptinfo_train(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "promptinfo-train"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROMPTINFO_DATA": str(workdir / "data")}
    return subprocess.run([str(command), *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["method=copo"], "ConfigError: Unknown method='copo'. Valid choices: cocoop, coop,"),
    (["trainer.lrr=0.1"], "ConfigError: Unknown config key 'trainer.lrr'."),
    (["trainer.precision=fp8"], "ConfigError: Unknown trainer.precision='fp8'."),
])
def test_the_command_exits_2_with_our_message_and_leaves_no_run_folder(workdir, args, message):
    done = promptinfo_train(workdir, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr and "HYDRA_FULL_ERROR" not in done.stderr
    assert not (workdir / "runs").exists()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_config_error_found_when_the_run_starts_leaves_no_run_folder(tmp_path):
    """`trainer.device=cuda` can only be refused where the run starts (a sweep may be submitted from a host
    without GPUs): the folder hydra made for the run goes again, and so do the empty ones above it."""
    (tmp_path / "runs" / "other").mkdir(parents=True)
    done = promptinfo_train(tmp_path, "debug=tiny", "dataset=procedural_small", "trainer.device=cuda")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CUDA is not available" in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["other"]
