"""Before a run trains or evaluates, every image it will read is checked, so a damaged file stops it in
seconds rather than after hours of training; with `dataset.skip_corrupt=true` such files are left out."""

from __future__ import annotations

import logging
from dataclasses import replace

from promptinfo.data import BenchmarkData, CorruptImageError, find_unreadable
from promptinfo.engine.protocols import Plan

logger = logging.getLogger("promptinfo.engine")

_EXAMPLES = 10


def screen_images(plan: Plan, method, rt, skip_corrupt: bool) -> tuple[Plan, list[str]]:
    """The plan without unreadable images, and their paths (sorted).

    Training images and every evaluation's test images are decoded, except test images whose features a
    frozen-image method already has in the feature cache (they decoded when it was filled).

    Raises:
        CorruptImageError: some image cannot be decoded and `skip_corrupt` is off; the message lists them.
    """
    datasets = {id(d): d for d in (plan.train, *(ev.data for ev in plan.evaluations)) if d is not None}
    paths = {item.path for item in plan.train.train} if plan.train is not None else set()
    for ev in plan.evaluations:
        if not (method.image_side_frozen and rt.store.has_features(ev.data.test, ev.data.key, "test")):
            paths.update(item.path for item in ev.data.test)
    unreadable = find_unreadable(sorted(paths), rt.loading.num_workers)
    if not unreadable:
        return plan, []
    listing = "; ".join(f"{path} ({reason})" for path, reason in sorted(unreadable.items())[:_EXAMPLES])
    if not skip_corrupt:
        raise CorruptImageError(
            f"{len(unreadable)} of the {len(paths)} images this run reads cannot be decoded: {listing}"
            f"{' ...' if len(unreadable) > _EXAMPLES else ''}. Replace those files, or pass dataset.skip_corrupt=true "
            "to leave them out (they are then listed in train.log and in results.json as skipped_images)."
        )
    logger.warning("dataset.skip_corrupt=true: leaving out %d unreadable image(s): %s", len(unreadable),
                   "; ".join(f"{path} ({reason})" for path, reason in sorted(unreadable.items())))
    kept = {key: _without(d, set(unreadable)) for key, d in datasets.items()}
    train = kept[id(plan.train)] if plan.train is not None else None
    return Plan(train, [replace(ev, data=kept[id(ev.data)]) for ev in plan.evaluations]), sorted(unreadable)


def _without(data: BenchmarkData, paths: set[str]) -> BenchmarkData:
    def keep(items):
        return [item for item in items if item.path not in paths]

    return replace(data, train=keep(data.train), val=keep(data.val), test=keep(data.test))
