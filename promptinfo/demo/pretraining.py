"""Pretraining a demo CLIP from scratch, and its zero-shot accuracy on the procedural benchmark.

The recipe (``promptinfo.demo.recipe``) trains a small open_clip model contrastively (symmetric
InfoNCE with a learnable logit scale, as in CLIP, Radford et al. 2021, Fig. 3; open_clip's
``ClipLoss``) on captioned procedural images of *half of the base* classes. The novel classes are
colour-shape combinations the model never saw, so zero-shot accuracy on them measures compositional
generalisation, not memory. The other half of the base classes are new to it too, as a downstream
dataset's classes are to a web-pretrained CLIP: its frozen image features separate them better than
its zero-shot classifier does, which is the room that few-shot prompt learning has on real
benchmarks. (A model pretrained on every base class already sits at the ceiling of its features
there, and prompt learning cannot raise base accuracy.)

The model is read through ``Backbone`` (its text pass stops at the end-of-text tokens) and
evaluated with the zero-shot method, so the demo touches no open_clip internals of its own.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict

import numpy as np
import open_clip
import torch
from torch import nn

from promptinfo.backbones import Backbone, PreprocessConfig, normalize
from promptinfo.data import procedural
from promptinfo.demo.recipe import DemoRecipe, arch_config, pretraining_pairs
from promptinfo.engine.device import torch_threads
from promptinfo.errors import ConfigError
from promptinfo.methods.zeroshot import ZeroShot, ZeroShotConfig

logger = logging.getLogger(__name__)

_PRETRAIN_STREAM = 7  # random stream of pretraining images, apart from the benchmark's train/val/test


# ----------------------------------------------------------------------------------------------
# Model, images and captions
# ----------------------------------------------------------------------------------------------


def create_demo_model(name: str) -> nn.Module:
    """A randomly initialised demo architecture (seed torch first for reproducible weights)."""
    arch_config(name)  # clear error for an unknown name
    root = logging.getLogger()
    root.addFilter(_random_init_notice)  # open_clip warns that no weights were loaded: here that is the point
    try:
        return open_clip.create_model(name, pretrained=None)
    finally:
        root.removeFilter(_random_init_notice)


def _random_init_notice(record: logging.LogRecord) -> bool:
    return "initialized randomly" not in record.getMessage()


def demo_backbone(model: nn.Module, name: str) -> Backbone:
    """``model`` behind the prompt-aware adapter (which freezes it and puts it in eval mode)."""
    return Backbone(model, name=name, weights_id="procedural", tokenizer=open_clip.get_tokenizer(name))


def to_model_input(images: np.ndarray, preprocess: PreprocessConfig) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` images at the model's size -> normalised ``(N, 3, H, W)`` floats.

    Equals open_clip's evaluation transform, whose resize and centre crop are identities here.
    """
    size = preprocess.size
    if images.shape[1:] != (size, size, 3):
        raise ConfigError(f"Images of shape {images.shape[1:]} do not match the model's input ({size}, {size}, 3).")
    return normalise(images, preprocess.mean, preprocess.std)


