"""`promptinfo-demo` on the small variant: the table it prints, the figures it writes, and what training does.

One run of `promptinfo-demo --variant small --epochs 20` in a temporary folder (pretraining the small demo
CLIP, rendering the small procedural benchmark, zero-shot, CoOp, CoOp + CMA and MaPLe, the report) feeds
every test here (the `demo_job` fixture of conftest.py, shared with the README test), so the file costs one
short demo job (once per session, also under pytest-xdist).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from PIL import Image

from promptinfo.backbones import create_backbone
from promptinfo.cli import demo as demo_cli
from promptinfo.cli._argparse import console_logging
from promptinfo.cli._hydra import QuietOpenClip
from promptinfo.data import ImageDataset, build_transform
from promptinfo.engine.data import load_split
from promptinfo.engine.validate import validate_train_config
from promptinfo.losses import cma_loss
from promptinfo.methods import create_method, load_prompt
from tests.conftest import DEMO_EPOCHS as EPOCHS
from tests.conftest import run_demo

LABELS = ("zeroshot", "coop", "coop+cma", "maple")
DISPLAY = ("zero-shot", "CoOp", "CoOp + CMA", "MaPLe")  # as the README's table names them
TRAINED = ("coop", "coop+cma", "maple")
INFO_KEYS = ("info/entropy_image", "info/entropy_text", "info/mi", "info/mir", "info/hdr")
MODEL_CONFIGS = Path(__file__).parents[1] / "promptinfo" / "backbones" / "model_configs"


@pytest.fixture(scope="module")
def job(demo_job):
    return demo_job


def table_rows(text: str) -> dict[str, tuple[str, str, str]]:
    """Method -> (Base, Novel, HM) cells of the printed Markdown table, in its order."""
    lines = text.splitlines()
    start = lines.index("| Method | Base | Novel | HM |") + 2
    rows = {}
    for line in itertools.takewhile(lambda line: line.startswith("| "), lines[start:]):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = tuple(cells[1:])
    return rows


# --------------------------------------------------------------------------------------------- the job
@pytest.mark.slow
def test_demo_prints_the_base_novel_hm_table_of_the_four_methods(job):
    assert job.status == 0, job.stdout
    starts = [re.search(rf"^\[{i}/4\] {re.escape(label)}: promptinfo-train ", job.stdout, re.MULTILINE)
              for i, label in enumerate(LABELS, start=1)]
    assert all(starts) and [m.start() for m in starts] == sorted(m.start() for m in starts)
    assert "### Base-to-novel generalisation on procedural_small" in job.stdout
    rows = table_rows(job.stdout)
    assert list(rows) == list(DISPLAY)  # one row per method (no Average rows for the single dataset), in order
    for label, name in zip(LABELS, DISPLAY):
        results = job.results(label)
        assert (results["method"], results["dataset"], results["backbone"]) == (label, "procedural_small", "pi-demo-small")
        base, novel = results["evaluations"]["base"], results["evaluations"]["novel"]
        assert base["total"] == novel["total"] == 24 * 16  # 24 base and 24 novel classes, 16 test images each
        assert rows[name] == (f"{base['accuracy']:.2f}", f"{novel['accuracy']:.2f}", f"{results['harmonic_mean']:.2f}")
        assert results["epochs"] == (0 if label == "zeroshot" else EPOCHS)


@pytest.mark.slow
def test_demo_writes_the_trajectory_figures(job):
    report = job.runs / "report"
    per_run = sorted((report / "trajectories").glob("*.png"))
    assert len(per_run) == len(TRAINED)  # the zero-shot run has one point per metric: the table gives it
    combined = report / demo_cli.COMPARISON_FIGURE
    assert f"in one figure: {combined}" in job.stdout
    for path in [*per_run, combined]:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (1200, 840)  # 10 x 7 inches at 120 dpi
    assert (report / "base2novel.csv").is_file() and (report / "base2novel.md").is_file()


@pytest.mark.slow
def test_the_console_gets_one_line_per_run_and_train_log_every_engine_line(job):
    for label in TRAINED:
        log = (job.folder(label) / "train.log").read_text()
        assert f"INFO promptinfo.engine: epoch {EPOCHS}/{EPOCHS} loss " in log
        assert "INFO promptinfo.engine: base: " in log and "INFO promptinfo.engine: novel: " in log
    assert logging.getLogger("promptinfo.engine").level == logging.NOTSET  # the demo left the level alone
    quiet = demo_cli.QuietEngine()
    record = partial(logging.LogRecord, pathname=__file__, lineno=1, args=(), exc_info=None)
    assert not quiet.filter(record("promptinfo.engine", logging.INFO, msg="epoch 1/20 loss 3.2"))
    assert quiet.filter(record("promptinfo.engine", logging.WARNING, msg="trainer.train_views is ignored"))
    assert quiet.filter(record("promptinfo.demo", logging.INFO, msg="Pretrained pi-demo-small"))


def test_the_demo_console_setup_is_undone_when_it_returns(caplog):
    engine, package = logging.getLogger("promptinfo.engine"), logging.getLogger("promptinfo")
    handlers = logging.getLogger().handlers  # pytest's capture handlers among them, shared by later tests
    filters, level = [list(h.filters) for h in handlers], package.level
    with console_logging(QuietOpenClip(), demo_cli.QuietEngine()):  # as promptinfo-demo's main() sets it up
        assert all(any(isinstance(f, demo_cli.QuietEngine) for f in h.filters) for h in handlers)
        engine.info("epoch 1/2 loss 3.2")  # dropped by every console handler, caplog's included
    assert [list(h.filters) for h in handlers] == filters and package.level == level
    with caplog.at_level("INFO", logger="promptinfo.engine"):
        engine.info("epoch 2/2 loss 3.1")
    assert [r.getMessage() for r in caplog.records] == ["epoch 2/2 loss 3.1"]


@pytest.mark.slow
def test_rerun_reuses_the_finished_runs_and_prints_the_same_table(job):
    stamps = {label: (job.folder(label) / "results.json").stat().st_mtime_ns for label in LABELS}
    status, stdout = run_demo(job.root)
    assert status == 0
    assert table_rows(stdout) == table_rows(job.stdout)
    assert {label: (job.folder(label) / "results.json").stat().st_mtime_ns for label in LABELS} == stamps
    assert "Pretraining" not in stdout


# --------------------------------------------------------------------------------------------- trajectories
def info_part(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith("info/")}


@pytest.mark.slow
def test_runs_record_information_trajectories_from_the_zero_shot_point(job):
    zero_shot = job.metrics("zeroshot")
    assert [row["epoch"] for row in zero_shot] == [0]
    for label in TRAINED:
        rows = job.metrics(label)
        assert [row["epoch"] for row in rows] == list(range(EPOCHS + 1))
        for row in rows:
            assert all(math.isfinite(row[key]) for key in INFO_KEYS)
            assert 0.0 <= row["info/mir"] <= 1.0 and 0.0 <= row["info/hdr"] <= 1.0
    for label in ("coop", "coop+cma"):  # context initialised from "a photo of a": the zero-shot classifier
        rows = job.metrics(label)
        assert info_part(rows[0]) == info_part(zero_shot[0])
        assert {row["info/entropy_image"] for row in rows} == {zero_shot[0]["info/entropy_image"]}  # frozen image side
        assert len({row["info/entropy_text"] for row in rows}) > 1
    assert len({row["info/entropy_image"] for row in job.metrics("maple")}) > 1  # vision prompts move Z


# --------------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_prompt_learning_lowers_the_training_loss_from_the_zero_shot_start(job):
    for label in TRAINED:
        rows = job.metrics(label)
        start = rows[1]["loss/ce"]  # epoch 1 is the warm-up at lr 1e-5: the zero-shot prompts' loss
        assert min(row["loss/ce"] for row in rows[-5:]) < 0.85 * start, label


@pytest.mark.slow
def test_prompt_learning_raises_base_accuracy_over_zero_shot(job):
    """Half of the base classes are new to the demo CLIP: its features separate them better than its zero-shot
    classifier does, and prompt learning on 16 shots closes part of that gap."""
    zero_shot = job.results("zeroshot")["evaluations"]["base"]["accuracy"]
    assert job.results("coop")["evaluations"]["base"]["accuracy"] >= zero_shot + 5.0


def per_class_entropy(folder: Path, batch_size: int = 32) -> float:
    """CMA (per-class normalised matrix entropy of image features with their class text feature) of the run's
    learned prompts, averaged over fixed batches of the run's training images under the test transform."""
    cfg = OmegaConf.load(folder / "config.yaml")
    backbone = create_backbone(cfg.model.name, cfg.model.pretrained)
    data = load_split(cfg.dataset.name, cfg.dataset.root, cfg.protocol.shots, cfg.seed, "base")
    options = {k: v for k, v in OmegaConf.to_container(cfg.method).items() if k != "name"}
    method = create_method(cfg.method.name, backbone, data.classnames, dataset_templates=data.templates, **options)
    load_prompt(method, folder / "prompt.safetensors")
    images = ImageDataset(data.train, build_transform(backbone.preprocess_cfg, train=False))
    pixels = torch.stack([images[i][0] for i in range(len(images))])
    labels = torch.tensor([item.label for item in data.train])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z, w = method.eval().encode_images(pixels), method.text_features()  # [n, d], [C, d]
        return float(torch.stack([cma_loss(z[b], w, labels[b]) for b in order.split(batch_size)]).mean())


