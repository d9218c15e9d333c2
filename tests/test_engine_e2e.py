"""End-to-end runs of every protocol on a tiny random backbone and generated benchmark trees.

Also: a run killed at any point and restarted ends with exactly the numbers of an uninterrupted
run; identical configs give identical numbers whatever the loader workers; finished runs are
skipped; two runs never share a folder; a saved prompt evaluates to the run's own numbers.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from hydra import compose
from omegaconf import OmegaConf
from safetensors.torch import load_file

from promptinfo.backbones import create_backbone
from promptinfo.data import FeatureCache, load_benchmark
from promptinfo.engine import RunFolder, RunFolderBusyError, evaluate_checkpoint, train
from promptinfo.engine import training as training_module
from promptinfo.errors import CheckpointMismatchError, ConfigError
from promptinfo.methods import create_method
from promptinfo.report.zeroshot_inspection import inspect_benchmark
from tests.datagen import make_benchmark_tree

TEST_PER_CLASS = 3  # datagen's split file: 5 train, 2 val, 3 test images per class (10 per class)
INFO_KEYS = {"info/entropy_image", "info/entropy_text", "info/mi", "info/mir", "info/hdr", "info/erank_image",
             "info/erank_text"}


class Killed(Exception):
    """Stands for the process being killed."""


@pytest.fixture(autouse=True, scope="module")
def _setup(hydra_configs):
    yield


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_benchmark_tree("oxford_pets", root, n_per_class=10, num_classes=4, split_file=True)
    make_benchmark_tree("caltech101", root, n_per_class=5, num_classes=3, split_file=True)
    for key in ("imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"):
        make_benchmark_tree(key, root, n_per_class=5, num_classes=4)
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("work")


def config(data_root: Path, workdir: Path, *overrides: str):
    base = ["debug=tiny", f"dataset.root={data_root}", f"runs_root={workdir / 'runs'}",
            f"feature_cache={workdir / 'features'}", "trainer.info_subset=16", "trainer.batch_size=4"]
    return compose("train", overrides=[*base, *overrides])


def run(data_root, workdir, *overrides, callbacks=()) -> tuple[dict, Path]:
    cfg = config(data_root, workdir, *overrides)
    results = train(cfg, callbacks=callbacks)
    return results, Path(OmegaConf.to_container(cfg, resolve=True)["run_dir"])


def prompt_tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "prompt.safetensors"))


def metric_rows(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


def same_numbers(a: dict, b: dict) -> bool:
    keep = lambda r: {k: v for k, v in r.items() if k != "wall_time_s"}
    return keep(a) == keep(b)


# --------------------------------------------------------------------------------------------- protocols
FEW_SHOT = ("method=coop", "method.n_ctx=2", "protocol=few_shot", "trainer.epochs=3", "protocol.shots=4",
            "experiment_name=resume")


@pytest.fixture(scope="module")
def reference(data_root, workdir):
    """An uninterrupted 3-epoch CoOp few-shot run."""
    return run(data_root, workdir, *FEW_SHOT)


def test_few_shot_run_writes_the_run_folder(reference, data_root):
    results, folder = reference
    test = results["evaluations"]["test"]
    assert test["total"] == 4 * TEST_PER_CLASS and 0 <= test["correct"] <= test["total"]
    assert test["accuracy"] == 100.0 * test["correct"] / test["total"]
    assert (results["status"], results["method"], results["dataset"], results["protocol"]) == (
        "finished", "coop", "oxford_pets", "few_shot")
    identity = (results["shots"], results["seed"], results["backbone"], results["weights"])
    assert identity == (4, 1, "pi-tiny-vit-s", "random")
    assert results["epochs"] == 3 and results["steps"] == 3 * 4  # 16 images, batch 4
    assert set(results["metrics"]["test"]) >= {k.split("/")[1] for k in INFO_KEYS}
    assert json.loads((folder / "results.json").read_text()) == results
    rows = metric_rows(folder)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3] and [r["step"] for r in rows] == [0, 4, 8, 12]
    assert all(INFO_KEYS <= set(r) for r in rows)
    assert {"loss", "loss/ce", "weight/ce", "train_acc", "lr"} <= set(rows[1])
    assert rows[1]["lr"] == 1e-5 and rows[2]["lr"] == pytest.approx(0.002)  # warm-up, then the peak
    assert rows[3]["lr"] == pytest.approx(0.002 * (1 + math.cos(math.pi / 3)) / 2)  # cosine over 3 epochs
    assert (folder / "prompt.safetensors").is_file() and (folder / "train.log").is_file()
    assert not (folder / "checkpoint.pt").exists()
    saved = OmegaConf.load(folder / "config.yaml")  # resolved: no interpolation left
    assert saved.trainer.epochs == 3 and saved.method.n_ctx == 2 and saved.dataset.root == str(data_root)
    assert saved.run_dir == str(folder) and "${" not in (folder / "config.yaml").read_text()


def test_base2novel_trains_on_base_and_reports_base_novel_and_harmonic_mean(data_root, workdir):
    results, folder = run(data_root, workdir, "method=maple", "method.depth=2", "protocol=base2novel",
                          "protocol.shots=2", "trainer.epochs=1")
    base, novel = results["evaluations"]["base"], results["evaluations"]["novel"]
    assert (base["subsample"], novel["subsample"]) == ("base", "novel")
    assert base["total"] == novel["total"] == 2 * TEST_PER_CLASS
    h = results["harmonic_mean"]
    assert h == (0.0 if base["accuracy"] + novel["accuracy"] == 0 else
                 2 * base["accuracy"] * novel["accuracy"] / (base["accuracy"] + novel["accuracy"]))
    from promptinfo.methods import read_prompt_checkpoint

    meta = read_prompt_checkpoint(folder / "prompt.safetensors")[1]
    assert len(meta["classnames"]) == 2 and meta["protocol"] == "base2novel"  # trained on the base classes
    evaluated = evaluate_checkpoint(compose("eval", overrides=[
        f"checkpoint={folder / 'prompt.safetensors'}", f"dataset.root={data_root}", "protocol.subsample=novel",
        f"feature_cache={workdir / 'features'}", "trainer.device=cpu", "trainer.num_workers=0",
        "trainer.persistent_workers=false", "trainer.info_subset=0"]))
    assert evaluated["evaluations"]["test"] == novel and evaluated["method"] == "maple"
    assert (folder / "eval_oxford_pets_novel.json").is_file()


def test_cross_dataset_trains_once_and_evaluates_every_target(data_root, workdir):
    results, _ = run(data_root, workdir, "method=cocoop", "protocol=cross_dataset", "protocol.shots=2",
                     "protocol.targets=[caltech101,oxford_pets]", "trainer.epochs=1")
    ev = results["evaluations"]
    assert list(ev) == ["imagenet", "caltech101", "oxford_pets"]
    assert (ev["imagenet"]["total"], ev["oxford_pets"]["total"]) == (4 * 5, 4 * TEST_PER_CLASS)
    assert ev["caltech101"]["dataset"] == "caltech101" and "harmonic_mean" not in results


def test_domain_generalization_on_cached_views(data_root, workdir):
    results, folder = run(data_root, workdir, "method=coop", "method.n_ctx=2", "protocol=domain_generalization",
                          "protocol.shots=2", "trainer.train_views=2", "trainer.epochs=1")
    ev = results["evaluations"]
    assert list(ev) == ["imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    assert ev["imagenet_a"]["total"] == 4 * 5 and ev["imagenet_v2"]["total"] == 4 * 5
    assert len(list((workdir / "features").glob("*train-augmented*.safetensors"))) == 1
    assert [r["epoch"] for r in metric_rows(folder)] == [0, 1]


def test_crop_scale_and_hflip_set_the_augmentation_of_cached_views(data_root, tmp_path):
    def views(*overrides: str) -> torch.Tensor:
        workdir = tmp_path / str(len(list(tmp_path.iterdir())))
        run(data_root, workdir, "method=coop", "method.n_ctx=2", "protocol.shots=2", "trainer.train_views=2",
            "trainer.epochs=1", *overrides)
        [entry] = (workdir / "features").glob("*train-augmented*.safetensors")
        return load_file(str(entry))["features"]  # [views, n, d]

    whole = views("trainer.crop_scale=[1.0,1.0]", "trainer.hflip=0.0")
    mirrored = views("trainer.crop_scale=[1.0,1.0]", "trainer.hflip=1.0")
    default = views()
    assert torch.equal(whole[0], whole[1]) and torch.equal(mirrored[0], mirrored[1])  # nothing random is left
    assert not torch.allclose(whole, mirrored, atol=1e-4)  # the flip reaches the views
    assert not torch.allclose(default[0], default[1], atol=1e-4)  # CoOp's crops differ per view


def test_zeroshot_protocol_and_untrainable_methods_skip_training(data_root, workdir):
    results, folder = run(data_root, workdir, "method=zeroshot", "protocol=zeroshot", "protocol.subsample=base")
    assert results["evaluations"]["test"]["total"] == 2 * TEST_PER_CLASS and results["epochs"] == 0
    assert not (folder / "prompt.safetensors").exists() and not (folder / "metrics.jsonl").exists()
    results, folder = run(data_root, workdir, "method=zeroshot", "protocol=base2novel")
    assert set(results["evaluations"]) == {"base", "novel"} and results["steps"] == 0
    assert [r["epoch"] for r in metric_rows(folder)] == [0]


def test_an_inspection_after_an_evaluation_reads_the_same_feature_entries(data_root, tmp_path):
    cache = tmp_path / "features"
    cfg = compose("train", overrides=["debug=tiny", f"dataset.root={data_root}", f"runs_root={tmp_path / 'runs'}",
                                      f"feature_cache={cache}", "method=zeroshot", "protocol=zeroshot"])
    evaluated = train(cfg)["evaluations"]["test"]
    entries = {path: path.stat().st_mtime_ns for path in cache.glob("*.safetensors")}
    assert len(entries) == 1  # the evaluation's test features
    data = load_benchmark("oxford_pets", data_root)
    backbone = create_backbone(cfg.model.name)  # random weights, keyed "random" as the run's
    method = create_method("zeroshot", backbone, data.classnames, templates=data.templates)
    inspection, _ = inspect_benchmark(method, data, FeatureCache(cache), precision="fp32")
    assert {path: path.stat().st_mtime_ns for path in cache.glob("*.safetensors")} == entries  # read, not written
    assert inspection.metrics["n_images"] == evaluated["total"] == len(data.test)


# --------------------------------------------------------------------------------------------- resume and safety
def _kill_after_epoch(epoch: int):
    def callback(state, row):
        if state.epoch == epoch:
            raise Killed

    return callback


class _KillMidEpoch(training_module.Progress):
    def update(self, step_in_epoch, images, loss, lr):
        if self.epoch == 2 and step_in_epoch == 2:
            raise Killed
        super().update(step_in_epoch, images, loss, lr)


@pytest.mark.parametrize("kill", ["after_epoch", "mid_epoch", "before_checkpoint"])
def test_killed_run_resumes_to_exactly_the_uninterrupted_numbers(kill, data_root, workdir, reference, monkeypatch):
    overrides = (*FEW_SHOT, f"experiment_name=resume_{kill}")
    callbacks = ()
    if kill == "after_epoch":
        callbacks = (_kill_after_epoch(1),)
    elif kill == "mid_epoch":
        monkeypatch.setattr(training_module, "Progress", _KillMidEpoch)
    else:  # the metrics line of epoch 2 is written, its checkpoint is not
        save = training_module.save_resume_checkpoint

        def save_or_die(path, **kw):
            if kw["epoch"] == 2:
                raise Killed
            save(path, **kw)

        monkeypatch.setattr(training_module, "save_resume_checkpoint", save_or_die)
    with pytest.raises(Killed):
        run(data_root, workdir, *overrides, callbacks=callbacks)
    monkeypatch.undo()
    folder = Path(OmegaConf.to_container(config(data_root, workdir, *overrides), resolve=True)["run_dir"])
    assert (folder / "checkpoint.pt").is_file() and not (folder / "results.json").exists()
    trained = []
    results, folder = run(data_root, workdir, *overrides, callbacks=(lambda state, row: trained.append(state.epoch),))
    assert trained == [2, 3]  # continued from the checkpoint of epoch 1, not from scratch
    ref_results, ref_folder = reference
    assert results["evaluations"] == ref_results["evaluations"] and results["metrics"] == ref_results["metrics"]
    for name, tensor in prompt_tensors(ref_folder).items():
        assert torch.equal(prompt_tensors(folder)[name], tensor), name
    assert metric_rows(folder) == metric_rows(ref_folder)
    assert "resuming after epoch" in (folder / "train.log").read_text()


def test_same_config_and_seed_give_identical_numbers_whatever_the_workers(data_root, workdir, reference):
    results, folder = run(data_root, workdir, *FEW_SHOT, "experiment_name=workers", "trainer.num_workers=2",
                          "trainer.persistent_workers=true")
    ref_results, ref_folder = reference
    assert results["evaluations"] == ref_results["evaluations"]
    assert all(torch.equal(prompt_tensors(folder)[k], v) for k, v in prompt_tensors(ref_folder).items())
    assert metric_rows(folder) == metric_rows(ref_folder)
    other, _ = run(data_root, workdir, *FEW_SHOT, "experiment_name=workers", "seed=2")
    assert other["seed"] == 2 and prompt_tensors(_)["ctx"].shape == prompt_tensors(folder)["ctx"].shape


def test_finished_run_is_skipped_unless_overwrite(data_root, workdir):
    overrides = ("method=coop", "method.n_ctx=2", "experiment_name=skip")
    first, folder = run(data_root, workdir, *overrides)
    stamp = (folder / "prompt.safetensors").stat().st_mtime_ns
    again, _ = run(data_root, workdir, *overrides)
    assert again == first and (folder / "prompt.safetensors").stat().st_mtime_ns == stamp
    redone, _ = run(data_root, workdir, *overrides, "overwrite=true")
    assert same_numbers(redone, first) and (folder / "prompt.safetensors").stat().st_mtime_ns != stamp
    with pytest.raises(ConfigError, match="finished run of a different config") as refused:
        run(data_root, workdir, *overrides, "trainer.lr=0.01")  # same folder, other numbers: refused
    assert "label=" in str(refused.value) and "run_dir=" in str(refused.value)  # the ways to a folder of its own


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_not_resumed(data_root, workdir):
    overrides = ("method=coop", "method.n_ctx=2", "trainer.epochs=2", "experiment_name=other")
    with pytest.raises(Killed):
        run(data_root, workdir, *overrides, callbacks=(_kill_after_epoch(1),))
    with pytest.raises(CheckpointMismatchError, match="different training config.*label=.*run_dir="):
        run(data_root, workdir, *overrides, "trainer.lr=0.01")
    results, _ = run(data_root, workdir, *overrides, "trainer.num_workers=1")  # loading settings may change
    assert results["epochs"] == 2


def test_a_run_leaves_the_callers_logging_as_it_found_it(data_root, workdir):
    """train.log gets the engine's info lines, but after the run the `promptinfo` logger has its old level and
    handlers again (a notebook would otherwise print every info line of every later call)."""
    package = logging.getLogger("promptinfo")
    for level in (logging.NOTSET, logging.ERROR):
        package.setLevel(level)
        handlers = list(package.handlers)
        try:
            _, folder = run(data_root, workdir, "method=coop", "method.n_ctx=2", f"experiment_name=log{level}")
        finally:
            after = package.level
            package.setLevel(logging.NOTSET)
        assert (after, package.handlers) == (level, handlers)
        assert re.search(r" INFO promptinfo\.engine[.\w]*: run folder ", (folder / "train.log").read_text())


def test_two_runs_never_share_a_folder(data_root, workdir):
    cfg = config(data_root, workdir, "experiment_name=busy")
    folder = OmegaConf.to_container(cfg, resolve=True)["run_dir"]
    with RunFolder(folder), pytest.raises(RunFolderBusyError, match="Another run is writing"):
        train(cfg)


@pytest.mark.parametrize("setting", [
    pytest.param(("method=promptsrc", "method.depth_text=2", "method.depth_vision=2", "method.gpa_mean=1.0"),
                 marks=pytest.mark.slow),  # GPA state
    ("method=kgcoop", "trainer.train_views=2", "trainer.grad_accum=2"),  # cached views, accumulation
])
def test_resume_keeps_method_state_and_cached_views(setting, data_root, workdir):
    common = (*setting, "protocol=few_shot", "protocol.shots=2", "trainer.epochs=2")
    reference_results, reference_folder = run(data_root, workdir, *common, "experiment_name=state_ref")
    with pytest.raises(Killed):
        run(data_root, workdir, *common, "experiment_name=state", callbacks=(_kill_after_epoch(1),))
    results, folder = run(data_root, workdir, *common, "experiment_name=state")
    assert results["evaluations"] == reference_results["evaluations"]
    for name, tensor in prompt_tensors(reference_folder).items():
        assert torch.equal(prompt_tensors(folder)[name], tensor), name
    assert metric_rows(folder) == metric_rows(reference_folder)


def test_label_names_the_variant_in_folder_and_results(data_root, workdir):
    plain, plain_dir = run(data_root, workdir, "method=coop", "method.n_ctx=2", "seed=7")
    cma, cma_dir = run(data_root, workdir, "method=coop", "method.n_ctx=2", "seed=7", "loss=cma", "label=coop+cma")
    assert plain_dir != cma_dir and cma_dir.parts[-3] == "coop+cma" and plain_dir.parts[-3] == "coop"
    assert (plain["method"], cma["method"]) == ("coop", "coop+cma")
