"""The options of every built-in method: one `Config` dataclass each, with its defaults and their sources.

They live apart from the methods (`promptinfo.methods.<key>`, which import torch) so that hydra can offer
`method=<key>` and compose its options without loading a model (`promptinfo-train --help` stays fast), as
transformers keeps its `configuration_*` modules beside the `modeling_*` ones. Each method's module imports
its `Config` from here (`from promptinfo.methods.coop import CoOpConfig` keeps working), and registers its
class under the same key. A method added elsewhere keeps its `Config` beside its class (README, Extending).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from promptinfo.methods.registry import method_config


@dataclass
class MethodConfig:
    """Options shared by no method; each method declares its own dataclass."""


@method_config("zeroshot")
@dataclass
class ZeroShotConfig:
    """Args:
    templates: prompt templates whose features are averaged per class; None uses the dataset's
        hand-crafted templates (given by the engine), or "a photo of a {}." without a dataset.
    """

    templates: list[str] | None = None


@method_config("coop")
@dataclass
class CoOpConfig:
    """Args:
    n_ctx: number of context vectors (ignored when `ctx_init` is set: its token count is used).
    ctx_init: phrase whose word embeddings initialise the context, e.g. "a photo of a".
    csc: class-specific contexts, one `[n_ctx, width]` block per class.
    class_token_position: where the class name goes relative to the context: end, middle, front.
    init_std: standard deviation of the random initialisation.
    """

    n_ctx: int = 16
    ctx_init: str | None = None
    csc: bool = False
    class_token_position: str = "end"
    init_std: float = 0.02


@method_config("cocoop")
@dataclass
class CoCoOpConfig:
    """Args:
    n_ctx: number of context vectors (ignored when `ctx_init` is set: its token count is used).
    ctx_init: phrase whose word embeddings initialise the context (the paper's configs use "a photo of a");
        an empty string gives `n_ctx` random vectors (None keeps the default phrase).
    init_std: standard deviation of the random context initialisation (without `ctx_init`).
    batch_images: encode the prompts of many images in one text pass; False runs one text pass per
        image as the original code does (same numbers, much slower).
    max_text_batch: most prompt sequences (images x classes) per text pass when batching images; it
        bounds the transient memory of a pass (the autograd graph of a training step keeps every pass).
    """

    n_ctx: int = 4
    ctx_init: str | None = "a photo of a"
    init_std: float = 0.02
    batch_images: bool = True
    max_text_batch: int = 2048


@method_config("kgcoop")
@dataclass
class KgCoOpConfig(CoOpConfig):
    """CoOp's options (see `CoOpConfig`) with KgCoOp's defaults, plus:

    kg_weight: lambda of the knowledge-guided term (paper and code: 8.0).
    template: hand-crafted template of the frozen class features w^clip; None (default) uses the
        dataset's template as the authors do: the engine passes their own table (KgCoOp repository,
        KgCoOp/trainers/kgcoop.py, e.g. "a photo of a {}, a type of pet."; on DTD it differs from CoOp's,
        see `Benchmark.method_templates`), or "a photo of a {}." without a dataset.
    """

    n_ctx: int = 4
    ctx_init: str | None = "a photo of a"
    kg_weight: float = 8.0
    template: str | None = None


@method_config("prograd")
@dataclass
class ProGradConfig(CoOpConfig):
    """CoOp's options (see `CoOpConfig`) with ProGrad's defaults, plus:

    n_ctx: 16 context vectors (the authors' base-to-novel and few-shot scripts). These defaults, with
        the trainer's (SGD, lr 0.002, batch 32, 50/100/100/200/200 epochs for 1/2/4/8/16 shots), are the
        authors' few-shot recipe (ProGrad.public/README.md, configs/trainers/ProGrad/rn50*.yaml); their
        8- and 16-shot Flowers102, DTD and EuroSAT results use projection_weight=0.8.
    ctx_from_template: initialise the context from the template's words before "{}" (the authors'
        CTX_INIT=True): the last vectors take their embeddings, the first ones start at zero. Ignored
        when `ctx_init` names a phrase (CoOp's initialisation); false with no `ctx_init`: random.
    template: hand-crafted template of the zero-shot teacher; None uses the dataset's template for
        ProGrad (the authors' table, `Benchmark.method_templates`), or "a photo of a {}." without a dataset.
    temperature: T of the distillation loss (authors: LOSS.T = 1.0).
    projection_weight: lambda of the projection (authors: LOSS.LAMBDA = 1.0 in scripts/*.sh).
    """

    n_ctx: int = 16
    ctx_from_template: bool = True
    template: str | None = None
    temperature: float = 1.0
    projection_weight: float = 1.0


@method_config("maple")
@dataclass
class MaPLeConfig:
    """Args:
    n_ctx: number of learnable context tokens after the start-of-text token (paper: 2).
    ctx_init: phrase of every class prompt ("{ctx_init} {name}."); its first `n_ctx` token embeddings
        initialise the context and the rest of it stays fixed text. An empty string gives `n_ctx`
        random vectors in front of the class name (None keeps the default phrase).
    depth: prompt depth J: input-level prompts plus deeper prompts for layers 1 .. depth-1 of both
        towers (paper: 9); at most the backbone's layer count.
    init_std: standard deviation of the deeper text prompts (and of a random context).
    """

    n_ctx: int = 2
    ctx_init: str | None = "a photo of a"
    depth: int = 9
    init_std: float = 0.02


@method_config("ivlp")
@dataclass
class IVLPConfig:
    """Args:
    n_ctx_text: learnable text tokens after the start-of-text token, per prompted layer (MaPLe's IVLP: 2).
    n_ctx_vision: vision prompt tokens per prompted layer (MaPLe's IVLP: 2).
    depth_text: text prompt depth: input-level context plus deeper prompts before text layers
        1 .. depth_text-1 (MaPLe's IVLP: 12); at least 1, at most the text layer count.
    depth_vision: vision prompt depth, as for text; 0 leaves the image encoder unprompted
        (language-only deep prompting).
    ctx_init: phrase of every class prompt ("{ctx_init} {name}."); its first `n_ctx_text` token embeddings
        initialise the context and the rest stays fixed text. An empty string gives `n_ctx_text` random
        vectors in front of the class name (None keeps the default phrase).
    init_std: standard deviation of the deeper prompts, the vision prompts and a random context.
    """

    n_ctx_text: int = 2
    n_ctx_vision: int = 2
    depth_text: int = 12
    depth_vision: int = 12
    ctx_init: str | None = "a photo of a"
    init_std: float = 0.02


@method_config("promptsrc")
@dataclass
class PromptSRCConfig(IVLPConfig):
    """IVLP's prompt options (see `IVLPConfig`) with PromptSRC's defaults (4 + 4 tokens, depth 9), plus:

    text_loss_weight: weight of the L1 between prompted and frozen text features (paper: 25).
    image_loss_weight: weight of the L1 between prompted and frozen image features (paper: 10).
    logits_loss_weight: weight of KL(frozen logits || prompted logits) (paper: 1).
    templates: templates of the frozen text features; null: PromptSRC's 60 ImageNet templates.
    gpa: aggregate the prompts of all epochs with Gaussian weights and use the aggregate after training.
    gpa_mean, gpa_std: the Gaussian over epochs 1 .. E (base-to-novel 15 / 1; cross-dataset 6 / 10;
        few-shot 30 / 30, or 45 / 5 on Cars, Flowers, Aircraft, DTD and EuroSAT).
    """

    n_ctx_text: int = 4
    n_ctx_vision: int = 4
    depth_text: int = 9
    depth_vision: int = 9
    text_loss_weight: float = 25.0
    image_loss_weight: float = 10.0
    logits_loss_weight: float = 1.0
    templates: list[str] | None = None
    gpa: bool = True
    gpa_mean: float = 15.0
    gpa_std: float = 1.0


@method_config("vpt")
@dataclass
class VPTConfig:
    """Args:
    n_ctx_vision: vision prompt tokens per prompted layer (MaPLe's VPT baseline: 8).
    depth_vision: prompt depth: input-level prompts plus deeper prompts before vision layers
        1 .. depth_vision-1 (MaPLe's VPT baseline: 12); at most the backbone's vision layer count.
    templates: hand-crafted templates of the frozen text classifier (the original: "a photo of a {}.").
    init_std: standard deviation of the prompt initialisation.
    """

    n_ctx_vision: int = 8
    depth_vision: int = 12
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])
    init_std: float = 0.02
