"""The original prompt-learning code's forward pass and training step, re-created for `tools/bench.py`.

Written after the authors' trainers (github.com/KaiyangZhou/CoOp `trainers/coop.py` and
`trainers/cocoop.py`: `TextEncoder`, `PromptLearner`, `CustomCLIP`, `forward_backward`;
github.com/muzairkhattak/multimodal-prompt-learning `trainers/maple.py` and `clip/model.py`:
`VisionTransformer_MaPLe`, `ResidualAttentionBlock_MaPLe`). What they do at every step, and so what
this module does:
- the text tower runs sequence-first (`x.permute(1, 0, 2)`, OpenAI's CLIP) over all 77 positions of
  every class prompt, then takes the end-of-text feature (`tokenized_prompts.argmax(-1)`);
- the image encoder runs on the batch's decoded images (no feature cache);
- CoCoOp runs one text pass per image (`for pts_i, imf_i in zip(prompts, image_features)`);
- MaPLe replaces the text tokens `1 .. n_ctx` and the last `n_ctx` vision tokens before each deeper layer;
- the step is cross-entropy, `zero_grad`, `backward`, SGD `step`.

The learnable tensors are read from one of our methods built on a backbone without truncation (77-token
buffers), so both formulations start from the same numbers and `tools/bench.py` checks their logits agree.
The open_clip model it runs is a private copy switched to sequence-first once (`sequence_first`); the
backbone's own model, which our code reads batch-first, is never changed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sequence_first(model: nn.Module) -> None:
    """Make a private open_clip CLIP copy run its transformers on `[L, batch, width]`, as OpenAI's CLIP."""
    for transformer in (model.transformer, model.visual.transformer):
        transformer.batch_first = False
        for block in transformer.resblocks:
            block.attn.batch_first = False


class OriginalPromptModel(nn.Module):
    """`CustomCLIP.forward` of CoOp, CoCoOp or MaPLe over one of our methods' parameters (77-token buffers)."""

    def __init__(self, method, clip: nn.Module) -> None:
        """`clip`: a sequence-first copy (`sequence_first`) of the open_clip model under `method.backbone`."""
        super().__init__()
        if method.tokens.shape[1] != method.backbone.context_length:
            raise ValueError("the original formulation needs 77-token prompts: build the method with truncate_text off.")
        self.method = method
        self.kind = method.registry_name
        self.clip = clip

    # ----------------------------------------------------------------- text (CoOp's TextEncoder)
    def encode_text(self, prompts: torch.Tensor, deep: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Features `[C, d]` of prompt embeddings `[C, 77, w]`; `deep[k-1]` replaces tokens 1..n before layer k."""
        clip, tokens = self.clip, self.method.tokens
        x = (prompts + clip.positional_embedding).permute(1, 0, 2)  # NLD -> LND
        for k, block in enumerate(clip.transformer.resblocks):
            if deep and 1 <= k <= len(deep):
                ctx = deep[k - 1].unsqueeze(1).expand(-1, x.shape[1], -1)
                x = torch.cat([x[:1], ctx, x[1 + ctx.shape[0]:]], dim=0)
            x = block(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x.permute(1, 0, 2))  # LND -> NLD
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ clip.text_projection

    def prompts(self, ctx: torch.Tensor) -> torch.Tensor:
        """`PromptLearner.forward`: [SOS] + context + class name + "." + [EOS], `[C, 77, w]`."""
        m = self.method
        ctx = ctx.unsqueeze(0).expand(len(m.classnames), -1, -1)
        return torch.cat([m.token_prefix, ctx, m.token_suffix], dim=1)

    # ----------------------------------------------------------------- images (MaPLe's VisionTransformer)
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind != "maple":
            return self.clip.encode_image(images)
        v = self.clip.visual
        shallow, deeper = self.method.vision_prompts()
        x = v.conv1(images).flatten(2).permute(0, 2, 1)  # [B, grid**2, vw]
        x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + v.positional_embedding
        x = v.ln_pre(torch.cat([x, shallow.expand(x.shape[0], -1, -1)], dim=1)).permute(1, 0, 2)  # LND
        n = shallow.shape[0]
        for k, block in enumerate(v.transformer.resblocks):
            if 1 <= k <= len(deeper):
                x = torch.cat([x[:-n], deeper[k - 1].unsqueeze(1).expand(-1, x.shape[1], -1)], dim=0)
            x = block(x)
        return v.ln_post(x[0]) @ v.proj

    # ----------------------------------------------------------------- logits
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p, scale = self.method.prompt, self.clip.logit_scale.exp()
        image_features = F.normalize(self.encode_image(images), dim=-1)
        if self.kind == "cocoop":
            ctx = p.ctx.unsqueeze(0) + p.meta_net(image_features).unsqueeze(1)  # [B, n_ctx, w]
            logits = []
            for ctx_i, imf_i in zip(ctx, image_features):  # one text pass per image
                text = F.normalize(self.encode_text(self.prompts(ctx_i)), dim=-1)
                logits.append(scale * imf_i @ text.t())
            return torch.stack(logits)
        deep = list(p.compound_prompts_text) if self.kind == "maple" else None
        text = F.normalize(self.encode_text(self.prompts(p.ctx), deep), dim=-1)
        return scale * image_features @ text.t()


def original_step(model: OriginalPromptModel, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                  labels: torch.Tensor) -> float:
    """`forward_backward` of the original trainers: cross-entropy, zero_grad, backward, step."""
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())
