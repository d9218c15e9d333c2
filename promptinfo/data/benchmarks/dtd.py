"""Describable Textures (Cimpoi et al., 2014): 47 texture classes."""

from promptinfo.data.readers import per_class_split
from promptinfo.data.registry import Benchmark, TorchvisionSource, google_drive, register_benchmark

DTD = register_benchmark(
    Benchmark(
        key="dtd",
        name="DescribableTextures",
        folder="dtd",
        image_dir="images",
        split_file="split_zhou_DescribableTextures.json",
        template="{} texture.",
        # KgCoOp/trainers/kgcoop.py and Prompt-align ProGrad.public/trainers/prograd.py (CUSTOM_TEMPLATES);
        # CoOp's is "{} texture."
        method_templates={"kgcoop": "a photo of a {}, a type of texture.", "prograd": "a texture of {}."},
        cma_lambda=(0.4, 0.4, 0.7, 0.7, 0.7),  # for 1/2/4/8/16 shots
        num_classes=47,
        sizes=(2820, 1128, 1692),
        required=("images",),
        read_fn=per_class_split("images"),
        download=TorchvisionSource(
            "DTD", moves=(("dtd/dtd/images", "images"), ("dtd/dtd/labels", "labels"), ("dtd/dtd/imdb", "imdb"))
        ),
        files=(google_drive("1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x", "split_zhou_DescribableTextures.json"),),
    )
)
