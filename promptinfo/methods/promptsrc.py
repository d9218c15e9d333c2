"""PromptSRC: IVLP prompts regulated by the frozen model (Khattak et al., "Self-regulating Prompts:
Foundational Model Adaptation without Forgetting", ICCV 2023).

Three regularisers on top of cross-entropy (paper Sec. 3):
- mutual agreement with the frozen CLIP (L_SCL): L1 between prompted and frozen text features, L1 between
  prompted and frozen image features, and KL between the frozen and the prompted logits;
- textual diversity: the frozen text features average an ensemble of 60 ImageNet templates;
- Gaussian-weighted prompt aggregation (GPA) over the training epochs.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import torch

from promptinfo.backbones import Backbone, normalize
from promptinfo.data.templates import imagenet_templates
from promptinfo.errors import ConfigError
from promptinfo.losses.consistency import self_consistency
from promptinfo.methods.base import MethodOutput
from promptinfo.methods.configs import PromptSRCConfig
from promptinfo.methods.ivlp import IVLP
from promptinfo.methods.registry import register_method

logger = logging.getLogger("promptinfo.methods")


def promptsrc_templates() -> list[str]:
    """The 60 templates of PromptSRC's textual diversity: CLIP's first 60 ImageNet templates, with
    "a photo of a {}." moved to the front (the order does not change the average)."""
    templates = imagenet_templates("imagenet80")[:60]
    first = templates.index("a photo of a {}.")
    return [templates[first]] + templates[:first] + templates[first + 1 :]


@torch.no_grad()
def ensemble_text_features(
    backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], batch_size: int = 1024
) -> torch.Tensor:
    """Frozen class features `[C, d]`: the mean of the UNnormalised features over templates, normalised.

    This is PromptSRC's averaging (CLIP's zero-shot ensemble normalises each template's features first).
    """
    total = None
    for template in templates:
        tokens = backbone.tokenize([template.format(name) for name in classnames])
        feats = torch.cat([backbone.encode_text(chunk).float() for chunk in tokens.split(batch_size)])  # [C, d]
        total = feats if total is None else total + feats
    return normalize(total / len(templates))


def gpa_weights(mean: float, std: float, epochs: int) -> list[float]:
    """Gaussian weights N(mean, std^2) of epochs 1 .. `epochs`, normalised to sum to one (PromptSRC GPA).

    Computed relative to the largest weight, so a mean far outside the epochs cannot underflow to 0/0.
    """
    if std <= 0:
        raise ConfigError(f"gpa_std={std}; the Gaussian of prompt aggregation needs a positive standard deviation.")
    if epochs < 1:
        raise ValueError(f"GPA needs at least one epoch, got {epochs}.")
    log_w = [-0.5 * ((epoch - mean) / std) ** 2 for epoch in range(1, epochs + 1)]
    top = max(log_w)
    w = [math.exp(v - top) for v in log_w]
    total = sum(w)
    return [v / total for v in w]


@register_method("promptsrc")
class PromptSRC(IVLP):
    """IVLP prompts trained with self-regulating consistency terms and aggregated over epochs.

    Besides IVLP's learnable tensors, `self.prompt` holds two buffers for GPA, so prompt and resume
    checkpoints carry the aggregation state: `gpa_sum` (the weighted sum of every learnable tensor,
    flattened in `self.prompt.parameters()` order) and `gpa_weight` (the sum of the weights so far).
    The frozen ensemble text features (`frozen_text_features()`, `[C, d]`) live in a non-persistent
    buffer, computed on first use and cleared when the class list changes.
    """

    Config = PromptSRCConfig
    own_loss_terms = ("scl_text", "scl_image", "scl_logits")

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        config: PromptSRCConfig,
        dataset_templates: Sequence[str] | None = None,
    ) -> None:
        _check_config(config)
        super().__init__(backbone, classnames, config, dataset_templates)
        self.keep_frozen_image_features = True  # L_SCL-image compares with the frozen image encoder
        n_values = sum(p.numel() for p in self.prompt.parameters())
        device = backbone.device
        self.prompt.register_buffer("gpa_sum", torch.zeros(n_values, device=device))
        self.prompt.register_buffer("gpa_weight", torch.zeros((), device=device))

    def _build_class_prompts(self) -> None:
        super()._build_class_prompts()
        self.register_buffer("frozen_text", None, persistent=False)  # [C, d], filled on first use

    def frozen_text_features(self) -> torch.Tensor:
        """The frozen ensemble text features `[C, d]` of the current classes.

        Only training needs them, so they are computed on first use (once per class list) on the device
        the method then lives on, at the backbone's own precision (autocast off) as the original does:
        evaluation on other class lists never pays for the (templates x classes) text passes.
        """
        if self.frozen_text is None:
            templates = self.config.templates or promptsrc_templates()
            with torch.autocast(self.prompt.ctx.device.type, enabled=False):
                self.frozen_text = ensemble_text_features(self.backbone, self.classnames, templates)
        return self.frozen_text

    # ----------------------------------------------------------------- forward and losses
    def extra_losses(self, output: MethodOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_SCL's three terms, already weighted: `scl_text`, `scl_image`, `scl_logits`."""
        frozen_image = self.frozen_image_features(output).float()
        frozen_text = self.frozen_text_features().float()
        frozen_logits = self.backbone.logit_scale * frozen_image @ frozen_text.t()  # [B, C]
        terms = self_consistency(output.text_features, frozen_text, output.image_features, frozen_image,
                                 output.logits, frozen_logits)
        cfg = self.config
        weights = {"scl_text": cfg.text_loss_weight, "scl_image": cfg.image_loss_weight,
                   "scl_logits": cfg.logits_loss_weight}
        return {name: weights[name] * value for name, value in terms.items()}

    # ----------------------------------------------------------------- Gaussian prompt aggregation
    def on_epoch_end(self, epoch: int, max_epochs: int) -> None:
        """Add this epoch's prompts, weighted by the Gaussian at `epoch` (1-based), to the GPA sum."""
        if not self.config.gpa:
            return
        if not 1 <= epoch <= max_epochs:
            raise ValueError(f"on_epoch_end(epoch={epoch}, max_epochs={max_epochs}): epochs count from 1.")
        weight = gpa_weights(self.config.gpa_mean, self.config.gpa_std, max_epochs)[epoch - 1]
        with torch.no_grad():
            flat = torch.cat([p.detach().float().reshape(-1) for p in self.prompt.parameters()])
            self.prompt.gpa_sum.add_(flat.to(self.prompt.gpa_sum.device), alpha=weight)
            self.prompt.gpa_weight.add_(weight)

    def finalize(self) -> None:
        """Load the Gaussian-weighted average of the epochs' prompts (sum / weight) into the prompts."""
        total = float(self.prompt.gpa_weight)
        if not self.config.gpa or total == 0.0:
            return
        average = self.prompt.gpa_sum / total
        offset = 0
        with torch.no_grad():
            for p in self.prompt.parameters():
                p.copy_(average[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        logger.info("PromptSRC: using the Gaussian-weighted prompt aggregate (weights summed to %.6f)", total)


def _check_config(config: PromptSRCConfig) -> None:
    for key in ("text_loss_weight", "image_loss_weight", "logits_loss_weight"):
        if getattr(config, key) < 0:
            raise ConfigError(f"PromptSRC {key}={getattr(config, key)}; loss weights must be non-negative.")
    if config.gpa:
        gpa_weights(config.gpa_mean, config.gpa_std, 1)  # validates gpa_std
    if config.templates is not None and any(t.count("{}") != 1 for t in config.templates):
        raise ConfigError("PromptSRC templates must each contain '{}' exactly once, where the class name goes.")
    if config.templates is not None and not config.templates:
        raise ConfigError("PromptSRC templates=[] is empty; give templates or null for the 60 ImageNet ones.")
