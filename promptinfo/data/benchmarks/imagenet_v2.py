"""ImageNetV2 matched-frequency (Recht et al., 2019): 10,000 test images of the 1000 ImageNet classes."""

from pathlib import Path

from promptinfo.data.benchmarks.imagenet import copy_imagenet_classnames
from promptinfo.data.errors import DataNotFoundError
from promptinfo.data.items import DatasetSplits, Item
from promptinfo.data.readers import image_files, read_imagenet_classnames
from promptinfo.data.registry import Benchmark, register_benchmark

IMAGE_DIR = "imagenetv2-matched-frequency-format-val"
MANUAL = f"""\
  1. download the MatchedFrequency test set, imagenetv2-matched-frequency.tar.gz, from the address given in
     https://github.com/modestyachts/ImageNetV2 (originally
     https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz)
  2. tar -xzf imagenetv2-matched-frequency.tar.gz -C {{dir}}   (gives {{dir}}/{IMAGE_DIR}/0 ... /999)
  3. prepare imagenet first (for classnames.txt), then run this command again to copy classnames.txt here."""


def read_split(folder: Path) -> DatasetSplits:
    """``<IMAGE_DIR>/<label>/*`` where the folder name is the ImageNet label index."""
    classnames = list(read_imagenet_classnames(folder / "classnames.txt").values())
    missing = [str(y) for y in range(len(classnames)) if not (folder / IMAGE_DIR / str(y)).is_dir()]
    if missing:
        raise DataNotFoundError(f"{folder / IMAGE_DIR} lacks {len(missing)} class folders, e.g. {missing[:5]}")
    items = [Item(p, y, name) for y, name in enumerate(classnames) for p in image_files(folder / IMAGE_DIR / str(y))]
    return DatasetSplits([], [], items, source="class folders", listed=True)


IMAGENET_V2 = register_benchmark(
    Benchmark(
        key="imagenet_v2",
        name="ImageNetV2",
        folder="imagenetv2",
        image_dir=IMAGE_DIR,
        template="a photo of a {}.",
        num_classes=1000,
        sizes=(0, 0, 10000),
        required=(IMAGE_DIR, "classnames.txt"),
        read_fn=read_split,
        test_only=True,
        manual=MANUAL,
        prepare_hook=copy_imagenet_classnames,
    )
)
