"""IVLP: independent deep vision and language prompts, the uncoupled baseline of MaPLe (Khattak et al.,
"MaPLe: Multi-modal Prompt Learning", CVPR 2023, Sec. 4 ablations) and the prompt design of PromptSRC."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from promptinfo.backbones import Backbone, normalize
from promptinfo.errors import ConfigError
from promptinfo.methods.configs import IVLPConfig
from promptinfo.methods.coop import ContextPrompts
from promptinfo.methods.registry import register_method
from promptinfo.methods.vpt import add_vision_prompts, check_depth, vision_prompts


@register_method("ivlp")
class IVLP(ContextPrompts):
    """Independent prompts in both towers, with no function linking them.

    Learnable tensors under `self.prompt`: `ctx` `[n_ctx_text, tw]` (input-level text context),
    `deep_text` (depth_text - 1 tensors `[n_ctx_text, tw]`, replacing text tokens 1 .. n_ctx_text before
    text layers 1 .. depth_text-1), and the vision prompts `vision_ctx`, `deep_vision` of VPT-deep.
    """

    Config = IVLPConfig
    image_side_frozen = False

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        config: IVLPConfig,
        dataset_templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, classnames, config, dataset_templates)
        name = type(self).__name__
        check_depth(name, "text", config.depth_text, backbone.text_layers)
        if config.depth_vision > 0:
            check_depth(name, "vision", config.depth_vision, backbone.vision_layers)
            add_vision_prompts(self.prompt, backbone, config.n_ctx_vision, config.depth_vision, config.init_std)
        elif config.depth_vision < 0:
            raise ConfigError(f"{name} depth_vision={config.depth_vision}; use 0 for an unprompted image encoder.")
        else:
            self.image_side_frozen = True  # no vision prompts: image features can be cached
        self._add_text_prompts(config, backbone.device)
        self._build_class_prompts()

    def _add_text_prompts(self, config: IVLPConfig, device: torch.device) -> None:
        ctx = self._leading_context(config.n_ctx_text, config.ctx_init, config.init_std, "n_ctx_text")
        deeper = [nn.init.normal_(torch.empty(ctx.shape), std=config.init_std) for _ in range(config.depth_text - 1)]
        self.prompt.ctx = nn.Parameter(ctx.to(device))  # [n_ctx, tw]
        self.prompt.deep_text = nn.ParameterList([nn.Parameter(p.to(device)) for p in deeper])

    # ----------------------------------------------------------------- forward
    @property
    def has_vision_prompts(self) -> bool:
        return hasattr(self.prompt, "vision_ctx")

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        if not self.has_vision_prompts:
            return super().encode_images(images)
        shallow, deeper = vision_prompts(self.prompt)
        return normalize(self.backbone.encode_image(images, shallow, deeper))

    def text_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        return self._deep_text_features(self.prompt.deep_text)
