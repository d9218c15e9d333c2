"""Procedural coloured shapes (``promptinfo.data.procedural``): 48 colour-shape classes rendered
offline on first use, so the whole toolkit runs without downloads."""

from pathlib import Path

from promptinfo.data import procedural
from promptinfo.data.items import DatasetSplits
from promptinfo.data.registry import Benchmark, register_benchmark
from promptinfo.data.splits import read_split_file


def generated_reader(spec: procedural.ProceduralSpec):
    """``read_fn`` that renders the benchmark into its folder if needed, then reads its split file."""

    def read(folder: Path) -> DatasetSplits:
        folder = procedural.write_procedural_dataset(folder.parent, spec, name=folder.name)
        return read_split_file(folder / procedural.SPLIT_FILE, folder / "images")

    return read


def _benchmark(key: str, spec: procedural.ProceduralSpec) -> Benchmark:
    n = len(spec.classes)
    return Benchmark(
        key=key,
        name="Procedural",
        folder=key,
        image_dir="images",
        split_file=procedural.SPLIT_FILE,
        template=procedural.TEMPLATES[0],
        num_classes=n,
        sizes=tuple(n * spec.per_class(s) for s in procedural.SPLITS),
        read_fn=generated_reader(spec),
        generated=True,
    )


PROCEDURAL = register_benchmark(_benchmark("procedural", procedural.VARIANTS["default"]))
PROCEDURAL_SMALL = register_benchmark(_benchmark("procedural_small", procedural.VARIANTS["small"]))
