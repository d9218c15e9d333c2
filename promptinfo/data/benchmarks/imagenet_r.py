"""ImageNet-R (Hendrycks et al., 2021): 30,000 renditions of 200 ImageNet classes, labels 0..199."""

from promptinfo.data.benchmarks.imagenet import copy_imagenet_classnames
from promptinfo.data.readers import imagenet_style_test
from promptinfo.data.registry import Benchmark, register_benchmark

MANUAL = """\
  1. download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar (see https://github.com/hendrycks/imagenet-r)
  2. tar -xf imagenet-r.tar -C {dir}   (gives {dir}/imagenet-r/n01443537/... , 200 folders)
  3. prepare imagenet first (for classnames.txt), then run this command again to copy classnames.txt here."""

IMAGENET_R = register_benchmark(
    Benchmark(
        key="imagenet_r",
        name="ImageNetR",
        folder="imagenet-rendition",
        image_dir="imagenet-r",
        template="a photo of a {}.",
        num_classes=200,
        sizes=(0, 0, 30000),
        required=("imagenet-r", "classnames.txt"),
        read_fn=imagenet_style_test("imagenet-r"),
        test_only=True,
        manual=MANUAL,
        prepare_hook=copy_imagenet_classnames,
    )
)
