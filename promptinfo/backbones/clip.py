"""The adapter between prompt methods and open_clip models: the only code that reads open_clip internals.

Text is encoded from token *embeddings* so methods can splice learnable vectors in; images are encoded
with optional prompt tokens appended after the patch tokens. Deeper prompts replace the prompt tokens
before chosen transformer blocks (MaPLe, IVLP, PromptSRC, VPT).
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import torch
import torch.nn.functional as F
from open_clip.model import get_model_preprocess_cfg
from open_clip.transformer import TextTransformer, VisionTransformer
from torch import nn

from promptinfo.errors import BackboneNotSupportedError

Prompts = torch.Tensor  # [n_prompt, width] shared by the batch, or [batch, n_prompt, width]


@dataclass(frozen=True)
class PreprocessConfig:
    """How the backbone expects images: read from open_clip, used by the data transforms."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"


class Backbone(nn.Module):
    """A frozen open_clip model with prompt-aware text and image encoders.

    Attributes:
        name: architecture name (or checkpoint stem for OpenAI files).
        weights_id: pretrained tag or file fingerprint; recorded in prompt checkpoints.
        truncate_text: run the text transformer only up to the longest end-of-text token; switched
            on automatically where it is exact (causal mask and end-of-text pooling).
        text_buckets: with truncation, split a text pass into at most this many passes over prompts
            of similar length, each cut at its own longest end-of-text token (1: one pass).
    """

    def __init__(self, model: nn.Module, name: str, weights_id: str, tokenizer) -> None:
        super().__init__()
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.name = name
        self.weights_id = weights_id
        self.tokenizer = tokenizer
        self._text = _text_tower(model, name)
        if not getattr(self._text.transformer, "batch_first", True):
            raise BackboneNotSupportedError(f"Backbone {name!r} runs its transformer sequence-first; update open_clip.")
        self.truncate_text = self.text_truncation_exact
        self.text_buckets = 4

    def train(self, mode: bool = True) -> "Backbone":
        """The backbone always stays in eval mode (frozen statistics, no dropout)."""
        return super().train(False)

    # ----------------------------------------------------------------- properties read from the model
    @property
    def embed_dim(self) -> int:
        """Width of the joint image-text embedding space."""
        return self.model.visual.output_dim

    @property
    def text_width(self) -> int:
        return self._text.transformer.width

    @property
    def text_layers(self) -> int:
        return len(self._text.transformer.resblocks)

    @property
    def context_length(self) -> int:
        return self._text.positional_embedding.shape[0]

    @property
    def vision_width(self) -> int:
        return self._vit().transformer.width

    @property
    def vision_layers(self) -> int:
        return len(self._vit().transformer.resblocks)

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self._vit().grid_size)

    @property
    def supports_vision_prompts(self) -> bool:
        return isinstance(self.model.visual, VisionTransformer)

    @property
    def text_truncation_exact(self) -> bool:
        """Whether the feature at end-of-text depends only on earlier tokens (causal mask, EOT pooling)."""
        t = self._text
        return t.attn_mask is not None and t.pool_type in ("argmax", "eos") and not t.pad_mask

    @property
    def dtype(self) -> torch.dtype:
        return self._text.positional_embedding.dtype

    @property
    def device(self) -> torch.device:
        return self._text.positional_embedding.device

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return getattr(self.model, "logit_bias", None)

    @property
    def preprocess_cfg(self) -> PreprocessConfig:
        cfg = get_model_preprocess_cfg(self.model)
        size = cfg.get("size", self.model.visual.image_size)
        size = size if isinstance(size, int) else size[0]
        return PreprocessConfig(
            size=int(size),
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            interpolation=cfg.get("interpolation", "bicubic"),
            resize_mode=cfg.get("resize_mode", "shortest"),
        )

    # ----------------------------------------------------------------- text
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids `[n, context_length]` on the backbone's device."""
        return self.tokenizer(list(texts)).to(self.device)

    def token_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Word embeddings `[n, L, text_width]` of token ids (no positional embedding)."""
        return self._text.token_embedding(tokens).to(self.dtype)

    def vocabulary(self) -> tuple[torch.Tensor, list[str]]:
        """Every token's word embedding `[vocab, text_width]` and its text, by token id (to read prompts as words)."""
        weight = self._text.token_embedding.weight.detach()
        return weight, [token_text(self.tokenizer, i) for i in range(weight.shape[0])]

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Index of the token whose feature is pooled (end-of-text), per sequence."""
        if self._text.pool_type == "eos":
            return (tokens == self._text.eos_id).int().argmax(dim=-1)
        return tokens.argmax(dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unnormalised text features `[n, embed_dim]` of token ids."""
        return self.encode_text_embeddings(self.token_embedding(tokens), tokens)

    def encode_text_embeddings(
        self,
        embeddings: torch.Tensor,
        tokens: torch.Tensor,
        deep_prompts: Sequence[Prompts] | None = None,
        prompt_start: int = 1,
    ) -> torch.Tensor:
        """Text features from token embeddings, with optional deep prompts.

        Args:
            embeddings: `[n, L, text_width]` token embeddings, learnable vectors already spliced in.
            tokens: `[n, L]` token ids of the same prompts (placeholders where vectors were spliced);
                they locate the end-of-text token and padding.
            deep_prompts: `deep_prompts[i]` replaces the `len` positions starting at `prompt_start`
                right before transformer block `i + 1` (MaPLe/IVLP deep language prompts).
            prompt_start: first replaced position (1: right after the start-of-text token).

        Returns:
            `[n, embed_dim]` unnormalised features.
        """
        deep_prompts = list(deep_prompts or [])
        if len(deep_prompts) >= self.text_layers:
            raise ValueError(f"{len(deep_prompts)} deep text prompts for {self.text_layers} text layers.")
        eot = self.eot_positions(tokens)
        if not self.truncate_text:
            return self._encode_text(embeddings, tokens, eot, deep_prompts, prompt_start, embeddings.shape[1])
        buckets = length_buckets((eot + 1).tolist(), self.text_buckets)
        if len(buckets) == 1:
            return self._encode_text(embeddings, tokens, eot, deep_prompts, prompt_start, buckets[0][1])
        parts, order = [], []
        for rows, length in buckets:
            rows = torch.tensor(rows, device=tokens.device)
            deep = [p[rows] if p.dim() == 3 else p for p in deep_prompts]
            parts.append(self._encode_text(embeddings[rows], tokens[rows], eot[rows], deep, prompt_start, length))
            order.append(rows)
        return torch.cat(parts)[torch.argsort(torch.cat(order))]

    def _encode_text(self, embeddings, tokens, eot, deep_prompts, prompt_start: int, length: int) -> torch.Tensor:
        """One text pass over the first `length` positions (exact when no pooled token lies beyond them)."""
        t = self._text
        x = embeddings[:, :length].to(self.dtype) + t.positional_embedding[:length].to(self.dtype)
        x = _run_blocks(t.transformer.resblocks, x, deep_prompts, prompt_start, self._text_mask(tokens, length))
        x = t.ln_final(x)
        pooled = _pool_text(x, eot, t.pool_type)
        return _project(pooled, t.text_projection)

    def _text_mask(self, tokens: torch.Tensor, length: int) -> torch.Tensor | None:
        t = self._text
        if t.pad_mask:
            valid = tokens[:, :length] != t.pad_id  # [n, L]
            mask = torch.zeros(valid.shape, dtype=self.dtype, device=valid.device)
            mask = mask.masked_fill(~valid, float("-inf"))[:, None, :].expand(-1, length, -1)
            return mask.repeat_interleave(t.heads, 0)  # [n * heads, L, L]
        return None if t.attn_mask is None else t.attn_mask[:length, :length]

    # ----------------------------------------------------------------- images
    def encode_image(
        self,
        images: torch.Tensor,
        prompts: Prompts | None = None,
        deep_prompts: Sequence[Prompts] | None = None,
    ) -> torch.Tensor:
        """Unnormalised image features `[batch, embed_dim]`, with optional vision prompt tokens.

        Args:
            images: `[batch, 3, H, W]` preprocessed images.
            prompts: tokens appended after the class and patch tokens, after the positional
                embedding and before the pre-LayerNorm (VPT-deep/MaPLe placement).
            deep_prompts: `deep_prompts[i]` replaces the last prompt tokens right before block `i + 1`.
        """
        if prompts is None:
            if deep_prompts:
                raise ValueError("deep vision prompts need input-level prompts of the same length.")
            return self.model.encode_image(images)
        v = self._vit()
        deep_prompts = list(deep_prompts or [])
        if len(deep_prompts) >= self.vision_layers:
            raise ValueError(f"{len(deep_prompts)} deep vision prompts for {self.vision_layers} vision layers.")
        x = self._patch_tokens(v, images)  # [B, 1 + grid**2, width]
        prompts = _expand(prompts, x.shape[0]).to(x.dtype)
        n_prompt = prompts.shape[1]
        x = v.ln_pre(torch.cat([x, prompts], dim=1))
        x = _run_blocks(v.transformer.resblocks, x, deep_prompts, x.shape[1] - n_prompt)
        pooled, _ = v._pool(x[:, :-n_prompt])
        return pooled if v.proj is None else pooled @ v.proj

    @staticmethod
    def _patch_tokens(v: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
        x = v.conv1(images.to(v.conv1.weight.dtype))  # [B, width, gh, gw]
        x = x.flatten(2).transpose(1, 2)  # [B, gh * gw, width]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.patch_dropout(x)

    def _vit(self) -> VisionTransformer:
        if not self.supports_vision_prompts:
            raise BackboneNotSupportedError(
                f"Backbone {self.name!r} has a {type(self.model.visual).__name__} image tower, which cannot "
                "take vision prompt tokens. Methods with vision prompts (MaPLe, IVLP, VPT, PromptSRC) need an "
                "open_clip ViT backbone such as ViT-B-16; text-only methods (CoOp, CoCoOp, KgCoOp) work here."
            )
        return self.model.visual

    def extra_repr(self) -> str:
        return f"name={self.name}, weights={self.weights_id}, truncate_text={self.truncate_text}"


def _text_tower(model: nn.Module, name: str) -> SimpleNamespace:
    """The text-tower pieces of a CLIP (text modules on the model) or CustomTextCLIP (model.text)."""
    if isinstance(getattr(model, "text", None), TextTransformer):
        t = model.text
        if t.cls_emb is not None:
            raise BackboneNotSupportedError(
                f"Backbone {name!r} pools text with an appended class token (CoCa-style); prompt methods "
                "need end-of-text or last-token pooling. Choose a CLIP or SigLIP backbone."
            )
        return SimpleNamespace(
            token_embedding=t.token_embedding, positional_embedding=t.positional_embedding,
            transformer=t.transformer, ln_final=t.ln_final, text_projection=t.text_projection,
            attn_mask=t.attn_mask, pool_type=t.pool_type, eos_id=t.eos_id, pad_id=t.pad_id,
            pad_mask=t.use_pad_mask, heads=t.heads,
        )
    if hasattr(model, "transformer") and hasattr(model, "token_embedding"):
        return SimpleNamespace(
            token_embedding=model.token_embedding, positional_embedding=model.positional_embedding,
            transformer=model.transformer, ln_final=model.ln_final, text_projection=model.text_projection,
            attn_mask=model.attn_mask, pool_type=model.text_pool_type,
            eos_id=getattr(model, "text_eos_id", None), pad_id=0, pad_mask=False, heads=None,
        )
    raise BackboneNotSupportedError(
        f"Backbone {name!r} has a {type(getattr(model, 'text', model)).__name__} text tower (e.g. a Hugging Face "
        "model) whose token embeddings prompt methods cannot reach. Choose an open_clip model with a native "
        "text transformer."
    )


def token_text(tokenizer, token_id: int) -> str:
    """The text of one token id: open_clip's BPE tokenizer or a Hugging Face tokenizer."""
    decode = getattr(getattr(tokenizer, "tokenizer", None), "decode", None) or getattr(tokenizer, "decode", None)
    if decode is None:
        return f"<{token_id}>"
    return decode([token_id]).strip()


def _expand(prompts: torch.Tensor, batch: int) -> torch.Tensor:
    return prompts.expand(batch, -1, -1) if prompts.dim() == 2 else prompts


def length_buckets(lengths: Sequence[int], max_buckets: int, min_rows: int = 16) -> list[tuple[list[int], int]]:
    """Group sequences by length so that running each group cut at its own longest length costs the
    fewest token positions: at most `max_buckets` groups of at least `min_rows` sequences each.

    Returns:
        `(row indices, length)` per group, shortest group first; one group of every row when
        splitting saves nothing.
    """
    histogram = Counter(lengths)
    distinct = sorted(histogram)
    if len(distinct) <= 1 or max_buckets <= 1:
        return [(list(range(len(lengths))), max(distinct, default=0))]
    counts = [histogram[d] for d in distinct]
    m = len(distinct)
    prefix = [0]
    for c in counts:
        prefix.append(prefix[-1] + c)
    # best[k][j]: fewest positions covering the j shortest distinct lengths with k groups;
    # cut[k][j]: where the last of those groups starts
    inf = float("inf")
    best = [[inf] * (m + 1) for _ in range(max_buckets + 1)]
    cut = [[0] * (m + 1) for _ in range(max_buckets + 1)]
    best[0][0] = 0
    for k in range(1, max_buckets + 1):
        for j in range(1, m + 1):
            for i in range(j):
                rows = prefix[j] - prefix[i]
                if best[k - 1][i] == inf or (rows < min_rows and rows != len(lengths)):
                    continue
                cost = best[k - 1][i] + rows * distinct[j - 1]
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    k = min(range(1, max_buckets + 1), key=lambda k: (best[k][m], k))
    bounds, j = [], m
    while k > 0:
        i = cut[k][j]
        bounds.append((distinct[i], distinct[j - 1]))
        j, k = i, k - 1
    return [([r for r, n in enumerate(lengths) if lo <= n <= hi], hi) for lo, hi in reversed(bounds)]


def _run_blocks(
    blocks: Sequence[nn.Module], x: torch.Tensor, deep_prompts: Sequence[Prompts], start: int,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """`x` `[batch, L, width]` through open_clip's transformer blocks; `deep_prompts[i]` replaces
    positions `[start, start + n_prompt)` right before block `i + 1`.

    While autograd records (training), the blocks run sequence-first (`[L, batch, width]`, the layout
    of OpenAI's CLIP): batch-first `nn.MultiheadAttention` transposes its input itself, and the
    backward pass through that strided input projection makes a ViT-B/16 training pass ~1.7x slower
    on the CPU. The numbers are the same up to float rounding. Inference keeps the batch-first
    layout, which PyTorch's fused attention fast path needs.
    """
    seq_first = (torch.is_grad_enabled() and not torch.compiler.is_compiling()
                 and all(isinstance(getattr(b, "attn", None), nn.MultiheadAttention) for b in blocks))
    dim = 0 if seq_first else 1
    if seq_first:
        x = x.transpose(0, 1).contiguous()
    with _attention_layout(blocks, batch_first=not seq_first):
        for i, block in enumerate(blocks):
            if 1 <= i <= len(deep_prompts):
                x = _replace(x, deep_prompts[i - 1], start, dim)
            x = block(x, attn_mask=attn_mask)
    return x.transpose(0, 1) if seq_first else x


@contextmanager
def _attention_layout(blocks: Sequence[nn.Module], batch_first: bool):
    """Set the layout the blocks' attention expects for the duration of one pass."""
    attns = [b.attn for b in blocks if isinstance(getattr(b, "attn", None), nn.MultiheadAttention)]
    previous = [a.batch_first for a in attns]
    for a in attns:
        a.batch_first = batch_first
    try:
        yield
    finally:
        for a, p in zip(attns, previous):
            a.batch_first = p


def _replace(x: torch.Tensor, prompts: torch.Tensor, start: int, dim: int) -> torch.Tensor:
    """x with positions [start, start + n_prompt) along the sequence dimension `dim` (1: `[batch, L, width]`,
    0: `[L, batch, width]`) replaced by prompts (`[n_prompt, width]` shared, or `[batch, n_prompt, width]`)."""
    prompts = _expand(prompts, x.shape[1 - dim]).to(x.dtype)  # [batch, n_prompt, width]
    if dim == 0:
        prompts = prompts.transpose(0, 1)
    end = start + prompts.shape[dim]
    return torch.cat([x.narrow(dim, 0, start), prompts, x.narrow(dim, end, x.shape[dim] - end)], dim=dim)


def _pool_text(x: torch.Tensor, eot: torch.Tensor, pool_type: str) -> torch.Tensor:
    if pool_type in ("argmax", "eos"):
        return x[torch.arange(x.shape[0], device=x.device), eot]
    if pool_type == "last":
        return x[:, -1]
    if pool_type == "first":
        return x[:, 0]
    raise BackboneNotSupportedError(f"Text pooling {pool_type!r} is not supported by prompt methods.")


def _project(x: torch.Tensor, projection) -> torch.Tensor:
    if projection is None:
        return x
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection


def normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dimension."""
    return F.normalize(x, dim=-1)
