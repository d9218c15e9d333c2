"""Evaluation: exact correct/total counts on a test split, plus information metrics on a fixed subset.

Image features of the split are computed once (cached for a frozen image side); text features are
computed once per evaluation unless they depend on the image (CoCoOp), in which case `classify`
builds them batch by batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from promptinfo.data import BenchmarkData
from promptinfo.engine import distributed as dist
from promptinfo.engine.info import fixed_subset, information_metrics
from promptinfo.engine.runtime import Runtime, text_depends_on_image
from promptinfo.metrics import AccuracyCount, accuracy, label_weights


@dataclass
class Evaluation:
    """The outcome of one evaluation (an entry of results.json's `evaluations`)."""

    dataset: str
    subsample: str
    correct: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return AccuracyCount(self.correct, self.total).percent

    def record(self) -> dict:
        return {"dataset": self.dataset, "subsample": self.subsample, "correct": self.correct, "total": self.total,
                "accuracy": self.accuracy}


@torch.no_grad()
def shared_text_features(method, rt: Runtime) -> torch.Tensor | None:
    """The method's classifier `[C, d]` computed once, or None when it depends on the image."""
    if text_depends_on_image(method):
        return None
    with rt.autocast():
        return method.text_features()


@torch.no_grad()
def classify_features(method, feats: torch.Tensor, rt: Runtime, text: torch.Tensor | None) -> torch.Tensor:
    """Logits `[n, C]` (CPU, float32) of CPU features `[n, d]`, in batches of `eval_batch_size`."""
    out = []
    for chunk in feats.split(rt.loading.eval_batch_size):
        with rt.autocast():
            out.append(method.classify(chunk.to(rt.device), text_features=text).logits.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def evaluate(method, data: BenchmarkData, rt: Runtime, *, subsample: str, info_subset: int, seed: int) -> Evaluation:
    """Accuracy of `method` on `data.test` with `data.classnames`, and information metrics.

    The method's class names are set to the split's. Information metrics use `info_subset` test
    images drawn with `seed` (none when 0). Under torch.distributed each rank classifies its share
    of the test images (and encodes it, for a prompted image side) and the counts are summed.
    """
    method.eval()
    method.set_classnames(data.classnames, data.templates_for(method.registry_name))
    start, stop = dist.shard_bounds(len(data.test))
    if method.image_side_frozen:  # from the cache, whose key holds the items: every rank reads the whole split
        feats = rt.image_features(method, data.test, data.key, "test")  # [n, d]
    else:
        feats = dist.gather_rows(rt.image_features(method, data.test[start:stop], data.key, "test"), len(data.test))
    labels = torch.tensor([item.label for item in data.test], dtype=torch.long)
    text = shared_text_features(method, rt)
    count = AccuracyCount(0, 0)
    if stop > start:
        count = accuracy(classify_features(method, feats[start:stop], rt, text), labels[start:stop])
    count = AccuracyCount(*dist.sum_counts(count.correct, count.total))
    metrics = {}
    if info_subset > 0:
        metrics = subset_information(method, feats, labels, rt, text, fixed_subset(len(labels), info_subset, seed))
    return Evaluation(data.key, subsample, count.correct, count.total, metrics)


@torch.no_grad()
def subset_information(method, feats: torch.Tensor, labels: torch.Tensor, rt: Runtime, text: torch.Tensor | None,
                       index: torch.Tensor) -> dict[str, float]:
    """Information metrics of Z = feats[index] and the classifier rows W_y of their labels."""
    z, y = feats[index], labels[index]
    if text is None:  # one classifier per image: keep only each image's label row
        rows = []
        for zc, yc in zip(z.split(rt.loading.eval_batch_size), y.split(rt.loading.eval_batch_size)):
            with rt.autocast():
                per_image = method.text_features(zc.to(rt.device))  # [b, C, d]
            rows.append(label_weights(per_image.float().cpu(), yc))
        w = torch.cat(rows)
    else:
        w = label_weights(text.float().cpu(), y)
    return information_metrics(z, w)
