"""Bad input: missing or incomplete data and inconsistent split files are reported with paths, counts, examples."""

import json

import pytest

from promptinfo.data import DataNotFoundError, SplitFileError, load_benchmark
from tests.datagen import make_benchmark_tree


def test_missing_benchmark_names_path_and_command(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_benchmark("oxford_pets", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "oxford_pets") in message
    assert f"python tools/prepare_data.py oxford_pets --root {tmp_path}" in message


def test_incomplete_layout_names_what_is_missing(tmp_path):
    (tmp_path / "oxford_pets" / "images").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match=r"annotations/trainval.txt.*split_zhou_OxfordPets.json"):
        load_benchmark("oxford_pets", tmp_path)


def test_split_file_pointing_at_missing_images(tmp_path):
    tree = make_benchmark_tree("eurosat", tmp_path, n_per_class=5, num_classes=3, split_file=True)
    removed = sorted((tree.path / "2750" / "Forest").iterdir())[:2]
    for path in removed:
        path.unlink()
    with pytest.raises(DataNotFoundError) as err:
        load_benchmark("eurosat", tmp_path)
    message = str(err.value)
    assert "2 of 15 images" in message and removed[0].name in message
    assert "prepare_data.py eurosat" in message
    assert load_benchmark("eurosat", tmp_path, check_files=False).num_classes == 3


def _rewrite_split(tmp_path, edit):
    tree = make_benchmark_tree("dtd", tmp_path, n_per_class=5, num_classes=3, split_file=True)
    path = tree.path / "split_zhou_DescribableTextures.json"
    split = json.loads(path.read_text())
    edit(split)
    path.write_text(json.dumps(split))


def test_label_with_two_names_is_reported_with_counts(tmp_path):
    def edit(split):
        split["test"][0][2] = "stripy"  # label 0 is also "banded" elsewhere

    _rewrite_split(tmp_path, edit)
    with pytest.raises(SplitFileError, match=r"1 labels carry several class names.*'stripy': 1"):
        load_benchmark("dtd", tmp_path)


def test_name_with_two_labels_is_reported(tmp_path):
    def edit(split):
        split["train"][0][1] = 1
        split["train"][0][2] = "blotchy"
        split["val"][0][2] = "blotchy"

    _rewrite_split(tmp_path, edit)
    with pytest.raises(SplitFileError, match="several"):
        load_benchmark("dtd", tmp_path)


def test_gaps_in_labels_are_reported(tmp_path):
    def edit(split):
        for rows in split.values():
            for row in rows:
                if row[1] == 2:
                    row[1] = 5

    _rewrite_split(tmp_path, edit)
    with pytest.raises(SplitFileError, match="labels must run 0..2"):
        load_benchmark("dtd", tmp_path)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ('{"train": [], "val": []}', "keys"),
    ('{"train": [["a.jpg", "0", "x"]], "val": [], "test": []}', "1 of 1 'train' items"),
])
def test_malformed_split_files(tmp_path, content, match):
    folder = tmp_path / "dtd"
    folder.mkdir()
    (folder / "split_zhou_DescribableTextures.json").write_text(content)
    with pytest.raises(SplitFileError, match=match):
        load_benchmark("dtd", tmp_path)


def test_imagenet_unsorted_val_is_explained(tmp_path):
    tree = make_benchmark_tree("imagenet", tmp_path, n_per_class=5, num_classes=3)
    val = tree.path / "images" / "val"
    for folder in list(val.iterdir()):
        for f in folder.iterdir():
            f.rename(val / f.name)
        folder.rmdir()
    with pytest.raises(DataNotFoundError, match="same class folders"):
        load_benchmark("imagenet", tmp_path)


def test_class_folder_missing_from_classnames(tmp_path):
    tree = make_benchmark_tree("imagenet_sketch", tmp_path, n_per_class=5, num_classes=3)
    (tree.path / "images" / "n99999999").mkdir()
    with pytest.raises(SplitFileError, match="n99999999"):
        load_benchmark("imagenet_sketch", tmp_path)


def test_missing_classnames_file_says_how_to_get_it(tmp_path):
    tree = make_benchmark_tree("imagenet_r", tmp_path, n_per_class=5, num_classes=2)
    (tree.path / "classnames.txt").unlink()
    with pytest.raises(DataNotFoundError, match="classnames.txt"):
        load_benchmark("imagenet_r", tmp_path)
