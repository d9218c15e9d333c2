"""Methods' regularizers as plug-ins: KgCoOp's knowledge-guided term and PromptSRC's self-consistency terms
on any method (`loss.kg`, `loss.scl`).

Each plug-in computes the frozen side once per class list (hand-crafted or template-ensemble text features)
and returns UNWEIGHTED terms named as in the method that introduced them; the objective weights them. KgCoOp
and PromptSRC keep applying their own terms through `extra_losses` (with their published weights), so a
plug-in that repeats a method's own term is refused (`PromptMethod.own_loss_terms`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from promptinfo.errors import ConfigError
from promptinfo.losses.consistency import knowledge_distance, self_consistency
from promptinfo.methods.base import MethodOutput, PromptMethod
from promptinfo.methods.promptsrc import ensemble_text_features, promptsrc_templates
from promptinfo.methods.zeroshot import zeroshot_classifier


class _FrozenText:
    """Frozen class text features of a method's current class list, recomputed when the list changes."""

    def __init__(self) -> None:
        self.key, self.features = None, None

    def get(self, method: PromptMethod, compute) -> torch.Tensor:
        key = (tuple(method.classnames), str(method.backbone.device))
        if key != self.key:
            with torch.no_grad(), torch.autocast(method.backbone.device.type, enabled=False):
                self.features = compute().float()  # [C, d]
            self.key = key
        return self.features


class KnowledgeGuided:
    """KgCoOp's L_kg (Yao et al., CVPR 2023) on any method: the class text features are kept close to the
    frozen hand-crafted ones of `template` (default: the dataset's first template, as KgCoOp does)."""

    names = ("kg",)

    def __init__(self, template: str | None = None) -> None:
        if template is not None and template.count("{}") != 1:
            raise ConfigError(f"loss.kg.template={template!r} must contain '{{}}' once, where the class name goes.")
        self.template, self.frozen = template, _FrozenText()

    def prepare(self, method: PromptMethod) -> None:
        """Nothing to set up: the term needs only the method's text features."""

    def __call__(self, method: PromptMethod, output: MethodOutput) -> dict[str, torch.Tensor]:
        template = method.templates_for([self.template] if self.template else None)[0]
        frozen = self.frozen.get(method, lambda: zeroshot_classifier(method.backbone, method.classnames, [template]))
        return {"kg": knowledge_distance(output.text_features, frozen)}


class SelfConsistency:
    """PromptSRC's L_SCL (Khattak et al., ICCV 2023) on any method: L1 agreement of text and image features with
    the frozen model's and KL agreement of the logits; frozen text features average `templates` (default:
    PromptSRC's 60 ImageNet templates)."""

    names = ("scl_text", "scl_image", "scl_logits")

    def __init__(self, templates: Sequence[str] | None = None) -> None:
        if templates is not None and (not templates or any(t.count("{}") != 1 for t in templates)):
            raise ConfigError("loss.scl.templates must be null or templates that each contain '{}' once.")
        self.templates, self.frozen = list(templates) if templates else None, _FrozenText()

    def prepare(self, method: PromptMethod) -> None:
        """A prompted image side returns the frozen image features in training passes from now on."""
        method.keep_frozen_image_features = True

    def __call__(self, method: PromptMethod, output: MethodOutput) -> dict[str, torch.Tensor]:
        templates = self.templates or promptsrc_templates()
        frozen_text = self.frozen.get(
            method, lambda: ensemble_text_features(method.backbone, method.classnames, templates))  # [C, d]
        frozen_image = method.frozen_image_features(output).float()  # [B, d]
        frozen_logits = method.backbone.logit_scale * frozen_image @ frozen_text.t()  # [B, C]
        return self_consistency(output.text_features, frozen_text, output.image_features, frozen_image,
                                output.logits, frozen_logits)


def check_plugins(method: PromptMethod, plugins) -> None:
    """Refuse plug-ins that repeat one of the method's own terms (KgCoOp's `kg`, PromptSRC's `scl_*`)."""
    for plugin in plugins:
        clash = sorted(set(plugin.names) & set(method.own_loss_terms))
        if clash:
            raise ConfigError(
                f"method {method.registry_name} already applies its own {clash} term(s) with its published "
                f"weights (method.* options); drop the loss plug-in, or use it with another method (e.g. method=coop)."
            )
