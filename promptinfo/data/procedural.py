"""A procedural benchmark of coloured shapes that renders offline, at any resolution, from a seed.

Each class is a (colour, shape) combination named like ``"red circle"``. Everything else in an
image (size, position, rotation, background texture, pixel noise, a slight jitter of the colour)
is a nuisance attribute drawn afresh for every image, so a class is a set of varied pictures rather
than one template. Rendering is a pure function of the scene attributes and the output resolution;
scene attributes are a pure function of (colour, shape, seed).

Label order puts the combinations of one colour-shape checkerboard first: with the CoOp base-to-novel
split (base = first ``ceil(n / 2)`` labels) every novel class is an unseen combination of a colour
and a shape that both appear in some base class.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageDraw

from promptinfo.errors import ConfigError
from promptinfo.io import read_json

logger = logging.getLogger(__name__)

RENDERER_VERSION = 1
"""Bumped whenever a change to this file changes pixels, captions or label order."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 170, 55),
    "blue": (35, 75, 225),
    "yellow": (240, 215, 30),
    "purple": (135, 55, 195),
    "orange": (245, 130, 20),
    "pink": (245, 120, 185),
    "cyan": (30, 205, 215),
}
"""Object colours (saturated, so they never blend with the grey backgrounds)."""

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "hexagon", "diamond", "crescent", "arrow"
)
"""Every shape the renderer draws; the benchmark uses ``BENCHMARK_SHAPES``."""

BENCHMARK_SHAPES: tuple[str, ...] = SHAPES[:6]

SIZES: dict[str, tuple[float, float]] = {
    "small": (0.50, 0.60),
    "medium": (0.62, 0.74),
    "large": (0.76, 0.90),
}
"""Shape radius as a fraction of half the image width, per size word."""

MAX_SHIFT = 0.2
"""Largest offset of the shape's centre from the image centre, per axis (normalised units).

Tiny ViTs trained for minutes learn position invariance slowly; wide shifts cost far more
accuracy than any other nuisance attribute."""

BACKGROUNDS: tuple[str, ...] = ("plain", "striped", "checkered", "dotted", "gradient", "noisy")

TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
"""Prompt templates of the benchmark, as in the CoOp dataset definitions."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
_SUPERSAMPLE_PIXELS = 128  # shapes are drawn on a canvas at least this wide, then box-filtered


@dataclass(frozen=True)
class Scene:
    """All attributes of one procedural image; ``render_scene`` turns it into pixels.

    Geometry is in normalised image coordinates: (0, 0) is the centre, the image spans [-1, 1].
    """

    colour: str
    shape: str
    size: str
    radius: float
    centre: tuple[float, float]
    rotation: float  # radians
    rgb: tuple[float, float, float]  # object colour in [0, 1] after jitter
    background: str
    tones: tuple[float, float]  # two grey levels in [0, 1] that the texture alternates between
    period: float  # texture period, in normalised units
    angle: float  # texture orientation, radians
    noise: float  # std of the additive pixel noise, in [0, 1] units


@dataclass(frozen=True)
class ProceduralClass:
    """One class of the benchmark: its label, name and attributes."""

    label: int
    colour: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def folder(self) -> str:
        return f"{self.colour}_{self.shape}"


def procedural_classes(
    colours: Sequence[str] = tuple(COLOURS), shapes: Sequence[str] = BENCHMARK_SHAPES
) -> list[ProceduralClass]:
    """Classes in label order: one checkerboard of the colour x shape grid, then the other.

    Cell (i, j) of the grid (colour i, shape j) is a base cell when ``i + j`` is even. There are
    ``ceil(n / 2)`` such cells, so they are exactly the CoOp base split, and every row and column of
    the grid holds base cells when it has at least two rows and two columns.
    """
    _check_attributes(colours, shapes)
    cells = [(i, j) for i in range(len(colours)) for j in range(len(shapes))]
    ordered = [c for c in cells if sum(c) % 2 == 0] + [c for c in cells if sum(c) % 2 == 1]
    return [ProceduralClass(k, colours[i], shapes[j]) for k, (i, j) in enumerate(ordered)]


def base_novel_split(classes: Sequence[ProceduralClass]) -> tuple[list[ProceduralClass], list[ProceduralClass]]:
    """Split classes as the CoOp protocol does: base = first ``ceil(n / 2)`` labels, novel = rest."""
    n_base = math.ceil(len(classes) / 2)
    return list(classes[:n_base]), list(classes[n_base:])


def _check_attributes(colours: Sequence[str], shapes: Sequence[str]) -> None:
    unknown = [c for c in colours if c not in COLOURS] + [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ConfigError(
            f"Unknown procedural attribute(s) {unknown}; colours must come from {list(COLOURS)} "
            f"and shapes from {list(SHAPES)}."
        )
    if len(colours) < 2 or len(shapes) < 2:
        raise ConfigError(
            f"The procedural benchmark needs at least 2 colours and 2 shapes so that novel classes are "
            f"unseen combinations of seen attributes; got colours={list(colours)}, shapes={list(shapes)}."
        )
    if len(set(colours)) != len(colours) or len(set(shapes)) != len(shapes):
        raise ConfigError(f"Repeated procedural attribute in colours={list(colours)} or shapes={list(shapes)}.")


# ----------------------------------------------------------------------------------------------
# Scenes: attributes drawn from a seed
# ----------------------------------------------------------------------------------------------


def sample_scene(colour: str, shape: str, rng: np.random.Generator) -> Scene:
    """Draw the nuisance attributes of one image of class ``colour shape``."""
    if colour not in COLOURS or shape not in SHAPES:
        raise ConfigError(
            f"Unknown procedural class '{colour} {shape}'; colours: {list(COLOURS)}, shapes: {list(SHAPES)}."
        )
    size = str(rng.choice(list(SIZES)))
    radius = float(rng.uniform(*SIZES[size]))
    room = min(MAX_SHIFT, max(0.0, 0.95 - radius))  # keep the whole shape inside the image
    centre = (float(rng.uniform(-room, room)), float(rng.uniform(-room, room)))
    base = np.asarray(COLOURS[colour], dtype=np.float64) / 255.0
    rgb = np.clip(base * rng.uniform(0.85, 1.1) + rng.normal(0.0, 0.03, size=3), 0.0, 1.0)
    background = str(rng.choice(BACKGROUNDS))
    dark = float(rng.uniform(0.05, 0.45))
    light = float(rng.uniform(0.55, 0.95))
    tones = (dark, light) if rng.random() < 0.5 else (light, dark)
    return Scene(
        colour=colour,
        shape=shape,
        size=size,
        radius=radius,
        centre=centre,
        rotation=float(rng.uniform(0.0, 2.0 * math.pi)),
        rgb=(float(rgb[0]), float(rgb[1]), float(rgb[2])),
        background=background,
        tones=tones,
        period=float(rng.uniform(0.25, 0.6)),
        angle=float(rng.uniform(0.0, math.pi)),
        noise=float(rng.uniform(0.0, 0.06)),
    )


def scene_rng(seed: int, *stream: int) -> np.random.Generator:
    """Independent random stream for one image, keyed by a seed and integer coordinates."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, stream)]))


# ----------------------------------------------------------------------------------------------
# Rendering: pixels as a pure function of a scene and a resolution
# ----------------------------------------------------------------------------------------------


