"""Straightforward re-implementations of the ORIGINAL KgCoOp, VPT, IVLP and PromptSRC, for fidelity tests only.

They follow the formulation of the public code (htyao89/KgCoOp trainers/kgcoop.py; muzairkhattak/
multimodal-prompt-learning trainers/vpt.py, trainers/independentVL.py and clip/model.py; muzairkhattak/
PromptSRC trainers/promptsrc.py) and share nothing with promptinfo's adapter or methods:
- every text pass runs all 77 positions through the open_clip model's own modules;
- deep prompts belong to the layer that uses them, as in the original's ResidualAttentionBlock_IVLP:
  block i (1 <= i < depth) owns `VPT_shallow` and swaps it in before running;
- the losses are computed as the original trainers' `forward_backward` does, and GPA weights whole
  state dicts with the original's normalised Gaussian (including its 1 / (sigma sqrt(2 pi)) factor).
Widths come from the model, everything stays fp32 (the original's `.half()` calls are dropped).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- encoders with layer-owned prompts
def _layer_prompts(n_layers: int, depth: int, n_ctx: int, width: int) -> nn.ParameterDict:
    """`VPT_shallow` of every block i with 1 <= i < depth, keyed by the block index."""
    return nn.ParameterDict({
        str(i): nn.Parameter(nn.init.normal_(torch.empty(n_ctx, width), std=0.02))
        for i in range(1, min(depth, n_layers))
    })


class OriginalIVLPTextEncoder(nn.Module):
    """CLIP's text side; block i swaps tokens 1 .. n_ctx for its own prompt when it owns one."""

    def __init__(self, clip_model, depth: int, n_ctx: int) -> None:
        super().__init__()
        self.clip = clip_model
        width = clip_model.ln_final.weight.shape[0]
        self.layer_prompts = _layer_prompts(len(clip_model.transformer.resblocks), depth, n_ctx, width)

    def forward(self, prompts, tokenized_prompts):
        m = self.clip
        x = prompts + m.positional_embedding  # [n, 77, w]
        for i, block in enumerate(m.transformer.resblocks):
            if str(i) in self.layer_prompts:
                own = self.layer_prompts[str(i)]
                ctx = own.expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :1], ctx, x[:, 1 + own.shape[0] :]], dim=1)
            x = block(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ m.text_projection


class OriginalVPTImageEncoder(nn.Module):
    """ViT with `VPT` tokens appended after the positional embedding; block i swaps the last tokens for its own."""

    def __init__(self, visual, depth: int, n_ctx: int) -> None:
        super().__init__()
        self.visual = visual
        width = visual.conv1.out_channels
        self.VPT = nn.Parameter(nn.init.normal_(torch.empty(n_ctx, width), std=0.02)) if depth > 0 else None
        self.layer_prompts = _layer_prompts(len(visual.transformer.resblocks), depth, n_ctx, width)

    def forward(self, image):
        v = self.visual
        x = v.conv1(image)  # [B, w, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, g*g, w]
        cls = v.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding
        if self.VPT is not None:
            x = torch.cat([x, self.VPT.expand(x.shape[0], -1, -1)], dim=1)
        x = v.ln_pre(x)
        for i, block in enumerate(v.transformer.resblocks):
            if str(i) in self.layer_prompts:
                own = self.layer_prompts[str(i)]
                x = torch.cat([x[:, : x.shape[1] - own.shape[0]], own.expand(x.shape[0], -1, -1)], dim=1)
            x = block(x)
        return v.ln_post(x[:, 0, :]) @ v.proj


# --------------------------------------------------------------------------- prompt learners
class OriginalVLPromptLearner(nn.Module):
    """IVLP/PromptSRC's text prompt learner: `ctx` from the first n_ctx tokens of ctx_init when n_ctx <= 4."""

    def __init__(self, clip_model, tokenizer, classnames, n_ctx=2, ctx_init="a photo of a"):
        super().__init__()
        ctx_dim = clip_model.ln_final.weight.shape[0]
        if ctx_init and n_ctx <= 4:
            with torch.no_grad():
                embedding = clip_model.token_embedding(tokenizer([ctx_init]))
            ctx_vectors = embedding[0, 1 : 1 + n_ctx, :].clone()
            prompt_prefix = ctx_init
        else:
            ctx_vectors = nn.init.normal_(torch.empty(n_ctx, ctx_dim), std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx_vectors)
        classnames = [name.replace("_", " ") for name in classnames]
        prompts = [prompt_prefix + " " + name + "." for name in classnames]
        self.tokenized_prompts = torch.cat([tokenizer([p]) for p in prompts])  # [n_cls, 77]
        with torch.no_grad():
            embedding = clip_model.token_embedding(self.tokenized_prompts)
        self.register_buffer("token_prefix", embedding[:, :1, :])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])
        self.n_cls = len(classnames)

    def forward(self):
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


def _normed(x):
    return x / x.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------- full models
class OriginalVPT(nn.Module):
    """Deep vision prompts; the text classifier is encode_text("a photo of a {name}.")."""

    def __init__(self, clip_model, tokenizer, classnames, n_ctx_vision=8, depth_vision=12):
        super().__init__()
        prompts = ["a photo of a " + name.replace("_", " ") + "." for name in classnames]
        with torch.no_grad():
            self.fixed_embeddings = clip_model.encode_text(torch.cat([tokenizer([p]) for p in prompts]))
        self.image_encoder = OriginalVPTImageEncoder(clip_model.visual, depth_vision, n_ctx_vision)
        self.logit_scale = clip_model.logit_scale

    def forward(self, image):
        image_features = _normed(self.image_encoder(image))
        text_features = _normed(self.fixed_embeddings)
        return self.logit_scale.exp() * image_features @ text_features.t()


