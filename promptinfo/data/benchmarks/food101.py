"""Food-101 (Bossard et al., 2014): 101 dishes."""

from promptinfo.data.readers import per_class_split
from promptinfo.data.registry import Benchmark, TorchvisionSource, google_drive, register_benchmark

FOOD101 = register_benchmark(
    Benchmark(
        key="food101",
        name="Food101",
        folder="food-101",
        image_dir="images",
        split_file="split_zhou_Food101.json",
        template="a photo of {}, a type of food.",
        # Prompt-align ProGrad.public/trainers/prograd.py (CUSTOM_TEMPLATES): the class name last
        method_templates={"prograd": "a type of food, a photo of {}."},
        cma_lambda=0.8,
        num_classes=101,
        sizes=(50500, 20200, 30300),
        required=("images",),
        read_fn=per_class_split("images"),
        download=TorchvisionSource("Food101", moves=(("food-101/images", "images"), ("food-101/meta", "meta"))),
        files=(google_drive("1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl", "split_zhou_Food101.json"),),
    )
)
