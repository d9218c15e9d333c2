"""Straightforward re-implementations of the ORIGINAL CoOp, CoCoOp and MaPLe, for fidelity tests only.

They follow the formulation of the public code (KaiyangZhou/CoOp trainers/coop.py and cocoop.py,
muzairkhattak/multimodal-prompt-learning trainers/maple.py and clip/model.py) and share nothing with
promptinfo's adapter: every text pass runs all 77 positions through the open_clip model's own modules,
CoCoOp loops over the images of a batch, and MaPLe's layer-wise prompt replacement is written out with
the original's counter. Widths come from the model rather than the original's hard-coded 512/768, and
everything stays fp32 (the original's `.half()` calls are dropped).

Learnable tensors carry the original names, so `load_values(reference, method)` can copy a promptinfo
method's prompt values into a reference model by name.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn


# --------------------------------------------------------------------------- encoders
class OriginalTextEncoder(nn.Module):
    """CLIP's text side on prompt embeddings, all 77 positions, optional MaPLe deeper prompts."""

    def __init__(self, clip_model) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.attn_mask = clip_model.attn_mask

    def forward(self, prompts, tokenized_prompts, compound_prompts_deeper_text=()):
        x = prompts + self.positional_embedding  # [n, 77, w]
        counter = 0
        for i, block in enumerate(self.transformer.resblocks):
            first_layer = i == 0
            if not first_layer and len(compound_prompts_deeper_text) > 0:
                if not counter > len(compound_prompts_deeper_text) - 1:
                    n_ctx = compound_prompts_deeper_text[counter].shape[0]
                    prefix = x[:, :1]
                    suffix = x[:, 1 + n_ctx :]
                    textual_context = compound_prompts_deeper_text[counter].expand(x.shape[0], -1, -1)
                    x = torch.cat([prefix, textual_context, suffix], dim=1)
                    counter += 1
            x = block(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        eot = tokenized_prompts.argmax(dim=-1)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


class OriginalMaPLeImageEncoder(nn.Module):
    """MaPLe's vision side: prompts appended after the positional embedding, replaced layer by layer."""

    def __init__(self, visual) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, image, shared_ctx, compound_deeper_prompts):
        v = self.visual
        x = v.conv1(image)  # [B, w, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, g*g, w]
        cls = v.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding
        x = torch.cat([x, shared_ctx.expand(x.shape[0], -1, -1)], dim=1)
        x = v.ln_pre(x)
        n_ctx = shared_ctx.shape[0]
        counter = 0
        for i, block in enumerate(v.transformer.resblocks):
            if i != 0 and len(compound_deeper_prompts) > 0:
                if not counter > len(compound_deeper_prompts) - 1:
                    prefix = x[:, : x.shape[1] - n_ctx]
                    visual_context = compound_deeper_prompts[counter].expand(x.shape[0], -1, -1)
                    x = torch.cat([prefix, visual_context], dim=1)
                    counter += 1
            x = block(x)
        x = v.ln_post(x[:, 0, :])
        return x @ v.proj


# --------------------------------------------------------------------------- prompt learners
class _ClassPrompts(nn.Module):
    """Tokenised "{prefix} {name}." prompts and their frozen SOS / suffix embeddings (77 positions)."""

    def _register_class_prompts(self, clip_model, tokenizer, classnames, prompt_prefix, n_ctx):
        classnames = [name.replace("_", " ") for name in classnames]
        self.name_lens = [len(tokenizer.encode(name)) for name in classnames]
        prompts = [prompt_prefix + " " + name + "." for name in classnames]
        tokenized_prompts = torch.cat([tokenizer([p]) for p in prompts])  # [n_cls, 77]
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts)
        self.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])  # class name, ".", EOS, padding
        self.n_cls = len(classnames)
        self.n_ctx = n_ctx
        self.tokenized_prompts = tokenized_prompts


def _phrase_vectors(clip_model, tokenizer, phrase, n_ctx):
    with torch.no_grad():
        embedding = clip_model.token_embedding(tokenizer([phrase]))
    return embedding[0, 1 : 1 + n_ctx, :].clone()


class OriginalCoOpPromptLearner(_ClassPrompts):
    def __init__(self, clip_model, tokenizer, classnames, n_ctx=16, ctx_init=None, csc=False, position="end"):
        super().__init__()
        ctx_dim = clip_model.ln_final.weight.shape[0]
        if ctx_init:
            n_ctx = len(ctx_init.split(" "))
            ctx_vectors = _phrase_vectors(clip_model, tokenizer, ctx_init, n_ctx)
            prompt_prefix = ctx_init
        else:
            shape = (len(classnames), n_ctx, ctx_dim) if csc else (n_ctx, ctx_dim)
            ctx_vectors = nn.init.normal_(torch.empty(*shape), std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx_vectors)
        self.class_token_position = position
        self._register_class_prompts(clip_model, tokenizer, classnames, prompt_prefix, n_ctx)

    def forward(self):
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.class_token_position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        prompts = []
        for i in range(self.n_cls):
            name_len = self.name_lens[i]
            prefix_i = prefix[i : i + 1]
            class_i = suffix[i : i + 1, :name_len]
            suffix_i = suffix[i : i + 1, name_len:]
            if self.class_token_position == "middle":
                half = self.n_ctx // 2
                parts = [prefix_i, ctx[i : i + 1, :half], class_i, ctx[i : i + 1, half:], suffix_i]
            elif self.class_token_position == "front":
                parts = [prefix_i, class_i, ctx[i : i + 1], suffix_i]
            else:
                raise ValueError(self.class_token_position)
            prompts.append(torch.cat(parts, dim=1))
        return torch.cat(prompts, dim=0)


