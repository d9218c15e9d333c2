"""Train a classifier from scratch into the terminal phase and track its information metrics every epoch.

The run folder holds `config.yaml`, `metrics.jsonl` (one line per epoch, epoch 0 = the initial network),
`results.json` (atomic, at the end), `trajectories.png` and, while the run is unfinished, `checkpoint.pt`
(written atomically after every epoch): an interrupted run resumes at its last finished epoch and ends with
the numbers of an uninterrupted one, since the data order of epoch e depends only on (seed, e).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from promptinfo.collapse.config import validate_collapse_config
from promptinfo.collapse.data import LabelledImages, load_classification_data
from promptinfo.collapse.models import Classifier, build_classifier
from promptinfo.engine import rundir as rf
from promptinfo.engine.loop import NonFiniteLossError
from promptinfo.engine.device import mix_seed, resolve_device, seed_everything, set_determinism, torch_threads
from promptinfo.errors import CheckpointMismatchError, ConfigError
from promptinfo.io import atomic_path, read_json
from promptinfo.losses import InformationTerms, weighted_sum
from promptinfo.metrics import CollapseTracker, collapse_values
from promptinfo.report.collapse_plots import plot_collapse

logger = logging.getLogger("promptinfo.collapse")

FIGURE = "trajectories.png"
OPERATIONAL_KEYS = (
    "out", "overwrite", "data.root", "trainer.eval_batch_size", "trainer.device", "trainer.num_threads",
)
"""Keys that do not change a run's numbers (on one device): a run may resume with other values."""


def run_collapse(cfg) -> dict:
    """Train, track and plot one run described by a `CollapseConfig` (dataclass, dict or DictConfig).

    A finished run is not redone unless `overwrite=true`. Returns the results.json content.
    """
    cfg = validate_collapse_config(cfg)
    with rf.RunFolder(cfg.out) as run:
        if run.finished() and not cfg.overwrite:
            return _finished(run, fingerprint(cfg))
        if cfg.overwrite:
            run.clear()
        handler = run.attach_log()
        try:
            with torch_threads(cfg.trainer.num_threads):
                return _run(cfg, run)
        finally:
            run.detach_log(handler)


