"""CoCoOp: CoOp's context shifted per image by a meta-network (Zhou et al., "Conditional Prompt Learning
for Vision-Language Models", CVPR 2022)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from promptinfo.backbones import Backbone, normalize
from promptinfo.errors import BackboneNotSupportedError, ConfigError
from promptinfo.methods.configs import CoCoOpConfig
from promptinfo.methods.coop import ContextPrompts
from promptinfo.methods.registry import register_method


@register_method("cocoop")
class CoCoOp(ContextPrompts):
    """Context `[n_ctx, w]` plus `meta_net(image feature)` added to every context token.

    In the paper's words v_m(x) = v_m + pi with pi = h_theta(x), the same shift for every m.

    The meta-network is Linear(d, d/16) -> ReLU -> Linear(d/16, w) on the L2-normalised image feature
    (d: joint embedding width, w: text width), so every image gets its own text classifier and the
    text features are `[batch, n_classes, d]`.
    """

    Config = CoCoOpConfig
    text_depends_on_image = True

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        config: CoCoOpConfig,
        dataset_templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, classnames, config, dataset_templates)
        if config.max_text_batch < 1:
            raise ConfigError(f"max_text_batch={config.max_text_batch}; it must be a positive number of sequences.")
        ctx = self._setup_context(config.n_ctx, config.ctx_init, config.init_std)
        self.prompt.ctx = nn.Parameter(ctx)  # [n_ctx, w]
        self.prompt.meta_net = _meta_net(backbone.embed_dim, backbone.text_width).to(backbone.device)
        self._build_class_prompts()

    def text_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised image-conditioned classifiers `[batch, n_classes, d]`."""
        if image_features is None:
            raise ValueError("CoCoOp builds one classifier per image: pass the normalised image features [batch, d].")
        bias = self.prompt.meta_net(image_features.to(self.prompt.ctx.dtype))  # [B, w]
        ctx = self.prompt.ctx.unsqueeze(0) + bias.unsqueeze(1)  # [B, n_ctx, w]
        chunk = self._images_per_pass()
        feats = [self._encode_shifted(part) for part in ctx.split(chunk)]
        return torch.cat(feats, dim=0)

    def _images_per_pass(self) -> int:
        if not self.config.batch_images:
            return 1
        return max(1, self.config.max_text_batch // len(self.classnames))

    def _encode_shifted(self, ctx: torch.Tensor) -> torch.Tensor:
        """Text features `[b, C, d]` of the prompts of `b` images from shifted contexts `[b, n_ctx, w]`;
        the start token and context of an image's prompts are one tensor, computed once per image."""
        b, n_cls = ctx.shape[0], len(self.classnames)
        prefix = self.token_prefix.unsqueeze(0).expand(b, -1, -1, -1)  # [b, C, 1, w]
        suffix = self.token_suffix.unsqueeze(0).expand(b, -1, -1, -1)  # [b, C, S, w]
        ctx = ctx.to(prefix.dtype).unsqueeze(1).expand(-1, n_cls, -1, -1)  # [b, C, n_ctx, w]
        prompts = torch.cat([prefix, ctx, suffix], dim=2)  # [b, C, L, w]
        feats = self.backbone.encode_text_embeddings(prompts, self.tokens, shared=self.shared_positions())
        return normalize(feats)  # [b, C, d]


def _meta_net(embed_dim: int, text_width: int) -> nn.Sequential:
    """Linear(d, d // 16) -> ReLU -> Linear(d // 16, w), with the original's layer names.

    Built on the CPU, so a seed gives the same initial weights on every device; `CoCoOp.__init__`
    moves it to the backbone's device.
    """
    hidden = embed_dim // 16
    if hidden < 1:
        raise BackboneNotSupportedError(
            f"CoCoOp's meta-network has embed_dim // 16 hidden units; this backbone's embed_dim={embed_dim} "
            "gives none. Use a backbone with an embedding width of at least 16."
        )
    return nn.Sequential(OrderedDict([
        ("linear1", nn.Linear(embed_dim, hidden)),
        ("relu", nn.ReLU()),
        ("linear2", nn.Linear(hidden, text_width)),
    ]))
