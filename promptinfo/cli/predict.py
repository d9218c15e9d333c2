"""``promptinfo-predict IMAGES``: classify your own images with a trained prompt or zero-shot CLIP.

Writes ``<out>/predictions.csv`` (path, top-k classes and probabilities), ``<out>/summary.{csv,md}`` (images
per predicted class) and ``<out>/skipped.csv`` (unreadable images, with ``--skip-unreadable``); prints the summary.

Examples::

    promptinfo-predict photos/ --checkpoint runs/.../prompt.safetensors --out predictions/
    promptinfo-predict photos/ --checkpoint prompt.safetensors --classes "tabby cat,husky,parrot"
    promptinfo-predict list.txt --model ViT-B-16 --pretrained openai --classes classes.txt --top-k 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from promptinfo.cli._argparse import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptinfo-predict",
        description="Classify an image, a folder of images (recursively) or a list file of image paths with a "
        "prompt checkpoint (its method, classes and backbone), or with zero-shot CLIP (--model, --classes).",
    )
    parser.add_argument("images", help="an image file, a folder, or a .txt/.lst list file with one path per line")
    parser.add_argument("--checkpoint", default=None, help="a prompt.safetensors (omitted: zero-shot CLIP)")
    parser.add_argument("--classes", default=None,
                        help="class names: a file with one per line, or comma-separated (default: the checkpoint's)")
    parser.add_argument("--model", default=None, help="zero-shot backbone (ViT-B-16, ...); checkpoints name their own")
    parser.add_argument("--pretrained", default=None,
                        help="weights tag or file of --model; with a checkpoint trained on a weights file, that file")
    parser.add_argument("--templates", nargs="+", default=None, help='zero-shot templates (default: "a photo of a {}.")')
    parser.add_argument("--top-k", type=int, default=5, help="classes per image in predictions.csv (default 5)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions/)")
    parser.add_argument("--skip-unreadable", action="store_true", help="leave out images that cannot be decoded")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16 (autocast on CUDA)")
    parser.add_argument("--feature-cache", type=Path, default=Path(".cache/promptinfo/features"),
                        help="folder of cached frozen image features (shared with training and evaluation)")
    parser.add_argument("--format", default="csv,md", help="summary table formats, a subset of csv,md,tex")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _predict)


def _predict(args: argparse.Namespace, formats: list[str]) -> int:
    import pandas as pd

    from promptinfo.data.image_files import read_class_list
    from promptinfo.engine.predict import predict
    from promptinfo.errors import ConfigError
    from promptinfo.io import atomic_path
    from promptinfo.report.formats import to_markdown, write_table
    from promptinfo.report.tables import Table

    if args.top_k < 1:
        raise ConfigError(f"--top-k {args.top_k}; ask for at least one class per image.")
    classes = read_class_list(args.classes) if args.classes else None
    result = predict(args.images, args.checkpoint, classes, model=args.model, pretrained=args.pretrained,
                     templates=args.templates, device=args.device, precision=args.precision,
                     batch_size=args.batch_size, num_workers=args.num_workers, feature_cache=args.feature_cache,
                     skip_unreadable=args.skip_unreadable)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("predictions.csv", result.top(args.top_k)),
                        ("skipped.csv", pd.DataFrame({"path": list(result.skipped), "reason": list(result.skipped.values())}))):
        with atomic_path(args.out / name) as tmp:
            frame.to_csv(tmp, index=False)
    data = result.summary()
    display = data.assign(mean_probability=data["mean_probability"].map(lambda p: f"{p:.3f}"))
    summary = Table("summary", f"Top-1 predictions of {len(result.paths)} image(s) ({len(result.skipped)} skipped)",
                    data, display, f"Images per predicted class and their mean top-1 probability; per-image top-"
                    f"{args.top_k} classes in predictions.csv.", label_columns=1)
    write_table(summary, args.out, formats)
    print(to_markdown(summary))
    return 0
