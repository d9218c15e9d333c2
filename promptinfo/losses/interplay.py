"""Information-interplay loss terms between image features and text classifier weights.

Song et al., arXiv 2406.03999: at neural collapse the representations Z and the
classifier weights of their labels W_y share as much information as possible and have
equal entropy. The terms below reward mutual information (or MIR) and penalise the
entropy difference (or HDR). Entropies are unnormalised (nats).

Convention shared by every loss in :mod:`promptinfo.losses`: functions return a dict of
UNWEIGHTED named terms, each a scalar to MINIMISE; the weights live in a separate dict
keyed by the same names (see :meth:`InformationTerms.weights`, :func:`cma_weights`) and
:func:`~promptinfo.losses.weighted_sum` combines them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from promptinfo.losses._inputs import (
    check_inputs,
    class_text,
    group_by_class,
    loss_dtype,
)
from promptinfo.metrics.information import information_summary, label_weights
from promptinfo.metrics.inspection import class_means

LEVELS = ("batch", "class")


def _paired_rows(image_features: Tensor, text_features: Tensor, labels: Tensor, level: str) -> tuple[Tensor, Tensor]:
    if level == "batch":
        return image_features, label_weights(text_features, labels)  # [B, d], [B, d]
    means, _ = class_means(image_features, labels)  # [P, d], classes sorted as in group_by_class
    classes, inverse, counts = group_by_class(labels)
    return means, class_text(text_features, labels, classes, inverse, counts)  # [P, d], [P, d]


def information_terms(
    image_features: Tensor,
    text_features: Tensor,
    labels: Tensor,
    use_mir: bool = False,
    use_hdr: bool = False,
    level: str = "batch",
) -> dict[str, Tensor]:
    """Mutual-information reward and entropy-gap penalty, as terms to minimise.

    Args:
        image_features: [B, d] image features Z.
        text_features: [C, d] classifier weights, or [B, C, d] per image (CoCoOp).
        labels: [B] class indices.
        use_mir: reward MIR (term ``"mir"`` = 1 - MIR) instead of MI (term ``"mi"`` = -MI).
        use_hdr: penalise HDR (term ``"hdr"``) instead of |H(Z) - H(W_y)| (term ``"entropy_gap"``).
        level: ``"batch"``: Z against W_y row by row; ``"class"``: mean normalised image
            feature of each class present against that class's text feature.

    Returns:
        Two unweighted scalar terms, named as above.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    check_inputs(image_features, text_features, labels)
    z, w = _paired_rows(image_features, text_features, labels, level)
    info = information_summary(z, w)
    dtype = loss_dtype(image_features)
    reward = ("mir", 1.0 - info["mir"]) if use_mir else ("mi", -info["mi"])
    gap = ("hdr", info["hdr"]) if use_hdr else ("entropy_gap", (info["entropy_x"] - info["entropy_y"]).abs())
    return {reward[0]: reward[1].to(dtype), gap[0]: gap[1].to(dtype)}


@dataclass(frozen=True)
class InformationTerms:
    """Configuration of the interplay terms: which variants, which level, what weights."""

    mi_weight: float = 0.0
    gap_weight: float = 0.0
    use_mir: bool = False
    use_hdr: bool = False
    level: str = "batch"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        if self.mi_weight < 0 or self.gap_weight < 0:
            raise ValueError(f"weights must be >= 0 (terms are already signed to minimise), got {self}")

    def weights(self) -> dict[str, float]:
        """Weight of each term returned by :meth:`__call__`, keyed by term name."""
        return {"mir" if self.use_mir else "mi": self.mi_weight, "hdr" if self.use_hdr else "entropy_gap": self.gap_weight}

    def __call__(self, image_features: Tensor, text_features: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return information_terms(
            image_features, text_features, labels, use_mir=self.use_mir, use_hdr=self.use_hdr, level=self.level
        )
