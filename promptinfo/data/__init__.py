"""Benchmarks, the CoOp protocol, transforms and the feature cache.

Importing the package registers the benchmarks (their keys and templates load without torch); the names
below are imported on first access.

Typical use::

    data = load_benchmark("oxford_pets", "/data")                      # full train/val/test
    data = few_shot_subset(data, shots=16, seed=1, subsample="base")   # CoOp protocol
    test_tf = build_transform(backbone.preprocess_cfg, train=False)
    feats = FeatureCache("~/.cache/promptinfo/features").get_or_compute(
        feature_key(backbone, "fp32", data.key, "test"), data.test,
        lambda images: normalize(backbone.encode_image(images)), test_tf)
"""

from promptinfo.data import benchmarks  # noqa: F401  (registers the CoOp benchmarks; torch-free)
from promptinfo.lazy import exports_on_demand

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

__getattr__, __dir__ = exports_on_demand(__name__, {
    "promptinfo.data.errors": ("CorruptImageError", "DataNotFoundError", "DownloadError", "SplitFileError"),
    "promptinfo.data.feature_cache": ("CachedFeatures", "FeatureCache", "feature_key"),
    "promptinfo.data.image_dataset": ("ImageDataset", "collate_skipping", "find_unreadable", "load_rgb"),
    "promptinfo.data.items": ("DatasetSplits", "Item"),
    "promptinfo.data.loading": ("BenchmarkData", "load_benchmark"),
    "promptinfo.data.protocol": ("draw_few_shot", "effective_shots", "few_shot_subset", "subsample_classes"),
    "promptinfo.data.registry": ("Benchmark", "RemoteFile", "TorchvisionSource", "cma_lambda", "get_benchmark",
                                 "list_datasets", "register_benchmark"),
    "promptinfo.data.splits": ("read_split_file", "write_split_file"),
    "promptinfo.data.templates": ("TEMPLATE_SETS", "class_prompts", "select_templates"),
    "promptinfo.data.transforms": ("ImageTransform", "Preprocess", "build_transform"),
})
