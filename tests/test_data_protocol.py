"""The CoOp protocol on synthetic item lists: k-shot sampling rules, index files, base/new relabelling."""

import json
import logging
import random
import threading
from pathlib import Path

import pytest

from promptinfo.data import BenchmarkData, Item, draw_few_shot, few_shot_subset, subsample_classes
from promptinfo.data.protocol import draw_per_class
from promptinfo.errors import ConfigError


def make_data(root: Path, counts_train, counts_val, counts_test=None, **kw) -> BenchmarkData:
    """Labels interleaved (first appearance 2, 0, 1, ...) so order-of-appearance matters."""

    def items(counts, split):
        out = [Item(str(root / f"{split}_{y}_{i}.jpg"), y, f"class_{y}")
               for y, n in enumerate(counts) for i in range(n)]
        random.Random(len(out)).shuffle(out)
        return out

    n = len(counts_train)
    return BenchmarkData(
        key="toy", root=root, image_root=root, train=items(counts_train, "train"), val=items(counts_val, "val"),
        test=items(counts_test or [3] * n, "test"), classnames=[f"class_{y}" for y in range(n)],
        templates=["a photo of a {}."], split_source="synthetic", **kw,
    )


def test_labels_are_visited_in_first_appearance_order(tmp_path):
    data = make_data(tmp_path, [5, 5, 5], [4, 4, 4])
    first_seen = list(dict.fromkeys(i.label for i in data.train))
    drawn = draw_per_class(data.train, 2, random.Random(0))
    assert [i.label for i in drawn] == [y for y in first_seen for _ in range(2)]
    rng = random.Random(0)
    expected = []
    for y in first_seen:
        expected += rng.sample([i for i in data.train if i.label == y], 2)
    assert drawn == expected


def test_small_classes_keep_everything_or_repeat(tmp_path):
    data = make_data(tmp_path, [1, 6], [1, 1])
    kept = draw_per_class(data.train, 4, random.Random(0))
    assert sum(i.label == 0 for i in kept) == 1 and sum(i.label == 1 for i in kept) == 4
    repeated = draw_per_class(data.train, 4, random.Random(0), repeat=True)
    assert [i.label for i in repeated].count(0) == 4
    assert len({i.path for i in repeated if i.label == 0}) == 1


def test_val_continues_the_train_generator(tmp_path):
    data = make_data(tmp_path, [8, 8, 8], [6, 6, 6])
    train, val = draw_few_shot(data, 4, seed=5)
    rng = random.Random(5)
    assert train == draw_per_class(data.train, 4, rng)
    assert val == draw_per_class(data.val, 4, rng)  # the same generator, after the train draw
    assert val != draw_per_class(data.val, 4, random.Random(5))


def test_val_shots_are_capped_at_four(tmp_path):
    data = make_data(tmp_path, [20, 20], [10, 10])
    subset = few_shot_subset(data, 16, 1)
    assert len(subset.train) == 32 and len(subset.val) == 8


@pytest.mark.parametrize("shots", [0, -1])
def test_non_positive_shots_mean_all_data(tmp_path, shots):
    data = make_data(tmp_path, [5, 5], [2, 2])
    subset = few_shot_subset(data, shots, 1)
    assert subset.train == data.train and subset.val == data.val
    assert not (tmp_path / "split_fewshot").exists()


def test_index_file_is_readable_json_and_is_reused(tmp_path):
    data = make_data(tmp_path, [6, 6, 6], [3, 3, 3])
    first = few_shot_subset(data, 2, 7)
    path = tmp_path / "split_fewshot" / "shot_2-seed_7.json"
    text = path.read_text()
    index = json.loads(text)
    assert index["shots"] == 2 and index["seed"] == 7 and len(index["train"]) == 6 and len(index["val"]) == 6
    assert text.count("\n") > 12  # one item per line
    stored = [[str(tmp_path / p), y, c] for p, y, c in index["train"]]
    assert stored == [[i.path, i.label, i.classname] for i in first.train]
    # a later run reads the stored draw instead of drawing again: edit it and see the edit come back
    index["train"][0], index["train"][1] = index["train"][1], index["train"][0]
    path.write_text(json.dumps(index))
    again = few_shot_subset(data, 2, 7)
    assert again.train[0] == first.train[1] and again.train[1] == first.train[0]


def test_stale_index_is_redrawn(tmp_path, caplog):
    data = make_data(tmp_path, [6, 6], [3, 3])
    few_shot_subset(data, 2, 1)
    changed = make_data(tmp_path, [7, 6], [3, 3])  # the split the draw came from changed
    with caplog.at_level(logging.WARNING):
        subset = few_shot_subset(changed, 2, 1)
    assert "drawing again" in caplog.text
    assert subset.train == draw_few_shot(changed, 2, 1)[0]


def test_unwritable_cache_still_draws(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    data = make_data(tmp_path, [4, 4], [2, 2])
    with caplog.at_level(logging.WARNING):
        subset = few_shot_subset(data, 1, 1, cache_dir=blocker / "sub")
    assert len(subset.train) == 2 and "cannot write the few-shot index" in caplog.text


def test_concurrent_runs_agree(tmp_path):
    data = make_data(tmp_path, [30] * 10, [10] * 10)
    results = []
    threads = [threading.Thread(target=lambda: results.append(few_shot_subset(data, 4, 3))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r.train == results[0].train for r in results)
    json.loads((tmp_path / "split_fewshot" / "shot_4-seed_3.json").read_text())


def test_subsample_relabels_base_and_new(tmp_path):
    data = make_data(tmp_path, [3] * 5, [2] * 5, [4] * 5)
    base, new = subsample_classes(data, "base"), subsample_classes(data, "new")
    assert base.classnames == ["class_0", "class_1", "class_2"] and new.classnames == ["class_3", "class_4"]
    assert {i.label for i in new.test} == {0, 1} and all(i.classname in ("class_3", "class_4") for i in new.test)
    assert all(new.classnames[i.label] == i.classname for i in new.train + new.val + new.test)
    assert len(base.test) == 12 and len(new.test) == 8 and subsample_classes(data, "all") is data
    with pytest.raises(ConfigError, match="subsample"):
        subsample_classes(data, "novel")


def test_imagenet_style_val_is_test(tmp_path):
    data = make_data(tmp_path, [5, 5, 5, 5], [0, 0, 0, 0], val_is_test=True)
    data = BenchmarkData(**{**data.__dict__, "val": data.test})
    subset = few_shot_subset(data, 2, 1, "new")
    assert subset.val == subset.test and {i.label for i in subset.test} == {0, 1}
    assert json.loads((tmp_path / "split_fewshot" / "shot_2-seed_1.json").read_text())["val"] is None


def test_test_only_benchmarks_refuse_shots(tmp_path):
    data = make_data(tmp_path, [0, 0], [0, 0], test_only=True)
    with pytest.raises(ConfigError, match="test-only"):
        few_shot_subset(data, 1, 1)
    assert few_shot_subset(data, -1, 1).test == data.test
