"""FGVC-Aircraft (Maji et al., 2013): 100 aircraft variants with official train/val/test lists."""

from pathlib import Path

from promptinfo.data.errors import SplitFileError
from promptinfo.data.items import DatasetSplits, Item
from promptinfo.data.readers import read_text_lines
from promptinfo.data.registry import Benchmark, TorchvisionSource, register_benchmark


def read_split(folder: Path) -> DatasetSplits:
    """``variants.txt`` gives label order; ``images_variant_{split}.txt`` lines are ``<image id> <variant>``."""
    labels = {name: i for i, name in enumerate(read_text_lines(folder / "variants.txt"))}
    train, val, test = (_read(folder, f"images_variant_{s}.txt", labels) for s in ("train", "val", "test"))
    return DatasetSplits(train, val, test, source="images_variant_{train,val,test}.txt")


def _read(folder: Path, name: str, labels: dict[str, int]) -> list[Item]:
    items = []
    for line in read_text_lines(folder / name):
        image, _, variant = line.partition(" ")
        if variant not in labels:
            raise SplitFileError(f"{folder / name}: variant {variant!r} of image {image} is not in variants.txt")
        items.append(Item(str(folder / "images" / f"{image}.jpg"), labels[variant], variant))
    return items


FGVC_AIRCRAFT = register_benchmark(
    Benchmark(
        key="fgvc_aircraft",
        name="FGVCAircraft",
        folder="fgvc_aircraft",
        image_dir="images",
        template="a photo of a {}, a type of aircraft.",
        # Prompt-align ProGrad.public/trainers/prograd.py (CUSTOM_TEMPLATES): the class name last
        method_templates={"prograd": "a type of aircraft, a photo of a {}."},
        cma_lambda=0.8,
        num_classes=100,
        sizes=(3334, 3333, 3333),
        required=("images", "variants.txt", "images_variant_train.txt", "images_variant_val.txt",
                  "images_variant_test.txt"),
        read_fn=read_split,
        download=TorchvisionSource("FGVCAircraft", moves=(("fgvc-aircraft-2013b/data", "."),)),
    )
)