class OriginalIVLP(nn.Module):
    def __init__(self, clip_model, tokenizer, classnames, n_ctx_text=2, n_ctx_vision=2, depth_text=12,
                 depth_vision=12, ctx_init="a photo of a"):
        super().__init__()
        assert depth_text >= 1
        self.image_encoder = OriginalVPTImageEncoder(clip_model.visual, depth_vision, n_ctx_vision)
        self.text_encoder = OriginalIVLPTextEncoder(clip_model, depth_text, n_ctx_text)
        self.prompt_learner = OriginalVLPromptLearner(clip_model, tokenizer, classnames, n_ctx_text, ctx_init)
        self.logit_scale = clip_model.logit_scale

    def features(self, image):
        text_features = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        return _normed(self.image_encoder(image)), _normed(text_features)

    def forward(self, image):
        image_features, text_features = self.features(image)
        return self.logit_scale.exp() * image_features @ text_features.t()


class OriginalPromptSRC(OriginalIVLP):
    """IVLP plus the frozen model's features and the trainer's L_SCL terms (text 25, image 10, logits 1)."""

    def __init__(self, clip_model, tokenizer, classnames, templates, text_loss_weight=25.0, image_loss_weight=10.0,
                 **ivlp):
        super().__init__(clip_model, tokenizer, classnames, **ivlp)
        classnames = [name.replace("_", " ") for name in classnames]
        with torch.no_grad():
            per_template = [clip_model.encode_text(torch.cat([tokenizer([t.replace("{}", c)]) for c in classnames]))
                            for t in templates]
        self.fixed_embeddings = torch.stack(per_template, dim=1).mean(dim=1)  # unnormalised mean
        self.zs_visual = clip_model.visual
        self.weights = (text_loss_weight, image_loss_weight)

    def losses(self, image, label):
        """(logits, ce, L_SCL_text, L_SCL_image, L_SCL_logits) as the original trainer computes them."""
        logit_scale = self.logit_scale.exp()
        image_features, text_features = self.features(image)
        logits = logit_scale * image_features @ text_features.t()
        fixed = _normed(self.fixed_embeddings)
        with torch.no_grad():
            zs_image = _normed(self.zs_visual(image))
            zs_logits = logit_scale * zs_image @ fixed.t()
        text = F.l1_loss(text_features, fixed, reduction="mean") * self.weights[0]
        img = F.l1_loss(image_features, zs_image, reduction="mean") * self.weights[1]
        kl = F.kl_div(F.log_softmax(logits / 1, dim=1), F.log_softmax(zs_logits / 1, dim=1), reduction="sum",
                      log_target=True) * (1 * 1) / logits.numel()
        return logits, F.cross_entropy(logits, label), text, img, kl


# --------------------------------------------------------------------------- KgCoOp
def original_kgcoop_score(clip_model, tokenizer, classnames, template, text_features):
    """KgCoOp's `score`: 1 - mean cosine between the learned and the hand-crafted class features."""
    prompts = torch.cat([tokenizer([template.format(c.replace("_", " "))]) for c in classnames])
    with torch.no_grad():
        old = clip_model.encode_text(prompts)
        old = old / old.norm(dim=-1, keepdim=True)
    cos = torch.nn.CosineSimilarity(dim=1, eps=1e-07)
    return 1.0 - torch.mean(cos(text_features, old))


# --------------------------------------------------------------------------- GPA, as the trainer does it
class OriginalGPA:
    """The trainer's Gaussian prompt aggregation over whole state dicts."""

    def __init__(self, mean: float, std: float, epochs: int) -> None:
        gauss = [1 / (std * math.sqrt(2 * math.pi)) * math.exp(-0.5 * ((a - mean) / std) ** 2)
                 for a in range(1, epochs + 1)]
        self.gauss = [g / sum(gauss) for g in gauss]
        self.step_counter = 1
        self.previous_model_gpa = None

    def end_of_epoch(self, state_dict: dict) -> None:
        self.step_counter += 1
        weight = self.gauss[self.step_counter - 2]
        weighted = {k: v * weight for k, v in copy.deepcopy(state_dict).items()}
        if self.previous_model_gpa is None:
            self.previous_model_gpa = weighted
        else:
            self.previous_model_gpa = {k: self.previous_model_gpa[k] + weighted[k] for k in weighted}


# --------------------------------------------------------------------------- copying promptinfo's values in
def load_ivlp_values(reference: nn.Module, method) -> None:
    """Copy a promptinfo IVLP/PromptSRC/VPT method's prompts into the layer-owned slots of the reference."""
    p = method.prompt
    with torch.no_grad():
        if hasattr(reference, "prompt_learner"):
            reference.prompt_learner.ctx.copy_(p.ctx)
            _copy_layers(reference.text_encoder.layer_prompts, p.deep_text)
        if hasattr(p, "vision_ctx"):
            reference.image_encoder.VPT.copy_(p.vision_ctx)
            _copy_layers(reference.image_encoder.layer_prompts, p.deep_vision)


def _copy_layers(layer_prompts: nn.ParameterDict, deeper) -> None:
    assert sorted(layer_prompts.keys(), key=int) == [str(k + 1) for k in range(len(deeper))], "depth mismatch"
    for k, value in enumerate(deeper):
        layer_prompts[str(k + 1)].copy_(value)
