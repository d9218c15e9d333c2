"""Cached demo checkpoints, and the ``procedural`` weights tag that serves them to ``create_backbone``.

``ensure_demo_backbone`` pretrains on first use (under a file lock) and caches the weights; the
checkpoint is a plain safetensors state dict that ``open_clip.create_model(name, pretrained=path)``
and ``promptinfo.backbones.create_backbone`` load like any other weights file. Importing this module
registers the tag, so ``create_backbone("pi-demo-default", pretrained="procedural")`` works anywhere.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from filelock import FileLock
from safetensors.torch import save_file
from torch import nn

from promptinfo.backbones import register_weights
from promptinfo.demo.pretraining import pretrain_demo_clip
from promptinfo.demo.recipe import VARIANTS, DemoRecipe, get_recipe
from promptinfo.errors import ConfigError, DamagedFileError
from promptinfo.io import atomic_path, read_safetensors, remove_leftover_temps, set_aside

logger = logging.getLogger(__name__)

DEMO_TAG = "procedural"
"""Weights tag of the demo models (``pi-demo-*``): pretrained on the procedural benchmark on first use."""


def default_cache_dir() -> Path:
    """``$PROMPTINFO_HOME``, else ``~/.cache/promptinfo``."""
    return Path(os.environ.get("PROMPTINFO_HOME") or Path.home() / ".cache" / "promptinfo").expanduser()


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


def _resolve(model: str, cache_dir: str | None) -> Path:
    """The ``procedural`` weights of a demo architecture, pretrained with its variant's recipe if not cached."""
    variant = next(recipe for recipe in VARIANTS.values() if recipe.model == model)
    return ensure_demo_backbone(variant, cache_dir)


register_weights(DEMO_TAG, [recipe.model for recipe in VARIANTS.values()], _resolve)
