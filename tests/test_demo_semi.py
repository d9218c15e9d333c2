"""The semi-supervised comparison on the demo world (`promptinfo-demo --semi`, `experiment=demo_semi`).

CoOp with 2 labelled shots per procedural base class alone, then with the rest of the base classes'
train images pseudo-labelled by FPL (the 16 images per class zero-shot CLIP is most sure of, weighed
against the labelled set as Menghini et al. do), then with the information terms as well.

Pseudo-labelling cannot raise accuracy on the small world (the CI suite's), and the tests here pin why:
CoOp trained on every train image with its true label, the ceiling of any pseudo-labelling, is no
better there than 2-shot CoOp; and with 16 train images per class, 2 shots leave 14 unlabelled ones, so
K = 16 keeps every image (nothing to select) and zero-shot CLIP labels them worse (59% right) than 2-shot
CoOp classifies the test set (64%). On the default world, whose CLIP takes minutes to pretrain, FPL
raises CoOp a little on average over seeds (`test_fpl_raises_coop_on_the_default_world`, which runs
where `promptinfo-demo` has cached that CLIP).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from promptinfo.cli import demo as demo_cli
from promptinfo.demo.weights import default_cache_dir, demo_checkpoint_path
from promptinfo.engine.training import train
from tests.conftest import session_temp

pytestmark = pytest.mark.slow

SMALL_CLASSES, SMALL_UNLABELLED_PER_CLASS, SHOTS = 24, 14, 2
"""The small world's base classes, their unlabelled images (16 train images - 2 shots) and the shots."""


def _results(runs: Path, label: str, protocol: str) -> dict:
    return json.loads((runs / "demo_semi" / "procedural_small" / label / protocol / "shots2_seed1" / "results.json")
                      .read_text())


@pytest.fixture(scope="module")
def semi_job(tmp_path_factory, demo_cache):
    root = session_temp(tmp_path_factory) / "demo_semi_job"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTINFO_HOME", str(demo_cache))
        mp.setenv("PROMPTINFO_CACHE", str(root / "cache"))
        with contextlib.redirect_stdout(out):
            status = demo_cli.main(["--semi", "--variant", "small", "--runs-root", str(root / "runs"),
                                    "--data-root", str(root / "data")])
    torch.set_num_threads(threads)
    return status, out.getvalue(), root / "runs"


def test_semi_demo_prints_every_run_and_the_pseudo_label_table(semi_job):
    status, stdout, runs = semi_job
    assert status == 0
    for label in ("zeroshot", "coop", "coop+fpl", "coop+fpl+info"):
        assert f"    {label}: test " in stdout
    assert "Semi-supervised, unsupervised and transductive runs" in stdout and "Pseudo-label acc." in stdout
    assert (runs / "demo_semi" / "report" / "pseudo_labels.csv").is_file()


def test_on_the_small_world_fpl_labels_every_image_worse_than_coop_classifies(semi_job):
    _, _, runs = semi_job
    labelled_only = _results(runs, "coop", "few_shot")["evaluations"]["test"]["accuracy"]
    zero_shot = _results(runs, "zeroshot", "zeroshot")["evaluations"]["test"]["accuracy"]
    pool = SMALL_CLASSES * SMALL_UNLABELLED_PER_CLASS
    for label in ("coop+fpl", "coop+fpl+info"):
        results = _results(runs, label, "semi_supervised")
        pseudo = results["pseudo_labels"]
        assert pseudo["labelled"] == pseudo["pool"] == pool  # K = 16 capped at the 14 unlabelled per class
        assert 100 / SMALL_CLASSES < pseudo["accuracy"] < labelled_only  # above chance, below 2-shot CoOp
        assert results["evaluations"]["test"]["accuracy"] > zero_shot, label
        folder = runs / "demo_semi" / "procedural_small" / label / "semi_supervised" / "shots2_seed1"
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        weights = {row["weight_u/ce"] for row in rows if "weight_u/ce" in row}
        assert weights == {SMALL_CLASSES * SHOTS / pool}  # FPL's balance: the 48 labelled images outweigh 336


def _train(overrides: list[str]) -> dict:
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo_semi", *overrides])
    return train(cfg)


