"""Helpers shared by the text-prompt methods: tokenised class prompts and context initialisation."""

from __future__ import annotations

from typing import Sequence

import torch

from promptinfo.backbones import Backbone


@torch.no_grad()
def embed_prompts(backbone: Backbone, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids `[n, L]` and frozen word embeddings `[n, L, width]` of prompts.

    L is cut to the longest end-of-text position + 1 when the backbone truncates text (exact for
    causal towers, see `Backbone.truncate_text`), which saves memory for large class lists.
    """
    tokens = backbone.tokenize(texts)
    if backbone.truncate_text:
        tokens = tokens[:, : int(backbone.eot_positions(tokens).max()) + 1]
    return tokens, backbone.token_embedding(tokens)


def phrase_length(backbone: Backbone, phrase: str) -> int:
    """Number of tokens a phrase takes between start- and end-of-text."""
    tokens = backbone.tokenize([phrase])
    return int(backbone.eot_positions(tokens)[0]) - 1


@torch.no_grad()
def init_context(backbone: Backbone, phrase: str | None, n_ctx: int, std: float = 0.02) -> torch.Tensor:
    """Context vectors `[n_ctx, width]`: the word embeddings of `phrase`, or N(0, std^2) without one."""
    if phrase:
        tokens = backbone.tokenize([phrase])
        n = phrase_length(backbone, phrase)
        return backbone.token_embedding(tokens)[0, 1 : 1 + n].float().clone()
    return torch.randn(n_ctx, backbone.text_width, device=backbone.device) * std


def placeholder_prefix(n_ctx: int) -> str:
    """The text whose tokens the context vectors replace ("X X X X" as in CoOp)."""
    return " ".join(["X"] * n_ctx)
