"""Training-step time of each prompt method: ours against a straightforward implementation.

"Straightforward" re-encodes the full 77-token prompts every step (`backbone.truncate_text = False`)
and, for CoCoOp, runs one text pass per image as the original code does (`batch_images=False`).
Ours stops the text tower at the longest end-of-text token and encodes all (image, class) prompts of
a batch in one pass. Both variants are checked to give the same logits before timing.

Example: python tools/bench_methods.py --model pi-tiny-vit-m --classes 10 --batch 8 --json bench.json
A step is forward, cross-entropy (plus the method's own terms), backward and an SGD update.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

import promptinfo
from promptinfo.io import write_json
from promptinfo.methods import create_method

_WORDS = ["red", "panda", "golden", "retriever", "sports", "car", "tabby", "cat", "mountain", "bike", "electric",
          "guitar", "grey", "whale", "yellow", "lady", "slipper", "annual", "crop", "land", "hand", "stand"]


def classnames(n: int, seed: int = 0) -> list[str]:
    """Class names of 1-4 words, like those of the CoOp benchmarks."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def method_rows(backbone) -> dict[str, dict]:
    """The published settings of each method, MaPLe's depth capped by the backbone's layers."""
    depth = min(9, backbone.text_layers, backbone.vision_layers)
    return {"coop": {"n_ctx": 16}, "cocoop": {}, "maple": {"depth": depth}}


def build(name: str, cfg: dict, backbone, classes: list[str], straightforward: bool):
    backbone.truncate_text = backbone.text_truncation_exact and not straightforward
    if straightforward and name == "cocoop":
        cfg = {**cfg, "batch_images": False}
    torch.manual_seed(0)
    return create_method(name, backbone, classes, **cfg)


def step_times(method, images, labels, steps: int, warmup: int, autocast: torch.dtype | None) -> list[float]:
    """Seconds per training step, after `warmup` untimed steps."""
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3)
    device = images.device
    times = []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            out = method.forward_output(images)
            loss = F.cross_entropy(out.logits.float(), labels)
            loss = loss + sum(method.extra_losses(out, labels).values(), torch.zeros((), device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _max_difference(ours, plain, images) -> float:
    """Largest logit difference; the text-truncation switch lives on the shared backbone, so set it per call."""
    backbone = ours.backbone
    backbone.truncate_text = False
    full = plain(images)
    backbone.truncate_text = backbone.text_truncation_exact
    return float((ours(images) - full).abs().max())


def bench(args) -> list[dict]:
    torch.manual_seed(0)
    backbone = promptinfo.create_backbone(args.model, device=args.device)
    classes = classnames(args.classes)
    size = backbone.preprocess_cfg.size
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 3, size, size, generator=gen).to(args.device)
    labels = torch.randint(args.classes, (args.batch,), generator=gen).to(args.device)
    autocast = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.autocast]
    rows = []
    for name, cfg in method_rows(backbone).items():
        if args.methods and name not in args.methods:
            continue
        plain = build(name, cfg, backbone, classes, straightforward=True)
        plain_s = statistics.median(step_times(plain, images, labels, args.steps, args.warmup, autocast))
        ours = build(name, cfg, backbone, classes, straightforward=False)
        ours_s = statistics.median(step_times(ours, images, labels, args.steps, args.warmup, autocast))
        plain = build(name, cfg, backbone, classes, straightforward=True)  # fresh, equal prompts for the check
        ours = build(name, cfg, backbone, classes, straightforward=False)
        assert plain.tokens.shape[1] == backbone.context_length
        diff = _max_difference(ours, plain, images)
        rows.append({
            "method": name, "config": cfg, "model": args.model, "device": args.device, "classes": args.classes,
            "batch": args.batch, "text_tokens": int(ours.tokens.shape[1]), "straightforward_s": plain_s,
            "ours_s": ours_s, "speedup": plain_s / ours_s, "max_logit_difference": diff,
        })
        print(f"{name:7s} {args.model} C={args.classes} B={args.batch}: straightforward {plain_s * 1e3:8.1f} ms/step, "
              f"ours {ours_s * 1e3:8.1f} ms/step, ratio x{plain_s / ours_s:5.2f} "
              f"(text {ours.tokens.shape[1]} of {backbone.context_length} tokens, max |dlogit| {diff:.1e})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pi-tiny-vit-m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads")
    parser.add_argument("--autocast", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--methods", nargs="*", help="subset of coop, cocoop, maple")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = bench(args)
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
