"""Linear mode connectivity of prompts: evaluate every point of the straight line between two prompt checkpoints.

The learnable tensors at coefficient t are ``(1 - t) A + t B``. Each point is evaluated as `promptinfo-eval`
evaluates a checkpoint (:func:`~promptinfo.engine.evaluate.evaluate`: test accuracy and the information
metrics between test features and the classifier rows of their labels), plus the mean test cross-entropy.
The loss barrier is ``max_t L(t) - ((1 - t) L(0) + t L(1))`` (Frankle et al., "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", ICML 2020); Song et al. (arXiv 2409.16767) read MIR and HDR along such lines.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from promptinfo.engine.build import attach_feature_store, build_backbone, build_method, build_runtime
from promptinfo.engine.prompt_eval import checkpoint_model_config, info_seed
from promptinfo.engine.data import load_eval_split
from promptinfo.engine.evaluate import classify_features, evaluate, shared_text_features
from promptinfo.engine.validate import validate_eval_config
from promptinfo.errors import CheckpointMismatchError, ConfigError
from promptinfo.methods import load_prompt, read_prompt_checkpoint

logger = logging.getLogger("promptinfo.engine")

SAME_KEYS = ("method", "config", "backbone", "weights", "classnames")
"""Metadata two checkpoints must share to be interpolated."""


def coefficients(points: int) -> list[float]:
    """``points`` evenly spaced coefficients from 0 (checkpoint A) to 1 (checkpoint B), both ends exact."""
    if points < 2:
        raise ConfigError(f"points={points}: the line needs at least its two ends (points >= 2)")
    return [i / (points - 1) for i in range(points)]


def blend(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], t: float) -> dict[str, torch.Tensor]:
    """``(1 - t) a + t b`` tensor by tensor; the ends are the inputs themselves."""
    if t == 0.0 or t == 1.0:
        return dict(a if t == 0.0 else b)
    return {k: torch.lerp(a[k].float(), b[k].float(), t).to(a[k].dtype) for k in a}


def check_compatible(meta_a: dict, meta_b: dict, path_a: str, path_b: str) -> None:
    """Raise unless the two checkpoints hold the same method, options, backbone, weights and classes."""
    differ = [k for k in SAME_KEYS if meta_a.get(k) != meta_b.get(k)]
    if differ:
        raise CheckpointMismatchError(
            f"{path_a} and {path_b} differ in {differ} ({[meta_a.get(k) for k in differ]} vs "
            f"{[meta_b.get(k) for k in differ]}); interpolate two prompts of the same method, options, backbone "
            "and classes (e.g. two seeds of one run)."
        )


def interpolate_checkpoints(cfg, other: str, points: int) -> list[dict]:
    """Evaluate the line from `cfg.checkpoint` (A) to `other` (B) at `points` coefficients.

    Args:
        cfg: a `promptinfo-eval` config whose `checkpoint` is A (dataset, class subset, trainer settings).
        other: the path of checkpoint B.
        points: number of coefficients, ends included.

    Returns:
        One row per coefficient: ``t``, ``accuracy``, ``correct``, ``total``, ``loss`` (mean test
        cross-entropy), ``loss_excess`` (over the straight line between the ends' losses), and the
        evaluation's information metrics (``entropy_image``, ``entropy_text``, ``mi``, ``mir``, ``hdr``, ...).
    """
    cfg = validate_eval_config(cfg)
    if cfg.checkpoint is None:
        raise ConfigError("checkpoint (A) is not set; pass the first prompt checkpoint as checkpoint=...")
    tensors_a, meta = read_prompt_checkpoint(cfg.checkpoint)
    tensors_b, meta_b = read_prompt_checkpoint(other)
    check_compatible(meta, meta_b, cfg.checkpoint, other)
    backbone = build_backbone(checkpoint_model_config(cfg.model, meta, cfg.checkpoint))
    rt = build_runtime(cfg.trainer, backbone)
    data = load_eval_split(cfg.dataset.name, cfg.dataset.root, cfg.protocol.subsample)
    method = build_method(meta["method"], dict(meta["config"]), backbone, data, cfg.seed, rt.device,
                          classnames=meta["classnames"])
    load_prompt(method, cfg.checkpoint)  # checks that A fits this method and backbone
    attach_feature_store(rt, method, cfg.feature_cache)
    rows = []
    for t in coefficients(points):
        method.prompt.load_state_dict(blend(tensors_a, tensors_b, t), strict=True)
        result = evaluate(method, data, rt, subsample=cfg.protocol.subsample, info_subset=cfg.trainer.info_subset,
                          seed=info_seed(cfg.seed))
        rows.append({"t": t, "accuracy": result.accuracy, "correct": result.correct, "total": result.total,
                     "loss": mean_test_loss(method, data, rt), **result.metrics})
        logger.info("t = %.3f: accuracy %.2f%%, loss %.4f", t, result.accuracy, rows[-1]["loss"])
    for row in rows:
        row["loss_excess"] = row["loss"] - ((1 - row["t"]) * rows[0]["loss"] + row["t"] * rows[-1]["loss"])
    return rows


def barriers(rows: list[dict]) -> dict[str, float]:
    """The loss barrier (largest excess loss over the line between the ends) and the accuracy barrier (largest
    shortfall of accuracy below the line between the ends' accuracies), both >= 0 up to rounding."""
    shortfall = [(1 - r["t"]) * rows[0]["accuracy"] + r["t"] * rows[-1]["accuracy"] - r["accuracy"] for r in rows]
    return {"loss_barrier": max(r["loss_excess"] for r in rows), "accuracy_barrier": max(shortfall)}


@torch.no_grad()
def mean_test_loss(method, data, rt) -> float:
    """Mean cross-entropy of the method's logits on `data.test` (features from the runtime's cache)."""
    feats = rt.image_features(method, data.test, data.key, "test")  # [n, d]
    labels = torch.tensor([item.label for item in data.test], dtype=torch.long)
    logits = classify_features(method, feats, rt, shared_text_features(method, rt))  # [n, C]
    return float(F.cross_entropy(logits, labels))
