"""A straightforward re-implementation of the ORIGINAL ProGrad, for fidelity tests only.

It follows the public code (BeierZhu/Prompt-align): ProGrad.public/trainers/prograd.py (`PromptLearner`
with CTX_INIT: the template's words in the last of N_CTX vectors, zeros before; the zero-shot `CLIP`
with one template; `ProGradLoss`; `forward_backward`) and Dassl.ProGrad.pytorch/dassl/engine/trainer.py
(`prograd_backward_and_update`). It shares nothing with promptinfo's adapter or methods: the text pass
runs all 77 positions through the open_clip model's own modules (tests/reference_methods.py), and the
update runs two backward passes as the original does. Everything stays fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tests.reference_methods import OriginalTextEncoder, _ClassPrompts


class OriginalProGradPromptLearner(_ClassPrompts):
    """CTX_INIT=True: ctx_init is the template without " {}.", its word vectors fill the last positions."""

    def __init__(self, clip_model, tokenizer, classnames, template, n_ctx=16):
        super().__init__()
        ctx_dim = clip_model.ln_final.weight.shape[0]
        ctx_init = template.replace(" {}.", "").replace("_", " ")
        prompt_n_ctx = len(ctx_init.split(" "))
        assert n_ctx >= prompt_n_ctx
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenizer([ctx_init]))
        ctx_vectors = torch.zeros(n_ctx, ctx_dim)
        ctx_vectors[n_ctx - prompt_n_ctx :, :] = embedding[0, 1 : 1 + prompt_n_ctx, :]
        prompt_prefix = " ".join(["X"] * (n_ctx - prompt_n_ctx)) + " " + ctx_init
        self.ctx = nn.Parameter(ctx_vectors)
        self._register_class_prompts(clip_model, tokenizer, classnames, prompt_prefix, n_ctx)

    def forward(self):
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class OriginalProGrad(nn.Module):
    """`CustomCLIP` (the prompted student) and the zero-shot `CLIP` teacher of trainers/prograd.py."""

    def __init__(self, clip_model, tokenizer, classnames, template, n_ctx=16) -> None:
        super().__init__()
        self.prompt_learner = OriginalProGradPromptLearner(clip_model, tokenizer, classnames, template, n_ctx)
        self.image_encoder = clip_model.visual
        self.text_encoder = OriginalTextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        prompts = torch.cat([tokenizer([template.format(c.replace("_", " "))]) for c in classnames])
        with torch.no_grad():
            text_features = clip_model.encode_text(prompts)
        self.zs_text_features = text_features / text_features.norm(dim=-1, keepdim=True)

    def _image_features(self, image):
        image_features = self.image_encoder(image)
        return image_features / image_features.norm(dim=-1, keepdim=True)

    def forward(self, image):
        text = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        text = text / text.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * self._image_features(image) @ text.t()

    def zs_clip(self, image):
        return self.logit_scale.exp() * self._image_features(image) @ self.zs_text_features.t()


def prograd_loss(stu_logits, tea_logits, label, T=1.0):
    """`ProGradLoss.forward`: (cross-entropy, T^2-scaled soft cross-entropy to the teacher)."""
    xe_loss = F.cross_entropy(stu_logits, label)
    tea_prob = F.softmax(tea_logits / T, dim=-1)
    kl_loss = -tea_prob * F.log_softmax(stu_logits / T, -1) * T * T
    return xe_loss, kl_loss.sum(1).mean()


def prograd_step(model: OriginalProGrad, optim, image, label, lambda_=1.0, T=1.0) -> int:
    """`forward_backward` + `prograd_backward_and_update` (fp32 branch); returns how many tensors were projected."""
    output = model(image)
    with torch.no_grad():
        zs_clip_output = model.zs_clip(image)
    loss_a, loss_b = prograd_loss(output, zs_clip_output.detach(), label, T)
    params = list(model.prompt_learner.parameters())
    optim.zero_grad()
    loss_b.backward(retain_graph=True)
    b_grads = [p.grad.clone() for p in params]
    optim.zero_grad()
    loss_a.backward()
    projected = 0
    for p, b_grad in zip(params, b_grads):
        b_grad_norm = b_grad / torch.linalg.norm(b_grad)
        a_grad = p.grad.clone()
        a_grad_norm = a_grad / torch.linalg.norm(a_grad)
        if torch.dot(a_grad_norm.flatten(), b_grad_norm.flatten()) < 0:
            p.grad = a_grad - lambda_ * torch.dot(a_grad.flatten(), b_grad_norm.flatten()) * b_grad_norm
            projected += 1
    optim.step()
    return projected
