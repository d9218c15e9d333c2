"""Running open_clip's residual attention blocks: the layout of training passes, prompt replacement, and
text passes whose leading positions are shared by many prompts (computed once, keys and values reused).

Private to `promptinfo.backbones`: `clip.Backbone` is the public face.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

KeysValues = tuple[torch.Tensor, torch.Tensor]  # keys, values `[g, heads, P, head_dim]`


def plain_blocks(blocks: Sequence[nn.Module]) -> bool:
    """Whether every block is open_clip's standard pre-norm block around `nn.MultiheadAttention` with one
    input projection, the only kind whose attention this module computes itself."""
    return all(
        type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv")
        and isinstance(b.attn, nn.MultiheadAttention) and b.attn.in_proj_weight is not None
        and b.attn.bias_k is None and not b.attn.add_zero_attn
        for b in blocks
    )


def run_blocks(
    blocks: Sequence[nn.Module], x: torch.Tensor, deep_prompts: Sequence[torch.Tensor], start: int,
    attn_mask: torch.Tensor | None = None, seq_first: bool = False,
) -> torch.Tensor:
    """`x` `[batch, L, width]` through the blocks; `deep_prompts[i]` replaces positions
    `[start, start + n_prompt)` right before block `i + 1`.

    With `seq_first` (decided by the caller from `plain_blocks`, once per backbone) and while autograd
    records, the blocks run on `[L, batch, width]`, the layout of OpenAI's CLIP: batch-first
    `nn.MultiheadAttention` transposes its input itself, and the backward pass through that strided input
    projection makes a ViT-B/16 training pass ~1.7x slower on the CPU. The attention is then called
    through `F.multi_head_attention_forward` with the module's own weights, as the module does when it is
    sequence-first, so no shared module is changed. Inference keeps open_clip's batch-first call, which
    PyTorch's fused attention fast path needs. Both layouts give the same numbers up to float rounding.
    """
    seq_first = seq_first and torch.is_grad_enabled() and not torch.compiler.is_compiling()
    dim = 0 if seq_first else 1
    if seq_first:
        x = x.transpose(0, 1).contiguous()
    for i, block in enumerate(blocks):
        if 1 <= i <= len(deep_prompts):
            x = replace(x, deep_prompts[i - 1], start, dim)
        x = _block_seq_first(block, x, attn_mask) if seq_first else block(x, attn_mask=attn_mask)
    return x.transpose(0, 1) if seq_first else x


def _block_seq_first(block: ResidualAttentionBlock, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """open_clip's `ResidualAttentionBlock.forward` on `[L, batch, width]`, attention sequence-first."""
    a = block.attn
    h = block.ln_1(x)
    mask = None if attn_mask is None else attn_mask.to(h.dtype)
    attended = F.multi_head_attention_forward(
        h, h, h, a.embed_dim, a.num_heads, a.in_proj_weight, a.in_proj_bias, a.bias_k, a.bias_v, a.add_zero_attn,
        0.0, a.out_proj.weight, a.out_proj.bias, training=False, need_weights=False, attn_mask=mask,
    )[0]
    x = x + block.ls_1(attended)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def replace(x: torch.Tensor, prompts: torch.Tensor, start: int, dim: int) -> torch.Tensor:
    """x with positions [start, start + n_prompt) along the sequence dimension `dim` (1: `[batch, L, width]`,
    0: `[L, batch, width]`) replaced by prompts (`[n_prompt, width]` shared, or `[batch, n_prompt, width]`)."""
    prompts = expand(prompts, x.shape[1 - dim]).to(x.dtype)  # [batch, n_prompt, width]
    if dim == 0:
        prompts = prompts.transpose(0, 1)
    end = start + prompts.shape[dim]
    return torch.cat([x.narrow(dim, 0, start), prompts, x.narrow(dim, end, x.shape[dim] - end)], dim=dim)


def expand(prompts: torch.Tensor, batch: int) -> torch.Tensor:
    return prompts.expand(batch, -1, -1) if prompts.dim() == 2 else prompts


