"""One run on two processes (torchrun, gloo on the CPU) gives the numbers of one process.

With a per-sample loss (cross-entropy) the two-process run matches a single process with the same
global batch to float tolerance; with a batch-level term (CMA) it matches a single process that
splits each batch into as many micro-batches (`trainer.grad_accum=2`). Rank 0 alone writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import load_file

from promptinfo.engine import train
from promptinfo.engine.data import EpochBatchSampler
from promptinfo.engine.distributed import (
    DistEnv,
    FollowerRunFolder,
    ShardedBatchSampler,
    env_from_environ,
    join_process_group,
    shard_bounds,
)
from promptinfo.errors import ConfigError
from tests.datagen import make_benchmark_tree

TOL = 1e-5
RUN = ["debug=tiny", "method=maple", "method.depth=2", "protocol.shots=2", "trainer.epochs=2",
       "trainer.info_subset=8", "trainer.warmup_epochs=0", "trainer.lr=0.05"]
# 8 training images: 2 steps per epoch; batches of 3 give rank shares of 2 and 1. The large step makes
# a wrong gradient sync move the prompts far beyond the tolerance.
CASES = [("ce", 3, 1), ("cma", 4, 2)]  # (loss, batch size, the single process's grad_accum)
FOLDER = Path("oxford_pets") / "maple" / "few_shot" / "shots2_seed1"


# --------------------------------------------------------------------------------------------- pieces
def test_shard_bounds_split_like_tensor_split():
    for n in range(12):
        for world in (1, 2, 3, 5):
            expected = [len(t) for t in torch.tensor_split(torch.arange(n), world)]
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert [stop - start for start, stop in bounds] == expected
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(bounds[r][1] == bounds[r + 1][0] for r in range(world - 1))


def test_sharded_batches_are_contiguous_shares_of_the_single_process_batches():
    single = EpochBatchSampler(10, 4, seed=3)
    shards = [ShardedBatchSampler(EpochBatchSampler(10, 4, seed=3), r, 3) for r in range(3)]
    for epoch in (0, 1):
        single.set_epoch(epoch)
        for shard in shards:
            shard.set_epoch(epoch)
        together = [[key for part in parts for key in part] for parts in zip(*(list(s) for s in shards))]
        assert together == list(single) and len(shards[0]) == len(single) == 2
        assert [len(b) for b in next(zip(*(list(s) for s in shards)))] == [2, 1, 1]
    with pytest.raises(ConfigError, match="at least one image per step"):
        ShardedBatchSampler(EpochBatchSampler(2, 4, seed=0), 0, 3)


def test_torchrun_variables_are_read_and_checked():
    assert env_from_environ({}) is None and env_from_environ({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert env_from_environ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == DistEnv(3, 1, 4)
    with pytest.raises(ConfigError, match="outside WORLD_SIZE"):
        env_from_environ({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ConfigError, match="must be integers"):
        env_from_environ({"WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="trainer.device=auto"):
        join_process_group(DistEnv(0, 0, 2), "cuda:1")


def test_other_ranks_write_nothing(tmp_path):
    folder = FollowerRunFolder(tmp_path / "run")
    with folder:
        folder.write_config({"a": 1})
        folder.append_metrics({"epoch": 0})
        folder.write_results({"status": "finished"})
        folder.detach_log(folder.attach_log())
    assert not (tmp_path / "run").exists() and not folder.finished()


# --------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("ddp")
    make_benchmark_tree("oxford_pets", work / "data", n_per_class=10, num_classes=4, split_file=True)
    return work


@pytest.fixture(scope="module")
def two_process_runs(work) -> str:
    """`torchrun --nproc_per_node 2 promptinfo-train -m loss=ce,cma trainer.batch_size=3,4`: four runs in a
    row, each on the same two processes."""
    env = {**os.environ, "PROMPTINFO_DATA": str(work / "data"), "PROMPTINFO_CACHE": str(work / "cache"),
           "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "promptinfo.cli.train", "-m", *RUN, "trainer.device=cpu", f"runs_root={work / 'ddp'}",
            "loss=ce,cma", "trainer.batch_size=3,4",
            "experiment_name=${hydra:runtime.choices.loss}_b${trainer.batch_size}"]
    done = subprocess.run(args, check=False, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def one_process_run(work: Path, loss: str, batch_size: int, grad_accum: int) -> Path:
    name = f"{loss}_b{batch_size}"
    overrides = [*RUN, f"loss={loss}", f"trainer.batch_size={batch_size}", f"trainer.grad_accum={grad_accum}",
                 f"experiment_name={name}",
                 f"dataset.root={work / 'data'}", f"feature_cache={work / 'cache' / 'features'}",
                 f"runs_root={work / 'single'}"]
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        train(compose("train", overrides=overrides))
    return work / "single" / name / FOLDER


def metric_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def assert_same_numbers(a: dict, b: dict, path: str = "") -> None:
    """Equal keys; integers and strings equal, floats equal to TOL (timings ignored)."""
    assert set(a) == set(b), path
    for key in a:
        if key in ("wall_time_s", "time_s"):
            continue
        x, y = a[key], b[key]
        if isinstance(x, dict):
            assert_same_numbers(x, y, f"{path}/{key}")
        elif isinstance(x, float):
            assert y == pytest.approx(x, rel=TOL, abs=TOL), f"{path}/{key}"
        else:
            assert x == y, f"{path}/{key}"


@pytest.mark.slow
@pytest.mark.parametrize(("loss", "batch_size", "grad_accum"), CASES)
def test_two_processes_match_one(work, two_process_runs, loss, batch_size, grad_accum):
    ddp = work / "ddp" / f"{loss}_b{batch_size}" / FOLDER
    single = one_process_run(work, loss, batch_size, grad_accum)
    a, b = (json.loads((f / "results.json").read_text()) for f in (ddp, single))
    assert a["evaluations"]["test"]["total"] == 4 * 3
    assert_same_numbers({k: v for k, v in a.items() if k != "config_fingerprint"},
                        {k: v for k, v in b.items() if k != "config_fingerprint"})
    rows_a, rows_b = metric_rows(ddp), metric_rows(single)
    assert [r["epoch"] for r in rows_a] == [0, 1, 2] and [r["step"] for r in rows_a] == [0, 2, 4]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert_same_numbers(ra, rb)
    pa, pb = load_file(str(ddp / "prompt.safetensors")), load_file(str(single / "prompt.safetensors"))
    assert set(pa) == set(pb)
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name], rtol=0, atol=TOL, msg=name)


@pytest.mark.slow
def test_rank_zero_alone_writes_the_run_folder(work, two_process_runs):
    folder = work / "ddp" / "ce_b3" / FOLDER
    assert {p.name for p in folder.iterdir()} == {".lock", "config.yaml", "metrics.jsonl", "results.json",
                                                 "prompt.safetensors", "train.log"}
    log = (folder / "train.log").read_text()
    assert log.count("run folder ") == 1 and log.count("epoch 2/2 loss") == 1
    assert two_process_runs.count("test: ") == 4  # one evaluation line per run: rank 1 logs warnings only
