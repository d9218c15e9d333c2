"""CoOp: learnable context vectors in the text prompt (Zhou et al., "Learning to Prompt for
Vision-Language Models", IJCV 2022)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from promptinfo.backbones import Backbone, common_prefix_length, normalize
from promptinfo.errors import ConfigError
from promptinfo.methods._prompts import embed_prompts, init_context, phrase_length, placeholder_prefix
from promptinfo.methods.base import PromptMethod
from promptinfo.methods.configs import CoOpConfig
from promptinfo.methods.registry import register_method

_POSITIONS = ("end", "middle", "front")


class ContextPrompts(PromptMethod):
    """Methods whose class prompts are [SOS] + context + class name + "." + [EOS] (CoOp family)."""

    def _setup_context(self, n_ctx: int, ctx_init: str | None, init_std: float) -> torch.Tensor:
        if not ctx_init and n_ctx < 1:
            raise ConfigError(f"n_ctx={n_ctx}; a prompt needs at least one context vector.")
        ctx = init_context(self.backbone, ctx_init, n_ctx, init_std)
        self.n_ctx = ctx.shape[0]
        self.prefix_text = ctx_init if ctx_init else placeholder_prefix(self.n_ctx)
        return ctx

    def _leading_context(self, n_ctx: int, ctx_init: str | None, std: float, option: str = "n_ctx") -> torch.Tensor:
        """The first `n_ctx` token embeddings of `ctx_init`, the rest of the phrase staying fixed text
        (MaPLe, IVLP), or `n_ctx` random vectors without a phrase; sets the prompt text."""
        if n_ctx < 1:
            raise ConfigError(f"{option}={n_ctx}; {type(self).__name__} needs at least one context token.")
        self.n_ctx = n_ctx
        if not ctx_init:
            self.prefix_text = placeholder_prefix(n_ctx)
            return init_context(self.backbone, None, n_ctx, std)
        available = phrase_length(self.backbone, ctx_init)
        if n_ctx > available:
            raise ConfigError(
                f"{option}={n_ctx} but ctx_init={ctx_init!r} has only {available} tokens; use a longer phrase, "
                f"{option} <= {available}, or ctx_init='' for random context vectors."
            )
        self.prefix_text = ctx_init
        return init_context(self.backbone, ctx_init, n_ctx)[:n_ctx]

    def _build_class_prompts(self) -> None:
        texts = [f"{self.prefix_text} {name}." for name in self.classnames]
        tokens, emb = embed_prompts(self.backbone, texts)
        self.register_buffer("tokens", tokens, persistent=False)  # [C, L]
        self.register_buffer("token_prefix", emb[:, :1], persistent=False)  # [C, 1, w] SOS
        self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx :], persistent=False)  # [C, *, w]
        self.name_lens = [phrase_length(self.backbone, name) for name in self.classnames]
        self.common_tokens = common_prefix_length(tokens)

    def _deep_text_features(self, deeper: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised class features `[C, d]` of the shared context `prompt.ctx` at the end of the prompt,
        with `deeper[k-1]` replacing it before text layer k (MaPLe, IVLP)."""
        prompts = self._assemble(self.prompt.ctx)  # [C, L, tw]
        return normalize(self.backbone.encode_text_embeddings(
            prompts, self.tokens, list(deeper), prompt_start=1, shared=self.shared_positions()))

    def shared_positions(self, position: str = "end", class_specific: bool = False) -> int:
        """Leading positions that hold one tensor in every class prompt of `_assemble(ctx, position)`: the
        start token, a shared context and the fixed words around it (`Backbone.encode_text_embeddings`'s
        `shared`). The context is spliced in after the token ids are compared, so the common token prefix
        covers it only when it is shared and at the end."""
        if class_specific or position == "front":
            return 1
        if position == "middle":
            return 1 + self.n_ctx // 2
        return self.common_tokens

    def _assemble(self, ctx: torch.Tensor, position: str = "end") -> torch.Tensor:
        """Prompt embeddings `[C, L, w]` from a shared `[n_ctx, w]` or class-specific `[C, n_ctx, w]` context."""
        prefix, suffix = self.token_prefix, self.token_suffix
        ctx = ctx.to(prefix.dtype).expand(len(self.classnames), -1, -1)
        if position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        rows = []
        half = self.n_ctx // 2
        for i, n in enumerate(self.name_lens):
            name, rest = suffix[i : i + 1, :n], suffix[i : i + 1, n:]
            if position == "middle":
                rows.append(torch.cat([prefix[i : i + 1], ctx[i : i + 1, :half], name, ctx[i : i + 1, half:], rest], 1))
            else:
                rows.append(torch.cat([prefix[i : i + 1], name, ctx[i : i + 1], rest], dim=1))
        return torch.cat(rows, dim=0)


@register_method("coop")
class CoOp(ContextPrompts):
    """Context vectors shared by all classes (or one set per class with `csc`)."""

    Config = CoOpConfig

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        config: CoOpConfig,
        dataset_templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, classnames, config, dataset_templates)
        if config.class_token_position not in _POSITIONS:
            raise ConfigError(f"class_token_position={config.class_token_position!r}; choose one of {_POSITIONS}.")
        ctx = self._setup_context(config.n_ctx, config.ctx_init, config.init_std)
        if config.csc:
            ctx = ctx.unsqueeze(0).repeat(len(self.classnames), 1, 1)  # [C, n_ctx, w]
            if not config.ctx_init:
                ctx = torch.randn_like(ctx) * config.init_std
        self.prompt.ctx = nn.Parameter(ctx)
        self._build_class_prompts()

    @property
    def class_specific(self) -> bool:
        return self.config.csc

    def set_classnames(self, classnames: Sequence[str], dataset_templates: Sequence[str] | None = None) -> None:
        if self.config.csc and len(classnames) != self.prompt.ctx.shape[0]:
            raise ConfigError(
                f"Class-specific contexts were learned for {self.prompt.ctx.shape[0]} classes and cannot be "
                f"used for {len(classnames)} other classes; train with csc=false to transfer prompts."
            )
        super().set_classnames(classnames, dataset_templates)

    def text_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        position = self.config.class_token_position
        prompts = self._assemble(self.prompt.ctx, position)
        shared = self.shared_positions(position, self.config.csc)
        return normalize(self.backbone.encode_text_embeddings(prompts, self.tokens, shared=shared))