class OriginalCoCoOpPromptLearner(_ClassPrompts):
    def __init__(self, clip_model, tokenizer, classnames, n_ctx=4, ctx_init="a photo of a"):
        super().__init__()
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.visual.output_dim
        if ctx_init:
            n_ctx = len(ctx_init.split(" "))
            ctx_vectors = _phrase_vectors(clip_model, tokenizer, ctx_init, n_ctx)
            prompt_prefix = ctx_init
        else:
            ctx_vectors = nn.init.normal_(torch.empty(n_ctx, ctx_dim), std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx_vectors)
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ]))
        self._register_class_prompts(clip_model, tokenizer, classnames, prompt_prefix, n_ctx)

    def forward(self, im_features):
        prefix, suffix = self.token_prefix, self.token_suffix
        bias = self.meta_net(im_features).unsqueeze(1)  # [B, 1, w]
        ctx_shifted = self.ctx.unsqueeze(0) + bias  # [B, n_ctx, w]
        prompts = []
        for ctx_shifted_i in ctx_shifted:
            ctx_i = ctx_shifted_i.unsqueeze(0).expand(self.n_cls, -1, -1)
            prompts.append(torch.cat([prefix, ctx_i, suffix], dim=1))  # [n_cls, 77, w]
        return torch.stack(prompts)  # [B, n_cls, 77, w]


class OriginalMaPLePromptLearner(_ClassPrompts):
    def __init__(self, clip_model, tokenizer, classnames, n_ctx=2, ctx_init="a photo of a", depth=9):
        super().__init__()
        assert depth >= 1
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_width = clip_model.visual.conv1.out_channels
        if ctx_init and n_ctx <= 4:
            ctx_vectors = _phrase_vectors(clip_model, tokenizer, ctx_init, n_ctx)
            prompt_prefix = ctx_init
        else:
            ctx_vectors = nn.init.normal_(torch.empty(n_ctx, ctx_dim), std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.proj = nn.Linear(ctx_dim, vis_width)
        self.ctx = nn.Parameter(ctx_vectors)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.empty(n_ctx, ctx_dim)) for _ in range(depth - 1)]
        )
        for single_para in self.compound_prompts_text:
            nn.init.normal_(single_para, std=0.02)
        single_layer = nn.Linear(ctx_dim, vis_width)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(single_layer) for _ in range(depth - 1)])
        self._register_class_prompts(clip_model, tokenizer, classnames, prompt_prefix, n_ctx)

    def forward(self):
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        visual_deep_prompts = [
            layer(self.compound_prompts_text[index]) for index, layer in enumerate(self.compound_prompt_projections)
        ]
        return prompts, self.proj(self.ctx), self.compound_prompts_text, visual_deep_prompts


# --------------------------------------------------------------------------- full models
class OriginalCoOp(nn.Module):
    def __init__(self, clip_model, tokenizer, classnames, **cfg) -> None:
        super().__init__()
        self.prompt_learner = OriginalCoOpPromptLearner(clip_model, tokenizer, classnames, **cfg)
        self.image_encoder = clip_model.visual
        self.text_encoder = OriginalTextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale

    def forward(self, image):
        image_features = self.image_encoder(image)
        text_features = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()


class OriginalCoCoOp(nn.Module):
    def __init__(self, clip_model, tokenizer, classnames, **cfg) -> None:
        super().__init__()
        self.prompt_learner = OriginalCoCoOpPromptLearner(clip_model, tokenizer, classnames, **cfg)
        self.image_encoder = clip_model.visual
        self.text_encoder = OriginalTextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale

    def forward(self, image):
        logit_scale = self.logit_scale.exp()
        image_features = self.image_encoder(image)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        prompts = self.prompt_learner(image_features)
        logits = []
        for pts_i, imf_i in zip(prompts, image_features):
            text_features = self.text_encoder(pts_i, self.prompt_learner.tokenized_prompts)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            logits.append(logit_scale * imf_i @ text_features.t())
        return torch.stack(logits)


class OriginalMaPLe(nn.Module):
    def __init__(self, clip_model, tokenizer, classnames, **cfg) -> None:
        super().__init__()
        self.prompt_learner = OriginalMaPLePromptLearner(clip_model, tokenizer, classnames, **cfg)
        self.image_encoder = OriginalMaPLeImageEncoder(clip_model.visual)
        self.text_encoder = OriginalTextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale

    def forward(self, image):
        prompts, shared_ctx, deep_text, deep_vision = self.prompt_learner()
        text_features = self.text_encoder(prompts, self.prompt_learner.tokenized_prompts, deep_text)
        image_features = self.image_encoder(image, shared_ctx, deep_vision)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()


ORIGINALS = {"coop": OriginalCoOp, "cocoop": OriginalCoCoOp, "maple": OriginalMaPLe}


def load_values(reference: nn.Module, method) -> None:
    """Copy a promptinfo method's prompt tensors into the reference's prompt learner, by name."""
    state = {k: v.detach().clone() for k, v in method.prompt.state_dict().items()}
    missing, unexpected = reference.prompt_learner.load_state_dict(state, strict=False)
    assert not unexpected, f"names the original does not have: {unexpected}"
    assert set(missing) <= {"token_prefix", "token_suffix"}, f"original tensors not set: {missing}"