# --------------------------------------------------------------------------------------------- shared prefix
def run_prefix(
    blocks: Sequence[nn.Module], x: torch.Tensor, deep_prompts: Sequence[torch.Tensor], start: int,
) -> list[KeysValues]:
    """The keys and values, per block, of the shared leading positions `x` `[g, P, width]` (one row per
    group of prompts), run causally on their own; `deep_prompts[i]` (`[k, width]`) replaces positions
    `[start, start + k)` before block `i + 1`."""
    x = x.unsqueeze(1)  # [g, 1, P, width]
    cache = []
    for i, block in enumerate(blocks):
        if 1 <= i <= len(deep_prompts) and deep_prompts[i - 1] is not None:
            x = _replace_positions(x, deep_prompts[i - 1], start)
        x, (k, v) = _block_after(block, x, None)
        cache.append((k.squeeze(2), v.squeeze(2)))
    return cache


def run_suffix(
    blocks: Sequence[nn.Module], x: torch.Tensor, cache: Sequence[KeysValues],
    deep_prompts: Sequence[torch.Tensor | None], start: int,
) -> torch.Tensor:
    """`x` `[g, r, S, width]` (r prompts per group, the S positions after the shared ones) through the
    blocks, each position attending causally to the group's cached positions and to its own earlier ones;
    `deep_prompts[i]` (`[k, width]` or `[r, k, width]`, or None) replaces `[start, start + k)` of `x`."""
    for i, block in enumerate(blocks):
        if 1 <= i <= len(deep_prompts) and deep_prompts[i - 1] is not None:
            x = _replace_positions(x, deep_prompts[i - 1], start)
        x, _ = _block_after(block, x, cache[i])
    return x


def _replace_positions(x: torch.Tensor, prompts: torch.Tensor, start: int) -> torch.Tensor:
    """`x` `[g, r, S, w]` with positions `[start, start + k)` set to `prompts` (`[k, w]` or `[r, k, w]`)."""
    k = prompts.shape[-2]
    prompts = prompts.to(x.dtype).expand(*x.shape[:2], k, x.shape[-1])
    return torch.cat([x[:, :, :start], prompts, x[:, :, start + k:]], dim=2)


def _block_after(block: ResidualAttentionBlock, x: torch.Tensor, past: KeysValues | None):
    """open_clip's residual block on `x` `[g, r, S, w]`, whose positions come after the group's `past`
    keys and values (causal attention); returns the block's output and the keys and values of `x`."""
    a = block.attn
    heads = a.num_heads
    q, k, v = F.linear(block.ln_1(x), a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (_heads(t, heads) for t in (q, k, v))  # [g, heads, r, S, d]
    attended = _attend(q, k, v, past)  # [g, heads, r, S, d]
    attended = attended.permute(0, 2, 3, 1, 4).flatten(3)  # [g, r, S, w]
    x = x + block.ls_1(F.linear(attended, a.out_proj.weight, a.out_proj.bias))
    return x + block.ls_2(block.mlp(block.ln_2(x))), (k, v)


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    g, r, s, w = t.shape
    return t.view(g, r, s, heads, w // heads).permute(0, 3, 1, 2, 4)  # [g, heads, r, S, d]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: KeysValues | None) -> torch.Tensor:
    """Softmax attention of `q` over the cached `past` positions (all visible) and the causal `k`, `v`.

    The past keys are shared by the r prompts of a group, so the r x S queries are one matrix against
    them: no copy of the past per prompt.
    """
    g, heads, r, s, d = q.shape
    q = q * d**-0.5
    scores = q @ k.transpose(-1, -2)  # [g, heads, r, S, S]
    causal = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(causal, float("-inf"))
    if past is not None:
        pk, pv = past  # [g, heads, P, d]
        scores = torch.cat([(q.flatten(2, 3) @ pk.transpose(-1, -2)).view(g, heads, r, s, -1), scores], dim=-1)
    probs = scores.float().softmax(dim=-1).to(q.dtype)  # [g, heads, r, S, P + S]
    if past is None:
        return probs @ v
    n_past = pk.shape[-2]
    own = probs[..., n_past:] @ v
    return own + (probs[..., :n_past].flatten(2, 3) @ pv).view(g, heads, r, s, d)
