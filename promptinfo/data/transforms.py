"""Image transforms: the backbone's own test preprocessing and CoOp's training augmentation.

Test: exactly open_clip's ``image_transform(..., is_train=False)`` for the backbone's preprocess
config (resize the shortest side with its interpolation, centre crop, normalise with its mean/std).
Train: CoOp's ``random_resized_crop`` (scale 0.08-1) + ``random_flip`` + ``normalize`` (Zhou et
al., CoOp, Sec. 4.1; Dassl's transforms), at the backbone's size, interpolation, mean and std.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torchvision import transforms as T

from promptinfo.errors import ConfigError

_INTERPOLATIONS = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
}
TRAIN_SCALE = (0.08, 1.0)


@dataclass(frozen=True)
class Preprocess:
    """The fields of a backbone's preprocess config that transforms depend on."""

    size: int | tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    @classmethod
    def from_config(cls, cfg: Any) -> "Preprocess":
        """From open_clip's ``preprocess_cfg`` dict, ``backbone.preprocess_cfg`` or any object with those fields."""
        get = cfg.get if isinstance(cfg, Mapping) else (lambda k, d=None: getattr(cfg, k, d))
        missing = [k for k in ("size", "mean", "std") if get(k) is None]
        if missing:
            raise ConfigError(f"preprocess config lacks {missing}; give size, mean and std (as open_clip does)")
        size = get("size")
        size = int(size) if isinstance(size, int) else tuple(int(s) for s in size)
        if isinstance(size, tuple) and len(size) == 2 and size[0] == size[1]:
            size = size[0]
        interpolation = get("interpolation", "bicubic") or "bicubic"
        if interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"interpolation {interpolation!r} is not one of {sorted(_INTERPOLATIONS)}")
        return cls(size, tuple(float(m) for m in get("mean")), tuple(float(s) for s in get("std")),
                   interpolation, get("resize_mode", "shortest") or "shortest", int(get("fill_color", 0) or 0))


@dataclass(frozen=True)
class ImageTransform:
    """A PIL-image-to-tensor transform with a stable description (part of feature-cache keys)."""

    fn: Callable
    description: str
    random: bool

    def __call__(self, image):
        return self.fn(image)


def build_transform(preprocess_cfg: Any, train: bool, scale: tuple[float, float] = TRAIN_SCALE,
                    hflip: float = 0.5, randaugment: tuple[int, int] | None = None) -> ImageTransform:
    """The test transform of the backbone, or CoOp's training augmentation at the backbone's settings.

    Args:
        preprocess_cfg: open_clip's ``model.visual.preprocess_cfg`` dict or ``backbone.preprocess_cfg``.
        train: build the augmentation (random resized crop + horizontal flip) instead of the test transform.
        scale: area range of the random resized crop (CoOp: 0.08 to 1).
        hflip: probability of the horizontal flip.
        randaugment: `(num_ops, magnitude)` of a torchvision RandAugment after the crop and flip: the
            strong view of FixMatch-style pseudo-labelling (Sohn et al., 2020); None for none.
    """
    p = Preprocess.from_config(preprocess_cfg)
    stats = f"size={p.size}|interp={p.interpolation}|mean={p.mean}|std={p.std}"
    if not train:
        return ImageTransform(_open_clip_test_transform(p), f"test|{p.resize_mode}|fill={p.fill_color}|{stats}", False)
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ConfigError(f"crop scale must satisfy 0 < low <= high <= 1, got {scale}")
    strong = [] if randaugment is None else [T.RandAugment(num_ops=randaugment[0], magnitude=randaugment[1])]
    fn = T.Compose([
        T.RandomResizedCrop(p.size, scale=scale, interpolation=_INTERPOLATIONS[p.interpolation]),
        T.RandomHorizontalFlip(hflip),
        *strong,
        T.ToTensor(),
        T.Normalize(p.mean, p.std),
    ])
    extra = "" if randaugment is None else f"|randaugment{tuple(randaugment)}"
    return ImageTransform(fn, f"train|rrc{scale}|hflip={hflip}{extra}|{stats}", True)


def _open_clip_test_transform(p: Preprocess) -> Callable:
    from open_clip import image_transform

    return image_transform(p.size, is_train=False, mean=p.mean, std=p.std, resize_mode=p.resize_mode,
                           interpolation=p.interpolation, fill_color=p.fill_color)
