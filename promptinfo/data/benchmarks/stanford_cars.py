"""Stanford Cars (Krause et al., 2013): 196 car models, named year first ("2012 Tesla Model S")."""

from pathlib import Path

from promptinfo.data.items import Item
from promptinfo.data.matlab import load_mat
from promptinfo.data.readers import lists_with_holdout
from promptinfo.data.registry import Benchmark, google_drive, register_benchmark

MANUAL = """\
The original Stanford Cars server is gone and torchvision can no longer download it. Fetch a mirror of
the original release (e.g. the Kaggle dataset "jessicali9530/stanford-cars-dataset" plus
"cars_test_annos_withlabels.mat") and lay it out as
  {dir}/cars_train/00001.jpg ...
  {dir}/cars_test/00001.jpg ...
  {dir}/devkit/cars_meta.mat, {dir}/devkit/cars_train_annos.mat
  {dir}/cars_test_annos_withlabels.mat
then run this command again to fetch split_zhou_StanfordCars.json and check the counts."""


def read_lists(folder: Path) -> tuple[list[Item], list[Item]]:
    """The devkit's ``.mat`` annotations for ``cars_train`` (train+val) and ``cars_test``."""
    names = [_year_first(str(n)) for n in load_mat(folder / "devkit" / "cars_meta.mat")["class_names"]]
    trainval = _read(folder, "cars_train", folder / "devkit" / "cars_train_annos.mat", names)
    test = _read(folder, "cars_test", folder / "cars_test_annos_withlabels.mat", names)
    return trainval, test


def _read(folder: Path, image_dir: str, annotations: Path, names: list[str]) -> list[Item]:
    records = load_mat(annotations)["annotations"]
    items = []
    for fname, class_id in zip(records["fname"], records["class"]):
        label = int(class_id) - 1
        items.append(Item(str(folder / image_dir / str(fname)), label, names[label]))
    return items


def _year_first(name: str) -> str:
    words = name.split(" ")
    return " ".join([words[-1], *words[:-1]])


STANFORD_CARS = register_benchmark(
    Benchmark(
        key="stanford_cars",
        name="StanfordCars",
        folder="stanford_cars",
        image_dir="",
        split_file="split_zhou_StanfordCars.json",
        template="a photo of a {}.",
        cma_lambda=0.1,
        num_classes=196,
        sizes=(6509, 1635, 8041),
        required=("cars_train", "cars_test", "devkit/cars_meta.mat", "devkit/cars_train_annos.mat",
                  "cars_test_annos_withlabels.mat"),
        read_fn=lists_with_holdout(read_lists),
        files=(google_drive("1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT", "split_zhou_StanfordCars.json"),),
        manual=MANUAL,
    )
)
