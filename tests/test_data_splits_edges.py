"""Split files and the original's split builders at their edges: the smallest classes each cut accepts,
the defaults (20% val, seed 1), and every refusal message with the counts and examples it promises."""

from __future__ import annotations

import json
import random
import re

import pytest

from promptinfo.data import Item, subsample_classes
from promptinfo.data.errors import DataNotFoundError, SplitFileError
from promptinfo.data.items import DatasetSplits
from promptinfo.data.splits import (
    check_files_exist,
    read_split_file,
    split_fingerprint,
    split_per_class,
    split_trainval,
    write_split_file,
)
from tests.test_data_protocol import make_data


def _write(tmp_path, raw) -> str:
    path = tmp_path / "split_zhou_Toy.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_split_files_that_are_not_three_lists_say_what_they_found(tmp_path):
    path = _write(tmp_path, [1, 2])
    with pytest.raises(SplitFileError, match=rf"^{re.escape(path)} must be a JSON object with keys "
                                             r"\['train', 'val', 'test'\]; found list$"):
        read_split_file(path, tmp_path)
    path = _write(tmp_path, {"val": [], "train": []})
    with pytest.raises(SplitFileError, match=r"; found \['train', 'val'\]$"):
        read_split_file(path, tmp_path)
    path = _write(tmp_path, {"train": [], "val": {}, "test": []})
    with pytest.raises(SplitFileError, match=rf"^{re.escape(path)}: 'val' must be a list of \[path, label, classname\], "
                                             r"got dict$"):
        read_split_file(path, tmp_path)


def test_malformed_items_are_counted_and_the_first_three_shown(tmp_path):
    good = ["a.jpg", 0, "cat"]
    bad = [["b.jpg", 0], [3, 0, "cat"], "abc", ["c.jpg", -1, "cat"], ["d.jpg", True, "cat"]]
    path = _write(tmp_path, {"train": [good, *bad], "val": [], "test": []})
    shown = re.escape(str([(1, ["b.jpg", 0]), (2, [3, 0, "cat"]), (3, "abc")]))
    with pytest.raises(SplitFileError, match=rf"^{re.escape(path)}: 5 of 6 'train' items are not \[relative path, "
                                             rf"non-negative int label, class name\], e\.g\. {shown}$"):
        read_split_file(path, tmp_path)


def test_label_and_name_disagreements_are_counted(tmp_path):
    raw = {"train": [["a.jpg", 0, "cat"], ["b.jpg", 0, "cat"], ["c.jpg", 0, "dog"], ["d.jpg", 1, "cow"]],
           "val": [["e.jpg", 2, "cow"], ["f.jpg", 2, "cow"]], "test": []}
    path = _write(tmp_path, raw)
    message = (rf"^{re.escape(path)}: 1 labels carry several class names, e\.g\. \{{0: \{{'cat': 2, 'dog': 1\}}\}}; "
               r"1 class names carry several labels, e\.g\. \{'cow': \{1: 1, 2: 2\}\}\. "
               r"Fetch the original split file again\.$")
    with pytest.raises(SplitFileError, match=message):
        read_split_file(path, tmp_path)


def test_written_split_files_are_one_line_and_read_back(tmp_path):
    items = [Item(str(tmp_path / "img" / f"{i}.jpg"), i % 2, f"class_{i % 2}") for i in range(4)]
    splits = DatasetSplits(train=items[:2], val=items[2:3], test=items[3:], source="built")
    write_split_file(tmp_path / "split.json", splits, tmp_path)
    text = (tmp_path / "split.json").read_text()
    assert text.count("\n") == 1 and text.startswith('{"train": [["img/0.jpg", 0, "class_0"]')
    again = read_split_file(tmp_path / "split.json", tmp_path)
    assert (again.train, again.val, again.test) == (splits.train, splits.val, splits.test)


def test_missing_images_name_the_prepare_command_for_the_data_root(tmp_path):
    items = [Item(str(tmp_path / "toy" / f"{i}.jpg"), 0, "cat") for i in range(3)]
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "1.jpg").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match=rf"^2 of 3 images listed for 'toy' are missing under "
                                                rf"{re.escape(str(tmp_path / 'toy'))}, e\.g\. .*"
                                                rf"run `python tools/prepare_data\.py toy --root {re.escape(str(tmp_path))}`\.$"):
        check_files_exist(items, tmp_path / "toy", "toy")


def test_trainval_split_holds_out_a_fifth_per_class_with_seed_one(tmp_path):
    items = [Item(f"{y}_{i}.jpg", y, f"c{y}") for y in range(2) for i in range(10)]
    train, val = split_trainval(items)
    assert (train, val) == split_trainval(items, 0.2, random.Random(1))
    assert [i.label for i in val] == [0, 0, 1, 1] and len(train) == 16
    with pytest.raises(ValueError, match=r"^class 1 has 2 train\+val images, too few to hold out 20%$"):
        split_trainval(items[:10] + items[10:12])


def test_per_class_cut_accepts_four_images_and_refuses_two_or_three():
    train, val, test = split_per_class([(0, "cat", ["a", "b", "c", "d"])])
    assert (len(train), len(val), len(test)) == (2, 1, 1)
    for paths in (["a", "b"], ["a", "b", "c"]):
        with pytest.raises(ValueError, match=rf"^class 'cat' has {len(paths)} images, too few for a 50/20/30 "
                                             r"train/val/test cut$"):
            split_per_class([(0, "cat", paths)])


def test_subsampled_items_keep_their_files_and_the_subsample_is_recorded(tmp_path):
    data = make_data(tmp_path, [2, 2, 2], [1, 1, 1])
    base = subsample_classes(data, "base")
    assert base.subsample == "base" and subsample_classes(data, "new").subsample == "new"
    by_path = {i.path: i for i in data.train}
    assert all(by_path[i.path].classname == i.classname for i in base.train) and len(base.train) == 4


def test_split_fingerprint_sees_every_path_label_name_and_group_but_not_the_root(tmp_path, monkeypatch):
    items = [Item("/data/a/1.jpg", 0, "a"), Item("/data/b/2.jpg", 1, "b")]
    base = split_fingerprint(items[:1], items[1:], root="/data")
    changed = [
        ([Item("/data/a/1.png", 0, "a")], items[1:]),  # a renamed image
        ([Item("/data/a/1.jpg", 1, "a")], items[1:]),  # another label
        ([Item("/data/a/1.jpg", 0, "c")], items[1:]),  # another class name
        (items, []),  # an image moved to the other group
    ]
    assert len({base, *(split_fingerprint(*groups, root="/data") for groups in changed)}) == 5
    moved = [Item(i.path.replace("/data", "/mnt/data"), i.label, i.classname) for i in items]
    assert split_fingerprint(moved[:1], moved[1:], root="/mnt/data") == base  # paths relative to the root
    monkeypatch.chdir(tmp_path)
    without_root = split_fingerprint(items[:1], items[1:])
    assert without_root != base  # the paths as given
    monkeypatch.chdir("/")
    assert split_fingerprint(items[:1], items[1:]) == without_root  # not relative to the working directory
