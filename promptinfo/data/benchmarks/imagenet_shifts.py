"""ImageNet-A, ImageNet-R and ImageNet-Sketch: test-only class folders (WordNet ids) of ImageNet classes.

They differ only in data: where the images come from, the folder they unpack to, how many classes
and images they hold. Each reads ``<image_dir>/<wnid>/*`` with ImageNet's class names
(``classnames.txt``, copied from a prepared ImageNet), labels in sorted-wnid order.
"""

from promptinfo.data.benchmarks.imagenet import copy_imagenet_classnames
from promptinfo.data.readers import imagenet_style_test
from promptinfo.data.registry import Benchmark, register_benchmark

_THEN_CLASSNAMES = ("  3. prepare imagenet first (for classnames.txt), then run this command again to copy "
                    "classnames.txt here.")


def _register_shift(key: str, name: str, folder: str, image_dir: str, num_classes: int, n_test: int,
                    steps: str) -> Benchmark:
    """Register one ImageNet shift: ``steps`` are the manual download steps (before copying class names)."""
    return register_benchmark(
        Benchmark(
            key=key, name=name, folder=folder, image_dir=image_dir, template="a photo of a {}.",
            num_classes=num_classes, sizes=(0, 0, n_test), required=(image_dir, "classnames.txt"),
            read_fn=imagenet_style_test(image_dir), test_only=True, manual=f"{steps}\n{_THEN_CLASSNAMES}",
            prepare_hook=copy_imagenet_classnames,
        )
    )


IMAGENET_A = _register_shift(
    "imagenet_a", "ImageNetA", "imagenet-adversarial", "imagenet-a", 200, 7500,
    # Hendrycks et al., 2021: natural adversarial images, labels 0..199
    "  1. download https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar "
    "(see https://github.com/hendrycks/natural-adv-examples)\n"
    "  2. tar -xf imagenet-a.tar -C {dir}   (gives {dir}/imagenet-a/n01498041/... , 200 folders)",
)
IMAGENET_R = _register_shift(
    "imagenet_r", "ImageNetR", "imagenet-rendition", "imagenet-r", 200, 30000,
    # Hendrycks et al., 2021: renditions (art, cartoons, ...), labels 0..199
    "  1. download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar "
    "(see https://github.com/hendrycks/imagenet-r)\n"
    "  2. tar -xf imagenet-r.tar -C {dir}   (gives {dir}/imagenet-r/n01443537/... , 200 folders)",
)
IMAGENET_SKETCH = _register_shift(
    "imagenet_sketch", "ImageNetSketch", "imagenet-sketch", "images", 1000, 50889,
    # Wang et al., 2019: sketches of the 1000 ImageNet classes
    "  1. download ImageNet-Sketch.zip from the links in https://github.com/HaohanWang/ImageNet-Sketch\n"
    "  2. unzip it and move its 1000 class folders to {dir}/images/, so that {dir}/images/n01440764/*.JPEG exists",
)
