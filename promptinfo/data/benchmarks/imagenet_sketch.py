"""ImageNet-Sketch (Wang et al., 2019): 50,889 sketches of the 1000 ImageNet classes."""

from promptinfo.data.benchmarks.imagenet import copy_imagenet_classnames
from promptinfo.data.readers import imagenet_style_test
from promptinfo.data.registry import Benchmark, register_benchmark

MANUAL = """\
  1. download ImageNet-Sketch.zip from the links in https://github.com/HaohanWang/ImageNet-Sketch
  2. unzip it and move its 1000 class folders to {dir}/images/, so that {dir}/images/n01440764/*.JPEG exists
  3. prepare imagenet first (for classnames.txt), then run this command again to copy classnames.txt here."""

IMAGENET_SKETCH = register_benchmark(
    Benchmark(
        key="imagenet_sketch",
        name="ImageNetSketch",
        folder="imagenet-sketch",
        image_dir="images",
        template="a photo of a {}.",
        num_classes=1000,
        sizes=(0, 0, 50889),
        required=("images", "classnames.txt"),
        read_fn=imagenet_style_test("images"),
        test_only=True,
        manual=MANUAL,
        prepare_hook=copy_imagenet_classnames,
    )
)
