"""Oxford Flowers102 (Nilsback and Zisserman, 2008): 102 flower species."""

from collections import defaultdict
from pathlib import Path

from promptinfo.data.errors import prepare_command
from promptinfo.io import read_json
from promptinfo.data.items import DatasetSplits
from promptinfo.data.matlab import load_mat
from promptinfo.data.registry import Benchmark, TorchvisionSource, google_drive, register_benchmark
from promptinfo.data.splits import split_per_class


def read_split(folder: Path) -> DatasetSplits:
    """``imagelabels.mat`` (1-based label of ``jpg/image_%05d.jpg``) named by ``cat_to_name.json``, cut 50/20/30.

    Classes are shuffled in order of first appearance in the label file, as in the original.
    """
    by_label: dict[int, list[str]] = defaultdict(list)
    for i, label in enumerate(load_mat(folder / "imagelabels.mat")["labels"]):
        by_label[int(label)].append(str(folder / "jpg" / f"image_{i + 1:05d}.jpg"))
    fetch = f"Fetch it again with `{prepare_command('oxford_flowers', str(folder.parent))}`."
    names = read_json(folder / "cat_to_name.json", fix=fetch)
    groups = [(label - 1, names[str(label)], paths) for label, paths in by_label.items()]
    return DatasetSplits(*split_per_class(groups), source="rebuilt")


OXFORD_FLOWERS = register_benchmark(
    Benchmark(
        key="oxford_flowers",
        name="OxfordFlowers",
        folder="oxford_flowers",
        image_dir="jpg",
        split_file="split_zhou_OxfordFlowers.json",
        template="a photo of a {}, a type of flower.",
        # Prompt-align ProGrad.public/trainers/prograd.py (CUSTOM_TEMPLATES): the class name last
        method_templates={"prograd": "a type of flower, a photo of a {}."},
        cma_lambda=0.7,
        num_classes=102,
        sizes=(4093, 1633, 2463),
        required=("jpg", "imagelabels.mat", "cat_to_name.json"),
        read_fn=read_split,
        download=TorchvisionSource(
            "Flowers102",
            moves=(("flowers-102/jpg", "jpg"), ("flowers-102/imagelabels.mat", "imagelabels.mat"),
                   ("flowers-102/setid.mat", "setid.mat")),
        ),
        files=(
            google_drive("1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT", "split_zhou_OxfordFlowers.json"),
            google_drive("1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0", "cat_to_name.json"),
        ),
    )
)
