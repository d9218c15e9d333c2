"""What determines a pretrained demo CLIP: its recipe, the named variants, and which classes pretraining sees."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import open_clip

from promptinfo.backbones import list_backbones
from promptinfo.data import procedural
from promptinfo.errors import ConfigError

PRETRAINING_CLASSES = ("half_base", "base")
PRETRAINING_CODE_VERSION = 2
"""Part of every recipe's fingerprint: bump it when a change to the pretraining code changes the weights a
recipe gives, so cached checkpoints of the old code are not taken for the new ones. 2: the text pass of
``Backbone`` and open_clip's ``ClipLoss`` (the same numbers up to float rounding)."""


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that determines a pretrained demo model (its hash names the cached checkpoint).

    Attributes:
        model: open_clip architecture, a ``pi-demo-*`` config in ``backbones/model_configs``.
        benchmark: the procedural benchmark the model is evaluated on; pretraining uses its base
            classes and its resolution, never its novel classes or its images.
        steps: optimiser steps; batch_size: image-caption pairs per step.
        lr, weight_decay, warmup_steps: AdamW (sparse Adam for the token embedding) with linear
            warm-up then cosine decay to zero.
        partial_caption_prob: share of captions naming only the colour or only the shape.
        pretraining_classes: which classes pretraining captions and renders (see ``pretraining_pairs``):
            ``half_base`` (every other diagonal of the base cells) or ``base`` (every base class).
        seed: seeds model initialisation, image rendering, caption choice and data order.
    """

    model: str
    benchmark: procedural.ProceduralSpec = field(default_factory=procedural.ProceduralSpec)
    steps: int = 700
    batch_size: int = 192
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    partial_caption_prob: float = 0.2
    pretraining_classes: str = "half_base"
    seed: int = 0

    def fingerprint(self) -> str:
        """Short hash of the recipe, the renderer and pretraining-code versions and the architecture config."""
        payload = {"recipe": asdict(self), "renderer": procedural.RENDERER_VERSION, "arch": arch_config(self.model),
                   "code": PRETRAINING_CODE_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


VARIANTS: dict[str, DemoRecipe] = {
    "default": DemoRecipe(model="pi-demo-default"),
    "small": DemoRecipe(
        model="pi-demo-small",
        benchmark=procedural.ProceduralSpec(train_per_class=16, val_per_class=4, test_per_class=16),
        steps=400,
        batch_size=128,
    ),
}
"""Named recipes: ``default`` for the demo job, ``small`` for fast tests."""


def get_recipe(variant: str | DemoRecipe) -> DemoRecipe:
    """The recipe of a named variant (``default`` or ``small``), or ``variant`` itself if a recipe."""
    if isinstance(variant, DemoRecipe):
        return variant
    if variant not in VARIANTS:
        raise ConfigError(f"Unknown demo variant {variant!r}; choose from {sorted(VARIANTS)}.")
    return VARIANTS[variant]


def arch_config(model: str) -> dict:
    """The open_clip architecture config of a demo model (``backbones/model_configs/<model>.json``)."""
    config = open_clip.get_model_config(model)
    if not model.startswith("pi-demo-") or config is None:
        names = sorted(n for n in list_backbones() if n.startswith("pi-demo-"))
        raise ConfigError(f"No demo architecture '{model}'; available: {names}.")
    return config


def pretraining_pairs(recipe: DemoRecipe) -> list[tuple[str, str]]:
    """(colour, shape) pairs seen in pretraining, in label order; never a novel class.

    Base classes are the cells (i, j) of the colour x shape grid with ``i + j`` even. ``half_base``
    keeps those with ``i + j`` divisible by 4 (every other diagonal of them), so each colour and
    each shape still occurs in pretraining while half of the base classes, like all novel ones, are
    combinations the model never saw. ``base`` keeps every base class.
    """
    spec = recipe.benchmark
    base, _ = procedural.base_novel_split(spec.classes)
    if recipe.pretraining_classes not in PRETRAINING_CLASSES:
        raise ConfigError(f"Unknown pretraining_classes {recipe.pretraining_classes!r}; choose from "
                          f"{list(PRETRAINING_CLASSES)}.")
    if recipe.pretraining_classes == "half_base":
        colours, shapes = list(spec.colours), list(spec.shapes)
        base = [c for c in base if (colours.index(c.colour) + shapes.index(c.shape)) % 4 == 0]
        missing = sorted(set(colours) - {c.colour for c in base}) + sorted(set(shapes) - {c.shape for c in base})
        if missing:
            raise ConfigError(f"With pretraining_classes='half_base' the demo CLIP would never see {missing}; "
                              "use more colours and shapes, or pretraining_classes='base'.")
    return [(c.colour, c.shape) for c in base]
