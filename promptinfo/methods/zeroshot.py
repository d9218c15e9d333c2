"""Zero-shot CLIP: class text features from hand-crafted templates (Radford et al., 2021)."""

from __future__ import annotations

from typing import Sequence

import torch

from promptinfo.backbones import Backbone, normalize
from promptinfo.methods.base import PromptMethod
from promptinfo.methods.configs import ZeroShotConfig
from promptinfo.methods.registry import register_method


@torch.no_grad()
def zeroshot_classifier(
    backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], batch_size: int = 1024
) -> torch.Tensor:
    """Normalised classifier weights `[n_classes, d]`.

    With several templates, each prompt's feature is normalised, the features of a class are
    averaged and the mean is normalised again, as CLIP's ImageNet ensemble does.
    """
    if not templates:
        raise ValueError("zero-shot classification needs at least one template such as 'a photo of a {}.'")
    prompts = [t.format(c.replace("_", " ")) for c in classnames for t in templates]
    tokens = backbone.tokenize(prompts)
    feats = torch.cat([backbone.encode_text(chunk) for chunk in tokens.split(batch_size)])
    feats = normalize(feats).view(len(classnames), len(templates), -1)  # [C, T, d]
    if len(templates) == 1:
        return feats[:, 0]  # already unit norm; renormalising would only add rounding
    return normalize(feats.mean(dim=1))


@register_method("zeroshot")
class ZeroShot(PromptMethod):
    """No learnable prompt: the text classifier is the template ensemble's features."""

    Config = ZeroShotConfig

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        config: ZeroShotConfig,
        dataset_templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, classnames, config, dataset_templates)
        self._build_class_prompts()

    def _build_class_prompts(self) -> None:
        weights = zeroshot_classifier(self.backbone, self.classnames, self.templates_for(self.config.templates))
        self.register_buffer("classifier", weights, persistent=False)

    def text_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier
