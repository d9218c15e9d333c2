"""Typed config of `promptinfo-collapse` (supervised training into neural collapse); the one holder of its defaults.

`configs/collapse.yaml` adds only hydra's own settings; every option and its default is a field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional  # OmegaConf's structured configs read this form

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from promptinfo.engine.schema import INFO_LEVELS, InfoLossConfig
from promptinfo.errors import ConfigError

ARCHS = ("cnn", "resnet18")
TRACKED_SPLITS = ("train", "test")


@dataclass
class CollapseDataConfig:
    """The benchmark (any registered one; the procedural world renders itself offline).

    Attributes:
        name: registry key (`promptinfo.data.list_datasets()`).
        root: folder holding the benchmark folders.
        num_classes: train on the first this many classes only (null: all). 10, as CIFAR-10 in the paper, keeps
            the default run to minutes on a laptop CPU; null trains on all 48 procedural classes.
        image_size: images are resized to this square size (the procedural world is rendered at 32).
    """

    name: str = "procedural"
    root: str = "${oc.env:PROMPTINFO_DATA,data}"
    num_classes: Optional[int] = 10
    image_size: int = 32


@dataclass
class ClassifierConfig:
    """The network trained from scratch: a feature extractor and a linear head on its features.

    Attributes:
        arch: `cnn` (three conv blocks of `width`, 2x and 4x channels, global average pooling: 4 * width
            features) or `resnet18` (torchvision's, with a 3x3 stem and no max-pool for small images; 512 features).
        width: channels of the cnn's first block.
        bias: whether the linear head has a bias.
    """

    arch: str = "cnn"
    width: int = 16
    bias: bool = True


@dataclass
class CollapseTrainerConfig:
    """SGD with momentum; the learning rate drops 10x at 1/3 and 2/3 of the epochs (Papyan et al. 2020).

    Attributes:
        epochs: training epochs (the default reaches 100% training accuracy well before the end on the
            procedural world, so the last ones are the terminal phase).
        label_smoothing: cross-entropy label smoothing (0: plain cross-entropy).
        device: auto (cuda when available), cpu, cuda, cuda:N.
        eval_batch_size: images per forward pass when tracking and evaluating.
        num_threads: torch's CPU threads for the run (null: leave torch's setting). One is fastest for the
            small cnn: its layers are too small to share, and extra threads only spin, all the more on a busy CPU.
    """

    epochs: int = 90
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    device: str = "cpu"
    eval_batch_size: int = 512
    num_threads: Optional[int] = 1


@dataclass
class TrackingConfig:
    """What `promptinfo.metrics.CollapseTracker` sees at the end of every epoch (model in eval mode).

    Attributes:
        split: `train` (where neural collapse is defined) or `test`.
        max_samples: reservoir size for the sample-level entropies, MI, MIR, HDR and NC4.
        seed: seed of the reservoir (the same images every epoch).
        center: centre the features by their global mean before the information metrics.
    """

    split: str = "train"
    max_samples: int = 768
    seed: int = 0
    center: bool = True


@dataclass
class CollapseConfig:
    """Root of `promptinfo-collapse`'s config.

    Attributes:
        loss: the information terms of `promptinfo.losses` (Song et al., arXiv 2406.03999) between the features
            and the head rows of their labels, added to cross-entropy: `mi_weight` weighs 1 - MIR and
            `gap_weight` HDR (-MI and |H(Z) - H(W_y)| with `use_mir` / `use_hdr` false); 0: cross-entropy only.
        out: run folder (metrics.jsonl, results.json, trajectories.png, checkpoint.pt while running).
        seed: seeds the initial weights and the data order.
        overwrite: redo a finished run.
        deterministic: deterministic kernels (same config and seed -> same numbers on a machine).
    """

    data: CollapseDataConfig = field(default_factory=CollapseDataConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    trainer: CollapseTrainerConfig = field(default_factory=CollapseTrainerConfig)
    loss: InfoLossConfig = field(default_factory=lambda: InfoLossConfig(use_mir=True, use_hdr=True))
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0
    out: str = "runs/collapse/${data.name}/${classifier.arch}_seed${seed}"
    overwrite: bool = False
    deterministic: bool = True


def validate_collapse_config(cfg: Any) -> DictConfig:
    """`cfg` (a `CollapseConfig`, dict or DictConfig) merged onto `CollapseConfig`, checked and resolved.

    Raises:
        ConfigError: unknown key, wrong type or invalid value; the message names the key.
    """
    try:
        typed = OmegaConf.merge(OmegaConf.structured(CollapseConfig), cfg)
        OmegaConf.resolve(typed)
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid promptinfo-collapse config: {str(err).splitlines()[0]}") from None
    checks = [
        ("classifier.arch", typed.classifier.arch in ARCHS, f"one of {ARCHS}"),
        ("tracking.split", typed.tracking.split in TRACKED_SPLITS, f"one of {TRACKED_SPLITS}"),
        ("loss.level", typed.loss.level in INFO_LEVELS, f"one of {INFO_LEVELS}"),
        ("trainer.epochs", typed.trainer.epochs >= 1, "at least 1"),
        ("trainer.batch_size", typed.trainer.batch_size >= 2, "at least 2 (batch norm needs two images)"),
        ("trainer.eval_batch_size", typed.trainer.eval_batch_size >= 1, "at least 1"),
        ("trainer.lr", typed.trainer.lr > 0, "positive"),
        ("trainer.label_smoothing", 0 <= typed.trainer.label_smoothing < 1, "in [0, 1)"),
        ("loss.mi_weight", typed.loss.mi_weight >= 0, ">= 0"),
        ("loss.gap_weight", typed.loss.gap_weight >= 0, ">= 0"),
        ("tracking.max_samples", typed.tracking.max_samples >= 2, "at least 2"),
        ("classifier.width", typed.classifier.width >= 1, "at least 1"),
        ("data.image_size", typed.data.image_size >= 8, "at least 8"),
        ("out", bool(typed.out), "a folder"),
    ]
    for key, ok, wanted in checks:
        if not ok:
            raise ConfigError(f"{key}={OmegaConf.select(typed, key)!r} is invalid; it must be {wanted}.")
    from promptinfo.data.registry import list_datasets  # the registry imports torch: keep `--help` fast

    if typed.data.name not in list_datasets():
        raise ConfigError(f"data.name={typed.data.name!r} is not a registered benchmark; choose one of "
                          f"{list_datasets()}.")
    return typed
