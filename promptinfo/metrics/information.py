"""Matrix entropy, matrix mutual information, MIR, HDR and effective rank.

All functions take feature matrices whose rows are samples, shape ``[..., n, d]`` (any
leading batch dimensions), L2-normalise the rows, and work with the unit-trace kernel
``K = G / n`` where ``G`` is the Gram matrix of the normalised rows. They are
differentiable, return float64 tensors of shape ``[...]`` and natural-log values (nats).

References:
    Song et al., "Unveiling the Dynamics of Information Interplay in Supervised Learning",
    arXiv 2406.03999 (MIR, HDR); Song et al., "Exploring Information-Theoretic Metrics
    Associated with Neural Collapse in Supervised Training", arXiv 2409.16767 (matrix
    entropy, CMA); Giraldo, Rao and Principe, "Measures of Entropy From Data Using
    Infinitely Divisible Kernels", 2014 (matrix Renyi entropy, Hadamard joint entropy).

Computation paths (``path`` argument): ``"samples"`` builds the n x n kernel;
``"features"`` builds ``X^T X / n`` (d x d, same non-zero spectrum) for entropies and the
Khatri-Rao (row-wise Kronecker) covariance (dx*dy square) for the Hadamard term;
``"auto"`` (default) picks whichever side is smaller, separately for each matrix.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from promptinfo.metrics import _spectral as sp

RATIO_FLOOR = 1e-12
"""Denominators of MIR and HDR are clamped here: a zero-entropy input gives MIR = HDR = 0."""


def label_weights(text_features: Tensor, labels: Tensor) -> Tensor:
    """W_y `[n, d]`: each sample's label row of a shared `[C, d]` or per-sample `[n, C, d]` classifier."""
    if text_features.dim() == 2:
        return text_features[labels]
    return text_features[torch.arange(labels.shape[0], device=labels.device), labels]


def gram(x: Tensor) -> Tensor:
    """Gram matrix of the L2-normalised rows of ``x`` [..., n, d] -> [..., n, n] (float64, unit diagonal)."""
    xn = sp.normalize_rows(x)
    return xn @ xn.mT


def matrix_entropy(x: Tensor, alpha: float = 1.0, normalized: bool = False, path: str = "auto") -> Tensor:
    """Matrix entropy of ``K = gram(x) / n``.

    ``alpha == 1``: von Neumann entropy ``-tr(K log K)``; otherwise the matrix Renyi
    entropy ``log tr(K^alpha) / (1 - alpha)`` (Giraldo et al. 2014).

    Args:
        x: features [..., n, d], rows are samples.
        alpha: Renyi order, finite and > 0.
        normalized: divide by ``log n`` so values lie in [0, 1], as the public CMA code
            of arXiv 2409.16767 does (needs n >= 2).
        path: ``"auto"``, ``"samples"`` (n x n) or ``"features"`` (d x d).

    Returns:
        float64 tensor of shape ``x.shape[:-2]``.
    """
    alpha = sp.check_alpha(alpha)
    sp.check_path(path)
    xn = sp.normalize_rows(x)
    entropy = sp.entropy_of(sp.marginal_matrix(xn, path), alpha)
    if normalized:
        n = xn.shape[-2]
        if n < 2:
            raise ValueError("normalized matrix entropy divides by log n and needs n >= 2 samples, got n = 1")
        entropy = entropy / math.log(n)
    return entropy


def effective_rank(x: Tensor, alpha: float = 1.0, path: str = "auto") -> Tensor:
    """``exp(H(K))``: between 1 (all rows parallel) and min(n, d) (orthonormal rows).

    Note: this is the exponential of the entropy of ``K``'s eigenvalues, i.e. of the
    squared singular values of the normalised features (not Roy & Vetterli's
    singular-value version).
    """
    return torch.exp(matrix_entropy(x, alpha=alpha, path=path))


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.dim() < 2 or y.dim() < 2 or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            "x and y must be feature matrices [..., n, dx] and [..., n, dy] with the same batch dims and the "
            f"same number of paired samples n, got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )


def information_summary(x: Tensor, y: Tensor, alpha: float = 1.0, path: str = "auto") -> dict[str, Tensor]:
    """Entropies, mutual information, MIR and HDR of paired features in one pass.

    Args:
        x: features [..., n, dx]; row i is paired with row i of ``y``.
        y: features [..., n, dy].
        alpha: Renyi order (1.0 = von Neumann).
        path: ``"auto"``, ``"samples"`` or ``"features"`` (Khatri-Rao for the joint term).

    Returns:
        dict of float64 tensors [...]: ``entropy_x``, ``entropy_y``, ``entropy_joint``
        (of ``Kx * Ky`` renormalised to unit trace), ``mi``, ``mir``, ``hdr``.
    """
    _check_pair(x, y)
    alpha = sp.check_alpha(alpha)
    sp.check_path(path)
    xn, yn = sp.normalize_rows(x, "x"), sp.normalize_rows(y, "y")
    hx = sp.entropy_of(sp.marginal_matrix(xn, path), alpha)
    hy = sp.entropy_of(sp.marginal_matrix(yn, path), alpha)
    hxy = sp.entropy_of(sp.joint_matrix(xn, yn, path), alpha)
    mi = hx + hy - hxy
    return {
        "entropy_x": hx,
        "entropy_y": hy,
        "entropy_joint": hxy,
        "mi": mi,
        "mir": mi / torch.minimum(hx, hy).clamp_min(RATIO_FLOOR),
        "hdr": (hx - hy).abs() / torch.maximum(hx, hy).clamp_min(RATIO_FLOOR),
    }


def mutual_information(x: Tensor, y: Tensor, alpha: float = 1.0, path: str = "auto") -> Tensor:
    """Matrix mutual information ``H(Kx) + H(Ky) - H(Kx * Ky)`` (Hadamard, unit trace)."""
    return information_summary(x, y, alpha, path)["mi"]


def mir(x: Tensor, y: Tensor, alpha: float = 1.0, path: str = "auto") -> Tensor:
    """Matrix mutual information ratio ``MI / min(H(Kx), H(Ky))`` (arXiv 2406.03999)."""
    return information_summary(x, y, alpha, path)["mir"]


def hdr(x: Tensor, y: Tensor, alpha: float = 1.0, path: str = "auto") -> Tensor:
    """Matrix entropy difference ratio ``|H(Kx) - H(Ky)| / max(H(Kx), H(Ky))`` (arXiv 2406.03999)."""
    return information_summary(x, y, alpha, path)["hdr"]
