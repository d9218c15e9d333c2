"""Zero-shot inspection: accuracy and information metrics of image features and text classifier weights.

For a test set with image features ``Z`` [n, d], labels ``y`` and zero-shot classifier weights
``W`` [C, d] (text embeddings of the class prompts), :func:`inspect_features` measures

* ``Z``, ``W_y`` (row i is the weight of image i's label) and ``W``: matrix entropy and
  effective rank (exact, d x d path), with the keys the engine uses in results.json;
* the interplay of ``Z`` and ``W_y``: MI, MIR and HDR (Song et al., arXiv 2406.03999), estimated on seeded random subsets because the n x n
  Hadamard kernel of a whole test set is too large; and the same quantities exactly on class
  means vs weights;
* neural-collapse statistics NC1-NC4 (Papyan et al. 2020) of ``Z`` against ``W``.

:func:`inspect_benchmark` produces those inputs from a benchmark with the zero-shot method.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from promptinfo.backbones import normalize
from promptinfo.data import build_transform, feature_key
from promptinfo.metrics import accuracy, class_information, class_means, matrix_entropy, neural_collapse, sampled_information
from promptinfo.report.tables import Table

logger = logging.getLogger(__name__)

METRIC_DESCRIPTIONS = {
    "accuracy": "zero-shot top-1 accuracy (%)",
    "entropy_image": "matrix entropy H(Z) of the image features (nats)",
    "erank_image": "effective rank exp H(Z) of the image features",
    "entropy_text": "matrix entropy H(W_y) of the label text weights of the images (nats)",
    "erank_text": "effective rank exp H(W_y)",
    "entropy_classifier": "matrix entropy H(W) of the C text classifier weights (nats)",
    "erank_classifier": "effective rank exp H(W) of the classifier weights",
    "entropy_joint": "joint entropy H(Z, W_y) of the Hadamard kernel, mean over random subsets (nats)",
    "mi": "matrix mutual information MI(Z; W_y), mean over random subsets (nats)",
    "mi_std": "std of MI(Z; W_y) over subsets",
    "mir": "mutual information ratio MI / min(H(Z), H(W_y)), mean over subsets",
    "mir_std": "std of MIR over subsets",
    "hdr": "entropy difference ratio |H(Z) - H(W_y)| / max(H(Z), H(W_y)), mean over subsets",
    "hdr_std": "std of HDR over subsets",
    "class_entropy_means": "H of the class-mean image features (nats)",
    "class_mi": "MI(class means; W), exact",
    "class_mir": "MIR(class means; W), exact",
    "class_hdr": "HDR(class means; W), exact",
    "nc1": "NC1: tr(Sigma_W Sigma_B^+) / C (within-class variability)",
    "nc2_equinorm_means": "NC2: std/mean of centred class-mean norms",
    "nc2_equinorm_weights": "NC2: std/mean of (centred) weight norms",
    "nc2_equiangular_means": "NC2: std of pairwise cosines of centred class means",
    "nc2_equiangular_weights": "NC2: std of pairwise cosines of (centred) weights",
    "nc2_maxangle_means": "NC2: mean |cos + 1/(C-1)| of centred class means",
    "nc2_maxangle_weights": "NC2: mean |cos + 1/(C-1)| of (centred) weights",
    "nc3": "NC3: ||W/||W|| - M/||M|| ||_F^2 (self-duality)",
    "nc4": "NC4: agreement of the classifier with the nearest class centre",
}
"""Every metric column :func:`inspect_features` returns, with what it is."""

SPECTRUM_TOP = 64
"""Eigenvalues kept per spectrum (largest first)."""


@dataclass
class Inspection:
    """What :func:`inspect_features` measured.

    Attributes:
        metrics: the ``METRIC_DESCRIPTIONS`` keys plus ``n_images``, ``n_classes``,
            ``n_classes_present``, ``pair_subset_size`` and ``pair_subsets``.
        spectra: eigenvalues (descending, at most ``SPECTRUM_TOP``) of the unit-trace kernels of
            ``image features Z``, ``text weights W`` and ``class means``.
    """

    metrics: dict[str, float | int]
    spectra: dict[str, np.ndarray] = field(default_factory=dict)


def kernel_spectrum(x: Tensor, top: int = SPECTRUM_TOP) -> np.ndarray:
    """Largest eigenvalues of ``K = X X^T / n`` for L2-normalised rows (float64, through the smaller side)."""
    xn = normalize(x.to(torch.float64))
    n, d = xn.shape
    matrix = xn.T @ xn / n if d < n else xn @ xn.T / n
    eigenvalues = torch.linalg.eigvalsh(matrix).clamp_min(0.0).flip(0)
    return eigenvalues[:top].cpu().numpy()


def subset_indices(n: int, size: int | None, seed: int) -> Tensor:
    """Sorted indices of a seeded random subset of ``size`` out of ``n`` (all of them for None or size >= n)."""
    if size is None or size >= n:
        return torch.arange(n)
    if size < 2:
        raise ValueError(f"subset size must be at least 2 images, got {size}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:size].sort().values


def _check_inputs(features: Tensor, labels: Tensor, weights: Tensor) -> None:
    if features.dim() != 2 or weights.dim() != 2 or features.shape[1] != weights.shape[1]:
        raise ValueError(f"image features must be [n, d] and weights [C, d], got {tuple(features.shape)} and "
                         f"{tuple(weights.shape)}")
    if labels.shape != (features.shape[0],) or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integer class indices [n={features.shape[0]}], got {tuple(labels.shape)}")
    if features.shape[0] < 2 or weights.shape[0] < 2:
        raise ValueError("inspection needs at least 2 images and 2 classes")
    if int(labels.min()) < 0 or int(labels.max()) >= weights.shape[0]:
        raise ValueError(f"labels must lie in [0, {weights.shape[0]}) to index the classifier weights")


@torch.no_grad()
def inspect_features(features: Tensor, labels: Tensor, weights: Tensor, pair_size: int = 1000,
                     pair_subsets: int = 5, seed: int = 0, logits: Tensor | None = None) -> Inspection:
    """Accuracy and information metrics of image features against zero-shot classifier weights.

    Args:
        features: [n, d] image features (normalised inside).
        labels: [n] class indices.
        weights: [C, d] classifier weights (normalised inside).
        pair_size: images per random subset for MI/MIR/HDR of ``Z`` vs ``W_y`` (capped at n).
        pair_subsets: number of random subsets.
        seed: seed of the subsets.
        logits: [n, C] scores to compute accuracy from (default: cosine similarities, which
            rank classes like CLIP's scaled logits).
    """
    _check_inputs(features, labels, weights)
    z, w = normalize(features.to(torch.float64)), normalize(weights.to(torch.float64))
    scores = z @ w.T if logits is None else logits
    metrics: dict[str, float | int] = {"accuracy": accuracy(scores, labels).percent}
    for name, x in (("image", z), ("text", w[labels]), ("classifier", w)):  # exact through the d x d path
        entropy = float(matrix_entropy(x))
        metrics[f"entropy_{name}"], metrics[f"erank_{name}"] = entropy, math.exp(entropy)
    size = min(pair_size, z.shape[0])
    pairs = sampled_information(z, w[labels], subset_size=size, num_subsets=pair_subsets, seed=seed)
    metrics["entropy_joint"] = pairs["entropy_joint"]["mean"]
    for key in ("mi", "mir", "hdr"):
        metrics[key], metrics[f"{key}_std"] = pairs[key]["mean"], pairs[key]["std"]
    classes = class_information(z, labels, w)
    metrics.update({"class_entropy_means": float(classes["entropy_x"]), "class_mi": float(classes["mi"]),
                    "class_mir": float(classes["mir"]), "class_hdr": float(classes["hdr"])})
    metrics.update(_collapse(z, labels, w))
    present = int(torch.unique(labels).numel())
    metrics.update(n_images=int(z.shape[0]), n_classes=int(w.shape[0]), n_classes_present=present,
                   pair_subset_size=size, pair_subsets=pair_subsets)
    spectra = {"image features Z": kernel_spectrum(z), "text weights W": kernel_spectrum(w),
               "class means": kernel_spectrum(class_means(z, labels)[0])}
    return Inspection(metrics, spectra)


def _collapse(z: Tensor, labels: Tensor, w: Tensor) -> dict[str, float]:
    """NC statistics on the classes present (a subset may miss some), with centred text weights."""
    classes, remapped = torch.unique(labels, return_inverse=True)
    if classes.numel() < w.shape[0]:
        logger.info("NC statistics over the %d of %d classes present in the images", classes.numel(), w.shape[0])
    if classes.numel() < 2:
        raise ValueError("NC statistics need images of at least 2 classes; inspect more images (--subset)")
    return neural_collapse(z, remapped, w[classes], center_weights=True)


EncodeFn = Callable[[Tensor], Tensor]


def inspect_benchmark(method, data, cache, *, precision: str = "fp32", encode_fn: EncodeFn | None = None,
                      subset: int | None = None, seed: int = 0, batch_size: int = 64, num_workers: int = 0,
                      pair_size: int = 1000, pair_subsets: int = 5) -> tuple[Inspection, dict[str, Any]]:
    """Zero-shot inspection of a benchmark's test set.

    Args:
        method: a zero-shot :class:`~promptinfo.methods.PromptMethod` built on ``data.classnames``.
        data: :class:`~promptinfo.data.BenchmarkData`.
        cache: :class:`~promptinfo.data.FeatureCache` for the test image features (keyed by
            ``feature_key`` as the engine's are, so entries are shared with evaluation runs).
        precision: precision name (part of the cache key).
        encode_fn: images -> normalised features on the right device (default: ``method.encode_images``).
        subset: inspect a seeded random subset of this many test images (default: all).

    Returns:
        the inspection, and a description (dataset, counts, templates, images skipped).
    """
    backbone = method.backbone
    items = [data.test[i] for i in subset_indices(len(data.test), subset, seed).tolist()]
    entry = cache.get_or_compute(feature_key(backbone, precision, data.key, "test"), items, encode_fn or method.encode_images,
                                 build_transform(backbone.preprocess_cfg, train=False),
                                 batch_size=batch_size, num_workers=num_workers)
    valid = entry.valid
    if not bool(valid.all()):
        logger.warning("%s: %d unreadable test images left out", data.key, int((~valid).sum()))
    features, labels = entry.view(0)[valid], entry.labels[valid]
    text = method.text_features().detach()  # [C, d] on the method's device
    logits = method.classify(features.to(text.device, text.dtype), text_features=text).logits.float().cpu()
    inspection = inspect_features(features, labels, text.float().cpu(), pair_size, pair_subsets, seed, logits=logits)
    info = {"dataset": data.key, "n_test": len(data.test), "n_images_skipped": int((~valid).sum()),
            "templates": len(method.config.templates), "split_source": data.split_source}
    return inspection, info


def inspection_frame(results: list[tuple[Inspection, dict[str, Any]]], backbone: str, weights: str) -> pd.DataFrame:
    """One row per inspected dataset: description columns, then every metric."""
    rows = [{**info, "backbone": backbone, "weights": weights, **inspection.metrics} for inspection, info in results]
    return pd.DataFrame(rows)


def inspection_table(frame: pd.DataFrame, decimals: int = 4) -> Table:
    """The inspection frame transposed for reading: one row per metric, one column per dataset."""
    rows = []
    for metric, description in METRIC_DESCRIPTIONS.items():
        row = {"Metric": metric, "Description": description}
        for dataset, value in zip(frame["dataset"], frame[metric]):
            row[dataset] = f"{value:.{2 if metric == 'accuracy' else decimals}f}"
        rows.append(row)
    for count in ("n_images", "n_classes", "templates"):
        rows.append({"Metric": count, "Description": _COUNTS[count],
                     **{d: str(v) for d, v in zip(frame["dataset"], frame[count])}})
    backbone = f"{frame['backbone'].iloc[0]} ({frame['weights'].iloc[0]})"
    caption = (f"Zero-shot inspection of {backbone} on the test sets. Z: L2-normalised image features; W: text "
               "classifier weights; W_y: the weight of each image's label. Entropies are von Neumann entropies of "
               "unit-trace kernels (nats), on all inspected images; MI/MIR/HDR of Z vs W_y are means over seeded random subsets of "
               f"{int(frame['pair_subset_size'].max())} images; class_* pair class-mean features with W exactly; NC "
               "statistics use centred text weights.")
    return Table("inspect", "Zero-shot inspection", frame, pd.DataFrame(rows), caption, label_columns=2)


_COUNTS = {"n_images": "test images inspected", "n_classes": "classes", "templates": "prompt templates per class"}
