"""Load OpenAI-format CLIP checkpoints (TorchScript archives or plain state dicts) safely."""

from __future__ import annotations

import logging

import torch
from open_clip.model import build_model_from_openai_state_dict

from promptinfo.errors import WeightsUnavailableError

_log = logging.getLogger(__name__)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def read_openai_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read the weights of an OpenAI checkpoint without executing pickled code.

    OpenAI publishes TorchScript archives; fine-tuned copies are often plain state dicts, sometimes
    nested under "state_dict" with a "module." prefix (DataParallel).
    """
    try:
        return dict(torch.jit.load(path, map_location="cpu").state_dict())
    except RuntimeError:
        pass  # not a TorchScript archive: try a plain state dict
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsUnavailableError(
            f"{path} is neither a TorchScript archive nor a tensor-only state dict ({err}). "
            "Pass an OpenAI CLIP checkpoint such as ViT-B-16.pt, or an open_clip name with pretrained=<file>."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path} does not hold a flat dictionary of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_openai_checkpoint(path: str, precision: str = "fp32") -> torch.nn.Module:
    """Build an open_clip model whose architecture is inferred from an OpenAI checkpoint's weights."""
    state = read_openai_state_dict(path)
    if "visual.proj" not in state and "visual.attnpool.c_proj.weight" not in state:
        raise WeightsUnavailableError(
            f"{path} does not look like an OpenAI CLIP checkpoint (no 'visual.proj' or "
            "'visual.attnpool' weights). For open_clip checkpoints pass name=<architecture>, pretrained=<file>."
        )
    model = build_model_from_openai_state_dict(state, quick_gelu=True, cast_dtype=None)
    model = model.float() if precision == "fp32" else model.to(_DTYPES[precision])
    return model.eval()
