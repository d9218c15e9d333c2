"""A tiny CLIP pretrained on the procedural benchmark, so the toolkit runs offline in minutes.

The recipe trains a small open_clip model contrastively (symmetric InfoNCE with a learnable logit
scale, as in CLIP, Radford et al. 2021, Fig. 3) on captioned procedural images of *half of the base*
classes. The novel classes are colour-shape combinations the model never saw, so zero-shot accuracy
on them measures compositional generalisation, not memory. The other half of the base classes are
new to it too, as a downstream dataset's classes are to a web-pretrained CLIP: its frozen image
features separate them better than its zero-shot classifier does, which is the room that few-shot
prompt learning has on real benchmarks. (A model pretrained on every base class already sits at the
ceiling of its features there, and prompt learning cannot raise base accuracy.)

``ensure_demo_backbone`` pretrains on first use (under a file lock) and caches the weights; the
checkpoint is a plain safetensors state dict that ``open_clip.create_model(name, pretrained=path)``
and ``promptinfo.backbones.create_backbone`` load like any other weights file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from filelock import FileLock
from open_clip.model import get_model_preprocess_cfg
from safetensors.torch import save_file
from torch import nn

from promptinfo.data import procedural
from promptinfo.engine.device import torch_threads
from promptinfo.errors import ConfigError, DamagedFileError
from promptinfo.io import atomic_path, read_safetensors, remove_leftover_temps, set_aside

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "backbones" / "model_configs"
_PRETRAIN_STREAM = 7  # random stream of pretraining images, apart from the benchmark's train/val/test


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that determines a pretrained demo model (its hash names the cached checkpoint).

    Attributes:
        model: open_clip architecture, a ``pi-demo-*`` config in ``backbones/model_configs``.
        benchmark: the procedural benchmark the model is evaluated on; pretraining uses its base
            classes and its resolution, never its novel classes or its images.
        steps: optimiser steps; batch_size: image-caption pairs per step.
        lr, weight_decay, warmup_steps: AdamW (sparse Adam for the token embedding) with linear
            warm-up then cosine decay to zero.
        partial_caption_prob: share of captions naming only the colour or only the shape.
        pretraining_classes: which classes pretraining captions and renders (see ``pretraining_pairs``):
            ``half_base`` (every other diagonal of the base cells) or ``base`` (every base class).
        seed: seeds model initialisation, image rendering, caption choice and data order.
    """

    model: str
    benchmark: procedural.ProceduralSpec = field(default_factory=procedural.ProceduralSpec)
    steps: int = 700
    batch_size: int = 192
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    partial_caption_prob: float = 0.2
    pretraining_classes: str = "half_base"
    seed: int = 0

    def fingerprint(self) -> str:
        """Short hash of the recipe, the renderer version and the architecture config."""
        payload = {"recipe": asdict(self), "renderer": procedural.RENDERER_VERSION, "arch": _arch_config(self.model)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


VARIANTS: dict[str, DemoRecipe] = {
    "default": DemoRecipe(model="pi-demo-default"),
    "small": DemoRecipe(
        model="pi-demo-small",
        benchmark=procedural.ProceduralSpec(train_per_class=16, val_per_class=4, test_per_class=16),
        steps=400,
        batch_size=128,
    ),
}
"""Named recipes: ``default`` for the demo job, ``small`` for fast tests."""


def _arch_config(model: str) -> dict:
    path = MODEL_CONFIG_DIR / f"{model}.json"
    if not path.is_file():
        names = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("pi-demo-*.json"))
        raise ConfigError(f"No demo architecture '{model}' in {MODEL_CONFIG_DIR}; available: {names}.")
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------------
# Model, images and captions
# ----------------------------------------------------------------------------------------------


def create_demo_model(name: str) -> nn.Module:
    """A randomly initialised demo architecture (seed torch first for reproducible weights)."""
    _register(name)
    root = logging.getLogger()
    root.addFilter(_random_init_notice)  # open_clip warns that no weights were loaded: here that is the point
    try:
        return open_clip.create_model(name, pretrained=None)
    finally:
        root.removeFilter(_random_init_notice)


def _random_init_notice(record: logging.LogRecord) -> bool:
    return "initialized randomly" not in record.getMessage()


def demo_tokenizer(name: str):
    """open_clip's standard tokenizer (context length 77) for a demo architecture."""
    _register(name)
    return open_clip.get_tokenizer(name)


