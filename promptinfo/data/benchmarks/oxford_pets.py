"""Oxford-IIIT Pets (Parkhi et al., 2012): 37 cat and dog breeds."""

from pathlib import Path

from promptinfo.data.items import Item
from promptinfo.data.readers import lists_with_holdout, read_text_lines
from promptinfo.data.registry import Benchmark, TorchvisionSource, google_drive, register_benchmark


def read_lists(folder: Path) -> tuple[list[Item], list[Item]]:
    """``annotations/{trainval,test}.txt`` lines ``<image> <class id 1..37> <species> <breed id>``.

    The class name is the image name's breed prefix, lowercased.
    """
    return _read(folder, "trainval.txt"), _read(folder, "test.txt")


def _read(folder: Path, name: str) -> list[Item]:
    items = []
    for line in read_text_lines(folder / "annotations" / name):
        image, class_id = line.split(" ")[:2]
        breed = "_".join(image.split("_")[:-1]).lower()
        items.append(Item(str(folder / "images" / f"{image}.jpg"), int(class_id) - 1, breed))
    return items


OXFORD_PETS = register_benchmark(
    Benchmark(
        key="oxford_pets",
        name="OxfordPets",
        folder="oxford_pets",
        image_dir="images",
        split_file="split_zhou_OxfordPets.json",
        template="a photo of a {}, a type of pet.",
        # Prompt-align ProGrad.public/trainers/prograd.py (CUSTOM_TEMPLATES): the class name last
        method_templates={"prograd": "a type of pet, a photo of a {}."},
        cma_lambda=0.9,
        num_classes=37,
        sizes=(2944, 736, 3669),
        required=("images", "annotations/trainval.txt", "annotations/test.txt"),
        read_fn=lists_with_holdout(read_lists),
        download=TorchvisionSource(
            "OxfordIIITPet",
            moves=(("oxford-iiit-pet/images", "images"), ("oxford-iiit-pet/annotations", "annotations")),
        ),
        files=(google_drive("1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs", "split_zhou_OxfordPets.json"),),
    )
)
