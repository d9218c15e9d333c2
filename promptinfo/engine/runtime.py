"""The runtime context of a run: device, precision, loading settings and the feature cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from promptinfo.data import Item
from promptinfo.engine.data import FeatureStore, Loading, image_loader
from promptinfo.engine.device import Precision
from promptinfo.methods import MethodOutput

def text_depends_on_image(method) -> bool:
    """Whether `method.text_features` needs image features (CoCoOp: one classifier per image)."""
    return method.text_depends_on_image


@dataclass
class Runtime:
    """Where and how a run computes.

    Attributes:
        store: frozen-encoder feature cache, used when the method's image side is frozen.
    """

    device: torch.device
    precision: Precision
    loading: Loading
    preprocess_cfg: object
    store: FeatureStore | None = None

    def autocast(self):
        return self.precision.autocast(self.device)

    def forward(self, method, inputs: torch.Tensor, kind: str) -> MethodOutput:
        """One training forward pass on images or cached image features."""
        inputs = inputs.to(self.device, non_blocking=True)
        with self.autocast():
            if kind == "features":
                return method.classify(inputs)
            if method.image_side_frozen:
                with torch.no_grad():
                    feats = method.encode_images(inputs)
                return method.classify(feats)
            return method.forward_output(inputs)

    def encode_fn(self, method):
        """`images [B, 3, H, W] -> normalised features [B, d]` on this device (for the feature cache)."""

        def encode(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), self.autocast():
                return method.encode_images(images.to(self.device, non_blocking=True)).float()

        return encode

    @torch.no_grad()
    def image_features(self, method, items: Sequence[Item], dataset: str, split: str) -> torch.Tensor:
        """Normalised features `[n, d]` of `items` under the test transform, on the CPU.

        Frozen image side: read from the feature cache (never re-encoded once cached). Prompted
        image side, or no cache attached: encoded with the method's current prompts.
        """
        if method.image_side_frozen and self.store is not None:
            return self.store.features(items, dataset, split)
        feats = []
        for images, _, _ in image_loader(items, self.preprocess_cfg, self.loading):
            with self.autocast():
                feats.append(method.encode_images(images.to(self.device, non_blocking=True)).float().cpu())
        return torch.cat(feats)
