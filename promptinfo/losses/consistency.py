"""Consistency with the frozen model: KgCoOp's knowledge-guided term and PromptSRC's self-consistency terms.

Pure functions of features and logits; `promptinfo.methods.regularizers` computes the frozen side (hand-crafted
text features, frozen image features) and lets any method use them as `loss=` components.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knowledge_distance(text_features: torch.Tensor, frozen_features: torch.Tensor) -> torch.Tensor:
    """KgCoOp's L_kg: mean over classes of 1/2 ||w_i - w_i^clip||^2 between unit-norm class features.

    `text_features` is `[C, d]`, or `[B, C, d]` for image-conditioned classifiers (CoCoOp: the mean over images
    too); `frozen_features` is `[C, d]`. For unit vectors this is 1 - cos(w_i, w_i^clip), the form of the
    authors' code (KgCoOp `trainers/kgcoop.py`); the paper's L_kg (Yao et al., CVPR 2023, Sec. 3) omits the 1/2,
    so the published weight 8.0 goes with this form.
    """
    diff = text_features.float() - frozen_features.float()  # [C, d] or [B, C, d]
    return 0.5 * diff.pow(2).sum(dim=-1).mean()


def logits_consistency(logits: torch.Tensor, frozen_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(frozen) || softmax(prompted)) summed over the batch and classes, divided by their number
    (temperature 1), as the PromptSRC code computes L_SCL-logits (`trainers/promptsrc.py`)."""
    kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(frozen_logits, dim=1), reduction="sum", log_target=True)
    return kl / logits.numel()


def self_consistency(
    text: torch.Tensor, frozen_text: torch.Tensor, image: torch.Tensor, frozen_image: torch.Tensor,
    logits: torch.Tensor, frozen_logits: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """PromptSRC's L_SCL (Khattak et al., ICCV 2023, Sec. 3.1), unweighted: L1 between prompted and frozen text
    features (`scl_text`), L1 between prompted and frozen image features (`scl_image`), and the logits' KL
    (`scl_logits`). Text features are `[C, d]` (or `[B, C, d]`, compared with the frozen `[C, d]` per image)."""
    return {
        "scl_text": F.l1_loss(text.float(), frozen_text.float().expand_as(text)),
        "scl_image": F.l1_loss(image.float(), frozen_image.float()),
        "scl_logits": logits_consistency(logits.float(), frozen_logits.float()),
    }
