"""`evaluate_checkpoint(cfg)`: a saved prompt (or an untrained method) on any dataset and class subset."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from promptinfo.backbones import list_backbones, registered_tags
from promptinfo.engine.build import build_backbone, build_run, method_from_config, register_weight_tags
from promptinfo.engine.data import load_eval_split
from promptinfo.engine.device import mix_seed
from promptinfo.engine.evaluate import evaluate
from promptinfo.engine.protocols import EvalPlan, Plan
from promptinfo.engine.schema import ModelConfig
from promptinfo.engine.screening import screen_images
from promptinfo.engine.validate import method_options, validate_eval_config
from promptinfo.errors import CheckpointMismatchError, ConfigError
from promptinfo.io import write_json
from promptinfo.methods import load_prompt, read_prompt_checkpoint

logger = logging.getLogger("promptinfo.engine")


def evaluate_checkpoint(cfg, overrides: Sequence[str] = ()) -> dict:
    """Evaluate and write a results JSON; returns its content.

    With `checkpoint` set, the method, its options and the backbone come from the checkpoint's
    metadata: a weights tag (`openai`, the demo's `procedural`) is resolved again; weights saved
    from a local file must be given again as `model.pretrained`.

    Args:
        overrides: the command line's overrides (hydra's `overrides.task`). A method, method option or
            backbone chosen there that contradicts the checkpoint is refused, never silently replaced.

    Raises:
        CheckpointMismatchError: an explicit choice contradicts the checkpoint.
    """
    cfg = validate_eval_config(cfg)
    meta = read_prompt_checkpoint(cfg.checkpoint)[1] if cfg.checkpoint else None
    if meta is not None:
        refuse_contradictions(cfg, meta, overrides)
    name, options = (meta["method"], dict(meta["config"])) if meta else method_from_config(cfg.method)
    data = load_eval_split(cfg.dataset.name, cfg.dataset.root, cfg.protocol.subsample)
    method, rt = build_run(cfg, data, (name, options), checkpoint_model_config(cfg.model, meta, cfg.checkpoint),
                           classnames=meta["classnames"] if meta else None)
    backbone = method.backbone
    if cfg.checkpoint:
        load_prompt(method, cfg.checkpoint)
        logger.info("%s prompts from %s (method and options from the checkpoint: %s)", name, cfg.checkpoint, options)
    plan, skipped = screen_images(Plan(None, [EvalPlan("test", data, cfg.protocol.subsample)]), method, rt,
                                  cfg.dataset.skip_corrupt)
    data = plan.evaluations[0].data
    result = evaluate(method, data, rt, subsample=cfg.protocol.subsample, info_subset=cfg.trainer.info_subset,
                      seed=info_seed(cfg.seed))
    results = {
        "status": "finished", "checkpoint": cfg.checkpoint, "method": name, "dataset": cfg.dataset.name,
        "protocol": "eval", "subsample": cfg.protocol.subsample, "backbone": backbone.name,
        "weights": backbone.weights_id, "trained_on": _trained_on(meta),
        "evaluations": {"test": result.record()}, "metrics": {"test": result.metrics} if result.metrics else {},
        "skipped_images": skipped,
    }
    path = output_path(cfg, name, backbone.name)
    write_json(path, results)
    logger.info("%s %s: %d/%d correct, accuracy %.2f%% -> %s", cfg.dataset.name, cfg.protocol.subsample,
                result.correct, result.total, result.accuracy, path)
    return results


def info_seed(seed: int) -> int:
    """Seed of the test images on which an evaluation's information metrics are computed."""
    return mix_seed(seed, 5)


def output_path(cfg: DictConfig, method: str, backbone: str) -> Path:
    """Where the results JSON goes: `output`, else beside the checkpoint, else under `runs_root/eval/`."""
    if cfg.output:
        return Path(cfg.output)
    stem = f"eval_{cfg.dataset.name}_{cfg.protocol.subsample}.json"
    if cfg.checkpoint:
        return Path(cfg.checkpoint).parent / stem
    return Path(cfg.runs_root) / "eval" / backbone / method / stem


