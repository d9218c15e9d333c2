"""What each protocol trains on and evaluates (Zhou et al., CoOp IJCV 2022 and CoCoOp CVPR 2022).

- few_shot: k shots of the chosen classes; evaluation "test" on the same classes.
- base2novel: k shots of the base classes (first half of the labels); evaluations "base" and
  "novel" on the test images of each half, with that half's class names.
- cross_dataset / domain_generalization: k shots of every class of the source dataset (ImageNet in
  the papers); evaluations on the source test split (named by the dataset) and on every target's
  test split with the target's own class names.
- zeroshot: no training; evaluation "test" on the chosen classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptinfo.data import BenchmarkData
from promptinfo.engine.data import load_eval_split, load_split


@dataclass
class EvalPlan:
    """One evaluation: its name in results.json, the data and the class subset."""

    name: str
    data: BenchmarkData
    subsample: str


@dataclass
class Plan:
    """The training data (None: nothing to train) and the evaluations of a run."""

    train: BenchmarkData | None
    evaluations: list[EvalPlan]


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
    raise ValueError(f"unknown protocol {name!r}")  # validated earlier; internal invariant
