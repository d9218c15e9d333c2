"""Time the information metrics at inspection scale and compare with the naive n x n path.

Measures (best of --repeats runs after a warm-up, CPU unless --device says otherwise):
  * matrix entropy and effective rank of N x D features (default 50,000 x 512), through the
    automatic d x d path; the naive n x n path is timed on a --naive-n subset (an n x n
    float64 kernel for 50,000 samples needs 20 GB) and the ratio is reported at that size;
  * MIR/HDR of class means against C classifier weights (default 1,000 classes), exactly,
    against the all-n x n path;
  * sample-level MIR/HDR estimated from seeded subsets.

Usage: .venv/bin/python tools/bench_metrics.py [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable

import torch

from promptinfo.metrics import (
    class_information,
    class_means,
    effective_rank,
    information_summary,
    matrix_entropy,
    sampled_information,
)


def _best_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best of ``repeats`` timed calls after one untimed warm-up (robust on a shared machine)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _entropy_rows(features: torch.Tensor, naive_n: int, repeats: int, device: torch.device) -> list[dict]:
    n, d = features.shape
    rows = [
        {"task": f"entropy {n}x{d}", "path": "auto (d x d)",
         "seconds": _best_seconds(lambda: matrix_entropy(features), repeats, device)},
        {"task": f"effective rank {n}x{d}", "path": "auto (d x d)",
         "seconds": _best_seconds(lambda: effective_rank(features), repeats, device)},
    ]
    subset = features[:naive_n]
    fast = _best_seconds(lambda: matrix_entropy(subset), repeats, device)
    naive = _best_seconds(lambda: matrix_entropy(subset, path="samples"), repeats, device)
    rows.append({"task": f"entropy {naive_n}x{d}", "path": "auto (d x d)", "seconds": fast})
    rows.append({"task": f"entropy {naive_n}x{d}", "path": "naive (n x n)", "seconds": naive, "naive_over_auto": naive / fast})
    return rows


def _class_rows(features, labels, weights, repeats: int, device: torch.device) -> list[dict]:
    c = weights.shape[0]
    means, classes = class_means(features, labels)
    paired = weights[classes]
    with_means = _best_seconds(lambda: class_information(features, labels, weights), repeats, device)
    fast = _best_seconds(lambda: information_summary(means, paired), repeats, device)
    naive = _best_seconds(lambda: information_summary(means, paired, path="samples"), repeats, device)
    return [
        {"task": f"MIR/HDR {c} classes (incl. means of {features.shape[0]})", "path": "auto", "seconds": with_means},
        {"task": f"MIR/HDR {c} classes", "path": "auto (d x d + n x n joint)", "seconds": fast},
        {"task": f"MIR/HDR {c} classes", "path": "naive (n x n)", "seconds": naive, "naive_over_auto": naive / fast},
    ]


def _write_json(path: str, payload: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--naive-n", type=int, default=2_000, help="subset size for the naive n x n entropy")
    parser.add_argument("--subset-size", type=int, default=2_000)
    parser.add_argument("--num-subsets", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the table to this JSON file")
    args = parser.parse_args()

    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    features = torch.randn(args.samples, args.dim, generator=generator).to(device)  # float32, like CLIP outputs
    labels = (torch.arange(args.samples) % args.classes).to(device)
    weights = torch.randn(args.classes, args.dim, generator=generator).to(device)

    rows = _entropy_rows(features, args.naive_n, args.repeats, device)
    rows += _class_rows(features, labels, weights, args.repeats, device)
    paired = weights[labels]
    start = time.perf_counter()
    spread = sampled_information(features, paired, args.subset_size, args.num_subsets, seed=args.seed)
    rows.append({"task": f"sampled MIR/HDR {args.num_subsets} x {args.subset_size} of {args.samples}",
                 "path": "auto", "seconds": time.perf_counter() - start,
                 "mir_mean": spread["mir"]["mean"], "mir_std": spread["mir"]["std"]})

    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"{'task':<48} {'path':<28} {'seconds':>9} {'naive/auto':>10}")
    for row in rows:
        ratio = f"{row['naive_over_auto']:.1f}x" if "naive_over_auto" in row else ""
        print(f"{row['task']:<48} {row['path']:<28} {row['seconds']:>9.3f} {ratio:>10}")
    print(f"sampled MIR = {spread['mir']['mean']:.4f} +- {spread['mir']['std']:.4f} (std over {args.num_subsets} subsets)")
    if args.json:
        _write_json(args.json, {"device": str(device), "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
