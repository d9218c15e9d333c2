"""Load OpenAI-format CLIP checkpoints (plain state dicts or TorchScript archives) without running code from the file."""

from __future__ import annotations

import logging
import zipfile

import torch
from open_clip.model import build_model_from_openai_state_dict

from promptinfo.backbones._torchscript import UnsupportedArchive, read_torchscript_tensors
from promptinfo.errors import WeightsUnavailableError

_log = logging.getLogger(__name__)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def read_openai_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read the weights of an OpenAI-format checkpoint without running code from the file where possible.

    A plain state dict (fine-tuned copies; sometimes nested under "state_dict" with DataParallel's "module."
    prefix) is read with `torch.load(weights_only=True)`. A TorchScript archive (how OpenAI publishes its
    weights) is read by unpickling its module tree with an allow-list of globals (`_torchscript`); only an
    archive that holds something else falls back to `torch.jit.load`, which runs the TorchScript code stored
    in the file, with a warning: load such archives only from sources you trust, or convert one once to a plain
    state dict (`torch.save(torch.jit.load(path).state_dict(), new_path)`).

    Raises:
        WeightsUnavailableError: the file is damaged or holds no flat dictionary of tensors.
    """
    if _is_torchscript_archive(path):
        state = _read_torchscript_archive(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # bad bytes raise UnpicklingError, RuntimeError, EOFError, ...
            raise WeightsUnavailableError(
                f"{path} cannot be read as weights ({type(err).__name__}): it is truncated, or neither a TorchScript "
                "archive nor a tensor-only state dict. Fetch the file again (e.g. OpenAI's ViT-B-16.pt), or pass an "
                "open_clip name with pretrained=<file>."
            ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path} does not hold a flat dictionary of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _is_torchscript_archive(path: str) -> bool:
    """A zip file with TorchScript code or constants (what `torch.jit.save` writes)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def _read_torchscript_archive(path: str) -> dict[str, torch.Tensor]:
    try:
        return read_torchscript_tensors(path)
    except (UnsupportedArchive, zipfile.BadZipFile, KeyError) as err:
        _log.warning("%s: its tensors cannot be read without running it (%s), so torch.jit.load runs the TorchScript "
                     "code stored in it. Load archives only from sources you trust, or convert this one once to a "
                     "plain state dict: torch.save(torch.jit.load(path).state_dict(), new_path).", path, err)
    try:
        return dict(torch.jit.load(path, map_location="cpu").state_dict())
    except RuntimeError as err:
        raise WeightsUnavailableError(
            f"{path} is a TorchScript archive that torch.jit.load cannot read ({str(err).strip().splitlines()[0]}): "
            "it is truncated or damaged. Fetch it again."
        ) from None


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
