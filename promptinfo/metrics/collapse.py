"""Neural-collapse statistics NC1-NC4 (Papyan, Han and Donoho, PNAS 2020).

Evaluation statistics computed in float64 and returned as Python floats (no gradients).
Conventions: ``mu_G`` is the mean of all samples, ``mu_c`` the mean of class c, ``M`` the
[C, d] matrix of centred class means ``mu_c - mu_G``; standard deviations are population
ones (ddof = 0). Every class indexed by ``weights`` must have at least one sample.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PINV_RTOL = 1e-10
"""Eigenvalues of Sigma_B below ``PINV_RTOL * max`` are treated as zero in its pseudo-inverse."""

_CHUNK = 8192


def _validate(features: Tensor, labels: Tensor, weights: Tensor, bias: Tensor | None) -> None:
    if features.dim() != 2 or weights.dim() != 2 or features.shape[1] != weights.shape[1]:
        raise ValueError(
            "features must be [n, d] and weights [C, d] with the same width d (for per-image classifiers "
            f"average them over images first), got {tuple(features.shape)} and {tuple(weights.shape)}"
        )
    if labels.dim() != 1 or labels.shape[0] != features.shape[0] or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be an integer tensor [n={features.shape[0]}], got {tuple(labels.shape)} {labels.dtype}")
    if bias is not None and bias.shape != (weights.shape[0],):
        raise ValueError(f"bias must have shape [C={weights.shape[0]}], got {tuple(bias.shape)}")
    num_classes = weights.shape[0]
    if num_classes < 2:
        raise ValueError("neural-collapse statistics need at least 2 classes")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) to index weights")


def _equinorm(rows: Tensor) -> float:
    norms = rows.norm(dim=1)
    return float(norms.std(correction=0) / norms.mean())


def _angles(rows: Tensor) -> tuple[float, float]:
    """(std of off-diagonal cosines, mean |cos + 1/(C-1)|) of the rows."""
    c = rows.shape[0]
    unit = rows / rows.norm(dim=1, keepdim=True)
    cosines = (unit @ unit.T)[~torch.eye(c, dtype=torch.bool, device=rows.device)]
    return float(cosines.std(correction=0)), float((cosines + 1.0 / (c - 1)).abs().mean())


def _nc1(scatter: Tensor, n: int, centred: Tensor) -> float:
    """tr(Sigma_W Sigma_B^+) / C from the within-class scatter [d, d] of n samples."""
    num_classes = centred.shape[0]
    sigma_w = scatter / n  # [d, d]
    sigma_b = centred.T @ centred / num_classes  # [d, d]
    eigenvalues, eigenvectors = torch.linalg.eigh(sigma_b)
    keep = eigenvalues > PINV_RTOL * eigenvalues.max().clamp_min(0.0)
    v = eigenvectors[:, keep]  # [d, r]
    quad = ((sigma_w @ v) * v).sum(0)  # v_k^T Sigma_W v_k
    return float((quad / eigenvalues[keep]).sum() / num_classes)


def nc4(h: Tensor, means: Tensor, weights: Tensor, bias: Tensor | None) -> float:
    """NC4: fraction of samples [n, d] whose classifier prediction equals the nearest-class-centre one."""
    agree = 0
    sq_norms = (means * means).sum(1)  # [C]
    for start in range(0, h.shape[0], _CHUNK):
        block = h[start : start + _CHUNK]
        logits = block @ weights.T + (0.0 if bias is None else bias)
        nearest = (sq_norms - 2.0 * block @ means.T).argmin(1)  # ||h - mu_c||^2 up to ||h||^2
        agree += int((logits.argmax(1) == nearest).sum())
    return agree / h.shape[0]


@torch.no_grad()
def neural_collapse(
    features: Tensor, labels: Tensor, weights: Tensor, bias: Tensor | None = None, center_weights: bool = False
) -> dict[str, float]:
    """NC1-NC4 of labelled features against a linear classifier.

    Args:
        features: [n, d] penultimate features (pass L2-normalised CLIP features if the
            classifier is cosine-based).
        labels: [n] class indices in [0, C).
        weights: [C, d] classifier weights (text embeddings for CLIP).
        bias: optional [C] classifier bias.
        center_weights: subtract the mean weight before NC2/NC3 (useful for CLIP text
            embeddings, which share a large common component); Papyan et al. do not.

    Returns:
        ``nc1``: tr(Sigma_W Sigma_B^+)/C; ``nc2_equinorm_means`` / ``_weights``: std/mean of
        norms; ``nc2_equiangular_means`` / ``_weights``: std of pairwise cosines;
        ``nc2_maxangle_means`` / ``_weights``: mean |cos + 1/(C-1)|; ``nc3``:
        ||W/||W|| - M/||M|| ||_F^2; ``nc4``: nearest-class-centre agreement in [0, 1].
    """
    _validate(features, labels, weights, bias)
    h = features.to(torch.float64)
    w = weights.to(h)
    counts, means, scatter = class_moments(h, labels, w.shape[0])
    stats = collapse_statistics(counts, means, scatter, w, center_weights)
    stats["nc4"] = nc4(h, means, w, None if bias is None else bias.to(h))
    return stats


def class_moments(h: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class counts [C], means [C, d] (zero for absent classes) and within-class scatter [d, d].

    The scatter is ``sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T``; moments of several batches merge exactly
    (see :class:`~promptinfo.metrics.tracker.CollapseTracker`).
    """
    counts = torch.bincount(labels, minlength=num_classes).to(h)
    sums = h.new_zeros(num_classes, h.shape[1]).index_add(0, labels, h)
    means = sums / counts.clamp_min(1.0)[:, None]  # [C, d]
    within = h - means[labels]  # [n, d]
    return counts, means, within.T @ within