def normalise(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> ``(N, 3, H, W)`` floats, scaled to [0, 1] then standardised per channel."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (pixels - mean_t) / std_t  # (N, 3, H, W)


def render_scenes(scenes: list[procedural.Scene], resolution: int) -> np.ndarray:
    """Stack rendered scenes into a uint8 ``(N, resolution, resolution, 3)`` array."""
    out = np.empty((len(scenes), resolution, resolution, 3), dtype=np.uint8)
    for i, scene in enumerate(scenes):
        out[i] = procedural.render_scene(scene, resolution)
    return out


class PretrainingBatches(torch.utils.data.Dataset):
    """Batch ``i`` of pretraining: freshly rendered images of pretraining pairs and their captions.

    Each batch is a pure function of ``(recipe.seed, i)``, so the data are the same whether batches
    are made in this process or in loader workers, in any order. No image repeats, so the model
    cannot memorise a finite pool.
    """

    def __init__(self, recipe: DemoRecipe, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.recipe = recipe
        self.pairs = pretraining_pairs(recipe)
        self.mean, self.std = tuple(mean), tuple(std)
        self.tokens = _Tokens(open_clip.get_tokenizer(recipe.model))

    def __len__(self) -> int:
        return self.recipe.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        recipe = self.recipe
        rng = np.random.default_rng(np.random.SeedSequence([recipe.seed, _PRETRAIN_STREAM, int(step)]))
        picks = rng.integers(len(self.pairs), size=recipe.batch_size)
        scenes = [procedural.sample_scene(*self.pairs[k], rng) for k in picks]
        captions = [procedural.caption(scene, rng, recipe.partial_caption_prob) for scene in scenes]
        images = normalise(render_scenes(scenes, recipe.benchmark.resolution), self.mean, self.std)
        return images, self.tokens(captions)  # (B, 3, H, W), (B, context_length)


class _Tokens:
    """Tokenises captions once each: a few thousand distinct captions recur through training."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = sorted({c for c in captions if c not in self.cache})
        if missing:
            for text, row in zip(missing, self.tokenizer(missing)):
                self.cache[text] = row
        return torch.stack([self.cache[c] for c in captions])  # (B, context_length)


# ----------------------------------------------------------------------------------------------
# Pretraining and zero-shot evaluation
# ----------------------------------------------------------------------------------------------


def pretrain_demo_clip(
    recipe: DemoRecipe, num_threads: int | None = 1, workers: int = 1
) -> tuple[nn.Module, dict]:
    """Pretrain a demo CLIP from scratch and measure its zero-shot accuracy.

    Args:
        recipe: what to train (see ``VARIANTS``).
        num_threads: torch CPU threads while training (restored afterwards); None leaves them as is.
            One is fastest for these tiny models on a busy machine (no threads spinning at barriers),
            and leaves a core to the rendering worker.
        workers: processes rendering batches ahead of the training step (0: render in this process).
            The result does not depend on it.

    Returns:
        The model (frozen, in eval mode) and a report: recipe, wall times, final loss and accuracies.
    """
    start = time.perf_counter()
    with torch_threads(num_threads):
        torch.manual_seed(recipe.seed)
        model = create_demo_model(recipe.model)
        preprocess = demo_backbone(model, recipe.model).preprocess_cfg
        _check_resolution(recipe, preprocess)
        losses = _train(model, PretrainingBatches(recipe, preprocess.mean, preprocess.std), recipe, workers)
        train_s = time.perf_counter() - start
        metrics = evaluate_demo_clip(model, recipe)
    report = {
        "recipe": asdict(recipe),
        "fingerprint": recipe.fingerprint(),
        "seconds": {"train": train_s, "total": time.perf_counter() - start},
        "num_threads": torch.get_num_threads() if num_threads is None else num_threads,
        "final_loss": float(np.mean(losses[-20:])),
        **metrics,
    }
    accuracies = ", ".join(f"{k.removeprefix('accuracy_').replace('_', ' ')} {100 * v:.1f}%"
                           for k, v in metrics.items() if k.startswith("accuracy_"))
    logger.info("Pretrained %s in %.1f s; zero-shot accuracy: %s (chance: base and novel %.1f%%)", recipe.model,
                report["seconds"]["total"], accuracies, 100 * metrics["chance_base"])
    return model, report


def _train(model: nn.Module, batches: PretrainingBatches, recipe: DemoRecipe, workers: int) -> list[float]:
    """The contrastive loop; the learning rate is set at the top of every step.

    Text goes through ``Backbone``'s text pass (cut at each length bucket's longest caption, the shared
    start token run once: exact for CLIP's causal text tower); the adapter freezes what it wraps, so the
    weights are unfrozen after wrapping.
    """
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=4 if workers else None
    )
    backbone = demo_backbone(model, recipe.model)
    model.requires_grad_(True)
    optimizers = _optimizers(model, recipe)
    dense = [p for group in optimizers[0].param_groups for p in group["params"]]
    model.token_embedding.sparse = True  # captions use a few dozen of the 49,408 token rows
    losses = []
    try:
        for step, (images, texts) in enumerate(loader):
            for group in (g for opt in optimizers for g in opt.param_groups):
                group["lr"] = _learning_rate(step, recipe)
            loss = contrastive_loss(backbone.encode_image(images), backbone.encode_text(texts), model.logit_scale)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(dense, 1.0)
            for opt in optimizers:
                opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, math.log(100.0))
            losses.append(loss.item())
    finally:
        model.token_embedding.sparse = False
        model.requires_grad_(False)
    return losses


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matching pairs (CLIP, Radford et al. 2021, Fig. 3): open_clip's
    ``ClipLoss`` on L2-normalised features, with the logit scale kept as its logarithm."""
    return open_clip.ClipLoss()(normalize(image_features), normalize(text_features), log_scale.exp())


def _optimizers(model: nn.Module, recipe: DemoRecipe) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """AdamW with weight decay on matrices only (as open_clip trains CLIP), and a sparse Adam for the
    token embedding, whose rows are updated only when their token occurs (no decay)."""
    named = [(n, p) for n, p in model.named_parameters() if n != "token_embedding.weight"]
    decay = [p for n, p in named if p.ndim >= 2]
    rest = [p for n, p in named if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    dense = torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6)
    sparse = torch.optim.SparseAdam([model.token_embedding.weight], lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6)
    return dense, sparse


def _learning_rate(step: int, recipe: DemoRecipe) -> float:
    """Linear warm-up to ``recipe.lr``, then cosine decay to zero at ``recipe.steps``."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def zero_shot_logits(backbone: Backbone, images: torch.Tensor, classnames: list[str]) -> torch.Tensor:
    """Logits of the zero-shot method over the procedural templates, `(N, n_classes)`."""
    method = ZeroShot(backbone, classnames, ZeroShotConfig(templates=list(procedural.TEMPLATES)))
    return torch.cat([method(chunk) for chunk in images.split(512)])


def evaluate_demo_clip(model: nn.Module, recipe: DemoRecipe) -> dict:
    """Zero-shot accuracy on the benchmark's test split: base and novel (each among its own
    classes, as in the CoOp base-to-novel protocol) and all classes together; chance is 1/n.
    With ``half_base`` pretraining, base accuracy is also split into the base classes pretraining
    saw (``accuracy_base_pretrained``) and the others (``accuracy_base_unseen``)."""
    spec = recipe.benchmark
    backbone = demo_backbone(model, recipe.model)
    entries = list(procedural.split_scenes(spec, "test"))
    images = to_model_input(render_scenes([s for _, _, s in entries], spec.resolution), backbone.preprocess_cfg)
    labels = torch.tensor([cls.label for cls, _, _ in entries])
    classes = spec.classes
    base, novel = procedural.base_novel_split(classes)
    logits = zero_shot_logits(backbone, images, [c.name for c in classes])
    out = {"accuracy_all": _accuracy(logits, labels), "chance_all": 1.0 / len(classes)}
    seen = set(pretraining_pairs(recipe))
    seen_labels = torch.tensor([c.label for c in classes if (c.colour, c.shape) in seen])
    for key, group in (("base", base), ("novel", novel)):
        ids = torch.tensor([c.label for c in group])
        mask = torch.isin(labels, ids)
        remap = {int(c): i for i, c in enumerate(ids)}
        target = torch.tensor([remap[int(y)] for y in labels[mask]])
        hits = logits[mask][:, ids].argmax(dim=-1) == target
        out[f"accuracy_{key}"] = float(hits.double().mean())
        out[f"chance_{key}"] = 1.0 / len(group)
        if key == "base" and recipe.pretraining_classes != "base":  # among base classes, by what pretraining saw
            pretrained = torch.isin(labels[mask], seen_labels)
            out["accuracy_base_pretrained"] = float(hits[pretrained].double().mean())
            out["accuracy_base_unseen"] = float(hits[~pretrained].double().mean())
    return out


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=-1) == labels).double().mean())


def _check_resolution(recipe: DemoRecipe, preprocess: PreprocessConfig) -> None:
    if recipe.benchmark.resolution != preprocess.size:
        raise ConfigError(
            f"The demo benchmark renders at {recipe.benchmark.resolution} px but {recipe.model} takes "
            f"{preprocess.size} px images; set benchmark.resolution={preprocess.size}."
        )
