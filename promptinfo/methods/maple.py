"""MaPLe: multi-modal prompts coupled from the text side to the vision side (Khattak et al., "MaPLe:
Multi-modal Prompt Learning", CVPR 2023)."""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from promptinfo.backbones import Backbone, normalize
from promptinfo.errors import ConfigError
from promptinfo.methods.configs import MaPLeConfig
from promptinfo.methods.coop import ContextPrompts
from promptinfo.methods.registry import register_method

VisionPrompts = tuple[torch.Tensor, list[torch.Tensor]]  # input-level [n_ctx, vw], deeper ones [n_ctx, vw]


@register_method("maple")
class MaPLe(ContextPrompts):
    """Shared text context `[n_ctx, tw]`, coupled to vision prompts by Linear(tw, vw) (paper Sec. 3.2).

    Learnable tensors, in the paper's shapes and the original code's names, all under `self.prompt`:
    `ctx` `[n_ctx, tw]`; `proj` Linear(tw, vw) giving the input-level vision prompts; per deeper layer
    k = 1 .. depth-1 a text prompt `compound_prompts_text[k-1]` `[n_ctx, tw]` and its coupling function
    `compound_prompt_projections[k-1]` Linear(tw, vw) giving that layer's vision prompts. Before layer k
    the text tokens 1 .. n_ctx and the last n_ctx vision tokens are replaced by these prompts.
    """

    Config = MaPLeConfig
    image_side_frozen = False

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        config: MaPLeConfig,
        dataset_templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, classnames, config, dataset_templates)
        text_width, vision_width = backbone.text_width, backbone.vision_width  # ResNet towers raise here
        _check_depth(config.depth, backbone)
        device = backbone.device
        self.prompt.ctx = nn.Parameter(self._leading_context(config.n_ctx, config.ctx_init, config.init_std).to(device))  # [n_ctx, tw]
        self.prompt.proj = nn.Linear(text_width, vision_width).to(device)
        deeper = [torch.empty(self.n_ctx, text_width) for _ in range(config.depth - 1)]
        self.prompt.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(nn.init.normal_(p, std=config.init_std).to(device)) for p in deeper]
        )
        coupling = nn.Linear(text_width, vision_width)  # the original clones one initial layer
        self.prompt.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(coupling).to(device) for _ in range(config.depth - 1)]
        )
        self._build_class_prompts()

    # ----------------------------------------------------------------- prompts
    def vision_prompts(self) -> VisionPrompts:
        """Coupled vision prompts: `proj(ctx)` for the input and one per deeper layer."""
        p = self.prompt
        deeper = [f(t) for f, t in zip(p.compound_prompt_projections, p.compound_prompts_text)]
        return p.proj(p.ctx), deeper

    def encode_images(self, images: torch.Tensor, vision_prompts: VisionPrompts | None = None) -> torch.Tensor:
        """Normalised features `[batch, d]` of the class token, with the vision prompts in place."""
        shallow, deeper = vision_prompts if vision_prompts is not None else self.vision_prompts()
        return normalize(self.backbone.encode_image(images, shallow, deeper))

    def text_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        return self._deep_text_features(self.prompt.compound_prompts_text)


def _check_depth(depth: int, backbone: Backbone) -> None:
    layers = min(backbone.text_layers, backbone.vision_layers)
    if not 1 <= depth <= layers:
        raise ConfigError(
            f"MaPLe depth={depth}, but backbone {backbone.name!r} has {backbone.text_layers} text and "
            f"{backbone.vision_layers} vision layers; choose 1 <= depth <= {layers} (depth 1: input prompts only)."
        )
