"""The command line runs what the papers define: every row of `published_settings.csv` (the authors' settings,
each with the file it comes from) against the config `promptinfo-train` composes and the method the engine
builds from it (so run-time fill-ins count: epochs from the schedule tables, the CMA lambda, the context length
of an initialisation phrase, the dataset templates of the frozen text side)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import open_clip
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, ListConfig, OmegaConf

from promptinfo.backbones import create_backbone
from promptinfo.data import get_benchmark, list_datasets
from promptinfo.data.loading import BenchmarkData, benchmark_templates
from promptinfo.engine import validate_train_config
from promptinfo.engine.build import build_method, method_from_config
from promptinfo.engine.schema import PROTOCOLS
from promptinfo.methods import list_methods
from promptinfo.methods.zeroshot import zeroshot_classifier

TABLE = Path(__file__).with_name("published_settings.csv")
SOURCE_REPOS = ("KaiyangZhou/CoOp:", "htyao89/KgCoOp:", "muzairkhattak/multimodal-prompt-learning:",
                "muzairkhattak/PromptSRC:", "Song et al., arXiv 2409.16767")
SOURCE_DATASET = {"cross_dataset": "imagenet", "domain_generalization": "imagenet"}
"""'*' datasets: the protocol's training set (ImageNet for transfer), else a representative benchmark."""
CLASSNAMES = ["golden retriever", "tabby cat", "sunflower"]
BUILT = {
    "method.n_ctx": lambda m: m.prompt.ctx.shape[0],
    "method.n_ctx_text": lambda m: m.prompt.ctx.shape[0],
    "method.n_ctx_vision": lambda m: m.prompt.vision_ctx.shape[0],
    "method.depth": lambda m: 1 + len(m.prompt.compound_prompts_text),
    "method.depth_text": lambda m: 1 + len(m.prompt.deep_text),
    "method.depth_vision": lambda m: 1 + len(m.prompt.deep_vision),
}
"""Keys read from the built method (what it actually learns), not from the config."""
FROZEN_TEXT = {"method.templates": "classifier", "method.template": "frozen_text"}
"""Template keys, checked by the frozen text features the method built: equal to those of the published
templates (and different from those of CLIP's default template where the two differ)."""


@dataclass(frozen=True)
class Case:
    method: str
    protocol: str
    dataset: str
    shots: int | None
    overrides: tuple[str, ...]

    def command_line(self) -> list[str]:
        shots = [] if self.shots is None else [f"protocol.shots={self.shots}"]
        return [f"method={self.method}", f"protocol={self.protocol}", f"dataset={self.dataset}", *shots,
                *self.overrides]


def read_table() -> list[dict]:
    lines = [line for line in TABLE.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def value_of(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cases_of(row: dict) -> list[Case]:
    cases = []
    for protocol in row["protocols"].split():
        datasets = [SOURCE_DATASET.get(protocol, "oxford_pets")] if row["datasets"] == "*" else row["datasets"].split()
        shots = [None] if row["shots"] == "*" else [int(s) for s in row["shots"].split()]
        cases += [Case(row["method"], protocol, d, s, tuple(row["overrides"].split())) for d in datasets for s in shots]
    return cases


def rows_by_case() -> dict[Case, list[dict]]:
    grouped = defaultdict(list)
    for row in read_table():
        for case in cases_of(row):
            grouped[case].append(row)
    return grouped


@pytest.fixture(scope="module")
def deep_backbone(tmp_path_factory):
    """A tiny random CLIP with 12 layers in each tower, deep enough for every published prompt depth."""
    folder = tmp_path_factory.mktemp("model_configs")
    (folder / "pi-test-deep12.json").write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 12, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 12},
    }))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    return create_backbone("pi-test-deep12")


def built_as_the_engine_does(cfg, backbone):
    """The method `train` builds for this config, on the dataset's real templates (a few stand-in classes)."""
    data = BenchmarkData(key=cfg.dataset.name, root=Path("."), image_root=Path("."), train=[], val=[], test=[],
                         classnames=CLASSNAMES, split_source="none",
                         **benchmark_templates(get_benchmark(cfg.dataset.name)))
    name, options = method_from_config(cfg.method)
    return build_method(name, options, backbone, data, cfg.seed, torch.device("cpu"))


def frozen_text_is(method, key: str, expected) -> bool:
    """Whether the method's frozen text features are those of the `expected` templates."""
    templates = [expected] if isinstance(expected, str) else list(expected)
    features = getattr(method, FROZEN_TEXT[key])
    return torch.equal(features, zeroshot_classifier(method.backbone, method.classnames, templates))


def mismatches(case: Case, rows: list[dict], backbone) -> list[str]:
    """Every row of `case` whose published value is not what the command line composes and the engine builds."""
    cfg = validate_train_config(compose("train", overrides=case.command_line()))
    method = built_as_the_engine_does(cfg, backbone)
    found_wrong = []
    for row in rows:
        key, expected = row["key"], value_of(row["value"])
        if key in FROZEN_TEXT:
            if not frozen_text_is(method, key, expected):
                found_wrong.append(f"{case.command_line()} {key}: not {expected!r} ({row['source']})")
            continue
        found = BUILT[key](method) if key in BUILT else OmegaConf.select(cfg, key)
        found = OmegaConf.to_container(found) if isinstance(found, (DictConfig, ListConfig)) else found
        if found != expected:
            found_wrong.append(f"{case.command_line()} {key}: {found!r}, published {expected!r} ({row['source']})")
    return found_wrong


def test_the_table_is_well_formed_and_every_value_has_a_source():
    rows = read_table()
    assert len(rows) > 200
    for row in rows:
        assert row["method"] in list_methods(), row
        assert set(row["protocols"].split()) <= set(PROTOCOLS), row
        assert row["datasets"] == "*" or set(row["datasets"].split()) <= set(list_datasets()), row
        assert row["source"].startswith(SOURCE_REPOS), row
    keys = {(r["method"], r["key"]) for r in rows}
    for method in ("coop", "cocoop", "kgcoop", "maple", "ivlp", "vpt", "promptsrc"):
        for key in ("trainer.optimizer", "trainer.lr", "trainer.epochs", "trainer.batch_size", "trainer.warmup_epochs",
                    "trainer.scheduler", "trainer.weight_decay", "trainer.crop_scale"):
            assert (method, key) in keys, (method, key)


@pytest.mark.slow
def test_the_command_line_composes_every_published_setting(deep_backbone):
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        wrong = [line for case, rows in rows_by_case().items() for line in mismatches(case, rows, deep_backbone)]
    assert not wrong, "\n".join(wrong)


def test_a_setting_that_differs_from_the_table_is_reported(deep_backbone):
    """The comparison can fail: a changed learning rate, context length or template is reported."""
    def row(method, protocol, key, value, datasets="*", overrides=""):
        return {"method": method, "protocols": protocol, "datasets": datasets, "shots": "*", "overrides": overrides,
                "key": key, "value": value, "source": "test"}

    claims = [row("maple", "base2novel", "trainer.lr", "0.0035", overrides="trainer.lr=0.01"),
              row("coop", "cross_dataset", "method.n_ctx", "16"),  # the phrase "a photo of a" gives 4 tokens
              row("kgcoop", "base2novel", "method.template", "{} texture.", datasets="dtd"),  # CoOp's, not KgCoOp's
              row("zeroshot", "zeroshot", "method.templates", "a photo of a {}.", datasets="oxford_pets")]
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        for claim in claims:
            (case,) = cases_of(claim)
            assert len(mismatches(case, [claim], deep_backbone)) == 1, claim