def render_scene(scene: Scene, resolution: int) -> np.ndarray:
    """Render a scene to an ``(resolution, resolution, 3)`` uint8 RGB array."""
    if int(resolution) < 8:
        raise ConfigError(f"Procedural resolution must be at least 8 pixels, got {resolution}.")
    resolution = int(resolution)
    grid = _pixel_grid(resolution)
    grey = _background(scene, *grid)  # (H, W)
    alpha = _shape_alpha(scene, resolution)  # (H, W)
    rgb = np.asarray(scene.rgb)[None, None, :]
    image = grey[..., None] * (1.0 - alpha[..., None]) + rgb * alpha[..., None]  # (H, W, 3)
    noise_rng = np.random.default_rng(np.random.SeedSequence([resolution, *_scene_key(scene)]))
    image = image + noise_rng.normal(0.0, scene.noise, size=image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def render(colour: str, shape: str, seed: int, resolution: int) -> np.ndarray:
    """Render the image of class ``colour shape`` whose nuisance attributes come from ``seed``."""
    return render_scene(sample_scene(colour, shape, scene_rng(seed)), resolution)


def _scene_key(scene: Scene) -> list[int]:
    """Integers that identify a scene, to seed its pixel noise deterministically."""
    floats = (scene.radius, *scene.centre, scene.rotation, scene.period, scene.angle, scene.noise)
    return [int(abs(v) * 1e6) % (2**31) for v in floats]


def _pixel_grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates of pixel centres, x to the right and y downwards."""
    axis = (np.arange(resolution) + 0.5) / resolution * 2.0 - 1.0
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return x, y


def _background(scene: Scene, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Grey-level texture in [0, 1]; the two tones of the scene alternate along its pattern."""
    a, b = scene.tones
    u = x * math.cos(scene.angle) + y * math.sin(scene.angle)  # along the texture direction
    v = -x * math.sin(scene.angle) + y * math.cos(scene.angle)
    phase = 2.0 * math.pi / scene.period
    if scene.background == "plain":
        mix = np.zeros_like(x)
    elif scene.background == "striped":
        mix = (np.sin(u * phase) > 0).astype(np.float64)
    elif scene.background == "checkered":
        mix = ((np.sin(u * phase) > 0) ^ (np.sin(v * phase) > 0)).astype(np.float64)
    elif scene.background == "dotted":
        cu, cv = np.sin(u * phase), np.sin(v * phase)
        mix = ((cu > 0.6) & (cv > 0.6)).astype(np.float64)
    elif scene.background == "gradient":
        mix = np.clip((u + 1.5) / 3.0, 0.0, 1.0)
    elif scene.background == "noisy":
        mix = np.random.default_rng(np.random.SeedSequence(_scene_key(scene))).random(x.shape)
        mix = _box_blur(mix, max(1, x.shape[0] // 16))
    else:
        raise ConfigError(f"Unknown procedural background '{scene.background}'; choose from {list(BACKGROUNDS)}.")
    return a + (b - a) * mix


def _box_blur(field: np.ndarray, k: int) -> np.ndarray:
    """Mean over a (2k+1)^2 window with wrap-around, to turn white noise into blotches."""
    out = np.zeros_like(field)
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            out += np.roll(field, (dy, dx), axis=(0, 1))
    out /= (2 * k + 1) ** 2
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-12)


def _shape_alpha(scene: Scene, resolution: int) -> np.ndarray:
    """Anti-aliased coverage of the shape, drawn on a supersampled canvas and box-filtered down."""
    factor = max(1, math.ceil(_SUPERSAMPLE_PIXELS / resolution))
    side = resolution * factor
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)

    def to_px(px: float, py: float) -> tuple[float, float]:
        return (px + 1.0) * side / 2.0, (py + 1.0) * side / 2.0

    cx, cy = scene.centre
    r = scene.radius
    if scene.shape in ("circle", "ring", "crescent"):
        (x0, y0), (x1, y1) = to_px(cx - r, cy - r), to_px(cx + r, cy + r)
        draw.ellipse([x0, y0, x1, y1], fill=255)
        if scene.shape != "circle":  # cut a hole (ring) or a bite (crescent)
            h = 0.55 * r if scene.shape == "ring" else 0.85 * r
            off = 0.0 if scene.shape == "ring" else 0.45 * r
            hx, hy = cx + off * math.cos(scene.rotation), cy + off * math.sin(scene.rotation)
            (x0, y0), (x1, y1) = to_px(hx - h, hy - h), to_px(hx + h, hy + h)
            draw.ellipse([x0, y0, x1, y1], fill=0)
    else:
        points = _outline(scene.shape)  # (K, 2) on the unit circle scale
        c, s = math.cos(scene.rotation), math.sin(scene.rotation)
        xy = [to_px(cx + r * (px * c - py * s), cy + r * (px * s + py * c)) for px, py in points]
        draw.polygon(xy, fill=255)
    small = canvas.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _outline(shape: str) -> list[tuple[float, float]]:
    """Polygon vertices of a shape centred at the origin with circumradius about 1."""
    if shape == "square":
        h = 0.8
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":
        return [(math.cos(t), math.sin(t)) for t in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
    if shape == "star":
        return [
            ((1.0 if k % 2 == 0 else 0.42) * math.cos(-math.pi / 2 + k * math.pi / 5),
             (1.0 if k % 2 == 0 else 0.42) * math.sin(-math.pi / 2 + k * math.pi / 5))
            for k in range(10)
        ]
    if shape == "hexagon":
        return [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)]
    if shape == "diamond":
        return [(0.0, -1.0), (0.6, 0.0), (0.0, 1.0), (-0.6, 0.0)]
    if shape == "arrow":
        return [(-0.95, -0.25), (0.1, -0.25), (0.1, -0.7), (0.95, 0.0), (0.1, 0.7), (0.1, 0.25), (-0.95, 0.25)]
    if shape == "cross":
        a, b = 0.95, 0.32
        arm = [(-b, -a), (b, -a), (b, -b)]  # one arm of the plus sign; the others are its rotations
        return [(x * c - y * s, x * s + y * c) for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1)) for x, y in arm]
    raise ConfigError(f"Unknown procedural shape '{shape}'; choose from {list(SHAPES)}.")


