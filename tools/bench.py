"""Time promptinfo against the original prompt-learning code's formulation, on the same machine in one run.

Original: `tools/original_formulation.py` re-creates the original CoOp / CoCoOp / MaPLe forward pass and
training step (the text tower sequence-first over all 77 tokens, the image encoder on decoded images at
every step, CoCoOp one text pass per image). The training rows compare against it; the evaluation rows
and the single-lever rows against our own code with the levers off ("straightforward": 77-token text,
no shared prefix, CoCoOp one image at a time, images re-encoded per evaluation, text per batch).
Ours: promptinfo's path with every lever on. The text tower stops at the longest end-of-text token, runs
prompts of similar length together, and runs the positions every class prompt shares (start token, shared
context) once; frozen-image methods read cached features (test images, and augmented views for training);
CoCoOp encodes the prompts of many images in one pass; convolution weights are channels-last; on CUDA the
passes run under bf16 autocast (`--compile` adds torch.compile). Per method, the training-step rows add the
levers one by one (`VARIANTS`): all are exact except cached views, which draw each image's augmentations
once before training instead of at every step.

Both formulations get their own copy of the same random weights; ours runs through the engine's own
training step (`engine.loop.train_epoch`) and evaluation functions, the original through its own loop.
They alternate step by step and are checked to give the same logits first. Each of `--repeats` rounds (after `--warmup` untimed ones) runs
every variant once and yields one estimate of every quantity; the table shows medians over rounds, and
each ratio is the median of the per-round ratios (both sides of a round ran back to back, so load
from other processes on a shared machine largely cancels in it). Long quantities
(an epoch, a 10,000-image evaluation, a CoCoOp batch of 32) are measured on a few steps or images and
scaled linearly; every row of the JSON keeps the measured times and the scale factors.

Peak memory: on CUDA, `max_memory_allocated` during one training step above what was allocated before
it. On the CPU, each configuration runs one step in a fresh process with glibc's mmap threshold fixed
at 64 KiB (freed tensors go back to the system, so the resident size follows live memory); the peak
is VmHWM (reset just before the step) minus VmRSS before the step. The original formulation's step at
1,000 classes on ViT-B/16 needs ~20 GiB: on the CPU it is the straight line through its steps at
`--memory-fit-classes` (memory and time of its text pass grow linearly with the classes).

    python tools/bench.py                        # ViT-B-16-sized random weights, ~20 min on 2 idle CPU cores
    python tools/bench.py --quick                # tiny model, under a minute
    python tools/bench.py --threads 1 ...        # a CPU shared with other jobs: steadier numbers
    python tools/bench.py --device cuda --json tools/results/bench-gpu.json
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image

from promptinfo.backbones import Backbone
from promptinfo.data import BenchmarkData, Item, build_transform
from promptinfo.engine import (
    FeatureBatches,
    FeatureStore,
    Fit,
    FitState,
    ImageBatches,
    LossConfig,
    ModelConfig,
    Objective,
    Precision,
    Progress,
    Runtime,
    TrainerConfig,
    build_backbone,
    build_optimizer,
    build_runtime,
    classify_features,
    evaluate,
    image_loader,
    seed_everything,
    shared_text_features,
    train_epoch,
)
from promptinfo.io import write_json
from promptinfo.methods import create_method
from promptinfo.methods.zeroshot import zeroshot_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from original_formulation import OriginalPromptModel, original_step, sequence_first  # noqa: E402

TEMPLATES = ["a photo of a {}."]
PUBLISHED = {"zeroshot": {"templates": TEMPLATES}, "coop": {"n_ctx": 16}, "cocoop": {}, "maple": {}}
"""Each method's published options (CoOp: 16 random context vectors, class name at the end)."""
TARGETS = {  # row name -> (kind, bound): speed-ups at least `bound`, memory fractions at most `bound`
    "coop train epoch": ("speedup", 5.0),
    "coop eval": ("speedup", 50.0),
    "coop train step: ours, cached views": ("speedup", 15.0),
    "maple train step: ours": ("speedup", 5.0),
    "cocoop train step: ours": ("speedup", 10.0),
    "coop step memory (memory classes): ours": ("fraction", 0.25),
}
VARIANTS = {  # ladder variant -> (exact, changes the sampled augmentations)
    "ours, no shared prefix": (True, False),
    "ours": (True, False),
    "ours, cached views, no shared prefix": (False, True),
    "ours, cached views": (False, True),
}
"""Every variant gives the original's numbers to float32 rounding for the same inputs; training on cached
views (`trainer.train_views`) draws each image's augmentations once, before training, instead of at every step."""
MIB = 2**20


