"""A tiny CLIP pretrained on the procedural benchmark, so the toolkit runs offline in minutes.

``recipe`` says what is trained (``DemoRecipe``, the ``default`` and ``small`` variants),
``pretraining`` trains and measures it on the toolkit's own parts (``Backbone``'s text pass, the
zero-shot method, open_clip's ``ClipLoss``), and ``weights`` caches the checkpoints and registers the
``procedural`` weights tag with ``promptinfo.backbones``.
"""

from promptinfo.demo.pretraining import (
    PretrainingBatches,
    create_demo_model,
    evaluate_demo_clip,
    pretrain_demo_clip,
    to_model_input,
)
from promptinfo.demo.recipe import PRETRAINING_CLASSES, VARIANTS, DemoRecipe, get_recipe, pretraining_pairs
from promptinfo.demo.weights import DEMO_TAG, demo_checkpoint_path, ensure_demo_backbone, save_demo_checkpoint

__all__ = [
    "DEMO_TAG", "PRETRAINING_CLASSES", "VARIANTS", "DemoRecipe", "PretrainingBatches", "create_demo_model",
    "demo_checkpoint_path", "ensure_demo_backbone", "evaluate_demo_clip", "get_recipe", "pretrain_demo_clip",
    "pretraining_pairs", "save_demo_checkpoint", "to_model_input",
]
