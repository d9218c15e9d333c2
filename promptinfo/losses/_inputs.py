"""Shared input checks and label/class gathering for the loss functions."""

from __future__ import annotations

import torch
from torch import Tensor

from promptinfo.metrics._spectral import normalize_rows
from promptinfo.metrics.information import label_weights


def check_inputs(image_features: Tensor, text_features: Tensor, labels: Tensor) -> None:
    """Validate ``image [B, d]``, ``text [C, d]`` or ``[B, C, d]`` and ``labels [B]``."""
    if image_features.dim() != 2:
        raise ValueError(f"image_features must be [B, d], got shape {tuple(image_features.shape)}")
    b, d = image_features.shape
    if text_features.dim() not in (2, 3) or text_features.shape[-1] != d:
        raise ValueError(
            f"text_features must be [C, {d}] (shared classifier) or [B, C, {d}] (per-image classifier), "
            f"got shape {tuple(text_features.shape)}"
        )
    if text_features.dim() == 3 and text_features.shape[0] != b:
        raise ValueError(f"per-image text_features [B, C, d] need B = {b} rows, got {text_features.shape[0]}")
    if labels.shape != (b,) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of shape [{b}], got {tuple(labels.shape)} {labels.dtype}")
    num_classes = text_features.shape[-2]
    if b and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) to index the {num_classes} text features")
    if b == 0:
        raise ValueError("the batch is empty; losses need at least one sample")


def group_by_class(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(classes [P], inverse [B], counts [P])`` of the classes present, sorted by index."""
    return torch.unique(labels, return_inverse=True, return_counts=True)


def class_text(text_features: Tensor, labels: Tensor, classes: Tensor, inverse: Tensor, counts: Tensor) -> Tensor:
    """One text feature per present class, float64 [P, d].

    Shared classifier: ``text[c]`` (normalised). Per-image classifier (CoCoOp): the mean of
    the normalised ``text[i, c]`` over the samples i of class c.
    """
    if text_features.dim() == 2:
        return normalize_rows(text_features[classes], "text_features")
    rows = normalize_rows(label_weights(text_features, labels), "text_features")  # [B, d]
    sums = rows.new_zeros(classes.shape[0], rows.shape[1]).index_add(0, inverse, rows)
    return sums / counts.unsqueeze(1).to(sums.dtype)


def loss_dtype(image_features: Tensor) -> torch.dtype:
    """Loss terms are returned in the image features' dtype, promoted to at least float32."""
    return torch.promote_types(image_features.dtype, torch.float32)
