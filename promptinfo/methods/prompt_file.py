"""Prompt checkpoints: only the learnable tensors plus metadata, in safetensors format."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import torch
from safetensors.torch import save_file

from promptinfo.errors import CheckpointMismatchError, DamagedFileError
from promptinfo.io import atomic_path, read_safetensors
from promptinfo.methods.base import PromptMethod
from promptinfo.methods.registry import create_method

_META_KEY = "promptinfo"
logger = logging.getLogger(__name__)
_META_FIELDS = ("method", "config", "backbone", "weights", "classnames", "class_specific")
"""What `prompt_metadata` writes and loading needs."""


def prompt_metadata(method: PromptMethod) -> dict:
    """What a prompt checkpoint records besides the tensors."""
    return {
        "method": method.registry_name,
        "config": dataclasses.asdict(method.config),
        "backbone": method.backbone.name,
        "weights": method.backbone.weights_id,
        "weights_digest": method.backbone.weights_digest,
        "classnames": list(method.classnames),
        "class_specific": method.class_specific,
        "templates": method.dataset_templates,
    }


def save_prompt(method: PromptMethod, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write `method.prompt`'s tensors and metadata atomically to a .safetensors file."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in method.prompt.state_dict().items()}
    meta = {**prompt_metadata(method), **(extra or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})


def read_prompt_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata of a prompt checkpoint (no code is executed while reading).

    Raises:
        DamagedFileError: truncated, not a safetensors file, or its metadata is unreadable.
        CheckpointMismatchError: a safetensors file that is not a promptinfo prompt checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No prompt checkpoint at {path}.")
    fix = "Copy it again from where it was trained, or retrain that run (overwrite=true) to write it afresh."
    tensors, metadata = read_safetensors(path, fix)
    if _META_KEY not in metadata:
        raise CheckpointMismatchError(f"{path} is not a promptinfo prompt checkpoint (no metadata).")
    try:
        meta = json.loads(metadata[_META_KEY])
    except json.JSONDecodeError as err:
        raise DamagedFileError(path, f"its metadata is not valid JSON ({err})", fix) from None
    missing = [k for k in _META_FIELDS if k not in meta] if isinstance(meta, dict) else list(_META_FIELDS)
    if missing:
        raise DamagedFileError(path, f"its metadata lacks {missing}", fix)
    return tensors, meta


def load_prompt(method: PromptMethod, path: str | os.PathLike) -> dict:
    """Load learned prompts into `method`, checking that they fit; returns the metadata.

    Raises:
        CheckpointMismatchError: other method or backbone, class-specific prompts for other
            classes, or tensors of other shapes (e.g. another `n_ctx`).
    """
    tensors, meta = read_prompt_checkpoint(path)
    _check(meta, method, path)
    try:
        method.prompt.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointMismatchError(
            f"{path} does not fit this {method.registry_name} configuration: {err}. "
            f"It was saved with {meta['config']}."
        ) from None
    return meta


def load_method(path: str | os.PathLike, backbone, classnames=None) -> PromptMethod:
    """A method rebuilt from a prompt file: its method, options, class names and templates, with its prompts.

    Args:
        path: a `prompt.safetensors` (a run's, or one written by `promptinfo-export`).
        backbone: the backbone it was trained on (the metadata names it: `read_prompt_checkpoint(path)[1]`).
        classnames: other classes for a transferable prompt (not class-specific); None: the file's classes.

    Raises:
        CheckpointMismatchError: another backbone, or new classes for class-specific prompts.
    """
    meta = read_prompt_checkpoint(path)[1]
    names = meta["classnames"] if classnames is None else list(classnames)
    method = create_method(meta["method"], backbone, names, dataset_templates=meta.get("templates"), **meta["config"])
    load_prompt(method, path)
    return method.eval()


def _check(meta: dict, method: PromptMethod, path) -> None:
    if meta["method"] != method.registry_name:
        raise CheckpointMismatchError(f"{path} holds {meta['method']} prompts, not {method.registry_name}.")
    weights = (method.backbone.weights_id, method.backbone.weights_digest)  # a tag, or the content it resolved to
    if meta["backbone"] != method.backbone.name or meta["weights"] not in weights:
        raise CheckpointMismatchError(
            f"{path} was trained on backbone {meta['backbone']} (weights {meta['weights']}); this method runs "
            f"on {method.backbone.name} (weights {method.backbone.weights_id}). Prompts do not transfer "
            f"between backbones: load it with {_backbone_call(meta)}."
        )
    saved_digest = meta.get("weights_digest", meta["weights"])
    if saved_digest != method.backbone.weights_digest:
        logger.warning("%s was trained on %s weights %r with content %s; the weights under that tag here are %s "
                       "(e.g. the demo CLIP pretrained by another recipe or CPU): expect other numbers.",
                       path, meta["backbone"], meta["weights"], saved_digest, method.backbone.weights_digest)
    if meta["class_specific"] and meta["classnames"] != list(method.classnames):
        raise CheckpointMismatchError(
            f"{path} holds class-specific prompts for {len(meta['classnames'])} classes "
            f"({meta['classnames'][:3]}...), which cannot be used for the {len(method.classnames)} classes "
            f"here ({list(method.classnames)[:3]}...)."
        )


def _backbone_call(meta: dict) -> str:
    """How to build a checkpoint's backbone (the weights file itself, when it was loaded from one)."""
    weights = meta["weights"]
    if weights == "random":
        return f"torch.manual_seed(0); create_backbone({meta['backbone']!r}, pretrained=None) (the engine's random weights)"
    if weights.startswith("file-"):
        return (f"create_backbone({meta['backbone']!r}, pretrained='/path/to/weights') with the weights file it was "
                f"trained on (fingerprint {weights})")
    return f"create_backbone({meta['backbone']!r}, pretrained={weights!r})"
