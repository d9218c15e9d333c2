"""Information metrics on whole evaluation sets (tens of thousands of samples).

Entropy and effective rank of a full set are exact through the d x d path of
:func:`~promptinfo.metrics.information.matrix_entropy`. Mutual information needs the
Hadamard product of two n x n kernels, whose Khatri-Rao width (dx*dy = 262,144 for 512-d
features) exceeds n, so it is computed exactly on class-level matrices
(:func:`class_information`) and estimated on sample-level matrices from seeded random
subsets (:func:`sampled_information`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from promptinfo.metrics import _spectral as sp
from promptinfo.metrics.information import information_summary


def _check_labels(labels: Tensor, n: int, name: str = "labels") -> None:
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D tensor with one entry per sample ({n}), got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")


def class_means(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Means of the L2-normalised features of each class present, in float64.

    Args:
        features: [n, d].
        labels: [n] integer class indices.

    Returns:
        ``(means [P, d], classes [P])`` for the P classes present, sorted by class index.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be [n, d], got shape {tuple(features.shape)}")
    _check_labels(labels, features.shape[0])
    xn = sp.normalize_rows(features, "features")
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = xn.new_zeros(classes.shape[0], xn.shape[1]).index_add(0, inverse, xn)  # [P, d]
    return sums / counts.unsqueeze(1).to(sums.dtype), classes


def class_information(
    features: Tensor, labels: Tensor, weights: Tensor, alpha: float = 1.0, path: str = "auto"
) -> dict[str, Tensor]:
    """Exact :func:`information_summary` of class means against classifier weights.

    Rows are the classes present in ``labels``: the mean normalised feature of class c is
    paired with ``weights[c]``.

    Args:
        features: [n, d] image features.
        labels: [n] class indices into ``weights``.
        weights: [C, d] classifier weights (e.g. text embeddings of the class prompts).
    """
    if weights.dim() != 2:
        raise ValueError(f"weights must be [C, d] classifier weights, got shape {tuple(weights.shape)}")
    means, classes = class_means(features, labels)
    if int(classes.min()) < 0 or int(classes.max()) >= weights.shape[0]:
        raise ValueError(f"labels must lie in [0, {weights.shape[0]}) to index weights [C, d]")
    return information_summary(means, weights[classes], alpha=alpha, path=path)


def _spread(values: list[float]) -> dict[str, object]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "values": values}


@torch.no_grad()
def sampled_information(
    x: Tensor,
    y: Tensor,
    subset_size: int,
    num_subsets: int = 10,
    seed: int = 0,
    alpha: float = 1.0,
    path: str = "auto",
) -> dict[str, dict[str, object]]:
    """Estimate sample-level entropies, MI, MIR and HDR from seeded random subsets.

    Each subset draws ``subset_size`` paired rows without replacement (rows of ``x`` and
    ``y`` stay paired); subsets are independent draws from ``torch.Generator`` seeded with
    ``seed``, so the same seed gives the same numbers.

    Returns:
        For each key of :func:`information_summary`, ``{"mean", "std", "values"}`` with
        Python floats; ``std`` is the sample standard deviation across subsets (0 for one).
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be paired [n, dx] and [n, dy], got {tuple(x.shape)} and {tuple(y.shape)}")
    n = x.shape[0]
    if not 2 <= subset_size <= n:
        raise ValueError(f"subset_size must be in [2, n={n}], got {subset_size}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {}
    for _ in range(num_subsets):
        index = torch.randperm(n, generator=generator)[:subset_size].to(x.device)
        summary = information_summary(x[index], y[index], alpha=alpha, path=path)
        for key, value in summary.items():
            values.setdefault(key, []).append(float(value))
    return {key: _spread(vals) for key, vals in values.items()}
