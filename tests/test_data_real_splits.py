"""The loaders and the protocol on three real CoOp split files: exact published counts and the original draws.

The split files live in ../shared/splits (test data only); the tests skip when they are absent.
"""

import json
import math
import random
from collections import defaultdict
from pathlib import Path

import pytest

from promptinfo.data import few_shot_subset, load_benchmark
from tests.datagen import make_tree_from_split_file

SPLITS_DIR = Path(__file__).resolve().parents[2] / "shared" / "splits"
REAL = {  # key: (split file, classes, train, val, test)
    "oxford_pets": ("split_zhou_OxfordPets.json", 37, 2944, 736, 3669),
    "dtd": ("split_zhou_DescribableTextures.json", 47, 2820, 1128, 1692),
    "eurosat": ("split_zhou_EuroSAT.json", 10, 13500, 5400, 8100),
}


@pytest.fixture(scope="session")
def real_data(tmp_path_factory):
    """Each real split file's benchmark, loaded once from a tree of tiny images at every listed path."""
    loaded = {}

    def get(key):
        path = SPLITS_DIR / REAL[key][0]
        if not path.is_file():
            pytest.skip(f"{path} not present")
        if key not in loaded:
            root = tmp_path_factory.mktemp(f"real_{key}")
            make_tree_from_split_file(key, root, path)
            loaded[key] = load_benchmark(key, root, strict_counts=True)
        return loaded[key]

    return get


def original_draw(split: dict, shots: int, seed: int):
    """The original protocol, stated independently: global ``random`` seeded, labels in first-appearance
    order, ``random.sample`` per label on train, then on val with min(k, 4) from the same stream."""
    random.seed(seed)

    def per_label(rows, k):
        groups = defaultdict(list)
        for row in rows:
            groups[row[1]].append(row)
        out = []
        for label in groups:
            out += random.sample(groups[label], k) if len(groups[label]) >= k else groups[label]
        return out

    train = per_label(split["train"], shots)
    return train, per_label(split["val"], min(shots, 4))


def rows(items, root):
    return [[str(Path(i.path).relative_to(root)), i.label, i.classname] for i in items]


@pytest.mark.parametrize("key", sorted(REAL))
def test_published_counts(key, real_data):
    _, classes, n_train, n_val, n_test = REAL[key]
    data = real_data(key)  # loaded with strict_counts=True
    assert (data.num_classes, len(data.train), len(data.val), len(data.test)) == (classes, n_train, n_val, n_test)
    assert data.split_source == REAL[key][0]


@pytest.mark.parametrize("key", sorted(REAL))
def test_few_shot_counts(key, real_data, tmp_path):
    classes = REAL[key][1]
    for shots in (1, 2, 4, 8, 16):
        data = few_shot_subset(real_data(key), shots, seed=1, cache_dir=tmp_path)
        assert len(data.train) == classes * shots and len(data.val) == classes * min(shots, 4)
        for items, k in ((data.train, shots), (data.val, min(shots, 4))):
            per_class = defaultdict(int)
            for item in items:
                per_class[item.label] += 1
            assert set(per_class.values()) == {k} and len(per_class) == classes
        assert len(data.test) == REAL[key][4]


@pytest.mark.parametrize("key", sorted(REAL))
def test_draws_are_the_originals(key, real_data, tmp_path):
    data = real_data(key)
    split = json.loads((SPLITS_DIR / REAL[key][0]).read_text())
    for seed in (1, 2, 3):
        for shots in (1, 16):
            ours = few_shot_subset(data, shots, seed, cache_dir=tmp_path)
            train, val = original_draw(split, shots, seed)
            assert rows(ours.train, data.image_root) == train
            assert rows(ours.val, data.image_root) == val
    again = few_shot_subset(data, 16, 3, cache_dir=tmp_path)  # read back from the JSON index
    assert rows(again.train, data.image_root) == original_draw(split, 16, 3)[0]


@pytest.mark.parametrize("key", sorted(REAL))
def test_base_to_novel_partition(key, real_data, tmp_path):
    classes = REAL[key][1]
    data = real_data(key)
    base = few_shot_subset(data, 16, 1, "base", cache_dir=tmp_path)
    new = few_shot_subset(data, 16, 1, "new", cache_dir=tmp_path)
    everything = few_shot_subset(data, 16, 1, "all", cache_dir=tmp_path)
    half = math.ceil(classes / 2)
    assert (base.num_classes, new.num_classes) == (half, classes - half)
    assert base.classnames + new.classnames == data.classnames
    for subset, offset in ((base, 0), (new, half)):
        for items in (subset.train, subset.val, subset.test):
            assert {i.label for i in items} == set(range(subset.num_classes))
        assert len(subset.test) == sum(offset <= i.label < offset + subset.num_classes for i in data.test)
        # classes are filtered after the draw: the kept images are the ones the full draw picked
        assert {i.path for i in subset.train} <= {i.path for i in everything.train}
        assert len(subset.train) == 16 * subset.num_classes
    assert {i.path for i in base.test} | {i.path for i in new.test} == {i.path for i in data.test}


def test_same_seed_same_draw_other_seed_other_draw(real_data, tmp_path):
    data = real_data("oxford_pets")
    a = few_shot_subset(data, 4, 1, cache_dir=tmp_path / "a")
    b = few_shot_subset(data, 4, 1, cache_dir=tmp_path / "b")
    c = few_shot_subset(data, 4, 2, cache_dir=tmp_path / "a")
    assert a.train == b.train and a.val == b.val
    assert a.train != c.train
