"""What each protocol trains on and evaluates (Zhou et al., CoOp IJCV 2022 and CoCoOp CVPR 2022).

- few_shot: k shots of the chosen classes; evaluation "test" on the same classes.
- base2novel: k shots of the base classes (first half of the labels); evaluations "base" and
  "novel" on the test images of each half, with that half's class names.
- cross_dataset / domain_generalization: k shots of every class of the source dataset (ImageNet in
  the papers); evaluations on the source test split (named by the dataset) and on every target's
  test split with the target's own class names.
- zeroshot: no training; evaluation "test" on the chosen classes.

Protocols with unlabelled images (Menghini et al., NeurIPS 2023, Sec. 3: SSL, UL, TRZSL):
- semi_supervised: the k-shot draw of few_shot is labelled, the rest of the chosen classes' train
  split is unlabelled; evaluation "test" as few_shot.
- unsupervised: class names only; every train image of the chosen classes is unlabelled.
- transductive_zero_shot: k shots of the base classes are labelled, the novel classes' train images
  are unlabelled (pseudo-labels range over the novel classes); the model trains on every class
  name and is evaluated "base" and "novel" as in base2novel.
Unlabelled items lose their label and class name before they reach the engine: their labels are kept
apart (`Unlabelled.hidden_labels`) to report pseudo-label accuracy, never to train.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from promptinfo.data import BenchmarkData, Item, load_benchmark
from promptinfo.engine.data import load_eval_split, load_split


@dataclass
class EvalPlan:
    """One evaluation: its name in results.json, the data and the class subset."""

    name: str
    data: BenchmarkData
    subsample: str


@dataclass
class Unlabelled:
    """Unlabelled training images.

    Attributes:
        items: the images, with label -1 and no class name.
        hidden_labels: `[n]` their true labels, for the pseudo-label accuracy only (analysis).
        candidates: `[k]` the classes a pseudo-label may take.
    """

    items: list[Item]
    hidden_labels: torch.Tensor
    candidates: torch.Tensor


@dataclass
class Plan:
    """The training data (None: nothing to train), the unlabelled images and the evaluations of a run.

    For unsupervised runs `train` holds the class names but no labelled image.
    """

    train: BenchmarkData | None
    evaluations: list[EvalPlan]
    unlabelled: Unlabelled | None = None


def hide_labels(items: Sequence[Item], candidates: torch.Tensor) -> Unlabelled:
    """The unlabelled set of `items`: each item's label and class name removed, the labels kept apart."""
    hidden = torch.tensor([item.label for item in items], dtype=torch.long)
    return Unlabelled([Item(item.path, -1, "") for item in items], hidden, candidates)


def plan_run(dataset_name: str, root: str, protocol, seed: int) -> Plan:
    """Load the data a protocol needs."""
    name, shots = protocol.name, protocol.shots
    if name == "zeroshot":
        data = load_eval_split(dataset_name, root, protocol.subsample)
        return Plan(None, [EvalPlan("test", data, protocol.subsample)])
    if name == "few_shot":
        data = load_split(dataset_name, root, shots, seed, protocol.subsample)
        return Plan(data, [EvalPlan("test", data, protocol.subsample)])
    if name == "base2novel":
        base = load_split(dataset_name, root, shots, seed, "base")
        novel = load_eval_split(dataset_name, root, "novel")
        return Plan(base, [EvalPlan("base", base, "base"), EvalPlan("novel", novel, "novel")])
    if name in ("cross_dataset", "domain_generalization"):
        source = load_split(dataset_name, root, shots, seed, "all")
        targets = [EvalPlan(t, load_eval_split(t, root, "all"), "all") for t in protocol.targets if t != dataset_name]
        return Plan(source, [EvalPlan(dataset_name, source, "all"), *targets])
    if name in ("semi_supervised", "unsupervised", "transductive_zero_shot"):
        return _plan_unlabelled(dataset_name, root, protocol, seed)
    raise ValueError(f"unknown protocol {name!r}")  # validated earlier; internal invariant


def _plan_unlabelled(dataset_name: str, root: str, protocol, seed: int) -> Plan:
    if protocol.name == "transductive_zero_shot":
        return _plan_transductive(dataset_name, root, protocol.shots, seed)
    full = load_eval_split(dataset_name, root, protocol.subsample)  # every train image of the chosen classes
    everything = torch.arange(full.num_classes)
    if protocol.name == "unsupervised":
        data = replace(full, train=[], val=[])
        return Plan(data, [EvalPlan("test", data, protocol.subsample)], hide_labels(full.train, everything))
    data = load_split(dataset_name, root, protocol.shots, seed, protocol.subsample)
    drawn = {item.path for item in data.train}
    rest = [item for item in full.train if item.path not in drawn]
    return Plan(data, [EvalPlan("test", data, protocol.subsample)], hide_labels(rest, everything))


def _plan_transductive(dataset_name: str, root: str, shots: int, seed: int) -> Plan:
    """Every class name in training; labelled base shots (base labels are the first half of all labels)."""
    full = load_benchmark(dataset_name, root)
    half = math.ceil(full.num_classes / 2)
    drawn = load_split(dataset_name, root, shots, seed, "all")  # the same draw as base2novel's base shots
    labelled = [item for item in drawn.train if item.label < half]
    data = replace(drawn, train=labelled, val=[item for item in drawn.val if item.label < half])
    novel_items = [item for item in full.train if item.label >= half]
    unlabelled = hide_labels(novel_items, torch.arange(half, full.num_classes))
    base = load_split(dataset_name, root, shots, seed, "base")
    novel = load_eval_split(dataset_name, root, "novel")
    return Plan(data, [EvalPlan("base", base, "base"), EvalPlan("novel", novel, "novel")], unlabelled)
