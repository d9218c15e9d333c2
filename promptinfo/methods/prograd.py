"""ProGrad: CoOp updated only along gradients that do not conflict with the zero-shot knowledge
(Zhu et al., "Prompt-aligned Gradient for Prompt Tuning", ICCV 2023).

Each step computes two gradients of the context: g of the cross-entropy, and g_kl of the distillation
loss L_kl = T^2 * CE(softmax(zero-shot logits / T), log_softmax(logits / T)) towards zero-shot CLIP.
Where they conflict (g . g_kl < 0), the step uses g minus `projection_weight` times its projection on
g_kl (Eq. 5 of the paper); otherwise g itself. Only the cross-entropy side trains: L_kl gives a direction,
never a loss term. Per parameter tensor, as the authors' `prograd_backward_and_update` (Dassl.ProGrad.pytorch
dassl/engine/trainer.py) does.

The teacher's template and the context's initial words come from the authors' table
(`CUSTOM_TEMPLATES` in ProGrad.public/trainers/prograd.py, e.g. "a type of pet, a photo of a {}."), which
the benchmarks carry as `method_templates["prograd"]`. We knowingly differ in one detail: the authors
count the initial words by splitting on spaces and take that many tokens, so where a word carries
punctuation ("pet,") their context drops the phrase's last token and keeps it as fixed text; we place
every token of the phrase in the context.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from promptinfo.errors import ConfigError
from promptinfo.methods._prompts import init_context, placeholder_prefix
from promptinfo.methods.base import MethodOutput
from promptinfo.methods.configs import ProGradConfig
from promptinfo.methods.coop import CoOp
from promptinfo.methods.registry import register_method
from promptinfo.methods.zeroshot import zeroshot_classifier


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """ProGrad's L_kl: batch mean of T^2 * cross-entropy from the teacher's softened distribution
    (`ProGradLoss` in the authors' trainers/prograd.py; equal to KL up to the teacher's entropy)."""
    teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    log_student = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(teacher * log_student).sum(dim=-1).mean() * temperature**2


def project_conflicting(grad: torch.Tensor, direction: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """`grad` minus `weight` times its projection on `direction` when they point apart, else `grad`
    (ProGrad, Eq. 5); a zero gradient on either side leaves `grad` as it is."""
    g, d = grad.flatten().float(), direction.flatten().float()
    g_norm, d_norm = g.norm(), d.norm()
    if g_norm == 0 or d_norm == 0 or torch.dot(g / g_norm, d / d_norm) >= 0:
        return grad
    unit = d / d_norm
    return (g - weight * torch.dot(g, unit) * unit).view_as(grad).to(grad.dtype)


@register_method("prograd")
class ProGrad(CoOp):
    """CoOp's context vectors; `extra_losses` records the gradient of L_kl, `after_backward` projects
    the cross-entropy gradient against it."""

    Config = ProGradConfig

    def __init__(
        self, backbone, classnames, config: ProGradConfig, dataset_templates: Sequence[str] | None = None
    ) -> None:
        if config.template is not None and config.template.count("{}") != 1:
            raise ConfigError(f"ProGrad template={config.template!r} must contain '{{}}' exactly once.")
        if config.temperature <= 0 or config.projection_weight < 0:
            raise ConfigError(f"ProGrad temperature={config.temperature} must be positive and projection_weight="
                              f"{config.projection_weight} non-negative (authors: 1.0 and 1.0).")
        self._kl_grads: list[torch.Tensor] | None = None
        super().__init__(backbone, classnames, config, dataset_templates)

    def _teacher_template(self) -> str:
        return self.templates_for([self.config.template] if self.config.template else None)[0]

    def _setup_context(self, n_ctx: int, ctx_init: str | None, init_std: float) -> torch.Tensor:
        """The authors' CTX_INIT: `n_ctx` vectors, the template's leading words in the last ones, zeros before."""
        if ctx_init or not self.config.ctx_from_template or n_ctx < 1:  # CoOp's context, or its n_ctx error
            return super()._setup_context(n_ctx, ctx_init, init_std)
        phrase = self._teacher_template().split("{}")[0].strip()
        words = init_context(self.backbone, phrase, n_ctx) if phrase else torch.zeros(0, self.backbone.text_width)
        if n_ctx < words.shape[0]:
            raise ConfigError(f"n_ctx={n_ctx} is shorter than the template's {words.shape[0]} leading tokens "
                              f"({phrase!r}); use n_ctx >= {words.shape[0]} or ctx_from_template=false.")
        ctx = torch.zeros(n_ctx, self.backbone.text_width, device=self.backbone.device)
        ctx[n_ctx - words.shape[0]:] = words
        self.n_ctx, self.prefix_text = n_ctx, placeholder_prefix(n_ctx)
        return ctx

    def _build_class_prompts(self) -> None:
        super()._build_class_prompts()
        teacher = zeroshot_classifier(self.backbone, self.classnames, [self._teacher_template()])
        self.register_buffer("zeroshot_text", teacher, persistent=False)  # [C, d]

    def extra_losses(self, output: MethodOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """No loss term: while training, adds the gradient of this batch's L_kl to the step's direction."""
        if not (self.training and torch.is_grad_enabled()):
            return {}
        teacher = self.classify(output.image_features.detach(), self.zeroshot_text).logits  # [B, C]
        loss = distillation_loss(output.logits, teacher.detach(), self.config.temperature)
        params = self._trained()
        if all(p.grad is None for p in params):  # a new step: the engine's zero_grad(set_to_none=True) ran
            self._kl_grads = None
        grads = torch.autograd.grad(loss * labels.shape[0], params, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        self._kl_grads = grads if self._kl_grads is None else [a + g for a, g in zip(self._kl_grads, grads)]
        return {}

    def after_backward(self) -> None:
        """Projects each parameter's gradient against the step's L_kl gradient (summed over its chunks)."""
        if self._kl_grads is None:
            return
        for p, direction in zip(self._trained(), self._kl_grads):
            if p.grad is not None:
                p.grad = project_conflicting(p.grad, direction, self.config.projection_weight)
        self._kl_grads = None

    def _trained(self) -> list[torch.nn.Parameter]:
        return [p for p in self.prompt.parameters() if p.requires_grad]