def fingerprint(cfg: DictConfig) -> str:
    """Hash of every key that can change the run's numbers."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in OPERATIONAL_KEYS:
        *parents, leaf = key.split(".")
        node = container
        for p in parents:
            node = node[p]
        node.pop(leaf)
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


def _finished(run: rf.RunFolder, fp: str) -> dict:
    results = read_json(run.file(rf.RESULTS))
    if results.get("config_fingerprint") != fp:
        raise ConfigError(f"{run.path} holds a finished run of another config (see its config.yaml); choose "
                          "another out=... or pass overwrite=true to replace it.")
    logger.info("%s already finished; skipping it (pass overwrite=true to redo it).", run.path)
    return results


def _run(cfg: DictConfig, run: rf.RunFolder) -> dict:
    start_time = time.perf_counter()
    run.write_config(cfg)
    set_determinism(cfg.deterministic)
    device = resolve_device(cfg.trainer.device)
    d = cfg.data
    train, test, classnames = load_classification_data(d.name, d.root, d.num_classes, d.image_size)
    seed_everything(cfg.seed)
    c = cfg.classifier
    model = build_classifier(c.arch, len(classnames), width=c.width, bias=c.bias, image_size=d.image_size).to(device)
    t = cfg.trainer
    optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    fp = fingerprint(cfg)
    done = _resume(run, model, optimizer, fp)
    run.truncate_metrics(done if done else -1)
    tracker = CollapseTracker(cfg.tracking.max_samples, cfg.tracking.seed, center=cfg.tracking.center)
    tracked = train if cfg.tracking.split == "train" else test
    if done == 0:
        run.append_metrics({"epoch": 0, **measure(model, train, test, tracked, tracker, cfg, device)})
    for epoch in range(done + 1, t.epochs + 1):
        row = {"epoch": epoch, "lr": lr_at(t, epoch), **train_epoch(model, train, optimizer, cfg, epoch, device)}
        row.update(measure(model, train, test, tracked, tracker, cfg, device))
        run.append_metrics(row)
        _save_checkpoint(run, model, optimizer, epoch, fp)
        logger.info("epoch %d/%d: train %.2f%%, test %.2f%%, MIR %.4f, HDR %.4f, NC1 %.3g", epoch, t.epochs,
                    row["train_accuracy"], row["test_accuracy"], row["mir"], row["hdr"], row["nc1"])
    rows = run.read_metrics()
    results = summarise(cfg, rows, len(classnames), fp, time.perf_counter() - start_time)
    plot_collapse(rows, results["collapse"], run.file(FIGURE), title=_title(cfg, len(classnames)))
    run.write_results(results)
    run.file(rf.CHECKPOINT).unlink(missing_ok=True)
    return results


def lr_at(t: DictConfig, epoch: int) -> float:
    """The learning rate of (1-based) `epoch`: `lr`, divided by 10 after 1/3 and again after 2/3 of the epochs."""
    drops = sum(epoch > t.epochs * k / 3 for k in (1, 2))
    return t.lr * 0.1**drops


def train_epoch(model: Classifier, data: LabelledImages, optimizer, cfg: DictConfig, epoch: int, device) -> dict:
    """One pass over shuffled batches (order fixed by (seed, epoch); a last batch of one image is dropped)."""
    t = cfg.trainer
    for group in optimizer.param_groups:
        group["lr"] = lr_at(t, epoch)
    terms = InformationTerms(**OmegaConf.to_container(cfg.loss))
    use_terms = any(w > 0 for w in terms.weights().values())
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(mix_seed(cfg.seed, epoch)))
    model.train()
    total, count = 0.0, 0
    for batch in (b for b in order.split(t.batch_size) if len(b) > 1):
        images, labels = data.images[batch].to(device), data.labels[batch].to(device)
        features, logits = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=t.label_smoothing)
        if use_terms:
            z = features - features.mean(0) if cfg.tracking.center else features
            loss = loss + weighted_sum(terms(z, model.head.weight, labels), terms.weights())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite loss at epoch {epoch}; lower trainer.lr or the loss weights")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + float(loss.detach()) * len(batch), count + len(batch)
    return {"train_objective": total / count}


@torch.no_grad()
def measure(model: Classifier, train: LabelledImages, test: LabelledImages, tracked: LabelledImages,
            tracker: CollapseTracker, cfg: DictConfig, device) -> dict:
    """Loss and accuracy on both splits and the tracker's metrics on the tracked one (model in eval mode)."""
    model.eval()
    tracker.reset()
    row = {}
    for name, data in (("train", train), ("test", test)):
        loss, correct = 0.0, 0
        for batch in torch.arange(len(data)).split(cfg.trainer.eval_batch_size):
            labels = data.labels[batch].to(device)
            features, logits = model(data.images[batch].to(device))
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
            if data is tracked:
                tracker.update(features, model.head.weight, labels, model.head.bias)
        row.update({f"{name}_loss": loss / len(data), f"{name}_accuracy": 100.0 * correct / len(data)})
    row.update(tracker.compute())
    return row


def summarise(cfg: DictConfig, rows: list[dict], num_classes: int, fp: str, wall_time: float) -> dict:
    """results.json: the final epoch's metrics beside the closed forms at collapse, and the terminal phase."""
    final = rows[-1]
    closed = collapse_values(num_classes)
    perfect = [r["epoch"] for r in rows if r["train_accuracy"] == 100.0]
    return {
        "status": "finished", "dataset": cfg.data.name, "num_classes": num_classes, "arch": cfg.classifier.arch,
        "epochs": final["epoch"], "first_epoch_at_100_train_accuracy": perfect[0] if perfect else None,
        "final": final, "collapse": closed,
        "distance_to_collapse": {"mir": final["mir"] - closed["mir"], "hdr": final["hdr"] - closed["hdr"],
                                 "entropy_features": final["entropy_features"] - closed["entropy"],
                                 "entropy_head": final["entropy_head"] - closed["entropy"]},
        "config_fingerprint": fp, "wall_time_s": wall_time,
    }


def _save_checkpoint(run: rf.RunFolder, model: Classifier, optimizer, epoch: int, fp: str) -> None:
    state = {"fingerprint": fp, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
    with atomic_path(run.file(rf.CHECKPOINT)) as tmp:
        torch.save(state, tmp)


def _resume(run: rf.RunFolder, model: Classifier, optimizer, fp: str) -> int:
    """Load the last epoch's checkpoint if there is one; returns the number of finished epochs."""
    path = run.file(rf.CHECKPOINT)
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["fingerprint"] != fp:
        raise CheckpointMismatchError(f"{path} belongs to a run of another config; choose another out=... or pass "
                                      "overwrite=true to start afresh.")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resuming %s after epoch %d", run.path, state["epoch"])
    return int(state["epoch"])


def _title(cfg: DictConfig, num_classes: int) -> str:
    head = "bias" if cfg.classifier.bias else "no bias"
    return f"{cfg.classifier.arch} ({head}) on {cfg.data.name}, C = {num_classes}, seed {cfg.seed}"
