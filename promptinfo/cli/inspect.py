"""``promptinfo-inspect``: zero-shot accuracy and information metrics of a backbone on benchmarks, or the
nearest words of a trained prompt.

With ``--model``, ``--datasets`` and ``--data-root``: writes ``inspect.csv`` (one row per dataset),
``inspect.json`` (with eigenvalue spectra), ``inspect.md``, ``spectra.png`` and ``metrics.png`` to ``--out``,
and prints the Markdown table. With ``--checkpoint``: writes ``words.{csv,md,tex}``, the vocabulary tokens
nearest to each learned text context vector, and prints them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from promptinfo.cli._argparse import run_command
from promptinfo.io import write_json

logger = logging.getLogger("promptinfo.inspect")

TEMPLATE_CHOICES = {"single": "single", "ensemble": "imagenet7", "imagenet7": "imagenet7", "imagenet80": "imagenet80"}
"""``--templates`` values and the template set of :func:`promptinfo.data.load_benchmark` each selects."""

BAR_METRICS = ("accuracy", "entropy_image", "entropy_text", "entropy_classifier", "mi", "mir", "hdr", "nc1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptinfo-inspect",
        description="Zero-shot accuracy, matrix entropy, effective rank, MI/MIR/HDR and neural-collapse statistics "
        "of a backbone's image features and text classifier weights on benchmark test sets; or, with --checkpoint, "
        "the vocabulary tokens nearest to a trained prompt's context vectors.",
    )
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a prompt.safetensors: report the nearest words of its learned context vectors instead")
    parser.add_argument("--words", type=int, default=5, help="nearest tokens per context vector (--checkpoint)")
    parser.add_argument("--model", default=None, help="open_clip architecture (ViT-B-16, ...) or OpenAI checkpoint path")
    parser.add_argument("--pretrained", default=None, help="weights tag (openai, ...) or file; omitted: random weights")
    parser.add_argument("--datasets", nargs="+", default=None, help="benchmark keys (see promptinfo.data.list_datasets())")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding the benchmark folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--templates", choices=list(TEMPLATE_CHOICES), default="single",
                        help="single: each benchmark's hand-crafted template; ensemble (= imagenet7): CoOp's ensembled "
                        "zero-shot CLIP; imagenet80: CLIP's 80 ImageNet templates")
    parser.add_argument("--subset", type=int, default=None, help="inspect a random subset of this many test images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image subset, MI subsets and random weights")
    parser.add_argument("--pair-size", type=int, default=1000, help="images per random subset for MI/MIR/HDR")
    parser.add_argument("--pair-subsets", type=int, default=5, help="random subsets averaged for MI/MIR/HDR")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16 (autocast on CUDA)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--feature-cache", type=Path, default=Path(".cache/promptinfo/features"),
                        help="feature cache folder (shared with training and evaluation runs)")
    parser.add_argument("--model-cache-dir", default=None, help="where open_clip keeps downloaded weights")
    parser.add_argument("--format", default="csv,md,tex", help="table formats, comma-separated subset of csv,md,tex")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_command(parser, argv, lambda args, formats: _dispatch(parser, args, formats))


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, formats: list[str]) -> int:
    if args.checkpoint is not None:
        return _inspect_words(args, formats)
    missing = [flag for flag, value in (("--model", args.model), ("--datasets", args.datasets),
                                        ("--data-root", args.data_root)) if value is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or --checkpoint for a prompt's words)")
    return _inspect(args, formats)


def _inspect_words(args: argparse.Namespace, formats: list[str]) -> int:
    """The nearest words of a prompt checkpoint's learned text contexts (CoOp's reading of its prompts)."""
    from promptinfo.engine.checkpoint_eval import checkpoint_backbone
    from promptinfo.errors import ConfigError
    from promptinfo.methods import load_method
    from promptinfo.methods.words import nearest_words
    from promptinfo.report.formats import to_markdown, write_table
    from promptinfo.report.words import words_table

    if args.words < 1:
        raise ConfigError(f"--words {args.words}; ask for at least one nearest token.")
    backbone, meta = checkpoint_backbone(args.checkpoint, args.model, args.pretrained, args.model_cache_dir)
    try:
        rows = nearest_words(load_method(args.checkpoint, backbone), k=args.words)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    table = words_table(rows, meta["method"], k=min(args.words, 5))
    write_table(table, args.out, formats)
    print(to_markdown(table))
    return 0


def _inspect(args: argparse.Namespace, formats: list[str]) -> int:
    import torch

    import promptinfo.demo.weights  # noqa: F401  (registers the `procedural` weights tag of the demo models)
    from promptinfo.backbones import create_backbone
    from promptinfo.engine.device import resolve_device, resolve_precision

    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    if args.pretrained is None:
        logger.warning("no --pretrained given: %s has random weights (seeded with --seed %d)", args.model, args.seed)
    torch.manual_seed(args.seed)
    backbone = create_backbone(args.model, args.pretrained, device=device, cache_dir=args.model_cache_dir)
    results = [_inspect_dataset(name, args, backbone, device, precision) for name in args.datasets]
    _write_outputs(args, formats, backbone, precision.name, results)
    return 0


def _inspect_dataset(name: str, args: argparse.Namespace, backbone, device, precision) -> tuple:
    """(inspection, info) of the zero-shot classifier of `backbone` on benchmark `name`."""
    import torch

    from promptinfo.data import FeatureCache, load_benchmark
    from promptinfo.methods import create_method
    from promptinfo.report.inspection import inspect_benchmark

    data = load_benchmark(name, args.data_root, template_set=TEMPLATE_CHOICES[args.templates])
    method = create_method("zeroshot", backbone, data.classnames, templates=data.templates).to(device)

    def encode(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), precision.autocast(device):
            return method.encode_images(images.to(device)).float()

    inspection, info = inspect_benchmark(
        method, data, FeatureCache(args.feature_cache), precision=precision.name, encode_fn=encode,
        subset=args.subset, seed=args.seed, batch_size=args.batch_size, num_workers=args.num_workers,
        pair_size=args.pair_size, pair_subsets=args.pair_subsets)
    logger.info("%s: accuracy %.2f%% on %d images", name, inspection.metrics["accuracy"], inspection.metrics["n_images"])
    return inspection, info


def _write_outputs(args: argparse.Namespace, formats: list[str], backbone, precision: str, results) -> None:
    from promptinfo.report.formats import to_markdown, write_table
    from promptinfo.report.inspection import inspection_frame, inspection_table
    from promptinfo.report.plots import plot_metric_bars, plot_spectra

    frame = inspection_frame(results, backbone.name, backbone.weights_id)
    table = inspection_table(frame)
    write_table(table, args.out, formats)
    write_json(args.out / "inspect.json", _json_report(args, backbone, precision, results))
    spectra = {name: inspection.spectra for name, (inspection, _) in zip(args.datasets, results)}
    plot_spectra(spectra, args.out / "spectra.png", title=f"Kernel spectra: {backbone.name} ({backbone.weights_id})")
    plot_metric_bars(frame, list(BAR_METRICS), args.out / "metrics.png", title=f"{backbone.name} ({backbone.weights_id})")
    print(to_markdown(table))
    logger.info("wrote inspect.{%s}, inspect.json, spectra.png and metrics.png to %s", ",".join(formats), args.out)


def _json_report(args: argparse.Namespace, backbone, precision: str, results) -> dict:
    return {
        "backbone": backbone.name, "weights": backbone.weights_id, "precision": precision,
        "templates": args.templates, "subset": args.subset, "seed": args.seed,
        "pair_size": args.pair_size, "pair_subsets": args.pair_subsets,
        "datasets": [
            {**info, "metrics": inspection.metrics,
             "spectra": {label: values.tolist() for label, values in inspection.spectra.items()}}
            for inspection, info in results
        ],
    }


if __name__ == "__main__":
    raise SystemExit(main())
