"""Time the text tower with and without exact early stopping at the longest end-of-text token.

Example: python tools/bench_text.py --model ViT-B-16 --classes 100 1000 --ctx 16
Prompts are CoOp-style: n_ctx placeholder tokens, a class name of 1-4 words, and a full stop.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

import promptinfo
from promptinfo.io import write_json

_WORDS = ["red", "panda", "golden", "retriever", "sports", "car", "tabby", "cat", "mountain", "bike", "electric",
          "guitar", "grey", "whale", "yellow", "lady", "slipper", "annual", "crop", "land", "hand", "stand"]


def classnames(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4))) for _ in range(n)]


@torch.no_grad()
def time_text(backbone, tokens: torch.Tensor, truncate: bool, repeats: int) -> float:
    backbone.truncate_text = truncate
    emb = backbone.token_embedding(tokens)
    backbone.encode_text_embeddings(emb, tokens)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        backbone.encode_text_embeddings(emb, tokens)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--ctx", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    backbone = promptinfo.create_backbone(args.model)
    rows = []
    for n in args.classes:
        tokens = backbone.tokenize([" ".join(["X"] * args.ctx) + f" {c}." for c in classnames(n)])
        full = time_text(backbone, tokens, False, args.repeats)
        short = time_text(backbone, tokens, True, args.repeats)
        length = int(backbone.eot_positions(tokens).max()) + 1
        rows.append({"classes": n, "tokens_kept": length, "full_s": full, "truncated_s": short, "speedup": full / short})
        print(f"{args.model} {n:5d} classes: full {full:.3f}s, truncated to {length} tokens {short:.3f}s, "
              f"speedup x{full / short:.2f}")
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