# ----------------------------------------------------------------------------------------------
# Captions for contrastive pretraining
# ----------------------------------------------------------------------------------------------

_SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium-sized", "mid-sized"), "large": ("large", "big")}
_BACKGROUND_WORDS = {
    "plain": ("plain", "uniform"),
    "striped": ("striped", "stripy"),
    "checkered": ("checkered", "chequered"),
    "dotted": ("dotted", "spotted"),
    "gradient": ("gradient", "shaded"),
    "noisy": ("noisy", "mottled"),
}
_FULL_CAPTIONS = (
    "a photo of a {colour} {shape}.",
    "a photo of a {size} {colour} {shape}.",
    "a photo of a {size} {colour} {shape} on a {background} background.",
    "a {colour} {shape}.",
    "a {size} {colour} {shape}.",
    "a {colour} {shape} on a {tone} {background} background.",
    "a rendering of a {colour} {shape}.",
    "a drawing of a {size} {colour} {shape}.",
    "a {shape} coloured {colour}.",
    "a {colour} {shape} over a {background} pattern.",
    "there is a {colour} {shape} in the picture.",
    "a {size} {shape} in {colour} on a {background} background.",
)
_PARTIAL_CAPTIONS = (
    "a {colour} shape.",
    "something {colour} on a {background} background.",
    "a photo of a {shape}.",
    "a {size} {shape}.",
)


def caption(scene: Scene, rng: np.random.Generator, partial_prob: float = 0.2) -> str:
    """A caption of a scene drawn from varied templates.

    With probability ``partial_prob`` the caption names only the colour or only the shape, which
    pushes the text encoder to keep the two attributes apart.
    """
    templates = _PARTIAL_CAPTIONS if rng.random() < partial_prob else _FULL_CAPTIONS
    template = templates[int(rng.integers(len(templates)))]
    return template.format(
        colour=scene.colour,
        shape=scene.shape,
        size=_pick(_SIZE_WORDS[scene.size], rng),
        background=_pick(_BACKGROUND_WORDS[scene.background], rng),
        tone="dark" if sum(scene.tones) < 1.0 else "light",
    )


def _pick(words: Sequence[str], rng: np.random.Generator) -> str:
    return words[int(rng.integers(len(words)))]


# ----------------------------------------------------------------------------------------------
# The benchmark on disk, in the CoOp layout
# ----------------------------------------------------------------------------------------------

SPLIT_FILE = "split_zhou_Procedural.json"
META_FILE = "procedural.json"


