"""Prompts saved by the original CoOp, CoCoOp, MaPLe and KgCoOp code (Dassl checkpoints), loaded into our methods.

Those trainers save `{"state_dict", "epoch", "optimizer", "scheduler", "val_result"}` with `torch.save` under
`<output>/<model name>/model.pth.tar-<epoch>` (or `model-best.pth.tar`). CoOp, CoCoOp and KgCoOp register the
prompt learner alone (keys `ctx`, `meta_net.*`, `token_prefix`, ...); MaPLe registers the whole model, so its
prompt tensors carry the prefix `prompt_learner.` beside the frozen CLIP weights. Our prompt tensors use the
original names (the fidelity tests load them both ways), so loading is a matter of picking them out.

The file is read with `torch.load(weights_only=True)`: no code from it runs. Dassl's warm-up schedulers
pickle their successor scheduler object, and that its optimizer; those objects are read as inert placeholders
(their class is never imported or called), since only the state dict is used.
"""

from __future__ import annotations

import collections
import os
import pickle

import torch

from promptinfo.errors import CheckpointMismatchError

_FROZEN = ("token_prefix", "token_suffix")
"""Class-name token embeddings the original prompt learners keep as buffers; rebuilt from the class list here."""
_OPTIMISATION_OBJECTS = (
    "dassl.optim.lr_scheduler.ConstantWarmupScheduler",
    "dassl.optim.lr_scheduler.LinearWarmupScheduler",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.lr_scheduler.StepLR",
    "torch.optim.lr_scheduler.MultiStepLR",
    "torch.optim.sgd.SGD",  # a scheduler object pickles its optimizer (hyper-parameters and parameters)
    "torch.optim.adam.Adam",
    "torch.optim.adamw.AdamW",
)


class _Inert:
    """Stands in for a pickled scheduler or optimizer object: keeps its state, runs nothing."""

    def __setstate__(self, state) -> None:
        self.state = state


def read_original_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The prompt tensors of an original checkpoint, by their names in the prompt learner.

    Raises:
        CheckpointMismatchError: missing file, not a Dassl checkpoint, or objects other than tensors and
            schedulers in it (the message says how to re-save the state dict alone).
    """
    if not os.path.isfile(path):
        raise CheckpointMismatchError(f"No checkpoint at {path}; pass the file (e.g. prompt_learner/model.pth.tar-50).")
    try:
        allowed = [(_Inert, name) for name in _OPTIMISATION_OBJECTS] + [collections.defaultdict, dict]  # optimizer.state: defaultdict(dict)
        with torch.serialization.safe_globals(allowed):
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as err:
        raise CheckpointMismatchError(
            f"{path} cannot be read as an original CoOp/CoCoOp/MaPLe checkpoint without running code from it "
            f"({str(err).splitlines()[0]}). In the original code's environment, save the state dict alone: "
            "torch.save(torch.load(path)['state_dict'], 'prompt_learner.pth'), and load that file."
        ) from None
    state = saved.get("state_dict", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{path} holds no state dict of tensors (a Dassl checkpoint has 'state_dict').")
    return _prompt_learner_tensors(state)


def _prompt_learner_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    learner = {k.removeprefix("prompt_learner."): v for k, v in state.items() if k.startswith("prompt_learner.")}
    learner = learner or dict(state)  # CoOp, CoCoOp, KgCoOp: the prompt learner's own state dict
    return {k: v for k, v in learner.items() if k not in _FROZEN}


def load_original_prompt(method, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Copy the prompts of an original checkpoint into `method` (cast to its dtype); returns them.

    Raises:
        CheckpointMismatchError: names or shapes that differ from `method`'s prompts; the message lists both
            and what option to change (e.g. another `n_ctx` or `depth`).
    """
    tensors = read_original_checkpoint(path)
    ours = method.prompt.state_dict()
    learned = {k: v for k, v in ours.items() if not k.startswith("gpa_")}  # PromptSRC's aggregation state
    missing, unexpected = sorted(set(learned) - set(tensors)), sorted(set(tensors) - set(ours))
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{path} does not hold {method.registry_name} prompts: it has {sorted(tensors)}; this method needs "
            f"{sorted(learned)} (missing {missing}, not ours {unexpected}). Choose the method the file was trained with."
        )
    shapes = {k: (tuple(tensors[k].shape), tuple(ours[k].shape)) for k in tensors if tensors[k].shape != ours[k].shape}
    if shapes:
        detail = ", ".join(f"{k}: {a} in the file, {b} here" for k, (a, b) in shapes.items())
        raise CheckpointMismatchError(
            f"{path} does not fit this {method.registry_name} configuration ({detail}). Set the options it was "
            "trained with (n_ctx / ctx_init for the context length, depth for deep prompts, csc for class-specific "
            "contexts) and the same backbone (the width is the text encoder's)."
        )
    method.prompt.load_state_dict({k: v.to(ours[k].dtype) for k, v in tensors.items()}, strict=False)
    return tensors
