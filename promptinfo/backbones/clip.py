"""The adapter between prompt methods and open_clip models: the only code that reads open_clip internals.

Text is encoded from token *embeddings* so methods can splice learnable vectors in; images are encoded
with optional prompt tokens appended after the patch tokens. Deeper prompts replace the prompt tokens
before chosen transformer blocks (MaPLe, IVLP, PromptSRC, VPT).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import torch
import torch.nn.functional as F
from open_clip.model import get_model_preprocess_cfg
from open_clip.transformer import TextTransformer, VisionTransformer
from torch import nn

from promptinfo.backbones._blocks import expand, plain_blocks, run_blocks, run_prefix, run_suffix
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
        weights_id: pretrained tag or file fingerprint; recorded in prompt checkpoints, so that a tag
            (`openai`, the demo's `procedural`) rebuilds the backbone wherever the prompts are loaded.
        weights_digest: content identity of the weights: the file fingerprint when they were read from a
            file (also a tag resolved to a local file, as `procedural` is), else `weights_id`. Keys the
            feature cache, so features of other weights under the same tag are never reused.
        truncate_text: run the text transformer only up to the longest end-of-text token; switched
            on automatically where it is exact (causal mask and end-of-text pooling).
        text_buckets: with truncation, split a text pass into at most this many passes over prompts
            of similar length, each cut at its own longest end-of-text token (1: one pass).
        shared_prefix: run the leading positions that a caller declares shared by all its prompts once,
            and let every prompt's later positions attend to their keys and values; switched on
            automatically where it is exact (`shared_prefix_exact`).
    """

    def __init__(self, model: nn.Module, name: str, weights_id: str, tokenizer, weights_digest: str | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.name = name
        self.weights_id = weights_id
        self.weights_digest = weights_digest or weights_id
        self.tokenizer = tokenizer
        self._text = _text_tower(model, name)
        if not getattr(self._text.transformer, "batch_first", True):
            raise BackboneNotSupportedError(f"Backbone {name!r} runs its transformer sequence-first; update open_clip.")
        self._text_plain = plain_blocks(self._text.transformer.resblocks)
        visual = getattr(model.visual, "transformer", None)
        self._vision_plain = visual is not None and plain_blocks(visual.resblocks)
        self.truncate_text = self.text_truncation_exact
        self.text_buckets = 4
        self.shared_prefix = self.shared_prefix_exact

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
    def shared_prefix_exact(self) -> bool:
        """Whether shared leading positions can be computed once: truncation is exact, the mask is exactly
        causal (earlier positions never see later ones) and the blocks are open_clip's standard ones."""
        if not (self.text_truncation_exact and self._text_plain):
            return False
        mask = self._text.attn_mask
        causal = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
        return bool(torch.equal(torch.isneginf(mask), causal) and (mask[~causal] == 0).all())

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
        """Unnormalised text features `[n, embed_dim]` of token ids; leading tokens common to every
        sequence are shared positions (frozen embeddings: equal ids, equal tensors)."""
        return self.encode_text_embeddings(self.token_embedding(tokens), tokens, shared=common_prefix_length(tokens))

    def encode_text_embeddings(
        self,
        embeddings: torch.Tensor,
        tokens: torch.Tensor,
        deep_prompts: Sequence[Prompts] | None = None,
        prompt_start: int = 1,
        shared: int = 0,
    ) -> torch.Tensor:
        """Text features from token embeddings, with optional deep prompts.

        Args:
            embeddings: `[n, L, text_width]` token embeddings, learnable vectors already spliced in; or
                `[g, n, L, text_width]`: g groups of the same n prompts with different values (CoCoOp:
                one group per image).
            tokens: `[n, L]` token ids of the prompts (placeholders where vectors were spliced); they
                locate the end-of-text token and padding.
            deep_prompts: `deep_prompts[i]` replaces the `len` positions starting at `prompt_start`
                right before transformer block `i + 1` (MaPLe/IVLP deep language prompts): `[len, w]`
                shared by every prompt, or `[n, len, w]` one per prompt.
            prompt_start: first replaced position (1: right after the start-of-text token).
            shared: the caller's promise that positions `[0, shared)` hold one tensor for every prompt
                of a group (the start token and shared context vectors, expanded; frozen token
                embeddings). With `shared_prefix`, they are computed once per group.

        Returns:
            `[n, embed_dim]` (or `[g, n, embed_dim]`) unnormalised features.
        """
        deep_prompts = list(deep_prompts or [])
        if len(deep_prompts) >= self.text_layers:
            raise ValueError(f"{len(deep_prompts)} deep text prompts for {self.text_layers} text layers.")
        grouped = embeddings.dim() == 4
        x = embeddings if grouped else embeddings.unsqueeze(0)  # [g, n, L, w]
        eot = self.eot_positions(tokens)
        shared = min(shared, int(eot.min())) if self.shared_prefix else 0
        if shared > 0:
            feats = self._encode_after_prefix(x, eot, deep_prompts, prompt_start, shared)
        else:
            g, n = x.shape[:2]
            deep = [p.repeat(g, 1, 1) if p.dim() == 3 else p for p in deep_prompts]
            flat = self._encode_rows(x.flatten(0, 1), tokens.repeat(g, 1), eot.repeat(g), deep, prompt_start)
            feats = flat.view(g, n, -1)
        return feats if grouped else feats[0]

    def _by_length(self, eot: torch.Tensor, full: int, encode, dim: int) -> torch.Tensor:
        """`encode(rows, length)` per length bucket (`rows` None: all), reassembled in row order along `dim`."""
        if not self.truncate_text:
            return encode(None, full)
        buckets = length_buckets((eot + 1).tolist(), self.text_buckets)
        if len(buckets) == 1:
            return encode(None, buckets[0][1])
        parts, order = [], []
        for rows, length in buckets:
            rows = torch.tensor(rows, device=eot.device)
            parts.append(encode(rows, length))
            order.append(rows)
        return torch.cat(parts, dim).index_select(dim, torch.argsort(torch.cat(order)))

    def _encode_rows(self, embeddings, tokens, eot, deep_prompts, prompt_start: int) -> torch.Tensor:
        """Features `[n, d]` of `[n, L, w]` embeddings, each length bucket in its own pass."""
        def encode(rows, length):
            if rows is None:
                return self._encode_text(embeddings, tokens, eot, deep_prompts, prompt_start, length)
            deep = [p[rows] if p.dim() == 3 else p for p in deep_prompts]
            return self._encode_text(embeddings[rows], tokens[rows], eot[rows], deep, prompt_start, length)

        return self._by_length(eot, embeddings.shape[1], encode, dim=0)

    def _encode_text(self, embeddings, tokens, eot, deep_prompts, prompt_start: int, length: int) -> torch.Tensor:
        """One text pass over the first `length` positions (exact when no pooled token lies beyond them)."""
        t = self._text
        x = embeddings[:, :length].to(self.dtype) + t.positional_embedding[:length].to(self.dtype)
        x = run_blocks(t.transformer.resblocks, x, deep_prompts, prompt_start, self._text_mask(tokens, length),
                       seq_first=self._text_plain)
        x = t.ln_final(x)
        pooled = _pool_text(x, eot, t.pool_type)
        return _project(pooled, t.text_projection)

    def _encode_after_prefix(self, x, eot, deep_prompts, prompt_start: int, shared: int) -> torch.Tensor:
        """Features `[g, n, d]`: the `shared` leading positions once per group, then every prompt's later
        positions attending to their keys and values (exact under the causal mask, `shared_prefix_exact`)."""
        t = self._text
        pos = t.positional_embedding.to(self.dtype)
        deep_head, deep_tail = _split_prompts(deep_prompts, prompt_start, shared)
        head = x[:, 0, :shared].to(self.dtype) + pos[:shared]  # [g, P, w]
        cache = run_prefix(t.transformer.resblocks, head, deep_head, prompt_start)

        def encode(rows, length):
            tail = x[:, :, shared:length] if rows is None else x[:, rows, shared:length]
            deep = [p if p is None or p.dim() == 2 or rows is None else p[rows] for p in deep_tail]
            tail = run_suffix(t.transformer.resblocks, tail.to(self.dtype) + pos[shared:length], cache, deep,
                              max(prompt_start - shared, 0))  # [g, r, S, w]
            at = (eot if rows is None else eot[rows]) - shared
            pooled = t.ln_final(tail[:, torch.arange(tail.shape[1], device=at.device), at])  # [g, r, w]
            return _project(pooled, t.text_projection)

        return self._by_length(eot, x.shape[2], encode, dim=1)

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
        prompts = expand(prompts, x.shape[0]).to(x.dtype)
        n_prompt = prompts.shape[1]
        x = v.ln_pre(torch.cat([x, prompts], dim=1))
        x = run_blocks(v.transformer.resblocks, x, deep_prompts, x.shape[1] - n_prompt, seq_first=self._vision_plain)
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
        return (f"name={self.name}, weights={self.weights_id}, truncate_text={self.truncate_text}, "
                f"shared_prefix={self.shared_prefix}")


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


def common_prefix_length(tokens: torch.Tensor) -> int:
    """Number of leading positions with the same token id in every row of `tokens` `[n, L]`."""
    same = (tokens == tokens[:1]).all(dim=0)  # [L]
    return int(same.int().cumprod(dim=0).sum())


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


def _split_prompts(deep_prompts: Sequence[Prompts], start: int, shared: int) -> tuple[list, list]:
    """Each deep prompt cut where the shared positions end: the part that replaces shared positions
    (`[k, w]`, placed at `start`) and the rest (placed at `max(start - shared, 0)` of the later
    positions); None where a part is empty."""
    head, tail = [], []
    for p in deep_prompts:
        k = min(max(shared - start, 0), p.shape[-2])
        if k and p.dim() == 3:
            raise ValueError(
                f"Deep prompts of shape {tuple(p.shape)} (one per prompt) replace positions {start}..{start + k - 1}, "
                f"which the caller declared shared by every prompt (shared={shared}); pass shared <= {start}."
            )
        head.append(p[:k] if k else None)
        tail.append(p[..., k:, :] if k < p.shape[-2] else None)
    return head, tail


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
