"""Interpolation between two prompt checkpoints: its ends are the checkpoints' own evaluations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from promptinfo.cli import interpolate as cli
from promptinfo.engine import evaluate_checkpoint, train
from promptinfo.engine.interpolate import barriers, blend, coefficients, interpolate_checkpoints
from promptinfo.errors import CheckpointMismatchError, ConfigError
from tests.datagen import make_benchmark_tree


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two 1-epoch CoOp prompts (seeds 1 and 2) and a CoOp prompt of another context length."""
    root = tmp_path_factory.mktemp("lmc")
    make_benchmark_tree("oxford_pets", root / "data", n_per_class=10, num_classes=4, split_file=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    common = ["debug=tiny", f"dataset.root={root / 'data'}", f"runs_root={root / 'runs'}", "method=coop",
              f"feature_cache={root / 'features'}", "trainer.info_subset=8", "trainer.batch_size=4"]
    paths = []
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        for extra in (["seed=1"], ["seed=2"], ["seed=1", "method.n_ctx=2", "experiment_name=other"]):
            cfg = compose("train", overrides=[*common, *extra])
            train(cfg)
            paths.append(Path(OmegaConf.to_container(cfg, resolve=True)["run_dir"]) / "prompt.safetensors")
    yield root, paths
    torch.set_num_threads(threads)


def _eval_overrides(root: Path) -> list[str]:
    return [f"dataset.root={root / 'data'}", f"feature_cache={root / 'features'}", "trainer.device=cpu",
            "trainer.num_workers=0", "trainer.persistent_workers=false", "trainer.info_subset=8"]


def test_the_ends_of_the_line_equal_evaluating_each_checkpoint(setup, tmp_path):
    root, (a, b, _) = setup
    cfg = cli.eval_config(str(a), str(b), _eval_overrides(root))
    assert cfg.dataset.name == "oxford_pets"  # the dataset A was trained on
    rows = interpolate_checkpoints(cfg, str(b), points=3)
    assert [r["t"] for r in rows] == [0.0, 0.5, 1.0]
    for row, path in ((rows[0], a), (rows[-1], b)):
        single = evaluate_checkpoint(cli.eval_config(str(path), str(path), [*_eval_overrides(root),
                                                                             f"output={tmp_path / 'e.json'}"]))
        assert {k: row[k] for k in ("correct", "total", "accuracy")} == {
            k: single["evaluations"]["test"][k] for k in ("correct", "total", "accuracy")}
        assert {k: row[k] for k in single["metrics"]["test"]} == single["metrics"]["test"]
    assert rows[0]["loss_excess"] == rows[-1]["loss_excess"] == 0.0
    assert rows[1]["mir"] != rows[0]["mir"]  # the midpoint is a third prompt
    summary = barriers(rows)
    assert summary["loss_barrier"] == max(0.0, rows[1]["loss_excess"])


def test_blend_and_coefficients():
    a, b = {"ctx": torch.zeros(2, 3)}, {"ctx": torch.full((2, 3), 4.0)}
    assert blend(a, b, 0.0)["ctx"] is a["ctx"] and blend(a, b, 1.0)["ctx"] is b["ctx"]
    torch.testing.assert_close(blend(a, b, 0.25)["ctx"], torch.ones(2, 3))
    assert coefficients(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ConfigError, match="points >= 2"):
        coefficients(1)


def test_command_writes_table_json_and_plot_and_rejects_mismatched_checkpoints(setup, tmp_path, capsys):
    root, (a, b, other) = setup
    out = tmp_path / "out"
    assert cli.main([str(a), str(b), *_eval_overrides(root), "--points", "2", "--out", str(out)]) == 0
    report = json.loads((out / "interpolation.json").read_text())
    assert [r["t"] for r in report["rows"]] == [0.0, 1.0] and report["loss_barrier"] == 0.0
    assert (out / "interpolation.csv").is_file() and (out / "interpolation.png").stat().st_size > 0
    assert "Linear interpolation between two prompts" in capsys.readouterr().out
    with pytest.raises(CheckpointMismatchError, match=r"differ in \['config'\]"):
        interpolate_checkpoints(cli.eval_config(str(a), str(other), _eval_overrides(root)), str(other), 3)
    assert cli.main([str(a), str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 2
