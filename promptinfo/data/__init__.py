"""Benchmarks, the CoOp protocol, transforms and the feature cache.

Typical use::

    data = load_benchmark("oxford_pets", "/data")                      # full train/val/test
    data = few_shot_subset(data, shots=16, seed=1, subsample="base")   # CoOp protocol
    test_tf = build_transform(backbone.preprocess_cfg, train=False)
    feats = FeatureCache("~/.cache/promptinfo/features").get_or_compute(
        feature_key(backbone, "fp32", data.key, "test"), data.test,
        lambda images: normalize(backbone.encode_image(images)), test_tf)
"""

from promptinfo.data import benchmarks  # noqa: F401  (registers the CoOp benchmarks)
from promptinfo.data.errors import CorruptImageError, DataNotFoundError, DownloadError, SplitFileError
from promptinfo.data.feature_cache import CachedFeatures, FeatureCache, feature_key
from promptinfo.data.image_dataset import ImageDataset, collate_skipping, find_unreadable, load_rgb
from promptinfo.data.items import DatasetSplits, Item
from promptinfo.data.loading import BenchmarkData, load_benchmark
from promptinfo.data.protocol import draw_few_shot, effective_shots, few_shot_subset, subsample_classes
from promptinfo.data.registry import (
    Benchmark,
    RemoteFile,
    TorchvisionSource,
    cma_lambda,
    get_benchmark,
    list_datasets,
    register_benchmark,
)
from promptinfo.data.splits import read_split_file, write_split_file
from promptinfo.data.templates import TEMPLATE_SETS, class_prompts, select_templates
from promptinfo.data.transforms import ImageTransform, Preprocess, build_transform

__all__ = [
    "Benchmark",
    "BenchmarkData",
    "CachedFeatures",
    "CorruptImageError",
    "DataNotFoundError",
    "DatasetSplits",
    "DownloadError",
    "FeatureCache",
    "feature_key",
    "ImageDataset",
    "ImageTransform",
    "Item",
    "Preprocess",
    "RemoteFile",
    "SplitFileError",
    "TEMPLATE_SETS",
    "TorchvisionSource",
    "build_transform",
    "class_prompts",
    "cma_lambda",
    "collate_skipping",
    "draw_few_shot",
    "effective_shots",
    "few_shot_subset",
    "find_unreadable",
    "get_benchmark",
    "list_datasets",
    "load_benchmark",
    "load_rgb",
    "read_split_file",
    "register_benchmark",
    "select_templates",
    "subsample_classes",
    "write_split_file",
]
