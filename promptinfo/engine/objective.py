"""The training objective: cross-entropy, CMA, information terms and the method's own terms, by name.

total = w_ce * CE + w_cma * CMA + sum_k w_k * info_k + sum_r w_r * plugin_r + sum_m method_m

with (w_ce, w_cma) = (1 - lambda, lambda) when CMA is on (Song et al., arXiv 2409.16767) and (1, 0)
otherwise; info terms (arXiv 2406.03999) and the regularizer plug-ins (KgCoOp's `kg`, PromptSRC's
`scl_*`) carry their configured weights; the method's terms come already weighted (weight 1). Every
term is reported UNWEIGHTED with its weight next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from promptinfo.losses import InformationTerms, cma_loss, cma_weights, weighted_sum
from promptinfo.methods import MethodOutput
from promptinfo.methods.regularizers import KnowledgeGuided, SelfConsistency, check_plugins


@dataclass
class LossTerms:
    """The total loss and its named parts (unweighted values, with their weights)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, float]


class Objective:
    """Builds the loss of one batch from the configured terms.

    Args:
        cma_weight: lambda of (1 - lambda) CE + lambda CMA, or None without CMA.
        info: the information-interplay terms; terms with weight 0 are not computed.
        plugins: `(plug-in, {term: weight})` pairs of regularizer plug-ins (`methods.regularizers`); terms
            with weight 0 are not added.
    """

    def __init__(self, cma_weight: float | None, info: InformationTerms, plugins=()) -> None:
        self.base_weights = cma_weights(cma_weight) if cma_weight is not None else {"ce": 1.0}
        self.info = info
        self.info_weights = {k: w for k, w in info.weights().items() if w > 0}
        self.plugins = [(p, {k: w for k, w in weights.items() if w > 0}) for p, weights in plugins]
        self.plugins = [(p, weights) for p, weights in self.plugins if weights]

    @classmethod
    def from_config(cls, loss_cfg) -> Objective:
        info = loss_cfg.info
        terms = InformationTerms(mi_weight=info.mi_weight, gap_weight=info.gap_weight, use_mir=info.use_mir,
                                 use_hdr=info.use_hdr, level=info.level)
        kg, scl = loss_cfg.kg, loss_cfg.scl
        plugins = [
            (KnowledgeGuided(kg.template), {"kg": kg.weight}),
            (SelfConsistency(scl.templates), {"scl_text": scl.text_weight, "scl_image": scl.image_weight,
                                              "scl_logits": scl.logits_weight}),
        ]
        return cls(float(loss_cfg.cma.weight) if loss_cfg.cma.enabled else None, terms, plugins)

    def prepare(self, method) -> None:
        """Check the plug-ins against the method's own terms and let them set the method up (before training)."""
        check_plugins(method, [p for p, _ in self.plugins])
        for plugin, _ in self.plugins:
            plugin.prepare(method)

    def __call__(self, method, output: MethodOutput, labels: torch.Tensor) -> LossTerms:
        logits = output.logits.float()
        terms = {"ce": F.cross_entropy(logits, labels)}
        weights = dict(self.base_weights)
        image, text = output.image_features.float(), output.text_features.float()
        if "cma" in weights:
            terms["cma"] = cma_loss(image, text, labels)
        if self.info_weights:
            info = self.info(image, text, labels)
            for name, weight in self.info_weights.items():
                terms[name], weights[name] = info[name], weight
        for plugin, plugin_weights in self.plugins:
            values = plugin(method, output)
            for name, weight in plugin_weights.items():
                terms[name], weights[name] = values[name], weight
        for name, value in method.extra_losses(output, labels).items():
            if name in terms:
                raise ValueError(f"method term {name!r} clashes with an engine loss term; rename it in the method.")
            terms[name], weights[name] = value, 1.0
        total = weighted_sum({k: v.float() for k, v in terms.items()}, weights)
        return LossTerms(total=total, terms=terms, weights=weights)
