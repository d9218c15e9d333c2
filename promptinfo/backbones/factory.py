"""Create frozen CLIP backbones from open_clip names, pretrained tags, local files or OpenAI checkpoints."""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from pathlib import Path

import open_clip
import torch

from promptinfo.backbones._hub import offline_unless_reachable
from promptinfo.backbones.clip import Backbone
from promptinfo.backbones.openai_format import load_openai_checkpoint
from promptinfo.backbones.weights import registered_weights, resolve_weights
from promptinfo.errors import ConfigError, WeightsUnavailableError

_log = logging.getLogger(__name__)
_CONFIG_DIR = Path(__file__).parent / "model_configs"
_PRECISIONS = ("fp32", "fp16", "bf16")
open_clip.add_model_config(_CONFIG_DIR)


def list_backbones(pretrained: bool = False) -> list[str] | list[tuple[str, str]]:
    """Names `create_backbone` accepts: every open_clip architecture, including our tiny test models.

    Args:
        pretrained: list `(name, tag)` pairs of the weights open_clip knows instead of names.
    """
    if pretrained:
        return [tuple(pair) for pair in open_clip.list_pretrained()] + registered_weights()
    return list(open_clip.list_models())


def create_backbone(
    name: str,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    cache_dir: str | None = None,
) -> Backbone:
    """Build a frozen backbone (eval mode, no weight requires grad).

    Args:
        name: an open_clip architecture (`ViT-B-16`, `ViT-L-14`, `pi-tiny-vit-s`, ...) or the path
            of an OpenAI-format checkpoint (TorchScript archive or plain state dict), whose
            architecture is then inferred from the weights as OpenAI's `clip.load` does.
        pretrained: an open_clip pretrained tag (`openai`, `laion2b_s34b_b88k`, ...), a tag registered
            with `register_weights` (`procedural` for the demo models `pi-demo-*`, pretrained offline
            on first use and cached), a local weights file, or None for random weights.
        device: where the weights live.
        precision: weight precision, one of fp32, fp16, bf16 (training uses fp32 weights and
            autocast; see the engine).
        cache_dir: where open_clip stores downloaded weights.
    """
    if precision not in _PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not supported; choose one of {_PRECISIONS}.")
    if _looks_like_file(name):
        return _from_openai_file(name, pretrained, device, precision)
    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5)
        raise ConfigError(
            f"Unknown backbone {name!r}. Close matches: {close}. "
            "See promptinfo.list_backbones() for every name, or pass the path of an OpenAI-format checkpoint."
        )
    tag = pretrained
    resolved = resolve_weights(name, pretrained, cache_dir)
    pretrained = resolved or pretrained
    model = _create_open_clip(name, pretrained, precision, cache_dir)
    digest = "random" if pretrained is None else _weights_id(pretrained)
    weights_id = tag if resolved else digest  # a registered tag, which rebuilds the backbone from a checkpoint
    tokenizer = open_clip.get_tokenizer(name)
    backbone = Backbone(model, name=name, weights_id=weights_id, tokenizer=tokenizer, weights_digest=digest)
    return backbone.to(device)


def _looks_like_file(name: str) -> bool:
    if os.path.isfile(name):
        return True
    if name.endswith((".pt", ".pth", ".bin", ".safetensors")) or os.sep in name:
        raise WeightsUnavailableError(
            f"Checkpoint file {name!r} does not exist. Pass the path of an existing OpenAI-format "
            "checkpoint (e.g. ViT-B-16.pt) or an open_clip model name from promptinfo.list_backbones()."
        )
    return False


def _from_openai_file(path: str, pretrained: str | None, device, precision: str) -> Backbone:
    if pretrained is not None:
        raise ConfigError(
            f"name={path!r} is a checkpoint file that already holds the weights; leave pretrained=None "
            f"(got {pretrained!r})."
        )
    model = load_openai_checkpoint(path, precision=precision)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=model.context_length)
    name = Path(path).stem
    return Backbone(model, name=name, weights_id=_weights_id(path), tokenizer=tokenizer).to(device)


def _create_open_clip(name: str, pretrained: str | None, precision: str, cache_dir: str | None):
    kwargs = dict(precision=precision, cache_dir=cache_dir)
    if pretrained is None:
        return open_clip.create_model(name, pretrained=None, **kwargs)
    if os.path.isfile(pretrained):
        try:  # open_clip reads the file with torch.load(weights_only=True) or safetensors: no code runs
            return open_clip.create_model(name, pretrained=pretrained, **kwargs)
        except Exception as err:  # bad bytes raise UnpicklingError, RuntimeError, SafetensorError, ...
            raise WeightsUnavailableError(
                f"{pretrained} cannot be loaded as {name} weights ({type(err).__name__}). It is "
                "truncated or damaged, or holds another architecture's weights: replace it with a good copy, or "
                "check model.name."
            ) from None
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        raise ConfigError(
            f"pretrained={pretrained!r} is neither a file nor a weights tag of {name}. "
            f"Tags open_clip knows for {name}: {open_clip.list_pretrained_tags_by_model(name)}."
        )
    try:
        with offline_unless_reachable(tag_cfg):
            open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)  # fetched (or found) before the model is built
            return open_clip.create_model(
                name, pretrained=pretrained, force_quick_gelu=bool(tag_cfg.get("quick_gelu")), **kwargs
            )
    except Exception as err:  # any downloader failure: network, hub, missing cache
        raise WeightsUnavailableError(_download_help(name, pretrained, tag_cfg, cache_dir, err)) from None


def _download_help(name: str, tag: str, tag_cfg: dict, cache_dir: str | None, err: Exception) -> str:
    sources = [f"  {key}: {tag_cfg[key]}" for key in ("url", "hf_hub") if tag_cfg.get(key)]
    return (
        f"Could not fetch the {name} weights tagged {tag!r} ({type(err).__name__}: {err}).\n"
        "The weights file is published at:\n" + "\n".join(sources) + "\n"
        "Download it on a machine with network access and pass its path instead, e.g. "
        f"create_backbone({name!r}, pretrained='/path/to/weights.pt') or model.pretrained=/path/to/weights.pt; "
        f"or place it in the open_clip cache ({cache_dir or 'cache_dir'})."
    )


def _weights_id(pretrained: str) -> str:
    """A short identity for weights: the tag, or a content fingerprint for a file."""
    if not os.path.isfile(pretrained):
        return pretrained
    size = os.path.getsize(pretrained)
    digest = hashlib.sha256(str(size).encode())
    with open(pretrained, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return f"file-{digest.hexdigest()[:16]}"