@pytest.mark.slow
def test_cma_lowers_the_per_class_matrix_entropy_of_image_and_text_features(job):
    with_cma, without = per_class_entropy(job.folder("coop+cma")), per_class_entropy(job.folder("coop"))
    assert with_cma < without - 0.01  # same frozen image features: only the learned text features differ
    logged = [row["loss/cma"] for row in job.metrics("coop+cma")[1:]]
    assert min(logged[-5:]) < logged[0] - 0.02  # and the training term itself falls from the zero-shot start


# --------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("variant", sorted(demo_cli.VARIANTS))
def test_every_demo_run_composes_to_a_valid_config(variant, tmp_path):
    args = demo_cli.build_parser().parse_args(["--variant", variant, "--runs-root", str(tmp_path)])
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        configs = [validate_train_config(compose("train", overrides=demo_cli.run_overrides(run, args)))
                   for run in demo_cli.DEMO_RUNS]
    assert [cfg.label or cfg.method.name for cfg in configs] == list(LABELS)
    assert {cfg.run_dir for cfg in configs} == {str(tmp_path / "demo" / configs[0].dataset.name / label / "base2novel"
                                                    / "shots16_seed1") for label in LABELS}
    assert configs[2].loss.cma.enabled and not configs[1].loss.cma.enabled
    arch = json.loads((MODEL_CONFIGS / f"{configs[0].model.name}.json").read_text())
    assert demo_cli.MAPLE_DEPTH <= min(arch["text_cfg"]["layers"], arch["vision_cfg"]["layers"])


