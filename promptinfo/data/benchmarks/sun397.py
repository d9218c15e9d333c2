"""SUN397 (Xiao et al., 2010): 397 scene categories, named with the qualifier first ("outdoor church")."""

from pathlib import Path

from promptinfo.data.errors import SplitFileError
from promptinfo.data.items import Item
from promptinfo.data.readers import lists_with_holdout, read_text_lines
from promptinfo.data.registry import Benchmark, RemoteFile, TorchvisionSource, google_drive, register_benchmark


def read_lists(folder: Path) -> tuple[list[Item], list[Item]]:
    """Partition 1: ``ClassName.txt`` (``/a/abbey``) and ``{Training,Testing}_01.txt`` (``/a/abbey/sun_x.jpg``)."""
    labels = {line[1:]: i for i, line in enumerate(read_text_lines(folder / "ClassName.txt"))}
    return _read(folder, "Training_01.txt", labels), _read(folder, "Testing_01.txt", labels)


def _read(folder: Path, name: str, labels: dict[str, int]) -> list[Item]:
    items = []
    for line in read_text_lines(folder / name):
        image = line[1:]
        category = image.rsplit("/", 1)[0]
        if category not in labels:
            raise SplitFileError(f"{folder / name}: category {category!r} of {image} is not in ClassName.txt")
        words = category.split("/")[1:]  # drop the initial-letter folder
        items.append(Item(str(folder / "SUN397" / image), labels[category], " ".join(reversed(words))))
    return items


SUN397 = register_benchmark(
    Benchmark(
        key="sun397",
        name="SUN397",
        folder="sun397",
        image_dir="SUN397",
        split_file="split_zhou_SUN397.json",
        template="a photo of a {}.",
        cma_lambda=0.2,
        num_classes=397,
        sizes=(15880, 3970, 19850),
        required=("SUN397", "ClassName.txt", "Training_01.txt", "Testing_01.txt"),
        read_fn=lists_with_holdout(read_lists),
        download=TorchvisionSource("SUN397", moves=(("SUN397", "SUN397"),)),
        files=(
            google_drive("1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq", "split_zhou_SUN397.json"),
            RemoteFile("https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip", "Partitions.zip",
                       extract=True),
        ),
    )
)
