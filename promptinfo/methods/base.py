"""The interface every prompt-learning method implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
from torch import nn

from promptinfo.backbones import Backbone, normalize
from promptinfo.methods.configs import MethodConfig


DEFAULT_TEMPLATES = ("a photo of a {}.",)


@dataclass
class MethodOutput:
    """What a forward pass produces; losses and metrics read the features from here.

    Attributes:
        logits: `[batch, n_classes]`.
        image_features: `[batch, d]`, L2-normalised.
        text_features: `[n_classes, d]` (one classifier for the batch) or `[batch, n_classes, d]`
            (image-conditioned classifiers, CoCoOp), L2-normalised.
        frozen_image_features: the frozen backbone's L2-normalised image features `[batch, d]`, in training
            passes of a method with `keep_frozen_image_features` and a prompted image side (consistency terms).
    """

    logits: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor
    frozen_image_features: torch.Tensor | None = None


class PromptMethod(nn.Module):
    """A frozen backbone plus learnable prompts; every trainable tensor lives under `self.prompt`.

    Subclasses set `Config`, build their parameters in `__init__` under `self.prompt`, implement
    `text_features`, and override `encode_images` when their image side is prompted.

    Class attributes:
        image_side_frozen: image features come from the frozen backbone alone, so they can be
            cached on disk and never re-encoded (zero-shot, CoOp, CoCoOp, KgCoOp).
        text_depends_on_image: `text_features` needs the image features and returns one classifier
            per image (CoCoOp); otherwise one classifier serves every batch of an evaluation.
        own_loss_terms: names of the terms `extra_losses` returns (so plug-ins cannot add them twice).
    """

    Config: ClassVar[type] = MethodConfig
    registry_name: ClassVar[str] = ""
    image_side_frozen: ClassVar[bool] = True
    text_depends_on_image: ClassVar[bool] = False
    own_loss_terms: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        config,
        dataset_templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.prompt = nn.Module()
        self.classnames = _clean(classnames)
        self.dataset_templates = _templates(dataset_templates)
        self.keep_frozen_image_features = False

    # ----------------------------------------------------------------- class set
    @property
    def class_specific(self) -> bool:
        """Whether the learned prompts are tied to the class list (then they cannot be transferred)."""
        return False

    def set_classnames(self, classnames: Sequence[str], dataset_templates: Sequence[str] | None = None) -> None:
        """Swap the class set (base to novel, cross-dataset) keeping the learned prompts.

        Args:
            classnames: the new class names, ordered by label.
            dataset_templates: the hand-crafted templates of the new classes' dataset, used by methods
                whose frozen text side is built from the dataset's templates (zero-shot, KgCoOp, ProGrad;
                VPT reads only its configured templates).
        """
        self.classnames = _clean(classnames)
        if dataset_templates is not None:
            self.dataset_templates = _templates(dataset_templates)
        self._build_class_prompts()

    def templates_for(self, configured: Sequence[str] | None) -> list[str]:
        """Templates of a frozen text side: the configured ones, else the dataset's, else CLIP's default."""
        if configured:
            return list(configured)
        return self.dataset_templates or list(DEFAULT_TEMPLATES)

    def _build_class_prompts(self) -> None:
        """Rebuild whatever depends on the class names (token buffers, frozen text features)."""

    # ----------------------------------------------------------------- forward
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features `[batch, d]`."""
        return normalize(self.backbone.encode_image(images))

    def text_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised classifier weights `[n_classes, d]`, or `[batch, n_classes, d]`."""
        raise NotImplementedError

    def classify(self, image_features: torch.Tensor, text_features: torch.Tensor | None = None) -> MethodOutput:
        """Logits from normalised image features; pass `text_features` to reuse a classifier."""
        if text_features is None:
            text_features = self.text_features(image_features)
        img = image_features.to(text_features.dtype)
        if text_features.dim() == 2:
            logits = img @ text_features.t()  # [B, C]
        else:
            logits = torch.einsum("bd,bcd->bc", img, text_features)  # [B, C]
        logits = self.backbone.logit_scale * logits
        if self.backbone.logit_bias is not None:
            logits = logits + self.backbone.logit_bias
        return MethodOutput(logits=logits, image_features=image_features, text_features=text_features)

    def forward_output(self, images: torch.Tensor) -> MethodOutput:
        """The forward pass; in training mode with `keep_frozen_image_features`, a prompted image side also
        returns the frozen backbone's image features (frozen-image methods: they are `image_features`)."""
        output = self.classify(self.encode_images(images))
        if self.training and self.keep_frozen_image_features and not self.image_side_frozen:
            with torch.no_grad():
                output.frozen_image_features = normalize(self.backbone.encode_image(images))  # [B, d]
        return output

    def frozen_image_features(self, output: MethodOutput) -> torch.Tensor:
        """The frozen model's image features of a training output `[batch, d]` (for consistency terms).

        Raises:
            ValueError: the image side is prompted and the output was not computed in training mode with
                `keep_frozen_image_features` set.
        """
        if output.frozen_image_features is not None:
            return output.frozen_image_features
        if self.image_side_frozen:
            return output.image_features.detach()
        raise ValueError(
            f"{self.registry_name}'s image side is prompted, so consistency terms need the frozen model's image "
            "features: set method.keep_frozen_image_features = True and compute the output with "
            "method.forward_output(images) in training mode, not from cached features."
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits `[batch, n_classes]`."""
        return self.forward_output(images).logits

    # ----------------------------------------------------------------- training hooks
    def parameter_groups(self) -> list[dict]:
        """The optimiser's parameter groups (as `torch.optim` takes them), every trainable prompt tensor once.

        A group may set its own `lr` (its peak: the engine's per-epoch schedule scales every group by
        the same factor) and `weight_decay`; keys it leaves out take the trainer's values.
        """
        return [{"params": [p for p in self.prompt.parameters() if p.requires_grad]}]

    def after_backward(self) -> None:
        """Called once per optimiser step, after every backward pass of the step (and the gradient
        all-reduce of distributed runs), before gradient clipping and the step: a method may edit
        the `.grad` of its parameters here (ProGrad projects them). Gradients may be scaled by the
        engine's fp16 loss scaler; edits linear in the gradient are unaffected by that."""

    def extra_losses(self, output: MethodOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The method's own loss terms (already weighted), added to cross-entropy by the engine."""
        return {}

    def on_epoch_end(self, epoch: int, max_epochs: int) -> None:
        """Called by the engine after each training epoch (e.g. prompt aggregation in PromptSRC)."""

    def finalize(self) -> None:
        """Called once after training, before the final evaluation."""


def _templates(templates: Sequence[str] | None) -> list[str] | None:
    if templates is None:
        return None
    templates = list(templates)
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise ValueError(f"Templates must each hold '{{}}' once, where the class name goes; got {bad or templates}.")
    return templates


def _clean(classnames: Sequence[str]) -> list[str]:
    names = [str(c).replace("_", " ") for c in classnames]
    if not names:
        raise ValueError("A method needs at least one class name.")
    return names
