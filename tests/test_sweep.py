"""Benchmark sweeps: hydra multirun with the joblib launcher, idempotent reruns, and the report.

Also: the benchmark presets sweep the published grid, and parallel runs on a machine with
several GPUs each take a GPU of their own (`distributed.gpu_slot_order` / `claim_gpu`).
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
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

from promptinfo.cli import report
from promptinfo.cli import train as train_cli
from promptinfo.engine import distributed
from promptinfo.engine.distributed import claim_gpu, gpu_slot_order
from tests.datagen import make_benchmark_tree

DATASETS = ("oxford_pets", "caltech101")
SEEDS = (1, 2)
BENCHMARK_DATASETS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                      "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]


# --------------------------------------------------------------------------------------------- presets
def sweep_grid(preset: str) -> tuple[dict[str, list[str]], object]:
    """The preset's swept values per key, and its composed config."""
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}"], return_hydra_config=True)
    return {key: str(value).split(",") for key, value in cfg.hydra.sweeper.params.items()}, cfg


def test_benchmark_presets_sweep_the_published_grids():
    grid, cfg = sweep_grid("benchmark_few_shot")
    assert grid == {"dataset": BENCHMARK_DATASETS, "protocol.shots": ["1", "2", "4", "8", "16"],
                    "seed": ["1", "2", "3"]}
    assert (cfg.protocol.name, cfg.experiment_name) == ("few_shot", "benchmark_few_shot")
    grid, cfg = sweep_grid("benchmark_base2novel")
    assert grid == {"dataset": BENCHMARK_DATASETS, "seed": ["1", "2", "3"]}
    assert (cfg.protocol.name, cfg.protocol.shots, cfg.experiment_name) == ("base2novel", 16, "benchmark_base2novel")


# --------------------------------------------------------------------------------------------- GPU slots
def test_gpu_slot_order_starts_at_the_jobs_own_gpu_and_fills_first_slots_first():
    assert gpu_slot_order(0, 2, per_gpu=2) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert gpu_slot_order(5, 3, per_gpu=1) == [(2, 0), (0, 0), (1, 0)]
    assert [gpu for gpu, _ in gpu_slot_order(7, 4)[:4]] == [3, 0, 1, 2]
    assert gpu_slot_order(3, 1, per_gpu=2) == [(0, 0), (0, 1)]
    with pytest.raises(ValueError, match="at least one GPU"):
        gpu_slot_order(0, 0)


def test_concurrent_runs_spread_over_gpus_before_sharing_one(tmp_path):
    with claim_gpu(0, 2, tmp_path) as first, claim_gpu(2, 2, tmp_path) as second:  # job 2 prefers GPU 0: busy
        assert (first, second) == (0, 1)
        with claim_gpu(1, 2, tmp_path) as third:  # both GPUs hold a run: the third shares its own GPU
            assert third == 1
    with claim_gpu(2, 2, tmp_path) as again:  # released: job 2 gets its own GPU back
        assert again == 0


def test_a_joblib_sweep_job_trains_on_its_own_gpu(tmp_path, monkeypatch):
    """The entry point's placement: job 3 of a joblib sweep on a 2-GPU machine makes cuda:1 current."""
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=local"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.job.num = RunMode.MULTIRUN, 3
    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed, "default_slot_dir", lambda: tmp_path)
    HydraConfig.instance().set_config(cfg)
    try:
        with train_cli._placement(cfg):
            assert chosen == [1] and (tmp_path / "gpu1-slot0.lock").exists()
            with claim_gpu(1, 2, tmp_path) as other:  # a run starting meanwhile goes to the other GPU
                assert other == 0
        with open_dict(cfg):
            cfg.trainer.device = "cuda:0"  # an explicit device is kept
        with train_cli._placement(cfg):
            assert chosen == [1]
    finally:
        HydraConfig.instance().cfg = None


