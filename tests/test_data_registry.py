"""The benchmark registry: the 15 CoOp benchmarks, their folders, templates, and registering new ones."""

from pathlib import Path

import pytest

from promptinfo.data import Benchmark, DatasetSplits, Item, get_benchmark, list_datasets, register_benchmark
from promptinfo.data.registry import _REGISTRY
from promptinfo.errors import ConfigError
from tests.datagen import FOLDERS

COOP_KEYS = ["caltech101", "dtd", "eurosat", "fgvc_aircraft", "food101", "imagenet", "imagenet_a", "imagenet_r",
             "imagenet_sketch", "imagenet_v2", "oxford_flowers", "oxford_pets", "stanford_cars", "sun397", "ucf101"]

TEMPLATES = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "sun397": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet": "a photo of a {}.",
}

SPLIT_FILES = {
    "caltech101": "split_zhou_Caltech101.json", "oxford_pets": "split_zhou_OxfordPets.json",
    "stanford_cars": "split_zhou_StanfordCars.json", "oxford_flowers": "split_zhou_OxfordFlowers.json",
    "food101": "split_zhou_Food101.json", "sun397": "split_zhou_SUN397.json",
    "dtd": "split_zhou_DescribableTextures.json", "eurosat": "split_zhou_EuroSAT.json",
    "ucf101": "split_zhou_UCF101.json",
}


def test_all_coop_benchmarks_are_registered():
    assert set(COOP_KEYS) <= set(list_datasets())
    assert list_datasets() == sorted(list_datasets())


@pytest.mark.parametrize("key", COOP_KEYS)
def test_folder_split_file_and_counts_follow_coop(key):
    bench = get_benchmark(key)
    assert bench.folder == FOLDERS[key]
    assert bench.split_file == SPLIT_FILES.get(key)
    assert bench.template.count("{}") == 1
    assert bench.num_classes in (10, 37, 47, 100, 101, 102, 196, 200, 397, 1000)
    if key in TEMPLATES:
        assert bench.template == TEMPLATES[key]
    if bench.split_file:  # every split file has a public address the prepare tool fetches
        assert any(f.dest == bench.split_file for f in bench.files)
    assert bench.download is not None or bench.manual  # automatic or by hand, never nothing


def test_paper_sizes():
    assert get_benchmark("oxford_pets").sizes == (2944, 736, 3669)
    assert get_benchmark("dtd").sizes == (2820, 1128, 1692)
    assert get_benchmark("eurosat").sizes == (13500, 5400, 8100)
    assert get_benchmark("imagenet_a").num_classes == get_benchmark("imagenet_r").num_classes == 200
    assert all(get_benchmark(k).test_only for k in ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"))
    assert get_benchmark("imagenet").val_is_test


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError, match="oxford_pets"):
        get_benchmark("oxford_petz")


def test_registering_a_new_benchmark_is_one_call(tmp_path):
    def read(folder: Path) -> DatasetSplits:
        return DatasetSplits([], [], [Item(str(folder / "a.png"), 0, "thing")])

    bench = Benchmark(key="toy_for_test", name="Toy", folder="toy", template="a {}.", read_fn=read)
    try:
        assert register_benchmark(bench) is bench
        assert "toy_for_test" in list_datasets() and get_benchmark("toy_for_test") is bench
        with pytest.raises(ConfigError, match="already registered"):
            register_benchmark(bench)
        register_benchmark(bench, overwrite=True)
    finally:
        _REGISTRY.pop("toy_for_test", None)


def test_keys_must_be_lowercase():
    with pytest.raises(ConfigError, match="lowercase"):
        register_benchmark(Benchmark(key="Toy", name="Toy", folder="toy", template="{}", read_fn=lambda f: None))


def test_generated_benchmarks_create_their_own_folder(tmp_path):
    from promptinfo.data import load_benchmark

    def render(folder: Path) -> DatasetSplits:
        folder.mkdir(parents=True, exist_ok=True)
        items = [Item(str(folder / f"{y}_{i}.png"), y, f"shape {y}") for y in range(2) for i in range(3)]
        for item in items:
            Path(item.path).write_bytes(b"")
        return DatasetSplits(items[::3], items[1::3], items[2::3], source="rendered")

    bench = Benchmark(key="toy_generated", name="ToyGen", folder="toygen", template="a {}.", read_fn=render,
                      generated=True)
    register_benchmark(bench)
    try:
        data = load_benchmark("toy_generated", tmp_path)
        assert data.classnames == ["shape 0", "shape 1"] and data.split_source == "rendered"
    finally:
        _REGISTRY.pop("toy_generated", None)
