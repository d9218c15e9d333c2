"""UCF101 (Soomro et al., 2012): 101 actions, one middle frame per video, CamelCase names split by "_"."""

import re
from pathlib import Path

from promptinfo.data.errors import SplitFileError
from promptinfo.data.items import Item
from promptinfo.data.readers import lists_with_holdout, read_text_lines
from promptinfo.data.registry import Benchmark, google_drive, register_benchmark

FRAMES_PAGE = "https://drive.google.com/file/d/10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O/view"
MANUAL = f"""\
UCF101 is used through the middle frame of every video, which the CoOp authors extracted:
  1. download UCF-101-midframes.zip from {FRAMES_PAGE}
  2. unzip it into {{dir}}/ so that {{dir}}/UCF-101-midframes/Apply_Eye_Makeup/v_ApplyEyeMakeup_g01_c01.jpg exists
  3. run this command again to fetch split_zhou_UCF101.json and check the counts.
Without the split file, the split is rebuilt from the official lists: unzip
UCF101TrainTestSplits-RecognitionTask.zip (https://www.crcv.ucf.edu/data/UCF101.php) into {{dir}}/ucfTrainTestlist/."""


def split_camel_case(action: str) -> str:
    """``"ApplyEyeMakeup"`` -> ``"Apply_Eye_Makeup"`` (the original's frame-folder and class names)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


def read_lists(folder: Path) -> tuple[list[Item], list[Item]]:
    """``ucfTrainTestlist/classInd.txt`` (``1 ApplyEyeMakeup``) and split lists 01 (``Action/v_....avi [id]``)."""
    labels = {}
    for line in read_text_lines(folder / "ucfTrainTestlist" / "classInd.txt"):
        class_id, action = line.split(" ")
        labels[action] = int(class_id) - 1
    return _read(folder, "trainlist01.txt", labels), _read(folder, "testlist01.txt", labels)


def _read(folder: Path, name: str, labels: dict[str, int]) -> list[Item]:
    items = []
    for line in read_text_lines(folder / "ucfTrainTestlist" / name):
        action, video = line.split(" ")[0].split("/")
        if action not in labels:
            raise SplitFileError(f"{folder / 'ucfTrainTestlist' / name}: action {action!r} is not in classInd.txt")
        renamed = split_camel_case(action)
        path = folder / "UCF-101-midframes" / renamed / video.replace(".avi", ".jpg")
        items.append(Item(str(path), labels[action], renamed))
    return items


UCF101 = register_benchmark(
    Benchmark(
        key="ucf101",
        name="UCF101",
        folder="ucf101",
        image_dir="UCF-101-midframes",
        split_file="split_zhou_UCF101.json",
        template="a photo of a person doing {}.",
        cma_lambda=(0.8, 0.8, 0.8, 0.6, 0.6),  # for 1/2/4/8/16 shots
        num_classes=101,
        sizes=(7639, 1898, 3783),
        required=("UCF-101-midframes", "ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt",
                  "ucfTrainTestlist/testlist01.txt"),
        read_fn=lists_with_holdout(read_lists),
        files=(google_drive("1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y", "split_zhou_UCF101.json"),),
        manual=MANUAL,
    )
)
