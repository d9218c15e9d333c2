"""Prompt templates: each benchmark's hand-crafted one (CoOp's zero-shot CLIP) and CLIP's ImageNet ensembles."""

from __future__ import annotations

from typing import Sequence

from promptinfo.errors import ConfigError

TEMPLATE_SETS = ("single", "imagenet80", "imagenet7")
"""``single``: the benchmark's own template. ``imagenet80``: the 80 templates of CLIP's ImageNet prompt
engineering (Radford et al., 2021). ``imagenet7``: the 7 of them CoOp's ensembled zero-shot CLIP uses,
plus the benchmark's own template except on ImageNet (Zhou et al., CoOp, Table 1 baseline)."""


def imagenet_templates(kind: str = "imagenet80") -> list[str]:
    """CLIP's ImageNet templates as ``str.format`` strings with one ``{}`` (open_clip ships them)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    source = OPENAI_IMAGENET_TEMPLATES if kind == "imagenet80" else SIMPLE_IMAGENET_TEMPLATES
    return [t("{}") for t in source]


def select_templates(own: str, kind: str = "single", is_imagenet: bool = False) -> list[str]:
    """The templates of ensemble ``kind`` for a benchmark whose hand-crafted template is ``own``.

    Raises:
        ConfigError: unknown ``kind``.
    """
    if kind == "single":
        return [own]
    if kind == "imagenet80":
        return imagenet_templates("imagenet80")
    if kind == "imagenet7":
        return imagenet_templates("imagenet7") + ([] if is_imagenet else [own])
    raise ConfigError(f"unknown template set {kind!r}; choose one of {', '.join(TEMPLATE_SETS)}")


def class_prompts(template: str, classnames: Sequence[str]) -> list[str]:
    """One prompt per class, with underscores in names turned into spaces (as CoOp does)."""
    return [template.format(name.replace("_", " ")) for name in classnames]