def test_negative_epochs_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        demo_cli.main(["--epochs", "-1"])
    assert info.value.code == 2 and "--epochs" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- evaluation
@pytest.mark.slow
@pytest.mark.parametrize("label", ["coop", "maple"])
def test_a_demo_checkpoint_evaluates_from_its_weights_tag(job, label, demo_cache, monkeypatch, tmp_path):
    """The checkpoint records the demo CLIP by its tag, so `promptinfo-eval checkpoint=... model=demo_small` rebuilds
    it (no hidden weights file to pass) and gives the run's own novel accuracy."""
    from promptinfo.engine import evaluate_checkpoint
    from promptinfo.methods import read_prompt_checkpoint

    checkpoint = job.folder(label) / "prompt.safetensors"
    meta = read_prompt_checkpoint(checkpoint)[1]
    assert (meta["backbone"], meta["weights"]) == ("pi-demo-small", "procedural")
    assert meta["weights_digest"].startswith("file-")  # the content under the tag, for the feature cache
    monkeypatch.setenv("PROMPTINFO_HOME", str(demo_cache))
    monkeypatch.setenv("PROMPTINFO_CACHE", str(job.root / "cache"))
    overrides = [f"checkpoint={checkpoint}", "model=demo_small", "dataset=procedural_small", "trainer=cpu",
                 f"dataset.root={job.root / 'data'}", "protocol.subsample=novel", f"output={tmp_path / 'eval.json'}"]
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        results = evaluate_checkpoint(compose("eval", overrides=overrides))
    assert results["weights"] == "procedural"
    assert results["evaluations"]["test"]["correct"] == job.results(label)["evaluations"]["novel"]["correct"]
