"""`train(cfg)`: one run from a validated config to its run folder, resumable at every epoch boundary."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from promptinfo.data import build_transform, effective_shots
from promptinfo.engine import distributed as dist
from promptinfo.engine import rundir as rf
from promptinfo.engine.build import build_run, method_from_config
from promptinfo.engine.checkpoint import load_resume_checkpoint, restore, save_resume_checkpoint
from promptinfo.engine.data import FeatureBatches, ImageBatches
from promptinfo.engine.device import mix_seed
from promptinfo.engine.evaluate import evaluate, shared_text_features, subset_information
from promptinfo.engine.info import fixed_subset
from promptinfo.engine.loop import Fit, FitState, fit
from promptinfo.engine.objective import Objective
from promptinfo.engine.optim import build_optimizer, build_scheduler
from promptinfo.engine.progress import Progress, ScalarWriter
from promptinfo.engine.protocols import Plan, plan_run
from promptinfo.engine.screening import screen_images
from promptinfo.engine.semi_build import build_semi_step
from promptinfo.engine.unlabelled import NoLabelledBatches
from promptinfo.engine.validate import validate_train_config
from promptinfo.errors import ConfigError
from promptinfo.methods import save_prompt
from promptinfo.metrics import harmonic_mean

logger = logging.getLogger("promptinfo.engine")

EpochCallback = Callable[[FitState, dict], None]

OPERATIONAL_KEYS = (
    "overwrite", "run_dir", "runs_root", "feature_cache", "dataset.root", "model.cache_dir",
    "trainer.num_workers", "trainer.pin_memory", "trainer.persistent_workers", "trainer.progress",
    "trainer.log_every", "trainer.tensorboard", "trainer.keep_checkpoint", "trainer.eval_batch_size",
)
"""Keys that do not change the numbers of a run: a run may resume with other values."""


def train(cfg, callbacks: Sequence[EpochCallback] = ()) -> dict:
    """Train and evaluate one run described by a composed `promptinfo-train` config.

    A finished run (results.json with status finished) is not redone unless `overwrite=true`; an
    interrupted one resumes from its last epoch checkpoint and ends with the numbers of an
    uninterrupted run. A run refused at start-up (another config's checkpoint, a damaged file, missing
    data, a corrupt image) leaves its folder as it was. `callbacks` run after every epoch's metrics and
    checkpoint are written.

    Returns:
        The results.json content.
    """
    cfg = validate_train_config(cfg)
    fingerprint = config_fingerprint(cfg)
    with dist.run_folder(cfg.run_dir) as run:  # under torchrun rank 0 alone locks and writes it
        start = FolderState() if cfg.overwrite else read_folder(run, fingerprint)
        dist.barrier()  # every rank has read the folder before rank 0 may change it
        if start.results is not None:
            logger.info("%s already finished; skipping it (pass overwrite=true to redo it).", run.path)
            return start.results
        held = run.hold_log()
        try:
            setup = _set_up(cfg)
            handler = _accept(cfg, run, start, held)
        finally:
            run.detach_log(held)
        try:
            return _run(cfg, run, setup, start, callbacks)
        finally:
            run.detach_log(handler)


@dataclass
class FolderState:
    """What a run folder holds when a run starts, read before anything in it changes.

    Attributes:
        results: results.json of a finished run of the same config.
        checkpoint: the resume state of an interrupted run of the same config.
        metric_lines: metrics.jsonl lines of the epochs the checkpoint has finished.
    """

    results: dict | None = None
    checkpoint: dict | None = None
    metric_lines: list[str] = field(default_factory=list)


def read_folder(run: rf.RunFolder, fingerprint: str) -> FolderState:
    """Read and check the run folder (nothing is written).

    Raises:
        ConfigError: it holds a finished run of another config.
        CheckpointMismatchError: its checkpoint was written by another config.
        DamagedFileError: results.json, checkpoint.pt or metrics.jsonl is damaged.
    """
    if run.finished():
        results = run.read_results()
        if results.get("config_fingerprint") != fingerprint:
            raise ConfigError(
                f"{run.path} holds a finished run of a different config (see its config.yaml). Give this run its "
                "own folder: label=NAME names the variant (its folder and its row in promptinfo-report's tables, "
                "e.g. label=maple-depth3), or run_dir=PATH; or pass overwrite=true to replace that run."
            )
        return FolderState(results=results)
    if not run.file(rf.CHECKPOINT).is_file():
        return FolderState()
    checkpoint = load_resume_checkpoint(run.file(rf.CHECKPOINT), fingerprint)
    return FolderState(checkpoint=checkpoint, metric_lines=run.metric_lines_until(int(checkpoint["epoch"])))


@dataclass
class Setup:
    """What a run builds before it may write into its folder."""

    method: Any
    rt: Any
    plan: Plan
    skipped_images: list[str]
    started: float


def _set_up(cfg: DictConfig) -> Setup:
    started = time.perf_counter()
    plan = plan_run(cfg.dataset.name, cfg.dataset.root, cfg.protocol, cfg.seed)
    method, rt = build_run(cfg, plan.train or plan.evaluations[0].data, method_from_config(cfg.method))
    plan, skipped = screen_images(plan, method, rt, cfg.dataset.skip_corrupt)
    return Setup(method, rt, plan, skipped, started)


def _accept(cfg: DictConfig, run: rf.RunFolder, start: FolderState, held) -> logging.Handler:
    """The run goes ahead: from here on it writes into its folder (train.log gets the records held so far)."""
    if cfg.overwrite:
        run.clear()
    else:
        run.remove_leftover_temps()
    dist.barrier()
    run.write_metric_lines(start.metric_lines)
    run.write_config(cfg)
    handler = run.attach_log(held=held)
    logger.info("run folder %s", run.path)
    return handler


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of everything in the config that can change a run's numbers."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in OPERATIONAL_KEYS:
        *parents, leaf = key.split(".")
        node = container
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run(cfg: DictConfig, run: rf.RunFolder, setup: Setup, start: FolderState,
         callbacks: Sequence[EpochCallback]) -> dict:
    method, rt, plan = setup.method, setup.rt, setup.plan
    writer = ScalarWriter(run.file(rf.TENSORBOARD)) if cfg.trainer.tensorboard and dist.is_main() else None
    try:
        state = _train_if_needed(cfg, run, method, plan, rt, start.checkpoint, callbacks, writer)
    finally:
        if writer is not None:
            writer.close()
    if method.prompt.state_dict() and dist.is_main():
        save_prompt(method, run.file(rf.PROMPT), extra=_prompt_extra(cfg))
    results = _evaluate_all(cfg, method, plan, rt)
    if plan.unlabelled is not None and state.epoch > 0 and dist.is_main():
        results["pseudo_labels"] = pseudo_label_summary(run.read_metrics())
    results.update(skipped_images=setup.skipped_images, epochs=state.epoch, steps=state.step,
                   config_fingerprint=config_fingerprint(cfg), wall_time_s=time.perf_counter() - setup.started)
    run.write_results(results)
    if dist.is_main() and not cfg.trainer.keep_checkpoint and run.file(rf.CHECKPOINT).exists():
        run.file(rf.CHECKPOINT).unlink()
    _log_results(results)
    return results


def _train_if_needed(cfg, run, method, plan: Plan, rt, checkpoint, callbacks, writer) -> FitState:
    trainable = any(p.requires_grad for p in method.prompt.parameters())
    if plan.train is None:
        return FitState()
    probe = info_probes(plan, rt, cfg.trainer.info_subset, cfg.seed)
    if cfg.trainer.epochs == 0 or not trainable:
        reason = "trainer.epochs=0" if trainable else f"{method.registry_name} has no trainable parameters"
        logger.info("no training (%s); evaluating the method as initialised", reason)
        _append(run, writer, {"epoch": 0, "step": 0, **probe(method)})
        return FitState()
    return _fit(cfg, run, method, plan, rt, probe, checkpoint, callbacks, writer)


def _fit(cfg, run, method, plan: Plan, rt, probe, checkpoint, callbacks, writer) -> FitState:
    t = cfg.trainer
    batches = _batches(cfg, method, plan, rt)
    optimizer = build_optimizer(method.parameter_groups(), t)
    scheduler = build_scheduler(optimizer, t)
    scaler = rt.precision.grad_scaler(rt.device)
    objective = Objective.from_config(cfg.loss)
    objective.prepare(method)
    f = Fit(objective, optimizer, scheduler, scaler, rt, t.epochs, t.grad_accum,
            t.clip_grad_norm, build_semi_step(cfg, method, plan, rt) if plan.unlabelled is not None else None)
    fingerprint = config_fingerprint(cfg)
    state = FitState()
    if checkpoint is not None:  # read and checked (with metrics.jsonl) before the run touched its folder
        state.epoch, state.step = restore(checkpoint, method=method, optimizer=optimizer, scheduler=scheduler,
                                          scaler=scaler)
        if f.unlabelled is not None:
            f.unlabelled.strategy.load_state_dict(checkpoint["extra"]["pseudo"])
        logger.info("resuming after epoch %d/%d (step %d)", state.epoch, t.epochs, state.step)
    else:
        _append(run, writer, {"epoch": 0, "step": 0, "lr": optimizer.param_groups[0]["lr"], **probe(method)})

    def on_epoch_end(s: FitState, row: dict) -> None:
        row.update(probe(method))
        _append(run, writer, row)
        if dist.is_main():
            extra = {"pseudo": f.unlabelled.strategy.state_dict()} if f.unlabelled is not None else {}
            save_resume_checkpoint(run.file(rf.CHECKPOINT), method=method, optimizer=optimizer,
                                   scheduler=scheduler, scaler=scaler, epoch=s.epoch, step=s.step,
                                   fingerprint=fingerprint, extra=extra)
        logger.info("epoch %d/%d loss %.4f train_acc %s lr %.3e mir %s (%.1fs)%s", s.epoch, t.epochs, row["loss"],
                    _fmt(row.get("train_acc"), 2), row["lr"], _fmt(row.get("info/mir")), row["time_s"], _pseudo_line(row))
        for callback in callbacks:
            callback(s, row)

    progress = Progress(t.progress if dist.is_main() else "none", t.log_every)
    state = fit(method, batches, f, state, progress, on_epoch_end)
    method.finalize()
    return state


def _batches(cfg, method, plan: Plan, rt):
    t, data = cfg.trainer, plan.train
    if not data.train:  # unsupervised: one epoch is one pass over the unlabelled images
        return NoLabelledBatches(math.ceil(len(plan.unlabelled.items) / (cfg.pseudo.mu * t.batch_size)))
    augment = build_transform(rt.preprocess_cfg, train=True, scale=tuple(t.crop_scale), hflip=t.hflip)
    if t.train_views > 0 and method.image_side_frozen:
        feats = rt.store.train_views(data.train, data.key, t.train_views, cfg.seed, augment)  # [V, n, d]
        labels = torch.tensor([item.label for item in data.train], dtype=torch.long)
        return FeatureBatches(feats, labels, cfg.seed, t.batch_size)
    if t.train_views > 0:
        logger.warning("trainer.train_views=%d is ignored: %s prompts its image encoder, so images are encoded at "
                       "every step", t.train_views, method.registry_name)
    return ImageBatches(data.train, augment, cfg.seed, rt.loading)


class InfoProbe:
    """Information metrics of a fixed subset of training images (test transform) and their label's text features.

    Args:
        items, labels: the training images and their labels (hidden ones for unlabelled images: analysis only).
        prefix: key prefix in metrics.jsonl (`info` for labelled images, `info_unlabelled` for unlabelled ones).
    """

    def __init__(self, items, labels: torch.Tensor, dataset: str, rt, size: int, seed: int, prefix: str = "info") -> None:
        index = fixed_subset(len(items), size, mix_seed(seed, 4))
        self.items, self.labels = [items[i] for i in index.tolist()], labels[index]
        self.dataset, self.rt, self.prefix = dataset, rt, prefix

    def __call__(self, method) -> dict:
        if not self.items or not dist.is_main():  # rank 0 alone writes metrics.jsonl
            return {}
        method.eval()
        feats = self.rt.image_features(method, self.items, self.dataset, f"train-{self.prefix}")
        text = shared_text_features(method, self.rt)
        metrics = subset_information(method, feats, self.labels, self.rt, text, torch.arange(len(self.items)))
        return {f"{self.prefix}/{k}": v for k, v in metrics.items()}


def info_probes(plan: Plan, rt, size: int, seed: int):
    """`method -> metrics` of the labelled training images and, when there are any, of the unlabelled ones."""
    train = plan.train.train
    labels = torch.tensor([item.label for item in train], dtype=torch.long)
    probes = [InfoProbe(train, labels, plan.train.key, rt, size, seed)]
    if plan.unlabelled is not None:
        u = plan.unlabelled
        probes.append(InfoProbe(u.items, u.hidden_labels, plan.train.key, rt, size, seed, "info_unlabelled"))
    return lambda method: {k: v for probe in probes for k, v in probe(method).items()}


def _evaluate_all(cfg, method, plan: Plan, rt) -> dict:
    evaluations, metrics = {}, {}
    for ev in plan.evaluations:
        result = evaluate(method, ev.data, rt, subsample=ev.subsample, info_subset=cfg.trainer.info_subset,
                          seed=mix_seed(cfg.seed, 5))
        evaluations[ev.name] = result.record()
        if result.metrics:
            metrics[ev.name] = result.metrics
    results = {
        "status": "finished", "method": cfg.label or method.registry_name, "dataset": cfg.dataset.name,
        "protocol": cfg.protocol.name, "shots": cfg.protocol.shots,
        "shots_effective": effective_shots(plan.train) if plan.train is not None else None, "seed": cfg.seed,
        "backbone": method.backbone.name, "weights": method.backbone.weights_id, "experiment": cfg.experiment_name,
        "evaluations": evaluations,
    }
    if cfg.protocol.name in ("base2novel", "transductive_zero_shot"):
        results["harmonic_mean"] = harmonic_mean(evaluations["base"]["accuracy"], evaluations["novel"]["accuracy"])
    results["metrics"] = metrics
    return results


def pseudo_label_summary(rows: list[dict]) -> dict:
    """The last epoch's pseudo-label counts and accuracy (`pseudo/*` of metrics.jsonl, analysis only)."""
    last = rows[-1]
    return {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("pseudo/")}


def _prompt_extra(cfg) -> dict:
    return {"dataset": cfg.dataset.name, "protocol": cfg.protocol.name, "shots": cfg.protocol.shots,
            "seed": cfg.seed, "epochs": cfg.trainer.epochs, "experiment": cfg.experiment_name}


def _append(run: rf.RunFolder, writer, row: dict) -> None:
    run.append_metrics(row)
    if writer is not None:
        writer.write(row)


def _log_results(results: dict) -> None:
    for name, ev in results["evaluations"].items():
        logger.info("%s: %d/%d correct, accuracy %.2f%%", name, ev["correct"], ev["total"], ev["accuracy"])
    if "harmonic_mean" in results:
        logger.info("harmonic mean %.2f", results["harmonic_mean"])


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pseudo_line(row: dict) -> str:
    if "pseudo/labelled" not in row:
        return ""
    return (f"; pseudo-labelled {row['pseudo/labelled']}/{row['pseudo/seen']}, "
            f"accuracy {_fmt(row.get('pseudo/accuracy'), 2)}")
