"""Builds the unlabelled side of a run from its config: strategy, views, objective, predictions."""

from __future__ import annotations

import dataclasses
import logging

import torch

from promptinfo.data import build_transform
from promptinfo.engine import distributed as dist
from promptinfo.engine.build import attach_feature_store, method_from_config
from promptinfo.engine.evaluate import classify_features, shared_text_features
from promptinfo.engine.protocols import Plan
from promptinfo.engine.semi import SemiStep, UnlabelledObjective
from promptinfo.engine.unlabelled import FeatureViews, ImageViews
from promptinfo.errors import ConfigError
from promptinfo.methods import create_method
from promptinfo.pseudo import candidate_probs, create_strategy

logger = logging.getLogger("promptinfo.engine")


def build_semi_step(cfg, method, plan: Plan, rt) -> SemiStep:
    """The `SemiStep` of a run whose protocol has unlabelled images.

    Raises:
        ConfigError: the run is distributed (every process would draw the same unlabelled batches).
    """
    if dist.world_size() > 1:
        raise ConfigError(f"protocol={cfg.protocol.name} trains in one process for now; run it without torchrun "
                          "(several runs at once: see the launcher presets).")
    u, t = plan.unlabelled, cfg.trainer
    name, options = method_from_config(cfg.pseudo)
    strategy = create_strategy(name, len(u.items), u.candidates, **options)
    logger.info("%d unlabelled images, pseudo-labelled by %s over %d classes", len(u.items), name,
                u.candidates.numel())
    views = _views(cfg, method, plan, rt, strategy)
    objective = UnlabelledObjective(strategy.config.weight, cfg.loss.unlabelled)
    return SemiStep(strategy, views, objective, u, rt, Predictor(cfg, plan, rt), strategy.config.mu * t.batch_size,
                    cfg.seed, len(plan.train.train))


def _views(cfg, method, plan: Plan, rt, strategy):
    t, items = cfg.trainer, plan.unlabelled.items
    weak = build_transform(rt.preprocess_cfg, train=True, scale=tuple(t.crop_scale), hflip=t.hflip)
    strong = None
    if strategy.uses_strong_view:
        c = strategy.config
        strong = build_transform(rt.preprocess_cfg, train=True, scale=tuple(t.crop_scale), hflip=t.hflip,
                                 randaugment=(c.randaugment_ops, c.randaugment_magnitude))
    if t.train_views > 0 and method.image_side_frozen:
        key = plan.train.key
        weak_feats = rt.store.train_views(items, key, t.train_views, cfg.seed, weak)  # [V, n, d]
        strong_feats = None if strong is None else rt.store.train_views(items, key, t.train_views, cfg.seed, strong)
        return FeatureViews(weak_feats, strong_feats, cfg.seed)
    return ImageViews(items, weak, strong, cfg.seed, rt.loading)


class Predictor:
    """Class probabilities `[n, C]` of every unlabelled image (test transform) in batched passes, from the
    method being trained ("model") or from zero-shot CLIP on the same backbone and class names ("zeroshot")."""

    def __init__(self, cfg, plan: Plan, rt) -> None:
        self.cfg, self.plan, self.rt = cfg, plan, rt
        self.zeroshot = None

    @torch.no_grad()
    def __call__(self, source: str, method) -> torch.Tensor:
        predictor, rt = (method, self.rt) if source == "model" else self._zeroshot(method)
        predictor.eval()
        u = self.plan.unlabelled
        feats = rt.image_features(predictor, u.items, self.plan.train.key, "unlabelled")  # [n, d]
        logits = classify_features(predictor, feats, rt, shared_text_features(predictor, rt))  # [n, C]
        return candidate_probs(logits, u.candidates)

    def _zeroshot(self, method):
        if self.zeroshot is None:
            model = create_method("zeroshot", method.backbone, method.classnames,
                                  dataset_templates=method.dataset_templates).to(self.rt.device)
            rt = dataclasses.replace(self.rt, store=None)
            attach_feature_store(rt, model, self.cfg.feature_cache)
            self.zeroshot = (model, rt)
        return self.zeroshot
