"""Speed of evaluating from the feature cache versus re-encoding the test images.

Builds a random-weight open_clip ViT-B-16 (nothing is downloaded), writes N generated test images,
and times three things on the same images with the backbone's own test transform:

- re-encode: decode + transform + ``encode_image`` for every image (evaluation without a cache);
- cold fill: the same through ``FeatureCache.get_or_compute``, which also writes the entry;
- warm read: ``get_or_compute`` again, which reads the entry and encodes nothing.

Each is followed by the zero-shot logits against fixed class embeddings, so the numbers are those of
an evaluation pass. Prints a JSON record (and writes it with --out).

    python tools/bench_cache.py --images 200 --out runs/bench_cache.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from promptinfo.data import FeatureCache, ImageDataset, Item, build_transform
from promptinfo.data.image_dataset import collate_skipping


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Item]:
    """``n`` random-texture JPEGs of ``size`` x ``size`` pixels (decode cost like real photos)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((size, size), Image.BILINEAR)
        path = folder / f"img_{i:05d}.jpg"
        image.save(path, quality=90)
        items.append(Item(str(path), i % 10, f"class {i % 10}"))
    return items


def evaluate(features: torch.Tensor, text: torch.Tensor) -> float:
    """Zero-shot accuracy-style pass: normalised features against class embeddings."""
    logits = torch.nn.functional.normalize(features, dim=-1) @ text.T
    return float(logits.argmax(dim=-1).float().mean())


def encode_all(items, encode, transform, batch_size, workers) -> torch.Tensor:
    loader = torch.utils.data.DataLoader(ImageDataset(items, transform), batch_size=batch_size,
                                         num_workers=workers, collate_fn=collate_skipping)
    with torch.no_grad():
        return torch.cat([encode(images) for images, _, _ in loader])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=256, help="side of the generated JPEGs")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = open_clip.create_model(args.model, pretrained=None).eval().to(args.device)
    transform = build_transform(model.visual.preprocess_cfg, train=False)
    text = torch.nn.functional.normalize(torch.randn(10, model.text_projection.shape[1]), dim=-1)

    def encode(images: torch.Tensor) -> torch.Tensor:
        return model.encode_image(images.to(args.device)).float().cpu()

    with tempfile.TemporaryDirectory() as tmp:
        items = make_images(Path(tmp), args.images, args.image_size)
        cache = FeatureCache(Path(tmp) / "cache")
        key = {"backbone": args.model, "weights": "random-seed0", "dataset": "bench", "split": "test"}
        timings = {}

        start = time.perf_counter()
        evaluate(encode_all(items, encode, transform, args.batch_size, args.workers), text)
        timings["reencode_s"] = time.perf_counter() - start

        start = time.perf_counter()
        cold = cache.get_or_compute(key, items, encode, transform, batch_size=args.batch_size,
                                    num_workers=args.workers)
        evaluate(cold.view(), text)
        timings["cold_fill_s"] = time.perf_counter() - start

        warm_runs = []
        for _ in range(5):
            start = time.perf_counter()
            warm = cache.get_or_compute(key, items, encode, transform)
            evaluate(warm.view(), text)
            warm_runs.append(time.perf_counter() - start)
        timings["warm_read_s"] = float(np.median(warm_runs))
        assert torch.equal(cold.features, warm.features)
        entry_bytes = cold.path.stat().st_size

    record = {
        "model": args.model, "images": args.images, "device": args.device, "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), **{k: round(v, 4) for k, v in timings.items()},
        "speedup_vs_reencode": round(timings["reencode_s"] / timings["warm_read_s"], 1),
        "speedup_vs_cold_fill": round(timings["cold_fill_s"] / timings["warm_read_s"], 1),
        "cache_entry_bytes": entry_bytes,
    }
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
