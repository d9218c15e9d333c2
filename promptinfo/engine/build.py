"""Builders shared by training and evaluation: backbone, method, runtime."""

from __future__ import annotations

import logging

import torch

from promptinfo.backbones import Backbone, create_backbone
from promptinfo.engine.data import FeatureStore, Loading
from promptinfo.engine.device import resolve_device, resolve_precision, seed_everything, set_determinism
from promptinfo.engine.runtime import Runtime
from promptinfo.engine.validate import method_options
from promptinfo.methods import create_method

logger = logging.getLogger("promptinfo.engine")

BACKBONE_SEED = 0
"""Randomly initialised backbones (`model.pretrained=null`: tests and demos) are drawn from this seed,
so they depend on the architecture alone and a prompt checkpoint can be evaluated on the same weights."""


def register_weight_tags() -> None:
    """Register the weights tags of the layers above the backbones (the demo's `procedural`); imported
    here on use, since the demo itself uses the engine."""
    import promptinfo.demo.weights  # noqa: F401


def build_backbone(model_cfg) -> Backbone:
    """The frozen backbone on the CPU (moved to the device together with the method)."""
    register_weight_tags()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BACKBONE_SEED)
        return create_backbone(model_cfg.name, model_cfg.pretrained, device="cpu", cache_dir=model_cfg.cache_dir)


def build_method(
    name: str, options: dict, backbone: Backbone, data, seed: int, device: torch.device, classnames=None
):
    """The method for `data`'s classes and templates, initialised on the CPU under `seed` (same initial
    prompts on every device), then moved. `classnames` overrides the data's (a checkpoint's classes)."""
    seed_everything(seed)
    names = data.classnames if classnames is None else classnames
    method = create_method(name, backbone, names, dataset_templates=data.templates_for(name), **options)
    return method.to(device)


def build_runtime(trainer_cfg, backbone: Backbone) -> Runtime:
    """Device, precision and loading settings of a run; sets the determinism flags and the backbone's speed options."""
    set_determinism(trainer_cfg.deterministic)
    device = resolve_device(trainer_cfg.device)
    precision = resolve_precision(trainer_cfg.precision, device)
    loading = Loading(
        batch_size=trainer_cfg.batch_size,
        eval_batch_size=trainer_cfg.eval_batch_size,
        num_workers=trainer_cfg.num_workers,
        pin_memory=trainer_cfg.pin_memory and device.type == "cuda",
        persistent_workers=trainer_cfg.persistent_workers,
    )
    rt = Runtime(device=device, precision=precision, loading=loading, preprocess_cfg=backbone.preprocess_cfg)
    apply_speed_options(backbone, trainer_cfg)
    logger.info("device %s, precision %s", device, precision.name)
    return rt


def apply_speed_options(backbone: Backbone, trainer_cfg) -> None:
    """`trainer.channels_last` and `trainer.compile`: levers that keep a run's numbers up to float rounding.

    Compiling wraps the backbone's two encoders, through which every method's image and text passes go;
    the text length changes with the class set, so a new class set compiles once more.
    """
    if trainer_cfg.channels_last:
        backbone.to(memory_format=torch.channels_last)  # changes only 4-D (convolution) weights
    if trainer_cfg.compile and not getattr(backbone, "compiled", False):
        backbone.encode_image = torch.compile(backbone.encode_image)
        backbone.encode_text_embeddings = torch.compile(backbone.encode_text_embeddings)
        backbone.compiled = True
        logger.info("backbone encoders compiled with torch.compile (the first steps compile them)")


def attach_feature_store(rt: Runtime, method, feature_cache: str) -> None:
    """Give a frozen-image method's runtime its feature cache (encoder: the method's `encode_images`)."""
    if method.image_side_frozen:
        rt.store = FeatureStore(feature_cache, method.backbone, rt.precision.name, rt.encode_fn(method),
                                rt.preprocess_cfg, rt.loading)


def build_run(cfg, data, method: tuple[str, dict], model_cfg=None, classnames=None):
    """The set-up training and evaluation share: the backbone of `model_cfg` (default `cfg.model`), the
    runtime of `cfg.trainer`, the method `(name, options)` for `data` under `cfg.seed`, and its feature
    cache. `classnames` overrides the data's (a checkpoint's classes).

    Returns:
        `(method, runtime)`; the backbone is `method.backbone`.
    """
    backbone = build_backbone(cfg.model if model_cfg is None else model_cfg)
    rt = build_runtime(cfg.trainer, backbone)
    name, options = method
    built = build_method(name, options, backbone, data, cfg.seed, rt.device, classnames=classnames)
    attach_feature_store(rt, built, cfg.feature_cache)
    return built, rt


def method_from_config(method_cfg) -> tuple[str, dict]:
    """(registry name, options) of a validated method section."""
    return method_cfg.name, method_options(method_cfg)
