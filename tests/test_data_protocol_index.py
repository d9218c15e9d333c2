"""The CoOp protocol where its variants part: classes with exactly k, fewer than k (with and without
`repeat`) and more than k images; the few-shot index reused without a warning, across a moved data folder,
and redrawn when the split it came from changes (val included); what its log lines and file say."""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from promptinfo.data import BenchmarkData, Item, draw_few_shot, few_shot_subset, subsample_classes
from promptinfo.data.protocol import draw_per_class
from promptinfo.data.splits import split_fingerprint
from promptinfo.errors import ConfigError
from tests.test_data_protocol import make_data


def _moved(data: BenchmarkData, root: Path) -> BenchmarkData:
    """The same benchmark under another folder."""

    def move(items):
        return [Item(str(root / Path(i.path).relative_to(data.root)), i.label, i.classname) for i in items]

    return replace(data, root=root, image_root=root, train=move(data.train), val=move(data.val), test=move(data.test))


def test_a_class_of_exactly_k_images_is_sampled_not_kept_in_order(tmp_path):
    data = make_data(tmp_path, [3, 5], [1, 1])
    rng = random.Random(2)
    expected = []
    for label in dict.fromkeys(i.label for i in data.train):
        expected += rng.sample([i for i in data.train if i.label == label], 3)
    assert draw_per_class(data.train, 3, random.Random(2)) == expected


def test_repeat_fills_every_small_class_on_train_and_val(tmp_path):
    data = make_data(tmp_path, [2, 1, 6], [1, 3, 1])
    plain = few_shot_subset(data, 4, 1, cache_dir=tmp_path / "plain")
    assert sorted(i.label for i in plain.train) == [0, 0, 1, 2, 2, 2, 2]  # small classes keep what they have
    assert sorted(i.label for i in plain.val) == [0, 1, 1, 1, 2]
    repeated = few_shot_subset(data, 4, 1, cache_dir=tmp_path / "repeat", repeat=True)
    assert sorted(i.label for i in repeated.train) == [0] * 4 + [1] * 4 + [2] * 4
    assert sorted(i.label for i in repeated.val) == [0] * 4 + [1] * 4 + [2] * 4
    assert (repeated.train, repeated.val) == draw_few_shot(data, 4, 1, repeat=True)
    assert (plain.train, plain.val) == draw_few_shot(data, 4, 1)  # repeat is off by default
    assert json.loads((tmp_path / "repeat" / "shot_4-seed_1.json").read_text())["repeat"] is True


def test_the_result_records_the_draw_and_the_index_names_its_source(tmp_path):
    data = make_data(tmp_path, [5, 5], [2, 2])
    subset = few_shot_subset(data, 2, 9)
    assert (subset.shots, subset.seed, subset.subsample) == (2, 9, "all")
    index = json.loads((tmp_path / "split_fewshot" / "shot_2-seed_9.json").read_text())
    assert {k: index[k] for k in ("format", "benchmark", "shots", "seed", "repeat", "source_split")} == {
        "format": 1, "benchmark": "toy", "shots": 2, "seed": 9, "repeat": False, "source_split": "synthetic"}
    assert index["source_fingerprint"] == split_fingerprint(data.train, data.val, root=tmp_path)
    assert re.fullmatch(r"[0-9a-f]{16}", index["source_fingerprint"])


def test_an_index_is_reused_silently_and_follows_a_moved_folder(tmp_path, caplog):
    data = make_data(tmp_path / "a", [6, 6, 6], [3, 3, 3])
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="promptinfo.data.protocol"):
        first = few_shot_subset(data, 2, 7, cache_dir=cache)
    path = cache / "shot_2-seed_7.json"
    assert caplog.messages == [f"toy: saved the 2-shot draw of seed 7 to {path}"]
    caplog.clear()
    moved = _moved(data, tmp_path / "b")
    with caplog.at_level(logging.INFO, logger="promptinfo.data.protocol"):
        again = few_shot_subset(moved, 2, 7, cache_dir=cache)
    assert caplog.messages == []  # read back: no warning, nothing saved again
    assert again.train == _moved(replace(data, train=first.train, val=first.val), tmp_path / "b").train
    assert again.val != again.test and again.val == _moved(replace(data, val=first.val), tmp_path / "b").val


def test_a_changed_val_split_or_renamed_image_makes_the_index_stale(tmp_path, caplog):
    data = make_data(tmp_path, [6, 6], [3, 3])
    few_shot_subset(data, 2, 1)
    path = tmp_path / "split_fewshot" / "shot_2-seed_1.json"
    renamed = replace(data, train=[Item(data.train[0].path + ".png", 0, "class_0")] + data.train[1:])
    for changed in (replace(data, val=data.val[1:]), renamed):
        few_shot_subset(data, 2, 1)  # the index of the unchanged split
        old = json.loads(path.read_text())["source_fingerprint"]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
            subset = few_shot_subset(changed, 2, 1)
        assert caplog.messages == [f"toy: {path} was drawn from another split or setting "
                                   f"({{'source_fingerprint': {old!r}}}); drawing again"]
        assert (subset.train, subset.val) == draw_few_shot(changed, 2, 1)
        assert json.loads(path.read_text())["source_fingerprint"] == split_fingerprint(
            changed.train, changed.val, root=tmp_path)