def test_on_the_small_world_true_labels_for_every_image_do_not_raise_coop(semi_job, demo_cache, tmp_path):
    """The ceiling of pseudo-labelling: CoOp on all 16 train images per class with their true labels.
    Measured at seeds 1, 2, 3: 62.24, 66.15, 62.24 against 2-shot CoOp's 64.06, 63.02, 61.46."""
    _, _, runs = semi_job
    labelled_only = _results(runs, "coop", "few_shot")["evaluations"]["test"]["accuracy"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTINFO_HOME", str(demo_cache))
        mp.setenv("PROMPTINFO_CACHE", str(tmp_path / "cache"))
        every_label = _train(["model=demo_small", "dataset=procedural_small", "protocol=few_shot",
                              "protocol.shots=16", f"dataset.root={tmp_path / 'data'}", f"runs_root={tmp_path / 'runs'}"])
    torch.set_num_threads(threads)
    assert every_label["shots_effective"] == {"min": 16, "max": 16}
    assert every_label["evaluations"]["test"]["accuracy"] < labelled_only + 1.0


# ----------------------------------------------------------------- pseudo-label accuracy, counted directly


@pytest.fixture(scope="module")
def kept_fpl_run(tmp_path_factory, demo_cache):
    """FPL on the small world with its resume checkpoint kept: the pool's pseudo-labels, as trained on."""
    root = tmp_path_factory.mktemp("kept_fpl")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTINFO_HOME", str(demo_cache))
        mp.setenv("PROMPTINFO_CACHE", str(root / "cache"))
        results = _train(["model=demo_small", "dataset=procedural_small", f"dataset.root={root / 'data'}",
                          f"runs_root={root / 'runs'}", "trainer.keep_checkpoint=true", "label=coop+fpl"])
    torch.set_num_threads(threads)
    return results, root


def test_reported_pseudo_label_accuracy_matches_a_count_from_the_image_folders(kept_fpl_run):
    from promptinfo.engine.protocols import plan_run

    results, root = kept_fpl_run
    folder = root / "runs" / "demo_semi" / "procedural_small" / "coop+fpl" / "semi_supervised" / "shots2_seed1"
    labels = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)["extra"]["pseudo"]["labels"]
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo_semi", "dataset=procedural_small"])
    plan = plan_run("procedural_small", str(root / "data"), cfg.protocol, 1)
    classnames = [name.replace(" ", "_") for name in plan.train.classnames]
    # the truth from where each image lies (images/<colour>_<shape>/...), not from the engine's hidden labels
    truth = torch.tensor([classnames.index(Path(item.path).parent.name) for item in plan.unlabelled.items])
    in_pool = labels >= 0
    right = int((labels[in_pool] == truth[in_pool]).sum())
    pseudo = results["pseudo_labels"]
    assert int(in_pool.sum()) == pseudo["pool"] == SMALL_CLASSES * SMALL_UNLABELLED_PER_CLASS
    assert pseudo["pool_accuracy"] == pytest.approx(100 * right / int(in_pool.sum()))
    assert pseudo["accuracy"] == pytest.approx(pseudo["pool_accuracy"])  # every pool image is drawn each epoch
    assert right > 3 * int(in_pool.sum()) / SMALL_CLASSES  # far above chance (1/24)


# ----------------------------------------------------------------- the gain, on the default world
DEFAULT_WEIGHTS = demo_checkpoint_path("default", default_cache_dir())
GAIN_SEEDS = (1, 2, 3, 4, 5)
GAIN_MARGIN = 0.5
"""Points by which FPL must raise 2-shot CoOp on average over GAIN_SEEDS. Measured (test accuracy on the 768
images of the 24 base classes): CoOp 63.80, 63.93, 64.71, 65.49, 64.32; CoOp + FPL 64.97, 66.41, 67.19, 65.10,
64.71; gains +1.17, +2.48, +2.48, -0.39, +0.39, mean +1.23. Not a margin far above seed noise: the gain is small."""


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(),
                    reason=f"needs the default demo CLIP at {DEFAULT_WEIGHTS}: run promptinfo-demo once (it pretrains "
                           "and caches it, about 5 minutes on one CPU core)")
def test_fpl_raises_coop_on_the_default_world(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    gains = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTINFO_HOME", str(DEFAULT_WEIGHTS.parent.parent))
        mp.setenv("PROMPTINFO_CACHE", str(tmp_path / "cache"))
        for seed in GAIN_SEEDS:
            common = [f"seed={seed}", f"dataset.root={tmp_path / 'data'}", f"runs_root={tmp_path / 'runs'}"]
            coop = _train([*common, "protocol=few_shot", "label=coop"])
            fpl = _train([*common, "label=coop+fpl"])
            assert fpl["shots"] == coop["shots"] == SHOTS and fpl["epochs"] == coop["epochs"]
            assert fpl["pseudo_labels"]["accuracy"] > coop["evaluations"]["test"]["accuracy"]  # they add information
            gains.append(fpl["evaluations"]["test"]["accuracy"] - coop["evaluations"]["test"]["accuracy"])
    torch.set_num_threads(threads)
    assert sum(gains) / len(gains) > GAIN_MARGIN, gains