# --------------------------------------------------------------------------------------------- the two sides
@dataclass
class Side:
    """One formulation: its own backbone (same random weights as the other side) and runtime."""

    straightforward: bool
    backbone: Backbone
    rt: Runtime
    _original_clip: torch.nn.Module | None = None

    def original(self, name: str, classnames: list[str]) -> OriginalPromptModel:
        """The original code's model over this side's method (77-token buffers) and a sequence-first copy
        of this side's weights, made once."""
        if self._original_clip is None:
            self._original_clip = copy.deepcopy(self.backbone.model)
            sequence_first(self._original_clip)
        return OriginalPromptModel(self.method(name, classnames), self._original_clip)

    def method(self, name: str, classnames: list[str]):
        options = dict(PUBLISHED[name])
        if name == "maple":
            options["depth"] = min(9, self.backbone.text_layers, self.backbone.vision_layers)
        if name == "cocoop" and self.straightforward:
            options["batch_images"] = False
        seed_everything(0)
        return create_method(name, self.backbone, classnames, **options).to(self.rt.device)


def make_side(straightforward: bool, model: str, args) -> Side:
    """The straightforward side (our code with the levers off; its `original` is the original code's
    formulation) or ours (promptinfo's defaults plus `--compile`)."""
    precision = args.baseline_precision if straightforward and args.baseline_precision else args.precision
    trainer = TrainerConfig(
        device=args.device, precision=precision, batch_size=args.coop_batch, eval_batch_size=args.eval_batch,
        num_workers=args.workers, persistent_workers=args.workers > 0, channels_last=not straightforward,
        compile=args.compile and not straightforward,
    )
    backbone = build_backbone(ModelConfig(name=model, pretrained=None))
    if straightforward:
        backbone.truncate_text = False  # read when prompts are tokenised and at every text pass
        backbone.shared_prefix = False
    rt = build_runtime(trainer, backbone)  # applies channels_last / compile to this side's backbone
    backbone.to(rt.device)
    return Side(straightforward, backbone, rt)