def _register(name: str) -> None:
    _arch_config(name)  # clear error for an unknown name
    if name not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def image_size_of(model: nn.Module) -> int:
    size = get_model_preprocess_cfg(model)["size"]
    size = size if isinstance(size, int) else size[0]
    return int(size)


def to_model_input(images: np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` images at the model's size -> normalised ``(N, 3, H, W)`` floats.

    Equals open_clip's evaluation transform, whose resize and centre crop are identities here.
    """
    size = image_size_of(model)
    if images.shape[1:] != (size, size, 3):
        raise ConfigError(f"Images of shape {images.shape[1:]} do not match the model's input ({size}, {size}, 3).")
    cfg = get_model_preprocess_cfg(model)
    return normalise(images, cfg["mean"], cfg["std"])


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


PRETRAINING_CLASSES = ("half_base", "base")


def pretraining_pairs(recipe: DemoRecipe) -> list[tuple[str, str]]:
    """(colour, shape) pairs seen in pretraining, in label order; never a novel class.

    Base classes are the cells (i, j) of the colour x shape grid with ``i + j`` even. ``half_base``
    keeps those with ``i + j`` divisible by 4 (every other diagonal of them), so each colour and
    each shape still occurs in pretraining while half of the base classes, like all novel ones, are
    combinations the model never saw. ``base`` keeps every base class.
    """
    spec = recipe.benchmark
    base, _ = procedural.base_novel_split(spec.classes)
    if recipe.pretraining_classes not in PRETRAINING_CLASSES:
        raise ConfigError(f"Unknown pretraining_classes {recipe.pretraining_classes!r}; choose from "
                          f"{list(PRETRAINING_CLASSES)}.")
    if recipe.pretraining_classes == "half_base":
        colours, shapes = list(spec.colours), list(spec.shapes)
        base = [c for c in base if (colours.index(c.colour) + shapes.index(c.shape)) % 4 == 0]
        missing = sorted(set(colours) - {c.colour for c in base}) + sorted(set(shapes) - {c.shape for c in base})
        if missing:
            raise ConfigError(f"With pretraining_classes='half_base' the demo CLIP would never see {missing}; "
                              "use more colours and shapes, or pretraining_classes='base'.")
    return [(c.colour, c.shape) for c in base]


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
        self.tokens = _Tokens(demo_tokenizer(recipe.model))

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


def encode_text_truncated(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` run only up to the last end-of-text token of the batch.

    Exact for CLIP's causal text transformer pooled at the end-of-text token (the largest token
    id), since no position before it attends to the padding after it. Captions are about 20 tokens
    long, so this skips three quarters of the 77-token pass.
    """
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]  # (B, L)
    x = model.token_embedding(tokens) + model.positional_embedding[:length]  # (B, L, width)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]  # (B, width)
    return x @ model.text_projection  # (B, embed_dim)


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matching pairs (CLIP, Radford et al. 2021, Fig. 3)."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image_features @ text_features.T  # (B, B)
    targets = torch.arange(logits.shape[0])
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


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
        The model in eval mode and a report: recipe, wall times, final loss and accuracies.
    """
    start = time.perf_counter()
    with torch_threads(num_threads):
        torch.manual_seed(recipe.seed)
        model = create_demo_model(recipe.model)
        _check_resolution(recipe, model)
        cfg = get_model_preprocess_cfg(model)
        losses = _train(model, PretrainingBatches(recipe, cfg["mean"], cfg["std"]), recipe, workers)
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
    """The contrastive loop; the learning rate is set at the top of every step."""
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=4 if workers else None
    )
    optimizers = _optimizers(model, recipe)
    dense = [p for group in optimizers[0].param_groups for p in group["params"]]
    model.train()
    model.token_embedding.sparse = True  # captions use a few dozen of the 49,408 token rows
    losses = []
    try:
        for step, (images, texts) in enumerate(loader):
            for group in (g for opt in optimizers for g in opt.param_groups):
                group["lr"] = _learning_rate(step, recipe)
            loss = clip_loss(model.encode_image(images), encode_text_truncated(model, texts), model.logit_scale)
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
        model.eval()
    return losses


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
def zero_shot_logits(
    model: nn.Module, tokenizer, images: torch.Tensor, classnames: list[str], templates: list[str]
) -> torch.Tensor:
    """CLIP zero-shot logits: cosine similarity to the mean of each class's prompt embeddings."""
    weights = []
    for name in classnames:
        text = F.normalize(model.encode_text(tokenizer([t.format(name) for t in templates])), dim=-1)
        weights.append(F.normalize(text.mean(dim=0), dim=-1))
    classifier = torch.stack(weights, dim=1)  # (embed_dim, n_classes)
    features = torch.cat([F.normalize(model.encode_image(chunk), dim=-1) for chunk in images.split(512)])
    return features @ classifier  # (N, n_classes)


