"""ImageNet (Deng et al., 2009): 1000 classes named as in CLIP; the official val set is the test set."""

import shutil
from pathlib import Path

from promptinfo.data._io import list_subfolders
from promptinfo.data.errors import DataNotFoundError
from promptinfo.data.items import DatasetSplits
from promptinfo.data.readers import read_class_folders, read_imagenet_classnames
from promptinfo.data.registry import Benchmark, google_drive, register_benchmark

CLASSNAMES = google_drive("1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF", "classnames.txt")
MANUAL = """\
ImageNet needs an account at https://image-net.org (ILSVRC2012). Download ILSVRC2012_img_train.tar,
ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz, then either
  a) put the three archives in {dir}/ and let torchvision sort the val images into class folders:
       python -c "import torchvision; [torchvision.datasets.ImageNet('{dir}', split=s) for s in ('train', 'val')]"
       mkdir -p {dir}/images && mv {dir}/train {dir}/val {dir}/images/
  b) or link existing class-folder trees:  mkdir -p {dir}/images && ln -s /path/to/train /path/to/val {dir}/images/
so that {dir}/images/train/n01440764/*.JPEG and {dir}/images/val/n01440764/*.JPEG exist (1000 folders each).
Then run this command again: it writes {dir}/classnames.txt (CLIP's class names in wnid order)."""


def read_split(folder: Path) -> DatasetSplits:
    """``images/{train,val}/<wnid>/*`` labelled by sorted wnid and named by ``classnames.txt``."""
    classnames = read_imagenet_classnames(folder / "classnames.txt")
    train_dir, val_dir = folder / "images" / "train", folder / "images" / "val"
    wnids = list_subfolders(train_dir)
    if list_subfolders(val_dir) != wnids:
        raise DataNotFoundError(
            f"{val_dir} must hold the same class folders as {train_dir} ({len(wnids)}); the official val images "
            "come unsorted: sort them into wnid folders (see datasets/README.md, ImageNet)"
        )
    train = read_class_folders(train_dir, wnids, classnames, str(train_dir))
    test = read_class_folders(val_dir, wnids, classnames, str(val_dir))
    return DatasetSplits(train, [], test, source="images/{train,val} folders", listed=True)


def write_classnames(folder: Path) -> list[str]:
    """Write ``classnames.txt`` from the class folders and CLIP's ImageNet names (open_clip ships them)."""
    target = folder / "classnames.txt"
    if target.is_file():
        return []
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    for split in ("train", "val"):
        wnids = list_subfolders(folder / "images" / split) if (folder / "images" / split).is_dir() else []
        if len(wnids) == len(IMAGENET_CLASSNAMES):
            lines = [f"{w} {n}" for w, n in zip(wnids, IMAGENET_CLASSNAMES)]
            target.write_text("\n".join(lines) + "\n", encoding="utf-8")
            return [f"wrote {target} from the {split} class folders and CLIP's class names"]
    return []


def copy_imagenet_classnames(folder: Path) -> list[str]:
    """Copy ``classnames.txt`` from the sibling ``imagenet/`` folder (the variants reuse it)."""
    source, target = folder.parent / "imagenet" / "classnames.txt", folder / "classnames.txt"
    if target.is_file() or not source.is_file():
        return []
    shutil.copyfile(source, target)
    return [f"copied {source} to {target}"]


IMAGENET = register_benchmark(
    Benchmark(
        key="imagenet",
        name="ImageNet",
        folder="imagenet",
        image_dir="images",
        template="a photo of a {}.",
        cma_lambda=0.1,
        num_classes=1000,
        sizes=(1281167, 50000, 50000),
        required=("images/train", "images/val", "classnames.txt"),
        read_fn=read_split,
        val_is_test=True,
        files=(CLASSNAMES,),
        manual=MANUAL,
        prepare_hook=write_classnames,
    )
)
