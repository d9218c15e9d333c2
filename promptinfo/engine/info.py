"""Information metrics between image features Z and the classifier weights of their labels W_y.

Logged at the end of every epoch on a fixed subset of training images so their trajectory can be
plotted (Song et al., arXiv 2409.16767 and 2406.03999), and reported for each evaluation on a fixed
subset of its test images.
"""

from __future__ import annotations

import torch

from promptinfo.metrics import effective_rank, information_summary


@torch.no_grad()
def information_metrics(image_features: torch.Tensor, label_text: torch.Tensor) -> dict[str, float]:
    """Entropies (nats), MI, MIR, HDR and effective ranks of Z `[n, d]` and W_y `[n, d]` (float64)."""
    z, w = image_features.double().cpu(), label_text.double().cpu()
    info = information_summary(z, w)
    return {
        "entropy_image": float(info["entropy_x"]),
        "entropy_text": float(info["entropy_y"]),
        "entropy_joint": float(info["entropy_joint"]),
        "mi": float(info["mi"]),
        "mir": float(info["mir"]),
        "hdr": float(info["hdr"]),
        "erank_image": float(effective_rank(z)),
        "erank_text": float(effective_rank(w)),
    }


def fixed_subset(n: int, size: int, seed: int) -> torch.Tensor:
    """`min(size, n)` sorted indices drawn once from a generator seeded by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[: min(size, n)].sort().values
