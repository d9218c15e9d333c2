"""The feature cache: computed once, reused, invalidated by any change of key, safe under concurrent fills."""

import threading

import pytest
import torch

from promptinfo.data import FeatureCache, Item, build_transform, load_benchmark, load_rgb
from tests.datagen import make_benchmark_tree, write_image

CFG = {"size": 8, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
KEY = {"backbone": "toy", "weights": "random-0", "dataset": "dtd:all", "split": "test"}


class CountingEncoder:
    """A fixed random linear map of mean-pooled pixels that counts the images it encodes."""

    def __init__(self, dim=4):
        self.weight = torch.randn(3, dim, generator=torch.Generator().manual_seed(0))
        self.images = 0
        self.lock = threading.Lock()

    def __call__(self, images):
        with self.lock:
            self.images += images.shape[0]
        return images.mean(dim=(2, 3)) @ self.weight  # [B, 3] @ [3, d]


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_data")
    make_benchmark_tree("dtd", root, n_per_class=5, num_classes=3, image_size=12)
    return load_benchmark("dtd", root).test


def test_first_call_encodes_second_reads(items, tmp_path):
    cache, enc, tf = FeatureCache(tmp_path), CountingEncoder(), build_transform(CFG, train=False)
    first = cache.get_or_compute(KEY, items, enc, tf, batch_size=2)
    assert enc.images == len(items)
    second = cache.get_or_compute(KEY, items, enc, tf, batch_size=2)
    assert enc.images == len(items)  # no re-encoding
    assert torch.equal(first.features, second.features) and second.features.shape == (1, len(items), 4)
    assert torch.equal(second.labels, torch.tensor([i.label for i in items])) and bool(second.valid.all())
    expected = torch.stack([enc(tf(load_rgb(i.path))[None])[0] for i in items])
    assert torch.allclose(second.view(0), expected, atol=1e-6)
    assert cache.load(KEY, items, tf) is not None
    assert list(tmp_path.glob("*.tmp")) == []


@pytest.mark.parametrize("change", [
    {"backbone": "other"}, {"weights": "random-1"}, {"dataset": "dtd:16shot-seed1:all"}, {"split": "val"},
])
def test_changed_key_recomputes(items, tmp_path, change):
    cache, enc, tf = FeatureCache(tmp_path), CountingEncoder(), build_transform(CFG, train=False)
    cache.get_or_compute(KEY, items, enc, tf)
    cache.get_or_compute({**KEY, **change}, items, enc, tf)
    assert enc.images == 2 * len(items)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_changed_transform_or_items_recompute(items, tmp_path):
    cache, enc = FeatureCache(tmp_path), CountingEncoder()
    cache.get_or_compute(KEY, items, enc, build_transform(CFG, train=False))
    cache.get_or_compute(KEY, items, enc, build_transform({**CFG, "size": 10}, train=False))
    cache.get_or_compute(KEY, items[:-1], enc, build_transform(CFG, train=False))
    assert enc.images == 3 * len(items) - 1
    assert cache.load(KEY, items[1:], build_transform(CFG, train=False)) is None


def test_key_must_name_backbone_weights_dataset_split(items, tmp_path):
    with pytest.raises(ValueError, match="weights"):
        FeatureCache(tmp_path).get_or_compute({"backbone": "x", "dataset": "d", "split": "test"}, items,
                                              CountingEncoder(), build_transform(CFG, train=False))


def test_augmented_views_are_distinct_deterministic_and_drawn(items, tmp_path):
    tf = build_transform(CFG, train=True)
    enc = CountingEncoder()
    a = FeatureCache(tmp_path / "a").get_or_compute(KEY, items, enc, tf, views=3, seed=1)
    b = FeatureCache(tmp_path / "b").get_or_compute(KEY, items, CountingEncoder(), tf, views=3, seed=1)
    c = FeatureCache(tmp_path / "a").get_or_compute(KEY, items, enc, tf, views=3, seed=2)
    assert a.features.shape == (3, len(items), 4) and enc.images == 6 * len(items)
    assert torch.equal(a.features, b.features)  # same seed, same views, in another cache
    assert not torch.equal(a.features, c.features)
    assert not torch.equal(a.view(0), a.view(1))
    drawn = a.sample_views(torch.Generator().manual_seed(0))
    assert drawn.shape == (len(items), 4)
    assert all(any(torch.equal(drawn[i], a.features[v, i]) for v in range(3)) for i in range(len(items)))
    with pytest.raises(ValueError, match="views"):
        FeatureCache(tmp_path).get_or_compute(KEY, items, enc, build_transform(CFG, train=False), views=2)


def test_each_file_is_decoded_once_for_all_its_views(items, tmp_path, monkeypatch):
    from promptinfo.data import image_dataset

    decoded = []
    monkeypatch.setattr(image_dataset, "load_rgb", lambda path: decoded.append(path) or load_rgb(path))
    tf = build_transform(CFG, train=True)
    enc = CountingEncoder()
    views = FeatureCache(tmp_path / "a").get_or_compute(KEY, items, enc, tf, views=4, seed=3, batch_size=8)
    assert sorted(decoded) == sorted(i.path for i in items) and enc.images == 4 * len(items)
    # view v of item i is its own seeded draw: the same whatever the batch size
    again = FeatureCache(tmp_path / "b").get_or_compute(KEY, items, CountingEncoder(), tf, views=4, seed=3,
                                                        batch_size=1)
    torch.testing.assert_close(views.features, again.features, atol=1e-6, rtol=0)
    first = FeatureCache(tmp_path / "c").get_or_compute(KEY, items, CountingEncoder(), tf, views=1, seed=3)
    assert torch.equal(first.view(0), views.view(0))  # the first view does not depend on how many follow


def test_views_do_not_disturb_the_global_generator(items, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    FeatureCache(tmp_path).get_or_compute(KEY, items, CountingEncoder(), build_transform(CFG, train=True), views=2)
    assert torch.equal(torch.rand(3), expected)


def test_concurrent_fills_encode_once(items, tmp_path):
    enc, tf = CountingEncoder(), build_transform(CFG, train=False)
    results, errors = [], []

    def run():
        try:
            results.append(FeatureCache(tmp_path).get_or_compute(KEY, items, enc, tf, batch_size=1))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4
    assert enc.images == len(items)
    assert all(torch.equal(r.features, results[0].features) for r in results)


def test_skipped_corrupt_images_are_marked_invalid(tmp_path):
    good = tmp_path / "good.jpg"
    write_image(good, size=12)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    items = [Item(str(good), 0, "a"), Item(str(bad), 1, "b")]
    feats = FeatureCache(tmp_path / "c").get_or_compute(KEY, items, CountingEncoder(), build_transform(CFG, False),
                                                        skip_corrupt=True)
    assert feats.valid.tolist() == [True, False] and torch.equal(feats.view()[1], torch.zeros(4))


def test_bad_encoder_output_is_reported(items, tmp_path):
    with pytest.raises(ValueError, match=r"\[B, d\]"):
        FeatureCache(tmp_path).get_or_compute(KEY, items, lambda x: x.mean(dim=1), build_transform(CFG, False))


def test_half_precision_storage(items, tmp_path):
    feats = FeatureCache(tmp_path).get_or_compute(KEY, items, CountingEncoder(), build_transform(CFG, False),
                                                  dtype=torch.float16)
    assert feats.features.dtype == torch.float16
    assert FeatureCache(tmp_path).load(KEY, items, build_transform(CFG, False), dtype=torch.float16) is not None
