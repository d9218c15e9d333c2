"""KgCoOp: CoOp whose class text features are kept close to the hand-crafted ones (Yao et al.,
"Visual-Language Prompt Tuning with Knowledge-guided Context Optimization", CVPR 2023)."""

from __future__ import annotations

from typing import Sequence

import torch

from promptinfo.errors import ConfigError
from promptinfo.losses.consistency import knowledge_distance
from promptinfo.methods.base import MethodOutput
from promptinfo.methods.configs import KgCoOpConfig
from promptinfo.methods.coop import CoOp
from promptinfo.methods.registry import register_method
from promptinfo.methods.zeroshot import zeroshot_classifier


@register_method("kgcoop")
class KgCoOp(CoOp):
    """CoOp context vectors; `extra_losses` adds kg_weight * L_kg against frozen hand-crafted class features.

    The frozen features `frozen_text` `[C, d]` are a non-persistent buffer rebuilt with the class list,
    so prompt checkpoints hold the context alone, exactly as CoOp's.
    """

    Config = KgCoOpConfig
    own_loss_terms = ("kg",)

    def __init__(
        self, backbone, classnames, config: KgCoOpConfig, dataset_templates: Sequence[str] | None = None
    ) -> None:
        if config.template is not None and config.template.count("{}") != 1:
            raise ConfigError(
                f"KgCoOp template={config.template!r} must contain '{{}}' exactly once, where the class name goes "
                "(e.g. 'a photo of a {}.')."
            )
        if config.kg_weight < 0:
            raise ConfigError(f"KgCoOp kg_weight={config.kg_weight}; it must be non-negative (paper: 8.0).")
        super().__init__(backbone, classnames, config, dataset_templates)

    def _build_class_prompts(self) -> None:
        super()._build_class_prompts()
        template = self.templates_for([self.config.template] if self.config.template else None)[0]
        frozen = zeroshot_classifier(self.backbone, self.classnames, [template])
        self.register_buffer("frozen_text", frozen, persistent=False)  # [C, d]

    def extra_losses(self, output: MethodOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"kg": self.config.kg_weight * knowledge_distance(output.text_features, self.frozen_text)}