def test_stale_and_broken_index_warnings_name_what_differs(tmp_path, caplog):
    data = make_data(tmp_path, [6, 6], [3, 3])
    few_shot_subset(data, 2, 1)
    path = tmp_path / "split_fewshot" / "shot_2-seed_1.json"
    index = json.loads(path.read_text())
    path.write_text(json.dumps({**index, "seed": 3, "repeat": True}))
    with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
        few_shot_subset(data, 2, 1)
    assert caplog.messages == [
        f"toy: {path} was drawn from another split or setting ({{'seed': 3, 'repeat': True}}); drawing again"]
    caplog.clear()
    path.write_text("[1, 2]")
    with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
        few_shot_subset(data, 2, 1)
    assert re.fullmatch(rf"toy: the few-shot index {re.escape(str(path))} is damaged \(expected a JSON object, found "
                        rf"list\); set it aside as {re.escape(path.name)}\.damaged-\S+ and drawing again",
                        caplog.messages[-1])
    caplog.clear()
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
        subset = few_shot_subset(data, 2, 1)
    assert len(caplog.messages) == 1
    assert re.fullmatch(rf"toy: the few-shot index {re.escape(str(path))} is damaged \(.+\); set it aside as "
                        rf"{re.escape(path.name)}\.damaged-\S+ and drawing again", caplog.messages[0])
    assert subset.train == draw_few_shot(data, 2, 1)[0]


def test_an_unwritable_cache_draws_the_same_images_and_says_so(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    data = make_data(tmp_path, [1, 4], [1, 3])
    with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
        subset = few_shot_subset(data, 2, 5, cache_dir=blocker / "sub", repeat=True)
    assert (subset.train, subset.val) == draw_few_shot(data, 2, 5, repeat=True)
    assert sorted(i.label for i in subset.train) == [0, 0, 1, 1]  # the small class repeated
    path = blocker / "sub" / "shot_2-seed_5.json"
    assert len(caplog.messages) == 1 and caplog.messages[0].startswith(
        f"toy: cannot write the few-shot index {path} ([Errno ")
    assert caplog.messages[0].endswith("); pass a writable cache_dir to keep it")


def test_an_empty_val_split_is_stored_as_an_empty_list(tmp_path):
    data = replace(make_data(tmp_path, [4, 4], [1, 1]), val=[])
    few_shot_subset(data, 2, 1)
    text = (tmp_path / "split_fewshot" / "shot_2-seed_1.json").read_text()
    assert text.endswith('  "val": []\n}\n')
    assert few_shot_subset(data, 2, 1).val == []


def test_an_imagenet_style_index_is_read_back_with_the_test_set_as_val(tmp_path, caplog):
    data = make_data(tmp_path, [5, 5], [0, 0], val_is_test=True)
    data = replace(data, val=data.test)
    first = few_shot_subset(data, 2, 1)
    with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
        again = few_shot_subset(data, 2, 1)
    assert caplog.messages == []  # its "val": null is read as the test set, not as a damaged list
    assert again.train == first.train and again.val == data.test


def test_test_only_benchmarks_take_base_and_new_classes_from_the_test_split(tmp_path):
    data = make_data(tmp_path, [0, 0, 0], [0, 0, 0], [2, 3, 4], test_only=True)
    data = replace(data, train=[], val=[])
    base, new = subsample_classes(data, "base"), subsample_classes(data, "new")
    assert base.classnames == ["class_0", "class_1"] and new.classnames == ["class_2"]
    assert len(base.test) == 5 and len(new.test) == 4


def test_bad_subsample_names_the_choices(tmp_path):
    data = make_data(tmp_path, [2, 2], [1, 1])
    with pytest.raises(ConfigError, match=r"^subsample must be one of \('all', 'base', 'new'\), got 'novel'$"):
        few_shot_subset(data, 1, 1, subsample="novel")


def test_short_classes_are_named_with_their_counts_and_the_effective_shots_recorded(tmp_path, caplog):
    from promptinfo.data.protocol import effective_shots, images_per_class

    data = make_data(tmp_path, [1, 6, 3, 0], [1, 1, 1, 1])
    with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
        subset = few_shot_subset(data, 4, 1)
    assert caplog.messages[0] == (
        "toy: 3 of 4 classes have fewer than 4 training images, so they train on fewer shots: class_0 (1), "
        "class_2 (3), class_3 (0). results.json records the effective shots per class (shots_effective).")
    assert images_per_class(subset.train, 4) == [1, 4, 3, 0]
    assert effective_shots(subset) == {"min": 0, "max": 4}


def test_an_index_with_malformed_rows_is_set_aside(tmp_path, caplog):
    data = make_data(tmp_path, [4, 4], [2, 2])
    few_shot_subset(data, 2, 1)
    path = tmp_path / "split_fewshot" / "shot_2-seed_1.json"
    index = json.loads(path.read_text())
    for bad in (["a.jpg", 0], [1, 0, "class_0"], ["a.jpg", 0, 3], ["a.jpg", "0", "class_0"], ["a.jpg", True, "x"]):
        path.write_text(json.dumps({**index, "val": [bad]}))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
            assert few_shot_subset(data, 2, 1).val == draw_few_shot(data, 2, 1)[1]
        assert len(caplog.messages) == 1, bad
        assert re.fullmatch(rf"toy: the few-shot index {re.escape(str(path))} is damaged \(its item lists are not "
                            r"\[path, label, class name\] rows\); set it aside as \S+ and drawing again",
                            caplog.messages[0]), bad
    path.write_text(json.dumps({**index, "train": {"a": 1}}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="promptinfo.data.protocol"):
        few_shot_subset(data, 2, 1)
    assert "its item lists are not [path, label, class name] rows" in caplog.messages[0]
