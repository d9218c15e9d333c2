"""The installed commands: `promptinfo-train` / `python -m promptinfo.train` and `promptinfo-eval`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datagen import make_benchmark_tree

pytestmark = pytest.mark.slow  # every test runs the console scripts in subprocesses

BIN = Path(sys.executable).parent


def command(name: str) -> list[str]:
    path = BIN / name
    assert path.is_file(), f"{path} is missing: install the package (pip install -e .) to get its console scripts"
    return [str(path)]


def call(args: list[str], cwd: Path, data: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROMPTINFO_DATA": str(data), "PROMPTINFO_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_benchmark_tree("oxford_pets", root, n_per_class=5, num_classes=3, split_file=True)
    return root


def test_bad_config_exits_with_the_valid_choices(tmp_path, data):
    done = call(command("promptinfo-train") + ["dataset.name=oxford_petz"], tmp_path, data)
    assert done.returncode == 2, done.stderr
    output = done.stdout + done.stderr
    assert "Unknown dataset.name='oxford_petz'" in output and "oxford_pets" in output and "Traceback" not in output


def test_train_module_then_eval_command(tmp_path, data):
    train = [sys.executable, "-m", "promptinfo.train", "debug=tiny", "method.n_ctx=2", "trainer.epochs=1",
             "protocol=base2novel"]
    done = call(train, tmp_path, data)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "runs" / "coop_pitinyvits_base2novel" / "oxford_pets" / "coop" / "base2novel" / "shots2_seed1"
    results = json.loads((folder / "results.json").read_text())
    assert set(results["evaluations"]) == {"base", "novel"} and "harmonic_mean" in results
    assert "epoch 1/1 step" in done.stdout + done.stderr  # plain log lines when not on a terminal
    assert {p.name for p in folder.iterdir()} >= {"config.yaml", "metrics.jsonl", "results.json",
                                                   "prompt.safetensors", "train.log"}

    evaluate = command("promptinfo-eval") + [f"checkpoint={folder / 'prompt.safetensors'}", "protocol.subsample=base",
                                             "trainer.device=cpu", "trainer.num_workers=0",
                                             "trainer.persistent_workers=false"]
    done = call(evaluate, tmp_path, data)
    assert done.returncode == 0, done.stdout + done.stderr
    evaluated = json.loads((folder / "eval_oxford_pets_base.json").read_text())
    assert evaluated["evaluations"]["test"] == results["evaluations"]["base"]
    assert evaluated["trained_on"]["protocol"] == "base2novel"

    # an explicit method that contradicts the checkpoint is refused, not ignored (exit 2, no traceback)
    done = call(evaluate + ["method=maple"], tmp_path, data)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "CheckpointMismatchError" in output and "Traceback" not in output, output
    assert "method=maple, but the checkpoint holds coop prompts" in output

    # a damaged checkpoint is named, with the fix
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes((folder / "prompt.safetensors").read_bytes()[:100])
    done = call(evaluate[:1] + [f"checkpoint={damaged}"] + evaluate[2:], tmp_path, data)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "DamagedFileError" in output and "Traceback" not in output, output
    assert f"{damaged} is damaged" in output