@torch.no_grad()
def collapse_statistics(
    counts: Tensor, means: Tensor, scatter: Tensor, weights: Tensor, center_weights: bool = False
) -> dict[str, float]:
    """NC1-NC3 from class moments (:func:`class_moments`) and classifier weights [C, d], in float64.

    Every class needs a sample (``counts > 0``); see :func:`neural_collapse` for the keys.
    """
    missing = (counts == 0).nonzero().flatten()[:10].tolist()
    if missing:
        raise ValueError(f"every class needs samples for NC statistics; classes without samples: {missing}...")
    w = weights.to(means)
    centred = means - (counts[:, None] * means).sum(0) / counts.sum()  # mu_c - mu_G
    w_nc = w - w.mean(0) if center_weights else w
    eq_m, max_m = _angles(centred)
    eq_w, max_w = _angles(w_nc)
    return {
        "nc1": _nc1(scatter, int(counts.sum()), centred),
        "nc2_equinorm_means": _equinorm(centred),
        "nc2_equinorm_weights": _equinorm(w_nc),
        "nc2_equiangular_means": eq_m,
        "nc2_equiangular_weights": eq_w,
        "nc2_maxangle_means": max_m,
        "nc2_maxangle_weights": max_w,
        "nc3": float((w_nc / w_nc.norm() - centred / centred.norm()).pow(2).sum()),
    }


def collapse_values(num_classes: int) -> dict[str, float]:
    """Closed-form information metrics of features Z and their labels' head rows W_y at neural collapse.

    Assumes what the theorem of Song et al. (arXiv 2406.03999; restated in arXiv 2409.16767) assumes:
    balanced classes, every feature equal to its centred class mean, the means a simplex ETF (NC1, NC2)
    and W_y parallel to them (NC3). Then the unit-trace kernels of Z and W_y both have C - 1 eigenvalues
    1/(C-1), so H = log(C-1); their Hadamard product has one eigenvalue 1/(C-1) and C - 1 eigenvalues
    (C-2)/(C-1)^2, which gives MI and MIR below (0.952351 for C = 10). For C = 2 both entropies are 0
    and MIR is undefined (NaN here; :func:`~promptinfo.metrics.mir` returns 0 there).

    Returns:
        ``entropy`` (nats, of Z and of W_y alike), ``erank`` = C - 1, ``mi``, ``mir``, ``hdr`` = 0.
    """
    c = int(num_classes)
    if c < 2:
        raise ValueError(f"neural collapse needs at least 2 classes, got {num_classes}")
    entropy = math.log(c - 1)
    mi = entropy / (c - 1) + ((c - 2) * math.log(c - 2) / (c - 1) if c > 2 else 0.0)
    return {
        "entropy": entropy,
        "erank": float(c - 1),
        "mi": mi,
        "mir": mi / entropy if c > 2 else math.nan,
        "hdr": 0.0,
    }
