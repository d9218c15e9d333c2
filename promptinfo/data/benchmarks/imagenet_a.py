"""ImageNet-A (Hendrycks et al., 2021): 7,500 natural adversarial images of 200 ImageNet classes, labels 0..199."""

from promptinfo.data.benchmarks.imagenet import copy_imagenet_classnames
from promptinfo.data.readers import imagenet_style_test
from promptinfo.data.registry import Benchmark, register_benchmark

MANUAL = """\
  1. download https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar (see https://github.com/hendrycks/natural-adv-examples)
  2. tar -xf imagenet-a.tar -C {dir}   (gives {dir}/imagenet-a/n01498041/... , 200 folders)
  3. prepare imagenet first (for classnames.txt), then run this command again to copy classnames.txt here."""

IMAGENET_A = register_benchmark(
    Benchmark(
        key="imagenet_a",
        name="ImageNetA",
        folder="imagenet-adversarial",
        image_dir="imagenet-a",
        template="a photo of a {}.",
        num_classes=200,
        sizes=(0, 0, 7500),
        required=("imagenet-a", "classnames.txt"),
        read_fn=imagenet_style_test("imagenet-a"),
        test_only=True,
        manual=MANUAL,
        prepare_hook=copy_imagenet_classnames,
    )
)
