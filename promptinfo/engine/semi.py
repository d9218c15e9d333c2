"""The unlabelled part of a training step: pseudo-label a batch of unlabelled images, then its loss.

    total_u = w_u * CE(strong-view logits, pseudo) masked   (FixMatch's lambda_u * l_u, Sohn et al. Eq. 4)
            + sum_k w_k * info_k(Z_u, W_pseudo) + w_cma * CMA(Z_u, W_pseudo)   over the trusted images

The information terms (Song et al., arXiv 2406.03999 / 2409.16767) pair the features of trusted
unlabelled images with the text features of their pseudo-labels; they need at least two trusted
images in a batch and are left out of steps with fewer. The engine compares the pseudo-labels with
the hidden labels after the loss is built, for the per-epoch pseudo-label accuracy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from promptinfo.engine.objective import LossTerms
from promptinfo.engine.protocols import Unlabelled
from promptinfo.engine.unlabelled import unlabelled_order
from promptinfo.losses import InformationTerms, cma_loss
from promptinfo.methods import MethodOutput
from promptinfo.pseudo import candidate_probs

MIN_TRUSTED = 2
"""Trusted images a batch needs for the information terms (a matrix entropy of one row is degenerate)."""


class UnlabelledObjective:
    """The loss of a pseudo-labelled batch from the configured terms (unweighted terms, with their weights)."""

    def __init__(self, ce_weight: float, cfg) -> None:
        self.info = InformationTerms(mi_weight=cfg.mi_weight, gap_weight=cfg.gap_weight, use_mir=cfg.use_mir,
                                     use_hdr=cfg.use_hdr, level=cfg.level)
        self.weights = {"ce": ce_weight, **self.info.weights(), "cma": cfg.cma_weight}
        self.weights = {k: w for k, w in self.weights.items() if w > 0 or k == "ce"}

    def __call__(self, output: MethodOutput, pseudo: torch.Tensor, mask: torch.Tensor) -> LossTerms:
        per_image = F.cross_entropy(output.logits.float(), pseudo, reduction="none")  # [b]
        terms = {"ce": (per_image * mask).mean()}  # FixMatch divides by mu * B, not by the trusted count
        if int(mask.sum()) >= MIN_TRUSTED and len(self.weights) > 1:
            image = output.image_features.float()[mask]
            text = output.text_features.float()
            text = text[mask] if text.dim() == 3 else text
            labels = pseudo[mask]
            if "cma" in self.weights:
                terms["cma"] = cma_loss(image, text, labels)
            info_names = [k for k in self.info.weights() if k in self.weights]
            if info_names:
                info = self.info(image, text, labels)
                terms.update({k: info[k] for k in info_names})
        total = sum(self.weights[k] * v for k, v in terms.items())
        return LossTerms(total=total, terms=terms, weights={k: self.weights[k] for k in terms})


@dataclass
class PseudoStats:
    """An epoch's pseudo-labelling counts and unlabelled loss terms (means over the steps that had them)."""

    seen: int = 0
    trusted: int = 0
    correct: int = 0
    steps: int = 0
    loss: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, loss: LossTerms, mask: torch.Tensor, correct: torch.Tensor) -> None:
        self.seen += mask.numel()
        self.trusted += int(mask.sum())
        self.correct += int((correct & mask).sum())
        self.steps += 1
        self.loss += float(loss.total.detach())
        for name, value in loss.terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())
            self.counts[name] = self.counts.get(name, 0) + 1
        self.weights.update(loss.weights)

    def row(self) -> dict:
        row = {"loss_unlabelled": self.loss / max(self.steps, 1)}
        row.update({f"loss_u/{k}": self.sums[k] / self.counts[k] for k in self.sums})
        row.update({f"weight_u/{k}": w for k, w in self.weights.items()})
        row.update({"pseudo/seen": self.seen, "pseudo/labelled": self.trusted,
                    "pseudo/rate": self.trusted / max(self.seen, 1)})
        if self.trusted:
            row["pseudo/accuracy"] = 100.0 * self.correct / self.trusted
        return row


class SemiStep:
    """Draws, pseudo-labels and scores the unlabelled batch of every training step.

    Args:
        strategy: the `PseudoLabeler`.
        views: `FeatureViews` or `ImageViews` of the unlabelled images.
        objective: the `UnlabelledObjective`.
        unlabelled: the unlabelled set (its hidden labels serve the accuracy report only).
        predict: `(source, method) -> probabilities [n, C]` of every unlabelled image (test transform),
            from the method ("model") or zero-shot CLIP ("zeroshot"); used by offline strategies.
        batch_size: unlabelled images per step (`mu * trainer.batch_size`).
        labelled: labelled training images (the strategy may weigh its pool against them).
    """

    def __init__(self, strategy, views, objective: UnlabelledObjective, unlabelled: Unlabelled, rt, predict,
                 batch_size: int, seed: int, labelled: int) -> None:
        self.strategy, self.views, self.objective, self.rt = strategy, views, objective, rt
        self.candidates, self.hidden = unlabelled.candidates, unlabelled.hidden_labels
        self.predict, self.batch_size, self.seed, self.labelled = predict, batch_size, seed, labelled
        self.stats = PseudoStats()
        self.active = False

    def start_epoch(self, method, epoch: int, epochs: int, steps: int) -> None:
        """Refresh an offline strategy's pool when due, weigh it, then draw the epoch's unlabelled batches."""
        source = self.strategy.refresh_source(epoch, epochs)
        if source is not None:
            self.strategy.refresh(self.predict(source, method), epoch, epochs)
        self.objective.weights["ce"] = self.strategy.pseudo_weight(self.labelled)
        self.stats = PseudoStats()
        pool = self.strategy.pool()
        self.active = pool.numel() > 0 and steps > 0
        if self.active:
            self.views.start_epoch(epoch, unlabelled_order(pool, steps, self.batch_size, self.seed, epoch))

    def loss(self, method, step: int) -> LossTerms | None:
        """The unlabelled loss of step `step` (0-based) of the epoch; None when the pool is empty."""
        if not self.active:
            return None
        weak, strong, index = self.views.batch(step)
        probs = None
        if self.strategy.online:
            with torch.no_grad():
                probs = candidate_probs(self.rt.forward(method, weak, self.views.kind).logits, self.candidates)
        pseudo, mask = self.strategy.label(probs, index)
        inputs = strong if self.strategy.uses_strong_view else weak
        output = self.rt.forward(method, inputs, self.views.kind)
        device = output.logits.device
        loss = self.objective(output, pseudo.to(device), mask.to(device))
        self.stats.add(loss, mask.cpu(), pseudo.cpu() == self.hidden[index.cpu()])  # analysis only
        return loss

    def row(self) -> dict:
        """The epoch's pseudo-label counts, accuracy and unlabelled loss terms, plus the pool's."""
        row = self.stats.row()
        pool = self.strategy.pool()
        if not self.strategy.online:
            labels = self.strategy.label(None, pool)[0]
            row["pseudo/pool"] = pool.numel()
            if pool.numel():
                row["pseudo/pool_accuracy"] = 100.0 * float((labels == self.hidden[pool]).double().mean())
        return row
