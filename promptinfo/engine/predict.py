"""Predictions of a trained prompt, or of zero-shot CLIP, on the user's own images (`promptinfo-predict`)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from promptinfo.data import Item
from promptinfo.data.image_dataset import find_unreadable
from promptinfo.data.image_files import collect_images
from promptinfo.data.errors import CorruptImageError
from promptinfo.engine.build import attach_feature_store, build_backbone, build_runtime
from promptinfo.engine.checkpoint_eval import checkpoint_backbone
from promptinfo.engine.evaluate import classify_features, shared_text_features
from promptinfo.engine.schema import ModelConfig, TrainerConfig
from promptinfo.errors import ConfigError
from promptinfo.methods import create_method, load_method

logger = logging.getLogger("promptinfo.engine")


@dataclass
class Predictions:
    """Class probabilities of every readable image.

    Attributes:
        paths: the images classified, in order.
        classnames: the classes, in the order of `probabilities`' columns.
        probabilities: `[n_images, n_classes]` softmax of the logits.
        skipped: unreadable images left out (`skip_unreadable=True`), with the reason.
    """

    paths: list[str]
    classnames: list[str]
    probabilities: torch.Tensor
    skipped: dict[str, str]

    def top(self, k: int = 5) -> pd.DataFrame:
        """One row per image: `path`, then `class_1`, `prob_1`, ... `class_k`, `prob_k` (most probable first)."""
        k = min(k, len(self.classnames))
        probs, index = self.probabilities.topk(k, dim=1)
        frame = pd.DataFrame({"path": self.paths})
        for r in range(k):
            frame[f"class_{r + 1}"] = [self.classnames[i] for i in index[:, r].tolist()]
            frame[f"prob_{r + 1}"] = probs[:, r].tolist()
        return frame

    def summary(self) -> pd.DataFrame:
        """Per class: images predicted as it (top-1) and their mean top-1 probability, most frequent first."""
        probs, index = self.probabilities.max(dim=1)
        frame = pd.DataFrame({"class": [self.classnames[i] for i in index.tolist()], "prob": probs.tolist()})
        table = frame.groupby("class", sort=False)["prob"].agg(images="size", mean_probability="mean").reset_index()
        return table.sort_values(["images", "class"], ascending=[False, True], ignore_index=True)


def predict(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    checkpoint: str | os.PathLike | None = None,
    classnames: Sequence[str] | None = None,
    *,
    model: str | None = None,
    pretrained: str | None = None,
    templates: Sequence[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    feature_cache: str | os.PathLike | None = ".cache/promptinfo/features",
    skip_unreadable: bool = False,
    progress: bool | None = None,
) -> Predictions:
    """Classify images with a prompt checkpoint, or with zero-shot CLIP when `checkpoint` is None.

    Args:
        images: an image, a folder (searched recursively), a list file of paths, or a sequence of paths.
        checkpoint: a `prompt.safetensors`; the method, its options, classes, templates and backbone come from it.
        classnames: the classes to choose from; None: the checkpoint's. A transferable prompt (not class-specific)
            and zero-shot CLIP take any list.
        model, pretrained: the backbone of zero-shot CLIP; with a checkpoint, `pretrained` gives the weights file
            of a backbone that was loaded from one.
        templates: zero-shot CLIP's templates (default "a photo of a {}.").
        feature_cache: where frozen image features are kept (None: not kept); prompted image sides are encoded.
        skip_unreadable: leave out images that cannot be decoded (listed in `Predictions.skipped`) instead of
            stopping with the list of them.
        progress: show a progress bar of the images encoded (None: on a terminal only).

    Raises:
        ConfigError: no class names for zero-shot CLIP, no backbone, or class names a class-specific prompt
            cannot serve (CheckpointMismatchError); NoImagesError: nothing to classify;
        CorruptImageError: unreadable images without `skip_unreadable` (all of them are named).
    """
    paths = _image_paths(images)
    if checkpoint is None and not classnames:
        raise ConfigError("zero-shot prediction needs the class names: pass classnames (--classes cat,dog or a file).")
    if checkpoint is None and model is None:
        raise ConfigError("zero-shot prediction needs a backbone: pass model (e.g. ViT-B-16) and pretrained (openai).")
    if checkpoint is not None:
        backbone, meta = checkpoint_backbone(checkpoint, model, pretrained)
    else:
        backbone, meta = build_backbone(OmegaConf.structured(ModelConfig(name=model, pretrained=pretrained))), None
    trainer = OmegaConf.structured(TrainerConfig(device=device, precision=precision, eval_batch_size=batch_size,
                                                 num_workers=num_workers, persistent_workers=False))
    rt = build_runtime(trainer, backbone)
    if meta:
        method = load_method(checkpoint, backbone, classnames)
    else:
        method = create_method("zeroshot", backbone, list(classnames), templates=list(templates) if templates else None)
    method = method.to(rt.device).eval()
    if feature_cache is not None:
        attach_feature_store(rt, method, str(feature_cache))
    items = [Item(p, -1, "") for p in paths]
    items, skipped = _readable(items, rt, num_workers, skip_unreadable)
    with _progress(method, len(items), progress):
        feats = rt.image_features(method, items, _collection_key(paths), "images") if items else None
    probs = torch.zeros(0, len(method.classnames))
    if feats is not None:
        probs = classify_features(method, feats, rt, shared_text_features(method, rt)).softmax(dim=1)
    logger.info("classified %d image(s) into %d classes (%d skipped)", len(items), len(method.classnames), len(skipped))
    return Predictions([i.path for i in items], list(method.classnames), probs, skipped)


@contextlib.contextmanager
def _progress(method, total: int, enabled: bool | None) -> Iterator[None]:
    """A bar counting the images that go through `method.encode_images` (cached features never do)."""
    from tqdm import tqdm

    encode = method.encode_images
    disable = None if enabled is None else not enabled  # None: tqdm shows the bar on a terminal only
    with tqdm(total=total, unit="img", desc="encoding", disable=disable, leave=False) as bar:

        def counted(images: torch.Tensor) -> torch.Tensor:
            out = encode(images)
            bar.update(images.shape[0])
            return out

        method.encode_images = counted
        try:
            yield
        finally:
            del method.encode_images  # back to the class's method


def _image_paths(images) -> list[str]:
    if isinstance(images, (str, os.PathLike)):
        return collect_images(images)
    paths = [str(Path(p).expanduser().resolve()) for p in images]
    if not paths:
        raise ConfigError("no images given; pass an image, a folder or a list of paths.")
    return paths


def _readable(items: list[Item], rt, num_workers: int, skip: bool) -> tuple[list[Item], dict[str, str]]:
    """The items whose files decode (a cached frozen-image entry needs no check) and the unreadable ones."""
    if rt.store is not None and rt.store.has_features(items, _collection_key([i.path for i in items]), "images"):
        return items, {}
    bad = find_unreadable([i.path for i in items], num_workers)
    if bad and not skip:
        listing = "\n".join(f"  {path}: {reason}" for path, reason in bad.items())
        raise CorruptImageError(f"{len(bad)} image(s) cannot be decoded:\n{listing}\nReplace or remove them, or "
                                "pass --skip-unreadable (skip_unreadable=True) to classify the others.")
    return [i for i in items if i.path not in bad], bad


def _collection_key(paths: Sequence[str]) -> str:
    """The feature-cache dataset name of a set of user images (the cache key also holds every path)."""
    return "predict-" + hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]