def evaluate_demo_clip(model: nn.Module, recipe: DemoRecipe) -> dict:
    """Zero-shot accuracy on the benchmark's test split: base and novel (each among its own
    classes, as in the CoOp base-to-novel protocol) and all classes together; chance is 1/n.
    With ``half_base`` pretraining, base accuracy is also split into the base classes pretraining
    saw (``accuracy_base_pretrained``) and the others (``accuracy_base_unseen``)."""
    spec = recipe.benchmark
    entries = list(procedural.split_scenes(spec, "test"))
    images = to_model_input(render_scenes([s for _, _, s in entries], spec.resolution), model)
    labels = torch.tensor([cls.label for cls, _, _ in entries])
    classes = spec.classes
    base, novel = procedural.base_novel_split(classes)
    tokenizer = demo_tokenizer(recipe.model)
    logits = zero_shot_logits(model, tokenizer, images, [c.name for c in classes], list(procedural.TEMPLATES))
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


def _check_resolution(recipe: DemoRecipe, model: nn.Module) -> None:
    if recipe.benchmark.resolution != image_size_of(model):
        raise ConfigError(
            f"The demo benchmark renders at {recipe.benchmark.resolution} px but {recipe.model} takes "
            f"{image_size_of(model)} px images; set benchmark.resolution={image_size_of(model)}."
        )


# ----------------------------------------------------------------------------------------------
# Cached checkpoints
# ----------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$PROMPTINFO_HOME``, else ``~/.cache/promptinfo``."""
    return Path(os.environ.get("PROMPTINFO_HOME") or Path.home() / ".cache" / "promptinfo").expanduser()


def get_recipe(variant: str | DemoRecipe) -> DemoRecipe:
    """The recipe of a named variant (``default`` or ``small``), or ``variant`` itself if a recipe."""
    if isinstance(variant, DemoRecipe):
        return variant
    if variant not in VARIANTS:
        raise ConfigError(f"Unknown demo variant {variant!r}; choose from {sorted(VARIANTS)}.")
    return VARIANTS[variant]


def demo_checkpoint_path(variant: str | DemoRecipe = "default", cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint of a recipe is cached: ``<cache>/demo/<model>-<recipe hash>.safetensors``."""
    recipe = get_recipe(variant)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / "demo" / f"{recipe.model}-{recipe.fingerprint()}.safetensors"


def ensure_demo_backbone(
    variant: str | DemoRecipe = "default",
    cache_dir: str | os.PathLike | None = None,
    num_threads: int | None = 1,
    workers: int = 1,
) -> Path:
    """Path of the pretrained demo weights, pretraining them first if they are not cached.

    Concurrent callers wait on a file lock, so only one of them trains. Load the result with
    ``create_backbone(get_recipe(variant).model, pretrained=str(path))``.

    Args:
        variant: ``default`` (the demo job), ``small`` (tests), or a ``DemoRecipe``.
        cache_dir: cache root; defaults to ``$PROMPTINFO_HOME`` or ``~/.cache/promptinfo``.
        num_threads: torch CPU threads while pretraining.
        workers: processes rendering pretraining batches (see ``pretrain_demo_clip``).
    """
    recipe = get_recipe(variant)
    path = demo_checkpoint_path(recipe, cache_dir)
    if path.is_file() and _intact(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            if _intact(path):
                return path
            logger.warning("The cached demo weights %s are damaged; set them aside as %s and pretraining again",
                           path, set_aside(path).name)
        for target in (path, path.with_suffix(".json")):  # leftovers of a pretraining that was killed
            remove_leftover_temps(target)
        logger.info("Pretraining the demo CLIP %s (first use; cached at %s)", recipe.model, path)
        model, report = pretrain_demo_clip(recipe, num_threads=num_threads, workers=workers)
        save_demo_checkpoint(model, report, path)
    return path


def _intact(path: Path) -> bool:
    try:
        read_safetensors(path, fix="")
    except DamagedFileError:
        return False
    return True


def save_demo_checkpoint(model: nn.Module, report: dict, path: str | os.PathLike) -> None:
    """Write the state dict as safetensors and the report as ``<path stem>.json``, each atomically.

    The report goes first, so a present checkpoint always has its report next to it.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"Demo checkpoints are safetensors files; got {path}.")
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=list))
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"fingerprint": str(report.get("fingerprint"))})