@dataclass(frozen=True)
class ProceduralSpec:
    """Everything that determines a generated copy of the benchmark."""

    resolution: int = 32
    train_per_class: int = 32
    val_per_class: int = 8
    test_per_class: int = 32
    seed: int = 0
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = BENCHMARK_SHAPES

    def __post_init__(self) -> None:
        _check_attributes(self.colours, self.shapes)
        counts = {s: self.per_class(s) for s in SPLITS}
        if any(int(n) < 1 for n in counts.values()):
            raise ConfigError(f"Every split needs at least one image per class; got {counts}.")
        if int(self.resolution) < 8:
            raise ConfigError(f"Procedural resolution must be at least 8 pixels, got {self.resolution}.")

    def per_class(self, split: str) -> int:
        """Images per class in ``split`` (train, val or test)."""
        if split not in SPLITS:
            raise ConfigError(f"Unknown split '{split}'; choose from {list(SPLITS)}.")
        return int(getattr(self, f"{split}_per_class"))

    @property
    def classes(self) -> list[ProceduralClass]:
        return procedural_classes(self.colours, self.shapes)

    def to_dict(self) -> dict:
        return {
            "renderer_version": RENDERER_VERSION,
            "resolution": int(self.resolution),
            "per_class": {s: self.per_class(s) for s in SPLITS},
            "seed": int(self.seed),
            "colours": list(self.colours),
            "shapes": list(self.shapes),
            "classnames": [c.name for c in self.classes],
            "templates": list(TEMPLATES),
        }


VARIANTS: dict[str, ProceduralSpec] = {
    "default": ProceduralSpec(),
    "small": ProceduralSpec(train_per_class=16, val_per_class=4, test_per_class=16),
}
"""Named copies of the benchmark: ``default`` for the demo job, ``small`` for fast tests."""


def split_scenes(spec: ProceduralSpec, split: str) -> Iterator[tuple[ProceduralClass, int, Scene]]:
    """Scenes of one split, class by class: ``(class, index within class, scene)``.

    Each image has its own random stream keyed by (seed, split, colour, shape, index), so an image
    does not change when other classes or counts change.
    """
    spec.per_class(split)  # raises on an unknown split
    stream = _SPLIT_STREAM[split]
    for cls in spec.classes:
        for n in range(spec.per_class(split)):
            yield cls, n, sample_scene(cls.colour, cls.shape, _class_rng(spec.seed, stream, cls, n))


def _class_rng(seed: int, stream: int, cls: ProceduralClass, n: int) -> np.random.Generator:
    return scene_rng(seed, stream, list(COLOURS).index(cls.colour), SHAPES.index(cls.shape), n)


def write_procedural_dataset(
    root: str | os.PathLike, spec: ProceduralSpec = ProceduralSpec(), name: str = "procedural"
) -> Path:
    """Render the benchmark to ``<root>/<name>`` in the CoOp layout, unless it is already there.

    Layout: ``images/<colour>_<shape>/<split>_<n>.png`` plus ``split_zhou_Procedural.json`` holding
    ``{"train"|"val"|"test": [[path relative to images/, label, classname], ...]}``. Images are written
    into a temporary folder that is renamed into place, under a file lock, so concurrent callers
    neither see a half-written dataset nor render it twice.

    Returns:
        The dataset folder.
    """
    root = Path(root)
    target = root / name
    expected = spec.to_dict()
    if _is_complete(target, expected):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        if _is_complete(target, expected):
            return target
        if target.exists():
            raise ConfigError(
                f"{target} exists but does not hold the procedural benchmark with settings {expected}. "
                f"Delete that folder to regenerate it, or choose another data root."
            )
        for leftover in root.glob(f".{glob.escape(name)}.tmp-*"):  # of a writer that was killed (we hold the lock)
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            _write_tree(tmp, spec)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    logger.info("Wrote the procedural benchmark (%d classes) to %s", len(spec.classes), target)
    return target


def _is_complete(target: Path, expected: Mapping) -> bool:
    meta = target / META_FILE
    if not meta.is_file():
        return False
    return read_json(meta, fix=f"Delete the folder {target} to generate it again.") == expected


def _write_tree(folder: Path, spec: ProceduralSpec) -> None:
    """Write images, the split file and, last, the metadata that marks the folder complete."""
    images = folder / "images"
    splits: dict[str, list] = {}
    for split in SPLITS:
        entries = []
        for cls, n, scene in split_scenes(spec, split):
            relpath = f"{cls.folder}/{split}_{n:04d}.png"
            (images / cls.folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(render_scene(scene, spec.resolution)).save(images / relpath, compress_level=1)
            entries.append([relpath, cls.label, cls.name])
        splits[split] = entries
    with open(folder / SPLIT_FILE, "w") as f:
        json.dump(splits, f)
    with open(folder / META_FILE, "w") as f:
        json.dump(spec.to_dict(), f, indent=1)
