"""Pretrain the tiny demo CLIP on the procedural benchmark and cache it (see ``promptinfo.demo``).

The library does this by itself on first use; run this script to do it ahead of time, to rebuild it,
or to try another recipe. It prints the checkpoint path and the report (wall times, zero-shot
accuracy on base classes, split into those pretraining saw and the others, and on novel classes).

    python tools/pretrain_demo_clip.py                      # default variant, ~4 min on 2 cores
    python tools/pretrain_demo_clip.py --variant small      # the fast test variant
    python tools/pretrain_demo_clip.py --steps 1200 --seed 1 --cache-dir /tmp/pi
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace

from promptinfo import demo


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="default", choices=sorted(demo.VARIANTS))
    parser.add_argument("--cache-dir", default=None, help="default: $PROMPTINFO_HOME or ~/.cache/promptinfo")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while training")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering batches ahead of training")
    parser.add_argument("--force", action="store_true", help="pretrain again even if the checkpoint is cached")
    for name in ("steps", "batch_size", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=f"override the recipe's {name}")
    parser.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    parser.add_argument("--pretraining-classes", choices=demo.PRETRAINING_CLASSES, default=None,
                        help="override which base classes pretraining sees (half_base: half of them; base: all)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("steps", "batch_size", "seed", "lr", "pretraining_classes")}
    recipe = replace(demo.get_recipe(args.variant), **{k: v for k, v in overrides.items() if v is not None})
    path = demo.demo_checkpoint_path(recipe, args.cache_dir)
    if args.force and path.is_file():
        path.unlink()
    path = demo.ensure_demo_backbone(recipe, args.cache_dir, num_threads=args.threads, workers=args.workers)
    report = json.loads(path.with_suffix(".json").read_text())
    print(json.dumps({"checkpoint": str(path), "model": recipe.model, **report}, indent=1))


if __name__ == "__main__":
    main()
