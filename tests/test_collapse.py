"""`promptinfo-collapse` end to end on a tiny setting: metrics.jsonl, results, plot, resume, config errors."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_module

from promptinfo.collapse import CollapseConfig, run_collapse, validate_collapse_config
from promptinfo.collapse.training import lr_at
from promptinfo.errors import ConfigError
from promptinfo.metrics import collapse_values
from tests.datagen import make_benchmark_tree

TINY = {"data": {"name": "oxford_pets", "num_classes": 3, "image_size": 16},
        "classifier": {"width": 2}, "trainer": {"epochs": 3, "batch_size": 8, "lr": 0.05},
        "tracking": {"max_samples": 10}}
"""3 of 4 generated classes, 5 training and 3 test images each; a reservoir smaller than the 15 training images."""


def _config(tmp_path, data_root, **extra) -> dict:
    cfg = {**TINY, "out": str(tmp_path / "run"), **extra}
    cfg["data"] = {**TINY["data"], "root": str(data_root)}
    return cfg


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_benchmark_tree("oxford_pets", root, n_per_class=10, num_classes=4, split_file=True)
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("collapse")
    return run_collapse(_config(out, data_root)), out / "run"


def test_collapse_run_writes_metrics_results_and_plot(tiny_run):
    results, folder = tiny_run
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    keys = {"train_accuracy", "test_accuracy", "train_loss", "entropy_features", "entropy_head", "mi", "mir", "hdr",
            "erank_features", "nc1", "nc2_equiangular_means", "nc3", "nc4", "collapse_mir", "n_sample"}
    assert all(keys <= set(r) for r in rows) and {"lr", "train_objective"} <= set(rows[1])
    assert rows[1]["n_seen"] == 15 and rows[1]["n_sample"] == 10
    closed = collapse_values(3)
    assert results["collapse"] == closed and rows[-1]["collapse_mir"] == closed["mir"]
    assert results["final"] == rows[-1] and results["num_classes"] == 3
    assert results["distance_to_collapse"]["mir"] == pytest.approx(rows[-1]["mir"] - closed["mir"])
    assert (folder / "trajectories.png").stat().st_size > 0 and not (folder / "checkpoint.pt").exists()
    assert json.loads((folder / "results.json").read_text()) == results


def test_training_learns_and_the_learning_rate_drops_at_thirds(tiny_run):
    results, folder = tiny_run
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert [r["lr"] for r in rows[1:]] == pytest.approx([0.05, 0.005, 0.0005])
    t = validate_collapse_config({"trainer": {"epochs": 90, "lr": 0.01}}).trainer
    assert [lr_at(t, e) for e in (1, 30, 31, 60, 61, 90)] == pytest.approx([0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4])


@pytest.mark.slow
def test_finished_run_is_skipped_and_an_interrupted_one_resumes_to_the_same_numbers(tiny_run, tmp_path, data_root,
                                                                                     monkeypatch):
    results, _ = tiny_run
    from promptinfo.collapse import training

    calls = {"n": 0}
    original = training.train_epoch

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        run_collapse(_config(tmp_path, data_root))
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    monkeypatch.setattr(training, "train_epoch", original)
    resumed = run_collapse(_config(tmp_path, data_root))
    same = lambda r: {k: v for k, v in r.items() if k != "wall_time_s"}  # noqa: E731
    assert same(resumed) == same(results)
    assert run_collapse(_config(tmp_path, data_root))["wall_time_s"] == resumed["wall_time_s"]  # skipped
    with pytest.raises(ConfigError, match="another config"):
        run_collapse(_config(tmp_path, data_root, seed=5))


@pytest.mark.slow
def test_information_terms_and_label_smoothing_change_the_training(tiny_run, tmp_path, data_root):
    results, _ = tiny_run
    with_terms = run_collapse(_config(tmp_path / "a", data_root, loss={"mi_weight": 0.5, "gap_weight": 0.5},
                                      classifier={"width": 2, "bias": False}))
    assert with_terms["final"]["train_objective"] != results["final"]["train_objective"]
    smoothing = {**TINY["trainer"], "label_smoothing": 0.2, "epochs": 1}
    smoothed = run_collapse(_config(tmp_path / "b", data_root, trainer=smoothing))
    assert smoothed["epochs"] == 1 and smoothed["final"]["train_objective"] > 0


def test_config_defaults_live_in_the_dataclass_and_bad_values_fail_clearly():
    cfg = validate_collapse_config(CollapseConfig())
    assert (cfg.data.name, cfg.data.num_classes, cfg.classifier.arch, cfg.trainer.epochs) == ("procedural", 10, "cnn", 90)
    with pytest.raises(ConfigError, match="classifier.arch='vgg'"):
        validate_collapse_config({"classifier": {"arch": "vgg"}})
    with pytest.raises(ConfigError, match="not a registered benchmark"):
        validate_collapse_config({"data": {"name": "cifar"}})
    with pytest.raises(ConfigError, match="invalid promptinfo-collapse config"):
        validate_collapse_config({"trainer": {"epoch": 3}})
    with pytest.raises(ConfigError, match="label_smoothing"):
        validate_collapse_config({"trainer": {"label_smoothing": 1.5}})


def test_resnet18_classifier_has_512_features_and_an_optional_bias():
    from promptinfo.collapse.models import build_classifier

    net = build_classifier("resnet18", 10, width=16, bias=False, image_size=32)
    features, logits = net(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, 512) and logits.shape == (2, 10) and net.head.bias is None
    with pytest.raises(ValueError, match="cannot hold a simplex"):
        build_classifier("cnn", 10, width=1, bias=True, image_size=32)


def test_command_composes_its_dataclass_defaults_and_stops_on_bad_values_with_status_2(tmp_path, data_root):
    from promptinfo.cli import collapse as cli  # registers the schema

    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        cfg = compose("collapse", overrides=["trainer.epochs=7", "tracking.split=val"])
        with pytest.raises(Exception, match="Could not override 'trainer.epoch'"):
            compose("collapse", overrides=["trainer.epoch=7"])
    assert cfg.trainer.epochs == 7 and cfg.trainer.lr == CollapseConfig().trainer.lr
    with pytest.raises(SystemExit) as exit_info:
        cli.run_command(cli._collapse_run, cfg)
    assert exit_info.value.code == 2