def checkpoint_model_config(model_cfg, meta: dict | None, checkpoint) -> DictConfig:
    """The backbone to rebuild: `checkpoint`'s architecture and weights (from its metadata `meta`), or `model_cfg`
    without a checkpoint; `model_cfg.pretrained` names the weights file of a backbone loaded from one."""
    model = model_cfg.copy()
    if meta is None:
        return model
    register_weight_tags()
    if meta["backbone"] not in list_backbones():  # an OpenAI-format checkpoint file holds arch and weights
        if not os.path.isfile(model.name):
            raise ConfigError(
                f"{checkpoint} was trained on the OpenAI-format checkpoint {meta['backbone']!r}; pass that "
                "file again as model.name=/path/to/it.pt (and model.pretrained=null; --model with promptinfo-predict "
                "and -inspect)."
            )
        model.pretrained = None
        return model
    model.name = meta["backbone"]
    weights = meta["weights"]
    if weights == "random":
        model.pretrained = None
    elif not weights.startswith("file-"):
        model.pretrained = weights
    elif not (model.pretrained and (os.path.isfile(model.pretrained) or model.pretrained in registered_tags())):
        raise ConfigError(
            f"{checkpoint} was trained on {meta['backbone']} with weights loaded from a file (fingerprint "
            f"{weights}); pass that file again as model.pretrained=/path/to/weights (--pretrained with "
            "promptinfo-predict and -inspect)."
        )  # else the file, or the demo weights (checkpoints of older versions recorded their fingerprint)
    return model


def refuse_contradictions(cfg: DictConfig, meta: dict, overrides: Sequence[str]) -> None:
    """Refuse command-line choices of method, method options or backbone that the checkpoint contradicts.

    Values that only come from the config's defaults are replaced by the checkpoint's, as documented.
    """
    keys = {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))}
    conflicts = _method_conflicts(cfg, meta, keys) + _model_conflicts(cfg, meta, keys)
    if conflicts:
        raise CheckpointMismatchError(
            f"{cfg.checkpoint} fixes the method, its options and the backbone; the command line asks otherwise: "
            + "; ".join(conflicts) + ". Drop those overrides to evaluate the checkpoint as trained, or pass a "
            "checkpoint trained with what you asked for."
        )


def _method_conflicts(cfg: DictConfig, meta: dict, keys: set[str]) -> list[str]:
    option_keys = sorted(k for k in keys if k.startswith("method."))
    if "method" not in keys and not option_keys:
        return []
    if cfg.method.name != meta["method"]:
        return [f"method={cfg.method.name}, but the checkpoint holds {meta['method']} prompts"]
    options, saved = method_options(cfg.method), meta["config"]
    conflicts = []
    for key in option_keys:
        option = key.removeprefix("method.")
        if option in saved and options.get(option) != saved[option]:
            conflicts.append(f"{key}={options.get(option)!r}, but the checkpoint was trained with {saved[option]!r}")
    return conflicts


def _model_conflicts(cfg: DictConfig, meta: dict, keys: set[str]) -> list[str]:
    conflicts = []
    if keys & {"model", "model.name"} and meta["backbone"] not in (cfg.model.name, Path(cfg.model.name).stem):
        conflicts.append(f"model.name={cfg.model.name}, but the checkpoint was trained on {meta['backbone']}")
    weights = meta["weights"]  # weights from a file are compared by fingerprint when the prompt is loaded
    if "model.pretrained" in keys and not weights.startswith("file-") and (cfg.model.pretrained or "random") != weights:
        conflicts.append(f"model.pretrained={cfg.model.pretrained}, but the checkpoint was trained with weights "
                         f"{'null (random)' if weights == 'random' else weights}")
    return conflicts


def checkpoint_backbone(checkpoint, model: str | None = None, pretrained: str | None = None,
                        cache_dir: str | None = None) -> tuple:
    """`(backbone, metadata)` of a prompt checkpoint: the backbone it was trained on, rebuilt.

    Args:
        model: the OpenAI-format checkpoint file of a backbone trained from one (its metadata names no architecture).
        pretrained: the weights file of a backbone that was loaded from one (its metadata holds a fingerprint).
    """
    meta = read_prompt_checkpoint(checkpoint)[1]
    model_cfg = OmegaConf.structured(ModelConfig(name=model or "", pretrained=pretrained, cache_dir=cache_dir))
    return build_backbone(checkpoint_model_config(model_cfg, meta, checkpoint)), meta


def _trained_on(meta: dict | None) -> dict | None:
    if meta is None:
        return None
    keys = ("dataset", "protocol", "shots", "seed", "epochs", "experiment")
    return {k: meta.get(k) for k in keys}