# --------------------------------------------------------------------------------------------- sweep
@pytest.fixture(scope="module")
def sweep_env(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("sweep")
    for key in DATASETS:
        make_benchmark_tree(key, work / "data", n_per_class=5, num_classes=3, split_file=True)
    env = {**os.environ, "PROMPTINFO_DATA": str(work / "data"), "PROMPTINFO_CACHE": str(work / "cache"),
           "OMP_NUM_THREADS": "1"}
    return work, env


def run_sweep(work: Path, env: dict) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "promptinfo.cli.train", "-m", "experiment=benchmark_few_shot", "debug=tiny",
            "method=coop", "method.n_ctx=2", f"dataset={','.join(DATASETS)}", f"seed={','.join(map(str, SEEDS))}",
            "protocol.shots=2", "trainer.epochs=1", "trainer.info_subset=8", "trainer.keep_checkpoint=true",
            "hydra/launcher=local", "hydra.launcher.n_jobs=2", f"runs_root={work / 'runs'}"]
    done = subprocess.run(args, check=False, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def run_folder(work: Path, dataset: str, seed: int) -> Path:
    return work / "runs" / "benchmark_few_shot" / dataset / "coop" / "few_shot" / f"shots2_seed{seed}"


def without_time(results: dict) -> dict:
    return {k: v for k, v in results.items() if k != "wall_time_s"}


@pytest.fixture(scope="module")
def first_sweep(sweep_env):
    work, env = sweep_env
    done = run_sweep(work, env)
    return work, env, done.stdout + done.stderr


@pytest.mark.slow
def test_joblib_sweep_runs_every_job_in_its_own_folder(first_sweep):
    work, _, output = first_sweep
    assert "Joblib.Parallel(n_jobs=2,backend=loky" in output and "is launching 4 jobs" in output
    for dataset in DATASETS:
        for seed in SEEDS:
            results = json.loads((run_folder(work, dataset, seed) / "results.json").read_text())
            assert (results["status"], results["dataset"], results["seed"], results["shots"]) == (
                "finished", dataset, seed, 2)
            assert results["experiment"] == "benchmark_few_shot" and results["evaluations"]["test"]["total"] == 6
    # Nothing but the run folders and hydra's sweep record (multirun.yaml and empty job folders).
    files = {p.relative_to(work / "runs").as_posix() for p in (work / "runs").rglob("*") if p.is_file()}
    runs = {f for f in files if f.startswith("benchmark_few_shot/")}
    assert {Path(f).parent for f in runs} == {run_folder(work, d, s).relative_to(work / "runs")
                                              for d in DATASETS for s in SEEDS}
    assert {Path(f).name for f in files - runs} == {"multirun.yaml"}


@pytest.mark.slow
def test_report_aggregates_the_finished_runs_and_a_rerun_skips_or_resumes(first_sweep, capsys):
    work, env, _ = first_sweep
    runs = work / "runs"
    assert report.main([str(runs), "--plots", "none", "--out", str(work / "report1")]) == 0
    frame = (work / "report1" / "runs.csv").read_text().splitlines()
    assert len(frame) == 1 + 4 and "4 finished run(s) aggregated, 0 skipped." in capsys.readouterr().out

    before = {(d, s): json.loads((run_folder(work, d, s) / "results.json").read_text()) for d in DATASETS
              for s in SEEDS}
    interrupted = run_folder(work, "caltech101", 2)
    (interrupted / "results.json").unlink()  # as if killed after its last epoch checkpoint
    assert report.main([str(runs), "--plots", "none", "--out", str(work / "report2")]) == 0
    assert "3 finished run(s) aggregated, 1 skipped." in capsys.readouterr().out

    output = run_sweep(work, env)
    log = output.stdout + output.stderr
    assert log.count("already finished; skipping it") == 3 and "resuming after epoch 1/1" in log
    for key, results in before.items():
        assert without_time(json.loads((run_folder(work, *key) / "results.json").read_text())) == without_time(results)
    assert report.main([str(runs), "--plots", "none", "--out", str(work / "report3")]) == 0
    assert "4 finished run(s) aggregated, 0 skipped." in capsys.readouterr().out
    table = (work / "report3" / "few_shot.md").read_text()
    assert "caltech101" in table and "oxford_pets" in table and "| CoOp |" in table
