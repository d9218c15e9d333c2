"""Cross-modal alignment (CMA) loss.

Song et al., arXiv 2409.16767 (and its public code): for each class c in the batch, stack
the image features of class c with the text feature of class c, take the matrix entropy
of that group normalised by log(group size), and average over the classes present.
Training minimises ``(1 - lam) * CE + lam * CMA``; the authors' lambda of each dataset lives with the
dataset (``promptinfo.data.cma_lambda``). A group whose image features all point
along the text feature has entropy 0; scattered groups have entropy up to 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from promptinfo.losses._inputs import (
    check_inputs,
    class_text,
    group_by_class,
    loss_dtype,
)
from promptinfo.metrics._spectral import normalize_rows
from promptinfo.metrics.information import matrix_entropy


def cma_loss(image_features: Tensor, text_features: Tensor, labels: Tensor) -> Tensor:
    """Mean over present classes of the normalised matrix entropy of {images of c} + {text of c}.

    Args:
        image_features: [B, d].
        text_features: [C, d] shared classifier, or [B, C, d] per-image classifier
            (CoCoOp); for the latter the group's text row is the mean of the normalised
            ``text[i, c]`` over its images i.
        labels: [B] class indices in [0, C).

    Returns:
        Scalar in [0, 1]. Classes absent from the batch do not contribute. A class with a
        single image forms a group of 2 (normalised by log 2).
    """
    check_inputs(image_features, text_features, labels)
    images = normalize_rows(image_features, "image_features")  # [B, d] float64
    classes, inverse, counts = group_by_class(labels)
    texts = class_text(text_features, labels, classes, inverse, counts)  # [P, d]
    order = torch.argsort(inverse, stable=True)  # samples sorted by class
    starts = torch.cumsum(counts, 0) - counts  # [P]
    total = images.new_zeros(())
    for size in counts.unique().tolist():  # batch the groups of equal size
        members = (counts == size).nonzero().squeeze(1)  # [g]
        rows = order[starts[members, None] + torch.arange(size, device=labels.device)]  # [g, size]
        groups = torch.cat([images[rows], texts[members, None]], dim=1)  # [g, size + 1, d]
        total = total + matrix_entropy(groups, normalized=True).sum()
    return (total / classes.shape[0]).to(loss_dtype(image_features))


def cma_weights(lam: float) -> dict[str, float]:
    """Term weights for ``(1 - lam) * CE + lam * CMA``, keyed by term name."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"CMA lambda must lie in [0, 1], got {lam}")
    return {"ce": 1.0 - lam, "cma": lam}

