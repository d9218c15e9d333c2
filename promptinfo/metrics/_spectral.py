"""Spectral traces ``tr f(K)`` of Gram-type matrices with gap-free gradients.

Private helpers for :mod:`promptinfo.metrics.information`. Everything here runs in
float64: matrix entropies of 512-d CLIP features differ in the fourth decimal between
checkpoints, which float32 eigenvalues do not resolve.

Gradients. ``torch.linalg.eigh``'s backward divides by eigenvalue gaps and returns
inf/nan when eigenvalues repeat, which is exactly the neural-collapse regime. A trace of
a spectral function does not need eigenvector derivatives: for symmetric ``K``,
``d tr f(K) = tr(f'(K) dK)`` with ``f'(K) = V diag(f'(lambda)) V^T``, whatever the
multiplicities. :class:`_SpectralTrace` implements that backward directly.

Zero eigenvalues. ``f(lambda) = -lambda log lambda`` is evaluated with ``0 log 0 = 0``.
Its slope ``-(log lambda + 1)`` diverges at 0, so slopes are evaluated at
``max(lambda, EIGEN_FLOOR)``. This only changes the gradient along eigenvectors whose
eigenvalue is (numerically) zero; for ``K = X X^T / n`` such directions are orthogonal to
the column space of ``X`` and contribute nothing to the gradient with respect to ``X``,
so gradients with respect to features stay exact and finite.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

EIGEN_FLOOR = 1e-12
"""Eigenvalues below this are raised to it when slopes ``f'(lambda)`` are evaluated."""

PATHS = ("auto", "samples", "features")
"""``samples``: n x n Gram; ``features``: d x d (or Khatri-Rao dx*dy x dx*dy); ``auto``: smaller."""

SpectralFn = Callable[[Tensor], Tensor]


def _drop_rounding_noise(eigenvalues: Tensor) -> Tensor:
    """Zero eigenvalues below the numerical-rank tolerance ``m * eps * lambda_max``.

    A PSD matrix of rank r < m comes back from eigh with m - r eigenvalues of size ~1e-17
    (either sign). They are harmless for ``-lambda log lambda`` but not for ``lambda^alpha``
    with alpha < 1 (30 of them add ~1e-7 at alpha = 0.5), so they are set to exactly 0.
    """
    size = eigenvalues.shape[-1]
    tolerance = size * torch.finfo(eigenvalues.dtype).eps * eigenvalues[..., -1:].clamp_min(0.0)
    return torch.where(eigenvalues > tolerance, eigenvalues, torch.zeros_like(eigenvalues))


class _SpectralTrace(torch.autograd.Function):
    """``sum_i f(lambda_i(K))`` over the last two dims, backward ``V diag(f'(lambda)) V^T``."""

    @staticmethod
    def forward(ctx, matrix: Tensor, value: SpectralFn, slope: SpectralFn) -> Tensor:
        symmetric = 0.5 * (matrix + matrix.mT)
        eigenvalues, eigenvectors = torch.linalg.eigh(symmetric)  # [..., m], [..., m, m]
        eigenvalues = _drop_rounding_noise(eigenvalues)
        ctx.save_for_backward(eigenvectors, slope(eigenvalues))
        return value(eigenvalues).sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        eigenvectors, slopes = ctx.saved_tensors
        grad_matrix = (eigenvectors * slopes.unsqueeze(-2)) @ eigenvectors.mT
        return grad_output[..., None, None] * grad_matrix, None, None


def _neg_xlogx(eigenvalues: Tensor) -> Tensor:
    return -torch.special.xlogy(eigenvalues, eigenvalues)


def _neg_xlogx_slope(eigenvalues: Tensor) -> Tensor:
    return -(torch.log(eigenvalues.clamp_min(EIGEN_FLOOR)) + 1.0)


def _power(eigenvalues: Tensor, alpha: float) -> Tensor:
    return eigenvalues.pow(alpha)


def _power_slope(eigenvalues: Tensor, alpha: float) -> Tensor:
    return alpha * eigenvalues.clamp_min(EIGEN_FLOOR).pow(alpha - 1.0)


def _spectral_trace(k: Tensor, value: SpectralFn, slope: SpectralFn) -> Tensor:
    if torch.is_grad_enabled() and k.requires_grad:
        return _SpectralTrace.apply(k, value, slope)
    eigenvalues = torch.linalg.eigvalsh(0.5 * (k + k.mT))  # no eigenvectors needed without autograd
    return value(_drop_rounding_noise(eigenvalues)).sum(-1)


def entropy_of(k: Tensor, alpha: float) -> Tensor:
    """Matrix (Renyi-)entropy of unit-trace PSD ``k`` [..., m, m] -> [...] (natural log)."""
    if alpha == 1.0:
        return _spectral_trace(k, _neg_xlogx, _neg_xlogx_slope)
    trace_power = _spectral_trace(k, partial(_power, alpha=alpha), partial(_power_slope, alpha=alpha))
    return torch.log(trace_power) / (1.0 - alpha)


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as float, or raise if it is not a finite positive order."""
    alpha = float(alpha)
    if not (alpha > 0.0 and alpha != float("inf")):
        raise ValueError(f"alpha must be a finite Renyi order > 0 (1.0 = von Neumann), got {alpha}")
    return alpha


def check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    return path


def normalize_rows(x: Tensor, name: str = "x") -> Tensor:
    """L2-normalise the rows of ``x`` [..., n, d] in float64; raise on zero or non-finite rows."""
    if x.dim() < 2:
        raise ValueError(f"{name} must be a feature matrix [..., n, d] (rows are samples), got shape {tuple(x.shape)}")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one sample of width >= 1")
    x64 = x.to(torch.float64)
    norms = torch.linalg.vector_norm(x64, dim=-1, keepdim=True)  # [..., n, 1]
    bad = ~(torch.isfinite(norms) & (norms > 0))
    if bool(bad.any()):
        rows = bad.squeeze(-1).nonzero()[:5, -1].tolist()
        raise ValueError(
            f"{name} has zero or non-finite rows (e.g. sample indices {rows}); "
            "matrix entropy needs finite, non-zero feature vectors: drop or fix those samples"
        )
    return x64 / norms


def uses_feature_side(n: int, width: int, path: str) -> bool:
    """Whether to build the width x width matrix instead of the n x n one."""
    if path == "auto":
        return width < n
    return path == "features"


def marginal_matrix(xn: Tensor, path: str) -> Tensor:
    """Unit-trace matrix with the spectrum of ``K = xn xn^T / n`` (n x n or d x d)."""
    n, d = xn.shape[-2:]
    if uses_feature_side(n, d, path):
        return xn.mT @ xn / n  # [..., d, d]
    return xn @ xn.mT / n  # [..., n, n]


def khatri_rao(xn: Tensor, yn: Tensor) -> Tensor:
    """Row-wise Kronecker product [..., n, dx] x [..., n, dy] -> [..., n, dx*dy]."""
    return (xn.unsqueeze(-1) * yn.unsqueeze(-2)).flatten(-2)


def joint_matrix(xn: Tensor, yn: Tensor, path: str) -> Tensor:
    """Unit-trace matrix with the spectrum of ``n (Kx * Ky)`` (Hadamard product)."""
    n, dx = xn.shape[-2:]
    dy = yn.shape[-1]
    if uses_feature_side(n, dx * dy, path):
        z = khatri_rao(xn, yn)  # [..., n, dx*dy]; z z^T = Gx * Gy
        return z.mT @ z / n
    return (xn @ xn.mT) * (yn @ yn.mT) / n  # [..., n, n]
