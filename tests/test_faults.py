"""Fault injection: damaged files, refused runs, contradictory requests, short classes, corrupt images, leftovers.

Each damaged file gives a typed error (a PromptInfoError) naming the file, what is wrong and the fix, or, for
shared caches, is set aside and recomputed; a refused run leaves its folder byte-for-byte as it was.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose
from omegaconf import OmegaConf
from safetensors.torch import save_file

from promptinfo.data import CorruptImageError, FeatureCache, Item, SplitFileError, build_transform, few_shot_subset
from promptinfo.data import load_benchmark, read_split_file
from promptinfo.engine import evaluate_checkpoint, train
from promptinfo.engine.resume import load_resume_checkpoint
from promptinfo.errors import CheckpointMismatchError, DamagedFileError, PromptInfoError
from promptinfo.io import atomic_path, leftover_temps, read_json, read_safetensors, set_aside, temp_name
from promptinfo.methods import create_method, read_prompt_checkpoint, save_prompt
from tests.datagen import make_benchmark_tree, write_image


class Killed(Exception):
    """Stands for the process being killed."""


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def truncate(path: Path) -> bytes:
    """Cut `path` to half its size (a copy or write killed midway); returns the damaged bytes."""
    data = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(data)
    return data


# --------------------------------------------------------------------------------------------- io helpers
def test_damaged_json_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"status": "fini')
    with pytest.raises(DamagedFileError, match="not valid JSON") as err:
        read_json(path, fix="Pass overwrite=true.")
    assert str(path) in str(err.value) and str(err.value).endswith("Pass overwrite=true.")
    assert isinstance(err.value, PromptInfoError) and err.value.path == path
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DamagedFileError, match="not valid JSON"):
        read_json(path)


def test_set_aside_keeps_the_bytes_under_a_new_name(tmp_path):
    path = tmp_path / "entry.safetensors"
    path.write_bytes(b"evidence")
    first = set_aside(path)
    path.write_bytes(b"more evidence")
    second = set_aside(path)
    assert not path.exists() and first != second
    assert (first.read_bytes(), second.read_bytes()) == (b"evidence", b"more evidence")
    assert first.name.startswith("entry.safetensors.damaged-")


def test_atomic_writes_never_touch_the_process_umask(tmp_path, monkeypatch):
    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("os.umask was called"))
        with atomic_path(tmp_path / "a.pt") as tmp:
            torch.save({"x": torch.ones(2)}, tmp)  # torch.save recreates the file 0600
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert os.stat(tmp_path / "a.pt").st_mode & 0o777 == 0o640


def test_leftover_temps_are_found_by_the_name_atomic_path_gives_them(tmp_path):
    target = tmp_path / "prompt[1].safetensors"  # glob characters in the name are taken literally
    leftover = temp_name(target, "dead01")
    leftover.write_bytes(b"half a file")
    (tmp_path / ".other.safetensors.dead02.tmp").write_bytes(b"another file's")
    with pytest.raises(Killed):
        with atomic_path(target):
            raise Killed
    assert leftover_temps(target) == [leftover]


# --------------------------------------------------------------------------------------------- runs on a tiny world
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_benchmark_tree("oxford_pets", root, n_per_class=10, num_classes=3, split_file=True)
    return root


def config(data_root: Path, work: Path, *overrides: str):
    base = ["debug=tiny", f"dataset.root={data_root}", f"runs_root={work / 'runs'}", f"feature_cache={work / 'cache'}",
            "trainer.info_subset=8", "method.n_ctx=2"]
    return compose("train", overrides=[*base, *overrides])


def run_dir(cfg) -> Path:
    return Path(OmegaConf.to_container(cfg, resolve=True)["run_dir"])


def kill_after_epoch(epoch: int):
    def callback(state, row):
        if state.epoch == epoch:
            raise Killed

    return callback


@pytest.fixture(scope="module")
def trained(hydra_configs, data_root, tmp_path_factory) -> Path:
    """A finished CoOp run on the tiny backbone; returns its folder."""
    work = tmp_path_factory.mktemp("trained")
    cfg = config(data_root, work, "experiment_name=trained")
    train(cfg)
    return run_dir(cfg)


def eval_config(data_root: Path, work: Path, checkpoint: Path, *overrides: str):
    base = ["debug=tiny", f"dataset.root={data_root}", f"checkpoint={checkpoint}", f"output={work / 'eval.json'}",
            f"feature_cache={work / 'cache'}", "trainer.info_subset=0"]
    return compose("eval", overrides=[*base, *overrides])


# --------------------------------------------------------------------------------------------- prompt checkpoints
@pytest.mark.parametrize("damage", ["truncated", "garbage", "metadata"])
def test_a_damaged_prompt_checkpoint_is_named(damage, tiny_backbone, tmp_path):
    path = tmp_path / "prompt.safetensors"
    save_prompt(create_method("coop", tiny_backbone, ["cat", "dog"], n_ctx=2), path)
    assert read_prompt_checkpoint(path)[1]["method"] == "coop"
    if damage == "truncated":
        truncate(path)
    elif damage == "garbage":
        path.write_bytes(b"GIF89a, not a checkpoint" * 4)
    else:  # a valid safetensors file whose promptinfo metadata was cut
        save_file({"ctx": torch.zeros(2, 4)}, str(path), metadata={"promptinfo": '{"method": "co'})
    with pytest.raises(DamagedFileError) as err:
        read_prompt_checkpoint(path)
    assert err.value.path == path and err.value.fix == PROMPT_FIX
    if damage == "metadata":
        assert err.value.problem.startswith("its metadata is not valid JSON (Unterminated string")


PROMPT_FIX = "Copy it again from where it was trained, or retrain that run (overwrite=true) to write it afresh."


@pytest.mark.parametrize("metadata, lacking", [
    ('{"method": "coop", "weights": "random"}', ["config", "backbone", "classnames", "class_specific"]),
    ("42", ["method", "config", "backbone", "weights", "classnames", "class_specific"]),  # JSON, but not an object
])
def test_a_prompt_checkpoint_whose_metadata_lacks_fields_names_them(metadata, lacking, tmp_path):
    path = tmp_path / "prompt.safetensors"
    save_file({"ctx": torch.zeros(2, 4)}, str(path), metadata={"promptinfo": metadata})
    with pytest.raises(DamagedFileError) as err:
        read_prompt_checkpoint(path)
    assert str(err.value) == f"{path} is damaged: its metadata lacks {lacking}. {PROMPT_FIX}"


def test_a_missing_or_foreign_prompt_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_prompt_checkpoint(tmp_path / "prompt.safetensors")
    assert str(err.value) == f"No prompt checkpoint at {tmp_path / 'prompt.safetensors'}."
    path = tmp_path / "weights.safetensors"  # some other program's safetensors file
    save_file({"ctx": torch.zeros(2, 4)}, str(path))
    with pytest.raises(CheckpointMismatchError) as err:
        read_prompt_checkpoint(path)
    assert str(err.value) == f"{path} is not a promptinfo prompt checkpoint (no metadata)."


@pytest.mark.slow
def test_eval_refuses_explicit_choices_the_checkpoint_contradicts(trained, data_root, tmp_path):
    checkpoint = trained / "prompt.safetensors"
    cases = {
        ("method=maple",): "holds coop prompts",
        ("method=coop", "method.n_ctx=4"): "method.n_ctx=4, but the checkpoint was trained with 2",
        ("model=vit_b16",): "model.name=ViT-B-16, but the checkpoint was trained on pi-tiny-vit-s",
        ("model.pretrained=openai",): "trained with weights null",
    }
    for overrides, message in cases.items():
        cfg = eval_config(data_root, tmp_path, checkpoint, *overrides)
        with pytest.raises(CheckpointMismatchError, match=message):
            evaluate_checkpoint(cfg, overrides=list(overrides))
    assert not (tmp_path / "eval.json").exists()
    agreeing = ["method=coop", "method.n_ctx=2", "model=tiny"]
    results = evaluate_checkpoint(eval_config(data_root, tmp_path, checkpoint, *agreeing), overrides=agreeing)
    assert results["method"] == "coop" and results["skipped_images"] == []
    # the same values from the config's defaults (not typed by the user) give way to the checkpoint's
    defaults = evaluate_checkpoint(eval_config(data_root, tmp_path, checkpoint, "method=maple"), overrides=[])
    assert defaults["evaluations"] == results["evaluations"]


# --------------------------------------------------------------------------------------------- run folders
KILLED = ("experiment_name=killed", "trainer.epochs=2")


@pytest.fixture(scope="module")
def killed(hydra_configs, data_root, tmp_path_factory) -> Path:
    """The folder of a 2-epoch run killed after epoch 1: it holds checkpoint.pt and no results.json."""
    work = tmp_path_factory.mktemp("killed")
    with pytest.raises(Killed):
        train(config(data_root, work, *KILLED), callbacks=(kill_after_epoch(1),))
    folder = run_dir(config(data_root, work, *KILLED))
    assert (folder / "checkpoint.pt").is_file() and not (folder / "results.json").exists()
    return folder


def copy_of(folder: Path, tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    """A copy of a run folder and the overrides that run it there (run_dir does not change a run's numbers)."""
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    return copy, (*KILLED, f"run_dir={copy}")


def test_a_refused_resume_leaves_the_folder_byte_for_byte(killed, data_root, tmp_path):
    folder, args = copy_of(killed, tmp_path)
    before = snapshot(folder)
    with pytest.raises(CheckpointMismatchError, match="different training config"):
        train(config(data_root, tmp_path, *args, "trainer.lr=0.01"))
    assert snapshot(folder) == before  # config.yaml still describes the checkpoint, train.log unchanged


@pytest.mark.parametrize("damage", ["truncated", "garbage", "incomplete"])
def test_a_damaged_resume_checkpoint_is_refused_and_kept(damage, killed, data_root, tmp_path):
    folder, args = copy_of(killed, tmp_path)
    checkpoint = folder / "checkpoint.pt"
    if damage == "truncated":
        truncate(checkpoint)
    elif damage == "garbage":
        checkpoint.write_bytes(b"\x80\x02}q\x00.garbage after a pickle stop")
    else:  # loads, but lacks the optimiser state
        state = torch.load(checkpoint, weights_only=True)
        torch.save({k: v for k, v in state.items() if k != "optimizer"}, checkpoint)
    before = snapshot(folder)
    with pytest.raises(DamagedFileError, match="overwrite=true") as err:
        train(config(data_root, tmp_path, *args))
    assert str(checkpoint) in str(err.value)
    assert snapshot(folder) == before  # the evidence is kept
    with pytest.raises(DamagedFileError):
        load_resume_checkpoint(checkpoint, "any")


@pytest.mark.slow
def test_overwrite_starts_a_folder_with_a_damaged_checkpoint_afresh(killed, data_root, tmp_path):
    folder, args = copy_of(killed, tmp_path)
    truncate(folder / "checkpoint.pt")
    results = train(config(data_root, tmp_path, *args, "overwrite=true"))
    assert results["epochs"] == 2 and not (folder / "checkpoint.pt").exists()


def test_damaged_metrics_are_refused(killed, data_root, tmp_path):
    folder, args = copy_of(killed, tmp_path)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    (folder / "metrics.jsonl").write_text(lines[0] + "\n" + "#garbled#\n")
    before = snapshot(folder)
    with pytest.raises(DamagedFileError, match="line 2 is not a JSON object with an epoch"):
        train(config(data_root, tmp_path, *args))
    (folder / "metrics.jsonl").write_text(lines[1] + "\n")  # epoch 0's line is gone
    with pytest.raises(DamagedFileError, match=r"holds epochs \[1\], but the checkpoint has finished epochs 0..1"):
        train(config(data_root, tmp_path, *args))
    (folder / "metrics.jsonl").write_text(lines[0] + "\n" + "#garbled#\n")
    assert snapshot(folder) == before


@pytest.mark.slow
def test_resume_drops_a_line_cut_by_a_kill_and_removes_leftover_temporaries(killed, data_root, tmp_path):
    folder, args = copy_of(killed, tmp_path)
    metrics = folder / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 2, "lo')  # epoch 2's line, cut short by the kill
    leftovers = [temp_name(folder / "checkpoint.pt", "dead01"), temp_name(folder / "results.json", "dead02")]
    for path in leftovers:
        path.write_bytes(b"half a file")
    trained = []
    results = train(config(data_root, tmp_path, *args), callbacks=(lambda s, row: trained.append(s.epoch),))
    assert trained == [2] and results["epochs"] == 2
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [0, 1, 2]
    assert not any(p.exists() for p in leftovers)
    leftovers[1].write_bytes(b"half a file")
    with pytest.raises(Killed):  # overwrite=true clears the folder, leftovers included, before training
        train(config(data_root, tmp_path, *args, "overwrite=true"), callbacks=(kill_after_epoch(1),))
    assert not leftovers[1].exists() and not (folder / "results.json").exists()


def test_a_damaged_results_file_is_named(killed, data_root, tmp_path):
    folder, args = copy_of(killed, tmp_path)
    (folder / "results.json").write_text('{"status": "finished", "evaluations": {"te')
    before = snapshot(folder)
    with pytest.raises(DamagedFileError, match="overwrite=true") as err:
        train(config(data_root, tmp_path, *args))
    assert str(folder / "results.json") in str(err.value) and snapshot(folder) == before


@pytest.mark.slow
def test_overwrite_redoes_a_run_with_a_damaged_results_file(trained, data_root, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    first = json.loads((folder / "results.json").read_text())
    truncate(folder / "results.json")
    redone = train(config(data_root, tmp_path, "experiment_name=trained", f"run_dir={folder}", "overwrite=true"))
    assert redone["evaluations"] == first["evaluations"]


def test_a_refused_new_run_leaves_no_folder(hydra_configs, data_root, tmp_path):
    cfg = config(data_root, tmp_path, "experiment_name=missing", "dataset=dtd")  # no dtd folder under data_root
    with pytest.raises(PromptInfoError, match="not found"):
        train(cfg)
    assert not run_dir(cfg).exists() and not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------------- shared caches
def test_a_damaged_feature_cache_entry_is_set_aside_and_recomputed(tmp_path, caplog):
    items = []
    for i in range(4):
        write_image(tmp_path / f"{i}.jpg", size=12)
        items.append(Item(str(tmp_path / f"{i}.jpg"), i % 2, f"c{i % 2}"))
    cache, tf = FeatureCache(tmp_path / "cache"), build_transform({"size": 8, "mean": (0.5,) * 3, "std": (0.5,) * 3},
                                                                   train=False)
    key = {"backbone": "b", "weights": "w", "dataset": "d", "split": "test"}
    encode = lambda images: images.flatten(1)[:, :5]  # noqa: E731  ([B, 3, 8, 8] -> [B, 5])
    first = cache.get_or_compute(key, items, encode, tf)
    damaged = truncate(first.path)
    temp_name(first.path, "dead01").write_bytes(b"a fill that was killed")
    with caplog.at_level(logging.WARNING):
        again = cache.get_or_compute(key, items, encode, tf)
    assert torch.equal(again.features, first.features) and again.path == first.path
    aside = [p for p in first.path.parent.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # kept as evidence, not deleted
    assert "set it aside" in caplog.text and str(first.path) in caplog.text
    assert leftover_temps(first.path) == []
    tensors, metadata = read_safetensors(first.path, fix="")  # right key, wrong shapes (some other tool wrote it)
    save_file({**tensors, "features": tensors["features"][:, :2]}, str(first.path), metadata=metadata)
    assert cache.load(key, items, tf) is None and not first.path.exists()
    assert torch.equal(cache.get_or_compute(key, items, encode, tf).features, first.features)


@pytest.mark.parametrize("damage", ['{"format": 1, "shots": 2', "[1, 2, 3]", "rows"])
def test_a_damaged_few_shot_index_is_set_aside_and_drawn_again(damage, tmp_path, caplog):
    make_benchmark_tree("oxford_pets", tmp_path, n_per_class=10, num_classes=3, split_file=True)
    data = load_benchmark("oxford_pets", tmp_path)
    first = few_shot_subset(data, shots=2, seed=1)
    index = data.root / "split_fewshot" / "shot_2-seed_1.json"
    if damage == "rows":
        content = read_json(index)
        content["train"][0] = ["only a path"]
        index.write_text(json.dumps(content))
    else:
        index.write_text(damage)
    damaged = index.read_bytes()
    with caplog.at_level(logging.WARNING):
        again = few_shot_subset(data, shots=2, seed=1)
    assert again.train == first.train and again.val == first.val
    aside = [p for p in index.parent.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged and index.is_file()
    assert "set it aside" in caplog.text


def test_a_split_file_that_is_not_text_is_named(tmp_path):
    path = tmp_path / "split_zhou_OxfordPets.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(SplitFileError, match="fetch it again") as err:
        read_split_file(path, tmp_path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------------------------- shots and images
@pytest.mark.slow
def test_fewer_images_than_asked_warns_and_results_record_the_effective_shots(hydra_configs, data_root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="promptinfo"):
        results = train(config(data_root, tmp_path, "protocol.shots=8", "trainer.epochs=0"))
    # datagen's split: 5 training images per class
    assert results["shots"] == 8 and results["shots_effective"] == {"min": 5, "max": 5}
    assert "3 of 3 classes have fewer than 8 training images" in caplog.text
    names = load_benchmark("oxford_pets", data_root).classnames
    assert all(f"{name} (5)" in caplog.text for name in names)


@pytest.mark.slow
def test_a_corrupt_test_image_stops_the_run_before_training(hydra_configs, tmp_path):
    root = tmp_path / "data"
    tree = make_benchmark_tree("oxford_pets", root, n_per_class=10, num_classes=3, split_file=True)
    split = read_split_file(tree.path / "split_zhou_OxfordPets.json", tree.path / "images")
    broken = Path(split.test[-1].path)
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated JPEG
    trained = []
    cfg = config(root, tmp_path, "trainer.epochs=1")
    with pytest.raises(CorruptImageError, match="pass dataset.skip_corrupt=true") as err:
        train(cfg, callbacks=(lambda s, row: trained.append(s.epoch),))
    assert str(broken) in str(err.value) and trained == [] and not run_dir(cfg).exists()

    results = train(config(root, tmp_path, "trainer.epochs=1", "++dataset.skip_corrupt=true"))
    assert results["skipped_images"] == [str(broken)]
    assert results["evaluations"]["test"]["total"] == len(split.test) - 1
    folder = run_dir(config(root, tmp_path, "trainer.epochs=1", "++dataset.skip_corrupt=true"))
    assert str(broken) in (folder / "train.log").read_text()


# --------------------------------------------------------------------------------------------- generated data, demo weights
def test_a_damaged_procedural_marker_is_named_and_a_killed_generation_is_cleaned_up(tmp_path):
    from promptinfo.data import procedural

    spec = procedural.ProceduralSpec(train_per_class=1, val_per_class=1, test_per_class=1, resolution=16)
    target = procedural.write_procedural_dataset(tmp_path, spec)
    (target / procedural.META_FILE).write_text('{"classes": [')
    leftover = tmp_path / ".other.tmp-killed"  # another benchmark's writer: not ours to remove
    leftover.mkdir()
    with pytest.raises(DamagedFileError, match="Delete the folder") as err:
        procedural.write_procedural_dataset(tmp_path, spec)
    assert str(target / procedural.META_FILE) in str(err.value)
    shutil.rmtree(target)
    killed = tmp_path / ".procedural.tmp-killed"  # a generation that was killed midway
    (killed / "images").mkdir(parents=True)
    assert procedural.write_procedural_dataset(tmp_path, spec) == target
    assert not killed.exists() and leftover.exists()


def test_damaged_demo_weights_are_set_aside_and_pretrained_again(tmp_path, monkeypatch, caplog):
    from promptinfo import demo

    def pretrain(recipe, **kwargs):  # stands in for minutes of pretraining
        torch.manual_seed(0)
        return demo.create_demo_model(recipe.model), {"fake": True}

    monkeypatch.setattr(demo.weights, "pretrain_demo_clip", pretrain)  # what ensure_demo_backbone calls
    path = demo.demo_checkpoint_path("small", tmp_path)
    leftover = temp_name(path, "dead01")  # a pretraining that was killed while writing
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a file")
    assert demo.ensure_demo_backbone("small", cache_dir=tmp_path) == path and not leftover.exists()
    good = path.read_bytes()
    damaged = truncate(path)
    with caplog.at_level(logging.WARNING):
        assert demo.ensure_demo_backbone("small", cache_dir=tmp_path) == path
    assert path.read_bytes() == good and "set them aside" in caplog.text
    assert [p.read_bytes() for p in path.parent.iterdir() if ".damaged-" in p.name] == [damaged]
