"""Caltech101 (Fei-Fei et al., 2004): 100 object classes after dropping the background and easy-faces folders."""

from promptinfo.data.readers import per_class_split
from promptinfo.data.registry import Benchmark, TorchvisionSource, google_drive, register_benchmark

IGNORED = ("BACKGROUND_Google", "Faces_easy")
RENAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}

CALTECH101 = register_benchmark(
    Benchmark(
        key="caltech101",
        name="Caltech101",
        folder="caltech-101",
        image_dir="101_ObjectCategories",
        split_file="split_zhou_Caltech101.json",
        template="a photo of a {}.",
        cma_lambda=0.8,
        num_classes=100,
        sizes=(4128, 1649, 2465),
        required=("101_ObjectCategories",),
        read_fn=per_class_split("101_ObjectCategories", ignored=IGNORED, renames=RENAMES),
        download=TorchvisionSource("Caltech101", moves=(("caltech101/101_ObjectCategories", "101_ObjectCategories"),)),
        files=(google_drive("1hyarUivQE36mY6jSomru6Fjd-JzwcCzN", "split_zhou_Caltech101.json"),),
    )
)