def classnames_for(n: int) -> list[str]:
    """`n` of CLIP's ImageNet class names spread over the list (real names: real text lengths)."""
    if not 1 <= n <= len(IMAGENET_CLASSNAMES):
        raise ValueError(f"class count {n}: choose 1 .. {len(IMAGENET_CLASSNAMES)} (ImageNet's names are used).")
    return [IMAGENET_CLASSNAMES[i * len(IMAGENET_CLASSNAMES) // n] for i in range(n)]


# --------------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of `fn()`, with the device's queued work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleave(variants: dict[str, Callable[[], object]], device, repeats: int, warmup: int) -> dict[str, dict]:
    """Median seconds of each variant; every round runs all variants in turn, so load changes hit them alike."""
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(warmup + repeats):
        for name, fn in variants.items():
            seconds = clock(fn, device)
            if r >= warmup:
                runs[name].append(seconds)
    return {name: {"median_s": statistics.median(t), "runs_s": t} for name, t in runs.items()}


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Bytes allocated on the GPU at the peak of `fn()` above those allocated before it."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


# --------------------------------------------------------------------------------------------- training steps
class OneStep:
    """A `Batches` whose every epoch is the next batch of a stream: `train_epoch` then runs one optimiser step."""

    def __init__(self, stream: Iterator, kind: str) -> None:
        self.stream, self.kind = stream, kind

    def __len__(self) -> int:
        return 1

    def epoch(self, epoch: int):
        yield next(self.stream)


def endless(batches) -> Iterator:
    for epoch in itertools.count():
        yield from batches.epoch(epoch)


def step_fn(method, batches: OneStep, rt: Runtime) -> Callable[[], None]:
    """One training step of the engine's loop: forward, cross-entropy, backward, SGD update."""
    optimizer = build_optimizer(method.parameter_groups(), TrainerConfig())
    fit = Fit(Objective.from_config(LossConfig()), optimizer, None, rt.precision.grad_scaler(rt.device), rt, epochs=1)
    state, progress = FitState(), Progress("none", 1)
    return lambda: train_epoch(method, batches, fit, state, progress, optimizer.param_groups[0]["lr"])


def original_step_fn(model: OriginalPromptModel, stream: Iterator, rt: Runtime) -> Callable[[], None]:
    """One step of the original trainers' loop on the next batch of `stream`, with our SGD settings."""
    optimizer = build_optimizer(model.method.parameter_groups(), TrainerConfig())

    def step() -> None:
        images, labels = next(stream)
        with rt.autocast():
            original_step(model, optimizer, images.to(rt.device), labels.to(rt.device))

    return step


def with_levers(backbone: Backbone, fn: Callable[[], object], **levers) -> Callable[[], object]:
    """`fn` run with some of the backbone's lever attributes set (e.g. `shared_prefix=False`), then restored."""
    def run() -> object:
        saved = {k: getattr(backbone, k) for k in levers}
        for k, v in levers.items():
            setattr(backbone, k, v)
        try:
            return fn()
        finally:
            for k, v in saved.items():
                setattr(backbone, k, v)

    return run


def random_images(backbone: Backbone, n: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` random images at the backbone's input size (CPU) and random labels."""
    gen = torch.Generator().manual_seed(1)
    size = backbone.preprocess_cfg.size
    return torch.randn(n, 3, size, size, generator=gen), torch.randint(classes, (n,), generator=gen)


def random_features(n: int, dim: int, seed: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=-1)


@torch.no_grad()
def logit_difference(plain, ours, images: torch.Tensor, bench: Bench) -> float:
    """Largest |logit| difference of the two formulations on the same images (they must agree)."""
    outs = []
    for method, rt in ((plain, bench.plain.rt), (ours, bench.ours.rt)):
        method.eval()
        with rt.autocast():
            outs.append(method(images.to(rt.device)).float().cpu())
    return float((outs[0] - outs[1]).abs().max())


# --------------------------------------------------------------------------------------------- files
def write_jpegs(folder: Path, n: int, size: tuple[int, int], distinct: int = 64) -> list[str]:
    """`n` JPEG paths of `size` (w, h); `distinct` different pictures, the rest hard links (decoded all the same)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    paths = []
    for i in range(n):
        path = folder / f"img_{i:05d}.jpg"
        if i < distinct:
            coarse = Image.fromarray(rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8))
            pixels = np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.int16)
            pixels = np.clip(pixels + rng.integers(-12, 13, pixels.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
        else:
            os.link(paths[i % distinct], path)
        paths.append(str(path))
    return paths


def items_for(paths: list[str], classnames: list[str]) -> list[Item]:
    return [Item(p, i % len(classnames), classnames[i % len(classnames)]) for i, p in enumerate(paths)]


# --------------------------------------------------------------------------------------------- sections
@dataclass
class Bench:
    """Shared state of a run: the two sides, data on disk, class names and collected rows."""

    args: argparse.Namespace
    plain: Side
    ours: Side
    classnames: list[str]
    folder: Path
    rows: list

    @property
    def device(self) -> torch.device:
        return self.ours.rt.device

    def measure(self, variants: dict[str, Callable[[], object]]) -> dict[str, dict]:
        return interleave(variants, self.device, self.args.repeats, self.args.warmup)

    def add(self, name: str, plain: float, ours: float, unit: str, settings: dict, measured: dict,
            scaling: str = "", ratio: float | None = None, **extra) -> dict:
        kind, bound = TARGETS.get(name, ("fraction" if unit == "MiB" else "speedup", None))
        if ratio is None:
            ratio = plain / ours if kind == "speedup" else ours / plain
        met = None if bound is None else (ratio >= bound if kind == "speedup" else ratio <= bound)
        row = {"name": name, "unit": unit, "straightforward": plain, "ours": ours, "ratio": ratio, "ratio_kind": kind,
               "target": bound, "met": met, "settings": settings, "scaling": scaling, "measured": measured, **extra}
        self.rows.append(row)
        return row

    def add_timed(self, name: str, t: dict[str, dict], plain: Callable[[dict], float], ours: Callable[[dict], float],
                  settings: dict, measured: dict, scaling: str, images: int | None = None, **extra) -> dict:
        """A row from per-round estimates: `plain(round)` / `ours(round)` map one round's seconds to the row's
        quantity. Values are medians over rounds and the ratio is the median of the per-round ratios (the two
        sides of a round ran back to back, so a load change on a shared machine cancels in their ratio)."""
        p, o = per_round(t, plain), per_round(t, ours)
        if images is not None:
            extra["images_per_s"] = {"straightforward": images / statistics.median(p), "ours": images / statistics.median(o)}
        return self.add(name, statistics.median(p), statistics.median(o), "s", settings,
                        {**measured, "rounds": {"straightforward": p, "ours": o}}, scaling,
                        ratio=statistics.median(a / b for a, b in zip(p, o)), **extra)


def per_round(t: dict[str, dict], quantity: Callable[[dict], float]) -> list[float]:
    """`quantity` of every round, given each variant's seconds in that round."""
    rounds = len(next(iter(t.values()))["runs_s"])
    return [quantity({k: v["runs_s"][i] for k, v in t.items()}) for i in range(rounds)]


def section_coop_epoch(b: Bench) -> None:
    """CoOp at `shots` x `classes` images decoded from disk (straightforward) vs cached augmented views (ours)."""
    a, names = b.args, b.classnames
    n_train = a.shots * len(names)
    items = items_for(write_jpegs(b.folder / "train", n_train, a.image_size), names)
    original, ours_m = b.plain.original("coop", names), b.ours.method("coop", names)
    images, _ = random_images(b.ours.backbone, 2, len(names))
    diff = logit_difference(original, ours_m, images, b)
    views = random_features(a.train_views * n_train, b.ours.backbone.embed_dim).view(a.train_views, n_train, -1)
    labels = torch.tensor([i.label for i in items])
    augment = build_transform(b.plain.rt.preprocess_cfg, train=True)
    plain_stream = endless(ImageBatches(items, augment, 0, b.plain.rt.loading))
    ours_stream = OneStep(endless(FeatureBatches(views, labels, 0, a.coop_batch)), "features")
    t = b.measure({"straightforward": original_step_fn(original, plain_stream, b.plain.rt),
                   "ours": step_fn(ours_m, ours_stream, b.ours.rt)})
    fill = _fill_seconds(b, ours_m, items[: a.fill_sample])
    steps, epochs = n_train // a.coop_batch, a.epochs
    fill_total = fill * n_train * a.train_views / min(a.fill_sample, n_train)
    settings = {"classes": len(names), "shots": a.shots, "batch": a.coop_batch, "steps_per_epoch": steps,
                "train_views": a.train_views, "epochs": epochs, "image_size": list(a.image_size)}
    measured = {"step_s": t, "fill_sample_s": fill, "fill_sample_images": min(a.fill_sample, n_train),
                "fill_total_s": fill_total, "max_logit_difference": diff}
    row = b.add_timed("coop train epoch", t, lambda r: steps * r["straightforward"], lambda r: steps * r["ours"],
                      settings, measured, f"step x {steps} steps; ours after the one-off cache fill", images=n_train)
    b.add_timed("coop train, all epochs incl. cache fill", t, lambda r: epochs * steps * r["straightforward"],
                lambda r: fill_total + epochs * steps * r["ours"], settings, {"fill_total_s": fill_total},
                f"{epochs} epochs; fill {fill_total:.1f}s = sample fill x "
                f"{n_train * a.train_views / min(a.fill_sample, n_train):.1f} "
                f"({a.train_views} views of {n_train} images)")
    _add_gpu_peaks(b, row, original_step_fn(original, plain_stream, b.plain.rt),
                   step_fn(ours_m, ours_stream, b.ours.rt))


def _fill_seconds(b: Bench, method, items: list[Item]) -> float:
    """Seconds to decode, augment, encode and store one view of `items` through the engine's feature store.

    With `--compile` an untimed fill into another folder compiles the encoder for these batch shapes first.
    """
    rt = b.ours.rt

    def fill() -> None:
        store = FeatureStore(str(b.folder / f"fill-cache-{time.monotonic_ns()}"), b.ours.backbone, rt.precision.name,
                             rt.encode_fn(method), rt.preprocess_cfg, rt.loading)
        store.train_views(items, "bench-fill", 1, 0, build_transform(rt.preprocess_cfg, train=True))

    if b.args.compile:
        fill()
    return clock(fill, b.device)


def _add_gpu_peaks(b: Bench, row: dict, original: Callable[[], None], ours: Callable[[], None]) -> None:
    if b.device.type != "cuda":
        return
    row["peak_mib"] = {"straightforward": cuda_peak_bytes(original, b.device) / MIB,
                       "ours": cuda_peak_bytes(ours, b.device) / MIB}


def section_steps(b: Bench) -> None:
    """Per method, one training step of the original code's formulation (decoded images at every step,
    77-token text passes, CoCoOp one image at a time) next to ours with each lever (`VARIANTS`)."""
    for name in ("coop", "maple", "cocoop"):
        _step_ladder(b, name)


def _step_ladder(b: Bench, name: str) -> None:
    a, names, rt = b.args, b.classnames, b.ours.rt
    batch = {"coop": a.coop_batch, "maple": a.maple_batch, "cocoop": a.cocoop_batch}[name]
    measured = min(a.cocoop_sample, batch) if name == "cocoop" else batch
    original, ours = b.plain.original(name, names), b.ours.method(name, names)
    images, labels = random_images(b.ours.backbone, measured, len(names))
    diff = logit_difference(original, ours, images[:2], b)
    on_images = OneStep(itertools.repeat((images, labels)), "images")
    variants = {"original": original_step_fn(original, itertools.repeat((images, labels)), b.plain.rt),
                "ours, no shared prefix": with_levers(b.ours.backbone, step_fn(ours, on_images, rt), shared_prefix=False),
                "ours": step_fn(ours, on_images, rt)}
    if ours.image_side_frozen:  # trains on cached augmented views with trainer.train_views
        on_views = OneStep(itertools.repeat((random_features(measured, b.ours.backbone.embed_dim), labels)), "features")
        variants["ours, cached views, no shared prefix"] = with_levers(
            b.ours.backbone, step_fn(ours, on_views, rt), shared_prefix=False)
        variants["ours, cached views"] = step_fn(ours, on_views, rt)
    t = b.measure(variants)
    scale = batch / measured
    settings = {"classes": len(names), "batch": batch, "measured_batch": measured,
                "text_tokens": {"original": original.method.tokens.shape[1], "ours": ours.tokens.shape[1]},
                "shared_positions": ours.shared_positions()}
    for variant in list(variants)[1:]:
        exact, resampled = VARIANTS[variant]
        row = b.add_timed(f"{name} train step: {variant}", t, lambda r, k=scale: k * r["original"],
                          lambda r, k=scale, v=variant: k * r[v], settings,
                          {"step_s": {"original": t["original"], variant: t[variant]}, "max_logit_difference": diff},
                          f"step at batch {measured} x {scale:g}" if scale != 1 else "step", images=batch,
                          baseline="original formulation (tools/original_formulation.py)", exact=exact,
                          changes_augmentations=resampled)
        if variant == "ours":
            _add_gpu_peaks(b, row, variants["original"], variants["ours"])


def section_eval(b: Bench) -> None:
    """Evaluation on `eval_images` test images: re-encoding (straightforward) vs the warm feature cache (ours)."""
    a, names, dev = b.args, b.classnames, b.device
    n = a.eval_images
    sample = items_for(write_jpegs(b.folder / "eval-sample", a.eval_sample, a.image_size), names)
    test = _warm_test_cache(b, n)
    data = BenchmarkData(key="bench", root=b.folder, image_root=b.folder, train=[], val=[], test=test,
                         classnames=names, templates=TEMPLATES, split_source="tools/bench.py")
    plain = {m: b.plain.method(m, names) for m in ("coop", "cocoop", "maple")}
    ours = {m: b.ours.method(m, names) for m in ("zeroshot", "coop", "cocoop", "maple")}
    per_image = min(a.cocoop_sample, n)
    feats = b.ours.rt.store.features(test, "bench", "test")[:per_image]
    pr, orr = b.plain.rt, b.ours.rt
    t = b.measure({
        "plain images": lambda: _encode_from_disk(plain["coop"], sample, pr),
        "plain coop text": lambda: _no_grad(plain["coop"].text_features, pr),
        "plain zeroshot text": lambda: zeroshot_classifier(b.plain.backbone, names, TEMPLATES),
        "plain cocoop text": lambda: _no_grad(lambda: plain["cocoop"].text_features(feats.to(dev)), pr),
        "plain maple images": lambda: _encode_from_disk(plain["maple"], sample, pr),
        "plain maple text": lambda: _no_grad(plain["maple"].text_features, pr),
        "ours zeroshot": lambda: evaluate(ours["zeroshot"], data, orr, subsample="all", info_subset=0, seed=0),
        "ours coop": lambda: evaluate(ours["coop"], data, orr, subsample="all", info_subset=0, seed=0),
        "ours cached read": lambda: orr.store.features(test, "bench", "test"),
        "ours cocoop classify": lambda: classify_features(ours["cocoop"], feats, orr, None),
        "ours maple images": lambda: orr.image_features(ours["maple"], sample, "bench", "eval-sample"),
        "ours maple text": lambda: shared_text_features(ours["maple"], orr),
    })
    k, batches = n / len(sample), math.ceil(n / a.eval_batch)
    rows = {
        "zeroshot eval": (lambda s: k * s["plain images"] + s["plain zeroshot text"], lambda s: s["ours zeroshot"]),
        "coop eval": (lambda s: k * s["plain images"] + batches * s["plain coop text"], lambda s: s["ours coop"]),
        "cocoop eval": (lambda s: k * s["plain images"] + n * s["plain cocoop text"] / per_image,
                        lambda s: s["ours cached read"] + n * s["ours cocoop classify"] / per_image),
        "maple eval": (lambda s: k * s["plain maple images"] + batches * s["plain maple text"],
                       lambda s: k * s["ours maple images"] + s["ours maple text"]),
    }
    settings = {"classes": len(names), "test_images": n, "eval_batch": a.eval_batch, "sample_images": len(sample),
                "cocoop_sample_images": per_image}
    scaling = (f"straightforward: per-image times from {len(sample)} decoded images x {n}, text per batch of "
               f"{a.eval_batch} x {batches}; ours: zeroshot/coop full run on the warm cache, cocoop classify "
               f"per image from {per_image} x {n}, maple images from {len(sample)} x {n}")
    for name, (plain, ours) in rows.items():
        raw = {"seconds": t} if name == "zeroshot eval" else {}  # the components, once
        b.add_timed(name, t, plain, ours, settings, raw, scaling, images=n)


def _warm_test_cache(b: Bench, n: int) -> list[Item]:
    """`n` test items whose frozen-encoder features are in the ours side's cache (filled by a stand-in encoder).

    Filling a real 10,000-image entry would take hours on a CPU; its cost is that of one straightforward
    image pass (reported as such) and the values of the features do not change the time of reading them.
    """
    tiny = b.folder / "tiny.jpg"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tiny)
    folder = b.folder / "test"
    folder.mkdir()
    paths = []
    for i in range(n):
        paths.append(str(folder / f"t{i:06d}.jpg"))
        os.symlink(tiny, paths[-1])
    dim, rt = b.ours.backbone.embed_dim, b.ours.rt
    counter = itertools.count()

    def stand_in(images: torch.Tensor) -> torch.Tensor:
        return random_features(images.shape[0], dim, seed=next(counter))

    rt.store = FeatureStore(str(b.folder / "cache"), b.ours.backbone, rt.precision.name, stand_in, rt.preprocess_cfg,
                            replace(rt.loading, eval_batch_size=1000))
    test = items_for(paths, b.classnames)
    rt.store.features(test, "bench", "test")
    rt.store.loading = rt.loading
    return test


@torch.no_grad()
def _encode_from_disk(method, items: list[Item], rt: Runtime) -> None:
    """Decode, transform and encode every image (what evaluation without a cache does)."""
    method.eval()
    for images, _, _ in image_loader(items, rt.preprocess_cfg, rt.loading):
        with rt.autocast():
            method.encode_images(images.to(rt.device, non_blocking=True))


@torch.no_grad()
def _no_grad(fn: Callable[[], torch.Tensor], rt: Runtime) -> torch.Tensor:
    with rt.autocast():
        return fn()


def section_levers(b: Bench) -> None:
    """Each lever alone on the ours side: text truncation, length buckets, shared prefix, CoCoOp batching,
    channels-last, bf16 autocast (CUDA)."""
    a, names, dev = b.args, b.classnames, b.device
    plain_coop, ours_coop = b.plain.method("coop", names), b.ours.method("coop", names)
    looped, batched = b.ours.method("cocoop", names), b.ours.method("cocoop", names)
    looped.config.batch_images = False
    feats = random_features(min(a.cocoop_sample, a.cocoop_batch), b.ours.backbone.embed_dim).to(dev)
    images, _ = random_images(b.ours.backbone, a.lever_images, len(names))
    images = images.to(dev)
    off, ob = {"shared_prefix": False}, b.ours.backbone
    variants = {
        "text 77 tokens": lambda: _text_backward(plain_coop, b.ours.rt),
        "text truncated, one pass": with_levers(ob, lambda: _text_backward(ours_coop, b.ours.rt), text_buckets=1, **off),
        "text truncated, length buckets": with_levers(ob, lambda: _text_backward(ours_coop, b.ours.rt), **off),
        "text truncated, buckets, shared prefix": lambda: _text_backward(ours_coop, b.ours.rt),
        "cocoop looped": with_levers(ob, lambda: _text_backward(looped, b.ours.rt, feats), **off),
        "cocoop batched": with_levers(ob, lambda: _text_backward(batched, b.ours.rt, feats), **off),
        "cocoop batched, shared prefix": lambda: _text_backward(batched, b.ours.rt, feats),
        "image contiguous": lambda: _no_grad(lambda: b.plain.backbone.encode_image(images), b.ours.rt),
        "image channels-last": lambda: _no_grad(lambda: b.ours.backbone.encode_image(images), b.ours.rt),
    }
    if dev.type == "cuda":
        fp32 = replace(b.ours.rt, precision=Precision("fp32", None))
        variants["coop text fp32"] = lambda: _text_backward(ours_coop, fp32)
        variants["coop text autocast"] = lambda: _text_backward(ours_coop, b.ours.rt)
    t = b.measure(variants)
    pairs = [("lever: text truncation (coop text fwd+bwd)", "text 77 tokens", "text truncated, one pass"),
             ("lever: text length buckets (coop text fwd+bwd)", "text truncated, one pass",
              "text truncated, length buckets"),
             ("lever: shared prefix (coop text fwd+bwd)", "text truncated, length buckets",
              "text truncated, buckets, shared prefix"),
             ("lever: cocoop one pass for many images", "cocoop looped", "cocoop batched"),
             ("lever: shared prefix (cocoop text fwd+bwd)", "cocoop batched", "cocoop batched, shared prefix"),
             ("lever: channels-last (image encoder fwd)", "image contiguous", "image channels-last"),
             ("lever: bf16 autocast (coop text fwd+bwd)", "coop text fp32", "coop text autocast")]
    settings = {"classes": len(names), "cocoop_images": feats.shape[0], "images": a.lever_images,
                "text_tokens": {"straightforward": plain_coop.tokens.shape[1], "ours": ours_coop.tokens.shape[1]}}
    for name, off, on in pairs:
        if off in t:
            b.add_timed(name, t, lambda r, off=off: r[off], lambda r, on=on: r[on], settings,
                        {off: t[off], on: t[on]}, "one call")


def _text_backward(method, rt: Runtime, image_features: torch.Tensor | None = None) -> None:
    method.zero_grad(set_to_none=True)
    with rt.autocast():
        text = method.text_features(image_features)
    text.float().sum().backward()


# --------------------------------------------------------------------------------------------- memory
MEMORY_VARIANTS = ("original", "ours, no shared prefix", "ours")


def memory_specs(args) -> list[dict]:
    """(method, model, classes, batch) of each peak-memory row; CoOp at `memory_classes` is the target row."""
    return [
        {"row": "coop step memory (memory classes)", "method": "coop", "model": args.memory_model,
         "classes": args.memory_classes, "batch": args.coop_batch},
        {"row": "maple step memory", "method": "maple", "model": args.model, "classes": args.classes,
         "batch": args.maple_batch},
    ]


def step_memory(spec: dict, variant: str, args) -> dict:
    """Peak bytes and seconds of one training step, the peak above the memory held before it (models,
    prompts, inputs). Ours trains a frozen image side on cached features, the original on images."""
    side = make_side(variant == "original", spec["model"], args)
    names = classnames_for(spec["classes"])
    if variant == "original":
        original = side.original(spec["method"], names)
        step = original_step_fn(original, itertools.repeat(random_images(side.backbone, spec["batch"], len(names))),
                                side.rt)
    else:
        side.backbone.shared_prefix = variant == "ours"
        method = side.method(spec["method"], names)
        if method.image_side_frozen:
            inputs, kind = random_features(spec["batch"], side.backbone.embed_dim), "features"
            labels = torch.zeros(spec["batch"], dtype=torch.long)
        else:
            (inputs, labels), kind = random_images(side.backbone, spec["batch"], len(names)), "images"
        step = step_fn(method, OneStep(itertools.repeat((inputs, labels)), kind), side.rt)
    if side.rt.device.type == "cuda":
        start = time.perf_counter()
        peak = cuda_peak_bytes(step, side.rt.device)
        return {"peak_bytes": peak, "step_s": time.perf_counter() - start, "how": "cuda max_memory_allocated - allocated"}
    return _cpu_peak(step)


def _cpu_peak(step: Callable[[], None]) -> dict:
    if not Path("/proc/self/status").is_file():
        raise RuntimeError("CPU peak memory is read from /proc (Linux); run with --sections train eval levers here.")
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
        how = "VmHWM (reset before the step) - VmRSS before, fresh process, MALLOC_MMAP_THRESHOLD_=65536"
    except OSError:
        how = "ru_maxrss - VmRSS before (upper bound: includes earlier peaks), fresh process"
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") if how.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_bytes": (peak - before) * 1024, "step_s": seconds, "how": how}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def section_memory(b: Bench) -> None:
    """Peak memory and time of one step per `memory_specs` row: the original formulation against ours with and
    without the shared prefix (one fresh process each on the CPU)."""
    for spec in memory_specs(b.args):
        result = {v: _memory_of(spec, v, b.args, b.device) for v in MEMORY_VARIANTS[1:]}
        original = _original_memory(spec, b.args, b.device)
        settings = {k: spec[k] for k in ("method", "model", "classes", "batch")}
        for v in MEMORY_VARIANTS[1:]:
            measured = {"original": original, v: result[v]}
            b.add(f"{spec['row']}: {v}", original["peak_bytes"] / MIB, result[v]["peak_bytes"] / MIB, "MiB", settings,
                  measured, original["how"], baseline="original formulation")
            b.add(f"{spec['row'].replace('memory', 'time', 1)}: {v}", original["step_s"], result[v]["step_s"], "s",
                  settings, measured, "one step each, not alternated: " + original["how"], baseline="original formulation")


def _original_memory(spec: dict, args, device: torch.device) -> dict:
    """The original's step at `spec`, or on the CPU beyond the largest `--memory-fit-classes`, the straight line
    through its steps at those class counts (its text pass and memory grow linearly with the classes)."""
    fit = sorted(args.memory_fit_classes)
    if device.type == "cuda" or spec["classes"] <= fit[-1]:
        return {**_memory_of(spec, "original", args, device), "how": "measured"}
    points = [(c, _memory_of({**spec, "classes": c}, "original", args, device)) for c in fit]
    (c0, p0), (c1, p1) = points[0], points[-1]

    def line(key: str) -> float:
        return p0[key] + (p1[key] - p0[key]) * (spec["classes"] - c0) / (c1 - c0)

    return {"peak_bytes": line("peak_bytes"), "step_s": line("step_s"), "fit": {c: p for c, p in points},
            "how": f"original extrapolated linearly from {c0} and {c1} classes (measured: {p0['peak_bytes'] / MIB:,.0f} "
                   f"and {p1['peak_bytes'] / MIB:,.0f} MiB)"}


def _memory_of(spec: dict, variant: str, args, device: torch.device) -> dict:
    """On CUDA in this process; on the CPU in a fresh process (see the module docstring)."""
    if device.type == "cuda":
        return step_memory(spec, variant, args)
    child = {"spec": spec, "variant": variant, "args": vars(args)}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(child)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child for {spec} ({variant}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_child(payload: str) -> None:
    child = json.loads(payload)
    args = argparse.Namespace(**child["args"])
    args.image_size = tuple(args.image_size)
    _set_threads(args)
    print(json.dumps(step_memory(child["spec"], child["variant"], args)))


# --------------------------------------------------------------------------------------------- report
def print_table(rows: list[dict]) -> None:
    print(f"\n{'':62s} {'straightforward':>16s} {'ours':>12s} {'ratio':>14s}  target")
    for r in rows:
        unit = r["unit"]
        ratio = f"{r['ratio']:.1f}x faster" if r["ratio_kind"] == "speedup" else f"{r['ratio']:.2f} of it"
        target = ""
        if r["target"] is not None:
            sign = ">=" if r["ratio_kind"] == "speedup" else "<="
            target = f"{sign} {r['target']:g}{'x' if r['ratio_kind'] == 'speedup' else ''}: " + (
                "met" if r["met"] else "MISSED")
        plain, ours = _fmt(r["straightforward"], unit), _fmt(r["ours"], unit)
        print(f"{r['name']:62s} {plain:>16s} {ours:>12s} {ratio:>14s}  {target}")
    rates = [r for r in rows if "images_per_s" in r]
    if rates:
        print(f"\n{'images per second':62s} {'straightforward':>16s} {'ours':>12s}")
        for r in rates:
            ips = r["images_per_s"]
            print(f"{r['name']:62s} {ips['straightforward']:16.1f} {ips['ours']:12.1f}")


def _fmt(value: float, unit: str) -> str:
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:,.1f} s" if value >= 1 else f"{value * 1e3:,.1f} ms"


def machine() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


# --------------------------------------------------------------------------------------------- main
SECTIONS = {"train": (section_coop_epoch, section_steps), "steps": (section_steps,), "eval": (section_eval,),
            "memory": (section_memory,), "levers": (section_levers,)}
QUICK = {"model": "pi-tiny-vit-m", "memory_model": "pi-tiny-vit-m", "eval_images": 1000, "image_size": (160, 120)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"tiny model and data: {QUICK}")
    p.add_argument("--model", default="ViT-B-16", help="open_clip architecture, random weights")
    p.add_argument("--memory-model", help="model of the memory-classes row (default: --model)")
    p.add_argument("--memory-fit-classes", type=int, nargs=2, default=(100, 200), metavar=("C0", "C1"),
                   help="on the CPU, the original step beyond C1 classes (~20 GiB at 1000 on ViT-B/16) is the line "
                   "through its measured steps at C0 and C1 classes")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--memory-classes", type=int, default=1000)
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--coop-batch", type=int, default=32)
    p.add_argument("--cocoop-batch", type=int, default=32)
    p.add_argument("--maple-batch", type=int, default=4)
    p.add_argument("--cocoop-sample", type=int, help="CoCoOp images measured per step (scaled to the batch); "
                   "default 2 on the CPU, the whole batch on CUDA")
    p.add_argument("--train-views", type=int, default=10, help="cached augmented views per image (trainer.train_views)")
    p.add_argument("--epochs", type=int, default=200, help="epochs over which the cache fill is amortised")
    p.add_argument("--fill-sample", type=int, help="images whose cache fill is timed (default 64 CPU, 1600 CUDA)")
    p.add_argument("--eval-images", type=int, default=10_000)
    p.add_argument("--eval-sample", type=int, help="decoded test images timed (default 16 CPU, 1000 CUDA)")
    p.add_argument("--eval-batch", type=int, default=100)
    p.add_argument("--lever-images", type=int, default=8, help="images of the channels-last lever row")
    p.add_argument("--image-size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"),
                   help="size of the generated JPEGs (ImageNet-like by default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="ours: trainer.precision (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--baseline-precision", help="straightforward side's precision (default: the same as ours)")
    p.add_argument("--compile", action="store_true", help="ours with trainer.compile (slow to compile on CPU)")
    p.add_argument("--workers", type=int, help="data-loader workers (default 0 on the CPU, min(8, cores) on CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--sections", nargs="+", default=["train", "eval", "memory", "levers"], choices=list(SECTIONS))
    p.add_argument("--workdir", help="folder for generated images and caches (default: a temporary folder)")
    p.add_argument("--json", help="write every measurement here")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    return _fill_defaults(args)


def _fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    defaults = {"memory_model": args.model,
                "cocoop_sample": args.cocoop_batch if cuda else 2, "fill_sample": 1600 if cuda else 64,
                "eval_sample": 1000 if cuda else 16,
                "workers": min(8, os.cpu_count() or 1) if cuda else 0}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.image_size = tuple(args.image_size)
    return args


def _set_threads(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def run(args) -> dict:
    _set_threads(args)
    start, before = time.perf_counter(), machine()
    on_cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    if on_cpu and torch.get_num_threads() > 1 and before["load_average"][0] >= 1:
        print(f"load average {before['load_average'][0]:.1f}: other processes compete for the CPU, and multi-threaded "
              "kernels then stall on descheduled threads; --threads 1 gives steadier numbers.", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        bench = Bench(args, make_side(True, args.model, args), make_side(False, args.model, args),
                      classnames_for(args.classes), Path(tmp), [])
        for name in args.sections:
            for section in SECTIONS[name]:
                t0 = time.perf_counter()
                section(bench)
                print(f"[{section.__name__} {time.perf_counter() - t0:.0f}s]", file=sys.stderr, flush=True)
    options = {k: v for k, v in vars(args).items() if k != "memory_child"}
    result = {"machine": before, "load_average_after": os.getloadavg(), "args": options,
              "device": str(bench.device), "precision": {"straightforward": bench.plain.rt.precision.name,
                                                         "ours": bench.ours.rt.precision.name},
              "wall_s": time.perf_counter() - start, "rows": bench.rows}
    print_table(bench.rows)
    if args.json:
        write_json(args.json, result)
    return result


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return
    run(args)


if __name__ == "__main__":
    main()
