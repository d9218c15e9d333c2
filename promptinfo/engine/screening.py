"""Before a run trains or evaluates, every image it will read is checked, so a damaged file stops it in
seconds rather than after hours of training; with `dataset.skip_corrupt=true` such files are left out."""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from promptinfo.data import BenchmarkData, CorruptImageError, find_unreadable
from promptinfo.engine.protocols import Plan, Unlabelled

logger = logging.getLogger("promptinfo.engine")

_EXAMPLES = 10


def screen_images(plan: Plan, method, rt, skip_corrupt: bool) -> tuple[Plan, list[str]]:
    """The plan without unreadable images, and their paths (sorted).

    Training images (labelled and unlabelled) and every evaluation's test images are decoded, except test
    images whose features a frozen-image method already has in the feature cache (they decoded when it was
    filled).

    Raises:
        CorruptImageError: some image cannot be decoded and `skip_corrupt` is off; the message lists them.
    """
    paths = _paths_read(plan, method, rt)
    unreadable = find_unreadable(paths, rt.loading.num_workers)
    if not unreadable:
        return plan, []
    listed = [f"{path} ({reason})" for path, reason in sorted(unreadable.items())]
    if not skip_corrupt:
        more = " ..." if len(listed) > _EXAMPLES else ""
        raise CorruptImageError(
            f"{len(listed)} of the {len(paths)} images this run reads cannot be decoded: "
            f"{'; '.join(listed[:_EXAMPLES])}{more}. Replace those files, or pass dataset.skip_corrupt=true to "
            "leave them out (they are then listed in train.log and in results.json as skipped_images)."
        )
    logger.warning("dataset.skip_corrupt=true: leaving out %d unreadable image(s): %s", len(listed), "; ".join(listed))
    return _without(plan, set(unreadable)), sorted(unreadable)


def _paths_read(plan: Plan, method, rt) -> list[str]:
    paths = {item.path for item in plan.train.train} if plan.train is not None else set()
    if plan.unlabelled is not None:
        paths.update(item.path for item in plan.unlabelled.items)
    for ev in plan.evaluations:
        if not (method.image_side_frozen and rt.store.has_features(ev.data.test, ev.data.key, "test")):
            paths.update(item.path for item in ev.data.test)
    return sorted(paths)


def _without(plan: Plan, paths: set[str]) -> Plan:
    """The plan with the images at `paths` removed everywhere (shared data objects stay shared)."""
    datasets = {id(d): d for d in (plan.train, *(ev.data for ev in plan.evaluations)) if d is not None}
    kept = {key: _data_without(d, paths) for key, d in datasets.items()}
    train = kept[id(plan.train)] if plan.train is not None else None
    evaluations = [replace(ev, data=kept[id(ev.data)]) for ev in plan.evaluations]
    unlabelled = _unlabelled_without(plan.unlabelled, paths) if plan.unlabelled is not None else None
    return Plan(train, evaluations, unlabelled)


def _data_without(data: BenchmarkData, paths: set[str]) -> BenchmarkData:
    def keep(items):
        return [item for item in items if item.path not in paths]

    return replace(data, train=keep(data.train), val=keep(data.val), test=keep(data.test))


def _unlabelled_without(unlabelled: Unlabelled, paths: set[str]) -> Unlabelled:
    keep = [i for i, item in enumerate(unlabelled.items) if item.path not in paths]
    return replace(unlabelled, items=[unlabelled.items[i] for i in keep],
                   hidden_labels=unlabelled.hidden_labels[torch.tensor(keep, dtype=torch.long)])
