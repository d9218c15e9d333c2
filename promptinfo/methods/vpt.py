"""VPT-deep: learnable vision prompt tokens in the first layers of the image encoder, hand-crafted text
(Jia et al., "Visual Prompt Tuning", ECCV 2022; the CLIP variant is the vision-only baseline of MaPLe,
Khattak et al., CVPR 2023).

The deep vision prompts defined here are shared with IVLP and PromptSRC.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from promptinfo.backbones import Backbone, normalize
from promptinfo.errors import ConfigError
from promptinfo.methods.base import PromptMethod
from promptinfo.methods.configs import VPTConfig
from promptinfo.methods.registry import register_method
from promptinfo.methods.zeroshot import zeroshot_classifier

VisionPrompts = tuple[torch.Tensor, list[torch.Tensor]]  # input-level [n_ctx, vw], deeper ones [n_ctx, vw]


def check_depth(method: str, tower: str, depth: int, layers: int, minimum: int = 1) -> None:
    """Raise a ConfigError unless `minimum <= depth <= layers` (depth J: input prompts + J - 1 deeper ones)."""
    if not minimum <= depth <= layers:
        raise ConfigError(
            f"{method} depth_{tower}={depth}, but the backbone has {layers} {tower} layers; choose "
            f"{minimum} <= depth_{tower} <= {layers} (1: input-level prompts only)."
        )


def add_vision_prompts(prompt: nn.Module, backbone: Backbone, n_ctx: int, depth: int, std: float) -> None:
    """Add independent deep vision prompts to `prompt`, drawn from N(0, std^2) as VPT-deep does.

    `prompt.vision_ctx` `[n_ctx, vw]` is appended after the class and patch tokens; `prompt.deep_vision[k-1]`
    `[n_ctx, vw]` replaces them before vision layer k = 1 .. depth-1. Built on the CPU, then moved to the
    backbone's device, so a seed gives the same prompts on every device.
    """
    if n_ctx < 1:
        raise ConfigError(f"n_ctx_vision={n_ctx}; vision prompting needs at least one prompt token.")
    width, device = backbone.vision_width, backbone.device  # ResNet towers raise here
    shallow = nn.init.normal_(torch.empty(n_ctx, width), std=std)
    deeper = [nn.init.normal_(torch.empty(n_ctx, width), std=std) for _ in range(depth - 1)]
    prompt.vision_ctx = nn.Parameter(shallow.to(device))
    prompt.deep_vision = nn.ParameterList([nn.Parameter(p.to(device)) for p in deeper])


def vision_prompts(prompt: nn.Module) -> VisionPrompts:
    """The input-level and deeper vision prompts held by `prompt`."""
    return prompt.vision_ctx, list(prompt.deep_vision)


@register_method("vpt")
class VPT(PromptMethod):
    """Deep vision prompts; the text classifier is zero-shot CLIP's (frozen, nothing learned on the text side).

    Learnable tensors under `self.prompt`: `vision_ctx` `[n_ctx_vision, vw]` and `deep_vision`
    (depth_vision - 1 tensors `[n_ctx_vision, vw]`).
    """

    Config = VPTConfig
    image_side_frozen = False

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        config: VPTConfig,
        dataset_templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, classnames, config, dataset_templates)
        check_depth("VPT", "vision", config.depth_vision, backbone.vision_layers)
        add_vision_prompts(self.prompt, backbone, config.n_ctx_vision, config.depth_vision, config.init_std)
        self._build_class_prompts()

    def _build_class_prompts(self) -> None:
        weights = zeroshot_classifier(self.backbone, self.classnames, self.config.templates)
        self.register_buffer("classifier", weights, persistent=False)  # [C, d]

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        shallow, deeper = vision_prompts(self.prompt)
        return normalize(self.backbone.encode_image(images, shallow, deeper))

    def text_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier
