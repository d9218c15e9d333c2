"""Every benchmark reader on a generated tree in its real layout: classes, names, labels, split sizes."""

import json
import logging
import math
from pathlib import Path

import pytest

from promptinfo.data import DataNotFoundError, get_benchmark, list_datasets, load_benchmark, subsample_classes
from tests.datagen import NEEDS_SCIPY, make_benchmark_tree
from tests.test_data_registry import COOP_KEYS

N = 10  # images per class


def _needs(key):
    if key in NEEDS_SCIPY:
        pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """One generated tree per benchmark (without split files), built lazily and shared by the module."""
    built = {}

    def get(key):
        if key not in built:
            root = tmp_path_factory.mktemp(key)
            built[key] = (root, make_benchmark_tree(key, root, n_per_class=N))
        return built[key]

    return get


@pytest.mark.parametrize("key", COOP_KEYS)
def test_reader_finds_classes_names_and_sizes(key, trees, caplog):
    _needs(key)
    root, tree = trees(key)
    bench = get_benchmark(key)
    with caplog.at_level(logging.WARNING):
        data = load_benchmark(key, root)
    assert data.classnames == tree.classnames
    assert data.num_classes == len(tree.classnames)
    labels = {i.label for i in data.test}
    assert labels == set(range(data.num_classes))
    for items in (data.train, data.val, data.test):
        for item in items:
            assert data.classnames[item.label] == item.classname
            assert item.path.startswith(str(data.root))
    if bench.test_only:
        assert data.train == [] and data.val == [] and len(data.test) == tree.n_images
    elif bench.val_is_test:
        assert data.val is data.test and len(data.train) == len(data.test) == N * data.num_classes
    else:
        assert len(data.train) + len(data.val) + len(data.test) == tree.n_images
        assert {p for p, _, _ in tree.manifest} == {
            str(Path(i.path).relative_to(data.root)) for i in data.train + data.val + data.test
        }


@pytest.mark.parametrize("key", ["caltech101", "dtd", "eurosat", "food101", "oxford_flowers"])
def test_per_class_cut_is_50_20_30(key, trees):
    _needs(key)
    root, _ = trees(key)
    data = load_benchmark(key, root)
    for label in range(data.num_classes):
        counts = [sum(i.label == label for i in s) for s in (data.train, data.val, data.test)]
        assert counts == [round(N * 0.5), round(N * 0.2), N - round(N * 0.5) - round(N * 0.2)]


@pytest.mark.parametrize("key", ["oxford_pets", "stanford_cars", "sun397", "ucf101"])
def test_official_trainval_loses_20_percent_to_val(key, trees):
    _needs(key)
    root, tree = trees(key)
    data = load_benchmark(key, root)
    for label in range(data.num_classes):
        n_train, n_val = (sum(i.label == label for i in s) for s in (data.train, data.val))
        assert n_val == round((n_train + n_val) * 0.2) >= 1


def test_missing_split_file_is_rebuilt_saved_and_then_used_as_is(tmp_path, caplog):
    make_benchmark_tree("dtd", tmp_path, n_per_class=N)
    split_path = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    assert not split_path.exists()
    with caplog.at_level(logging.WARNING):
        first = load_benchmark("dtd", tmp_path)
    assert split_path.is_file() and first.split_source == "rebuilt"
    assert "Published numbers used the original file" in caplog.text
    saved = json.loads(split_path.read_text())
    assert [len(saved[s]) for s in ("train", "val", "test")] == [len(first.train), len(first.val), len(first.test)]
    assert saved["train"][0][0].count("/") == 1  # relative to images/, like the real files
    second = load_benchmark("dtd", tmp_path)
    assert second.split_source == split_path.name
    assert (second.train, second.val, second.test) == (first.train, first.val, first.test)


def test_rebuilding_is_deterministic(tmp_path):
    a = make_benchmark_tree("eurosat", tmp_path / "a", n_per_class=N)
    b = make_benchmark_tree("eurosat", tmp_path / "b", n_per_class=N)
    da, db = load_benchmark("eurosat", tmp_path / "a"), load_benchmark("eurosat", tmp_path / "b")
    rel = lambda d: [(str(Path(i.path).relative_to(d.root)), i.label) for i in d.train]  # noqa
    assert rel(da) == rel(db) and a.n_images == b.n_images


def test_present_split_file_is_used_as_is(tmp_path):
    tree = make_benchmark_tree("caltech101", tmp_path, n_per_class=N, split_file=True)
    split = json.loads((tree.path / "split_zhou_Caltech101.json").read_text())
    data = load_benchmark("caltech101", tmp_path)
    assert data.split_source == "split_zhou_Caltech101.json"
    got = [[str(Path(i.path).relative_to(data.image_root)), i.label, i.classname]
           for i in data.train]
    assert got == split["train"]
    assert len(data.val) == len(split["val"]) and len(data.test) == len(split["test"])


def test_caltech_drops_background_and_easy_faces_and_renames(trees):
    root, _ = trees("caltech101")
    names = load_benchmark("caltech101", root).classnames
    assert "airplane" in names and "face" in names and "leopard" in names and "motorbike" in names
    assert not {"BACKGROUND_Google", "Faces_easy", "airplanes", "Faces"} & set(names)


def test_eurosat_names_are_phrases_and_prompts_use_them(trees):
    root, _ = trees("eurosat")
    data = load_benchmark("eurosat", root)
    assert data.classnames[0] == "Annual Crop Land" and "Sea or Lake" in data.classnames
    assert data.prompts()[0] == "a centered satellite photo of Annual Crop Land."


def test_ucf101_splits_camel_case_and_prompts_drop_underscores(trees):
    root, _ = trees("ucf101")
    data = load_benchmark("ucf101", root)
    assert data.classnames[0] == "Apply_Eye_Makeup" and "Yo_Yo" in data.classnames
    assert data.prompts()[0] == "a photo of a person doing Apply Eye Makeup."
    assert all("/UCF-101-midframes/Apply_Eye_Makeup/" in i.path for i in data.test if i.label == 0)


def test_sun397_puts_qualifier_first(trees):
    root, _ = trees("sun397")
    assert load_benchmark("sun397", root).classnames[:3] == ["abbey", "outdoor apartment_building", "shop bakery"]


def test_pets_lowercase_breeds_and_cars_year_first(trees):
    root, _ = trees("oxford_pets")
    assert load_benchmark("oxford_pets", root).classnames[:2] == ["abyssinian", "american_bulldog"]
    pytest.importorskip("scipy")
    root, _ = trees("stanford_cars")
    data = load_benchmark("stanford_cars", root)
    assert data.classnames[0] == "2000 AM General Hummer SUV"
    assert data.train[0].path.startswith(str(data.root / "cars_train"))


def test_imagenet_a_and_r_reindex_their_200_class_subset(trees):
    for key in ("imagenet_a", "imagenet_r"):
        root, tree = trees(key)
        data = load_benchmark(key, root)
        lines = (tree.path / "classnames.txt").read_text().splitlines()
        assert len(lines) == 2 * data.num_classes  # classnames.txt lists more classes than the folders
        assert data.classnames == [line.split(" ", 1)[1] for line in lines[::2]]
        assert sorted({i.label for i in data.test}) == list(range(data.num_classes))


def test_imagenet_val_is_test_and_v2_labels_are_folder_numbers(trees):
    root, _ = trees("imagenet")
    data = load_benchmark("imagenet", root)
    assert data.val is data.test and data.classnames[0] == "tench"
    root, _ = trees("imagenet_v2")
    v2 = load_benchmark("imagenet_v2", root)
    assert all(f"format-val/{i.label}/" in i.path for i in v2.test)


def test_template_sets(trees):
    root, _ = trees("dtd")
    assert load_benchmark("dtd", root).templates == ["{} texture."]
    ensemble = load_benchmark("dtd", root, template_set="imagenet7").templates
    assert len(ensemble) == 8 and ensemble[-1] == "{} texture." and "itap of a {}." in ensemble
    assert len(load_benchmark("dtd", root, template_set="imagenet80").templates) == 80
    root, _ = trees("imagenet")
    assert len(load_benchmark("imagenet", root, template_set="imagenet7").templates) == 7


def test_counts_differing_from_the_paper_warn_or_raise(trees, caplog):
    root, _ = trees("dtd")
    with caplog.at_level(logging.WARNING):
        load_benchmark("dtd", root)
    assert "classes 7 (paper: 47)" in caplog.text
    with pytest.raises(DataNotFoundError, match="paper: 2820"):
        load_benchmark("dtd", root, strict_counts=True)


def test_every_registered_benchmark_is_documented():
    readme = (Path(__file__).parents[1] / "datasets" / "README.md").read_text()
    for key in list_datasets():
        if key in COOP_KEYS:
            assert f"`{key}`" in readme and f"{get_benchmark(key).folder}/" in readme


def test_base_new_halves_are_ceil_floor(trees):
    root, _ = trees("dtd")
    data = load_benchmark("dtd", root)
    base, new = subsample_classes(data, "base"), subsample_classes(data, "new")
    assert base.num_classes == math.ceil(7 / 2) and new.num_classes == 3
    assert base.classnames + new.classnames == data.classnames
