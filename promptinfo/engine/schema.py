"""Typed schemas of the training and evaluation configs.

These dataclasses are the one holder of every default: hydra composes them (`promptinfo.engine.config_store`
registers them as the root of `train.yaml` / `eval.yaml`), the YAML files under `configs/` hold only what
differs (published schedules, presets), and the composed config is merged onto them again
(`promptinfo.engine.validate`), so an unknown key, a wrong type or an unknown choice stops a run at start-up
with a message naming the key. The `method` section is typed per method: its options are the fields of the
method's own `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union  # OmegaConf's structured configs read these forms

UNLABELLED_PROTOCOLS = ("semi_supervised", "unsupervised", "transductive_zero_shot")
"""Protocols that train on unlabelled images as well (pseudo-labelled by the `pseudo` strategy)."""
PROTOCOLS = ("few_shot", "base2novel", "cross_dataset", "domain_generalization", "zeroshot", *UNLABELLED_PROTOCOLS)
SUBSAMPLES = ("all", "base", "novel")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "constant")
WARMUP_TYPES = ("constant", "linear")
PROGRESS = ("auto", "bar", "log", "none")
INFO_LEVELS = ("batch", "class")

DATA_ROOT = "${oc.env:PROMPTINFO_DATA,data}"
"""Data root: $PROMPTINFO_DATA, else ./data."""
FEATURE_CACHE = "${oc.env:PROMPTINFO_CACHE,.cache/promptinfo}/features"
"""Feature cache: $PROMPTINFO_CACHE/features, else ./.cache/promptinfo/features."""
EXPERIMENT_NAME = ("${pi.experiment:${method.name},${model.name},${protocol.name},${loss.cma.enabled},"
                   "${loss.info.mi_weight},${loss.info.gap_weight}}")
"""Derived from the method, backbone, protocol and loss (e.g. `coop_cma_vitb16_few_shot`); see
`promptinfo.engine.config_store.experiment_name`."""
RUN_DIR = ("${runs_root}/${pi.or:${experiment_name},default}/${dataset.name}/${pi.or:${label},${method.name}}/${protocol.name}"
           "/shots${protocol.shots}_seed${seed}")
"""One folder per (experiment_name, dataset, label or method, protocol, shots, seed): two runs never share it."""


@dataclass
class ModelConfig:
    """The frozen backbone.

    Attributes:
        name: open_clip architecture (`ViT-B-16`) or the path of an OpenAI-format checkpoint.
        pretrained: weights tag (`openai`), a weights file, or null for random weights (tests, demos).
        cache_dir: where open_clip keeps downloaded weights.
    """

    name: str = "ViT-B-16"
    pretrained: Optional[str] = "openai"
    cache_dir: Optional[str] = None


@dataclass
class CMAConfig:
    """Cross-modal alignment (Song et al., arXiv 2409.16767): loss = (1 - weight) CE + weight CMA.

    Attributes:
        enabled: add the CMA term.
        weight: lambda in [0, 1], or "auto" for the authors' per-dataset value (`promptinfo.data.cma_lambda`).
    """

    enabled: bool = False
    weight: Union[float, str] = "auto"


@dataclass
class InfoLossConfig:
    """Information-interplay terms (Song et al., arXiv 2406.03999), added to the loss with these weights.

    Attributes:
        mi_weight: weight of the MI reward (-MI), or of 1 - MIR with `use_mir`.
        gap_weight: weight of the entropy gap |H(Z) - H(W_y)|, or of HDR with `use_hdr`.
        level: "batch" pairs each image with its label's text feature; "class" uses class means.
    """

    mi_weight: float = 0.0
    gap_weight: float = 0.0
    use_mir: bool = False
    use_hdr: bool = False
    level: str = "batch"


@dataclass
class KgLossConfig:
    """KgCoOp's knowledge-guided term (Yao et al., CVPR 2023) as a plug-in for any method (`loss=kg`).

    Attributes:
        weight: its weight; 0 leaves it out (KgCoOp's own: 8.0).
        template: template of the frozen hand-crafted class features; null: the dataset's first template.
    """

    weight: float = 0.0
    template: Optional[str] = None


@dataclass
class SCLLossConfig:
    """PromptSRC's self-consistency terms (Khattak et al., ICCV 2023) as plug-ins for any method (`loss=scl`).

    Attributes:
        text_weight, image_weight, logits_weight: weights of the L1 text and image agreement and of the
            logits' KL with the frozen model; 0 leaves a term out (PromptSRC's own: 25, 10, 1).
        templates: templates of the frozen text features; null: PromptSRC's 60 ImageNet templates.
    """

    text_weight: float = 0.0
    image_weight: float = 0.0
    logits_weight: float = 0.0
    templates: Optional[List[str]] = None


@dataclass
class UnlabelledLossConfig(InfoLossConfig):
    """The information terms on pseudo-labelled unlabelled images, between their features and the text
    features of their pseudo-labels (protocols with unlabelled images only), each with its own weight.

    Attributes:
        cma_weight: weight of the CMA loss on the groups of images sharing a pseudo-label.
    """

    cma_weight: float = 0.0


@dataclass
class LossConfig:
    """Cross-entropy plus the configured information terms and regularizer plug-ins (the method adds its own terms).

    Attributes:
        unlabelled: the information terms on unlabelled images (their pseudo-label cross-entropy is
            weighted by `pseudo.weight`).
        kg, scl: KgCoOp's and PromptSRC's regularizers as plug-ins for any method.
    """

    cma: CMAConfig = field(default_factory=CMAConfig)
    info: InfoLossConfig = field(default_factory=InfoLossConfig)
    unlabelled: UnlabelledLossConfig = field(default_factory=UnlabelledLossConfig)
    kg: KgLossConfig = field(default_factory=KgLossConfig)
    scl: SCLLossConfig = field(default_factory=SCLLossConfig)


@dataclass
class DatasetConfig:
    """A registered benchmark and the folder that holds it (`<root>/<benchmark folder>`).

    Attributes:
        skip_corrupt: leave out the images that cannot be decoded (listed in train.log and results.json as
            `skipped_images`) instead of stopping. Every image a run reads is checked before training starts.
    """

    name: str = "oxford_pets"
    root: str = DATA_ROOT
    skip_corrupt: bool = False


@dataclass
class ProtocolConfig:
    """How a run trains and evaluates (Zhou et al., CoOp / CoCoOp protocols).

    Attributes:
        name: few_shot, base2novel, cross_dataset, domain_generalization, zeroshot, or one with unlabelled
            images: semi_supervised (k labelled shots per class, the rest of the train split unlabelled),
            unsupervised (every train image unlabelled) or transductive_zero_shot (k shots of the base
            classes, the novel classes' train images unlabelled; evaluated on base and novel).
        shots: (labelled) training images per class; -1 uses every training image.
        subsample: classes used by few_shot and zeroshot runs (all, base, novel); base2novel always
            trains on base and evaluates base and novel.
        targets: datasets evaluated after training on `dataset` (cross_dataset, domain_generalization).
    """

    name: str = "few_shot"
    shots: int = 16
    subsample: str = "all"
    targets: List[str] = field(default_factory=list)


@dataclass
class TrainerConfig:
    """The one training loop's settings (defaults: the CoOp recipe).

    Attributes:
        epochs: training epochs; null takes them from `epochs_by_dataset` then `epochs_by_shots` (an
            unsupervised run, without labelled shots, takes the schedule of the most shots).
        epochs_by_shots, epochs_by_dataset: published schedules (shots -> epochs, dataset -> epochs); the
            defaults are CoOp's few-shot schedule (Zhou et al., IJCV 2022, Sec. 4.1): 50 epochs for 1 shot,
            100 for 2 and 4, 200 for 8 and 16, and 50 on ImageNet.
        batch_size: images per optimiser step, split into `grad_accum` micro-batches.
        lr: peak learning rate; the cosine schedule decays it per epoch after the warm-up.
        warmup_epochs, warmup_type, warmup_lr: the protocol's warm-up (1 epoch at constant 1e-5).
        grad_accum: micro-batches per optimiser step (batch_size must be divisible by it).
        clip_grad_norm: clip the gradient norm of the prompt parameters; null: no clipping.
        precision: auto (bf16 autocast on CUDA when supported, else fp16; fp32 on CPU), fp32, bf16, fp16.
        device: auto (cuda when available), cpu, cuda, cuda:N, mps.
        deterministic: deterministic kernels (same config and seed -> same numbers on a machine).
        num_workers, pin_memory, persistent_workers: data loading (pinning applies on CUDA only).
        crop_scale: area range `[low, high]` of the training random resized crop (CoOp: 0.08 to 1); raise the
            low end for small or object-centred images, where a 0.08 crop can miss the object.
        hflip: probability of the training horizontal flip.
        train_views: >0 trains frozen-image methods on cached features of this many augmented views
            per image; 0 encodes the augmented images at every step.
        channels_last: keep the backbone's convolution weights channels-last (faster ResNet towers, the
            same numbers up to float rounding; ViT patch embeddings are unaffected).
        compile: `torch.compile` the backbone's image and text encoders (opt-in: compiling takes minutes
            and pays off on long GPU runs; numbers equal up to float rounding).
        info_subset: training images on which the epoch-end information metrics are computed.
        tensorboard: also write the per-epoch metrics as TensorBoard scalars.
        progress: auto (bar on a terminal, log lines otherwise), bar, log, none.
        log_every: steps between progress log lines when no bar is shown.
        keep_checkpoint: keep the resume checkpoint after the run finished.
    """

    epochs: Optional[int] = None
    epochs_by_shots: Dict[int, int] = field(default_factory=lambda: {1: 50, 2: 100, 4: 100, 8: 200, 16: 200})
    epochs_by_dataset: Dict[str, int] = field(default_factory=lambda: {"imagenet": 50})
    batch_size: int = 32
    eval_batch_size: int = 100
    lr: float = 0.002
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "cosine"
    warmup_epochs: int = 1
    warmup_type: str = "constant"
    warmup_lr: float = 1e-5
    grad_accum: int = 1
    clip_grad_norm: Optional[float] = None
    precision: str = "auto"
    device: str = "auto"
    deterministic: bool = True
    num_workers: int = 4
    pin_memory: bool = True
    persistent_workers: bool = True
    crop_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])
    hflip: float = 0.5
    train_views: int = 0
    channels_last: bool = True
    compile: bool = False
    info_subset: int = 256
    tensorboard: bool = False
    progress: str = "auto"
    log_every: int = 20
    keep_checkpoint: bool = False


@dataclass
class TrainConfig:
    """Root of `promptinfo-train`'s config.

    Attributes:
        method: `{name: <registry key>, <option>: <value>, ...}`, typed per method at validation.
        pseudo: `{name: <strategy>, <option>: <value>, ...}`, the pseudo-labelling strategy of protocols with
            unlabelled images, typed per strategy (`promptinfo.pseudo`; default fixmatch).
        seed: seeds prompts, few-shot sampling, data order and augmentation.
        experiment_name: name of the experiment (recorded in results as `experiment`; part of the run
            folder). Derived from the method, backbone, protocol and loss (`coop_cma_vitb16_few_shot`) unless
            set: presets such as `experiment=demo` set it, and `experiment_name=...` names an ad-hoc variant.
        label: name of this variant in run folders and report tables instead of the method's name,
            e.g. `coop+cma` for CoOp trained with the CMA loss.
        runs_root: folder under which run folders are derived.
        run_dir: this run's folder (derived from experiment_name, dataset, label or method, protocol, shots,
            seed).
        overwrite: redo a finished run (its files are replaced).
        feature_cache: folder of the frozen-encoder feature cache shared by runs.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = None
    pseudo: Any = None
    loss: LossConfig = field(default_factory=LossConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 1
    experiment_name: Optional[str] = EXPERIMENT_NAME
    label: Optional[str] = None
    runs_root: str = "runs"
    run_dir: str = RUN_DIR
    overwrite: bool = False
    feature_cache: str = FEATURE_CACHE


@dataclass
class EvalConfig:
    """Root of `promptinfo-eval`'s config.

    Attributes:
        checkpoint: a prompt checkpoint (`prompt.safetensors`); its metadata names the method, its
            options and the backbone. Null evaluates `method` untrained (e.g. zero-shot CLIP).
        output: results JSON; null writes `eval_<dataset>_<subsample>.json` beside the checkpoint
            (or under `runs_root/eval/` without one).
        seed: seeds an untrained method's initialisation.
        feature_cache: folder of the frozen-encoder feature cache shared by runs.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = None
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    protocol: ProtocolConfig = field(default_factory=lambda: ProtocolConfig(name="zeroshot", shots=0))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: Optional[str] = None
    output: Optional[str] = None
    seed: int = 1
    runs_root: str = "runs"
    feature_cache: str = FEATURE_CACHE
