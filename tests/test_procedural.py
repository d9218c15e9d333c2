"""The procedural benchmark: class order, rendering, captions, and the dataset written to disk."""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from promptinfo.data import get_benchmark, load_benchmark, procedural, read_split_file
from promptinfo.data.benchmarks.procedural import _benchmark
from promptinfo.data.registry import register_benchmark
from promptinfo.errors import ConfigError

TINY = procedural.ProceduralSpec(
    resolution=16,
    train_per_class=2,
    val_per_class=1,
    test_per_class=1,
    colours=("red", "blue", "green"),
    shapes=("circle", "star"),
)


def _plain_scene(**overrides) -> procedural.Scene:
    scene = procedural.Scene(
        colour="red", shape="circle", size="large", radius=0.8, centre=(0.0, 0.0), rotation=0.0,
        rgb=(0.8, 0.1, 0.2), background="plain", tones=(0.2, 0.7), period=0.5, angle=0.0, noise=0.0,
    )
    return replace(scene, **overrides)


# ------------------------------------------------------------------------------------- classes


def test_default_benchmark_has_48_named_classes_in_label_order():
    classes = procedural.procedural_classes()
    assert len(classes) == 48
    assert [c.label for c in classes] == list(range(48))
    assert len({c.name for c in classes}) == 48
    assert all(c.name == f"{c.colour} {c.shape}" and c.folder == f"{c.colour}_{c.shape}" for c in classes)
    assert classes[0].name == "red circle"


@pytest.mark.parametrize("n_colours,n_shapes", [(2, 2), (3, 5), (5, 3), (8, 6), (7, 4)])
def test_novel_classes_are_unseen_combinations_of_seen_attributes(n_colours, n_shapes):
    colours, shapes = list(procedural.COLOURS)[:n_colours], procedural.SHAPES[:n_shapes]
    classes = procedural.procedural_classes(colours, shapes)
    base, novel = procedural.base_novel_split(classes)
    assert len(base) == -(-len(classes) // 2) and len(base) + len(novel) == n_colours * n_shapes
    base_pairs = {(c.colour, c.shape) for c in base}
    assert not base_pairs & {(c.colour, c.shape) for c in novel}
    assert {c.colour for c in base} == set(colours) and {c.shape for c in base} == set(shapes)


def test_unknown_or_too_few_attributes_are_rejected():
    with pytest.raises(ConfigError, match="magenta"):
        procedural.procedural_classes(["red", "magenta"], ["circle", "star"])
    with pytest.raises(ConfigError, match="at least 2"):
        procedural.procedural_classes(["red"], ["circle", "star"])
    with pytest.raises(ConfigError, match="split"):
        procedural.ProceduralSpec(test_per_class=0)


# ------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("resolution", [8, 17, 32, 64])
def test_render_is_deterministic_and_honours_resolution(resolution):
    a = procedural.render("blue", "star", seed=3, resolution=resolution)
    assert a.shape == (resolution, resolution, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, procedural.render("blue", "star", seed=3, resolution=resolution))
    assert not np.array_equal(a, procedural.render("blue", "star", seed=4, resolution=resolution))


def test_noise_free_scene_shows_object_colour_inside_and_background_outside():
    image = procedural.render_scene(_plain_scene(), 32)
    np.testing.assert_array_equal(image[16, 16], np.round(np.array([0.8, 0.1, 0.2]) * 255))
    np.testing.assert_array_equal(image[0, 0], [51, 51, 51])  # 0.2 * 255: corner outside the circle


def test_ring_has_a_hole_and_shapes_differ():
    ring = procedural.render_scene(_plain_scene(shape="ring"), 32)
    np.testing.assert_array_equal(ring[16, 16], [51, 51, 51])
    images = {s: procedural.render_scene(_plain_scene(shape=s, radius=0.7), 32) for s in procedural.SHAPES}
    for i, a in enumerate(procedural.SHAPES):
        for b in procedural.SHAPES[i + 1:]:
            assert np.abs(images[a].astype(int) - images[b].astype(int)).sum() > 255 * 10, (a, b)


def test_nuisance_attributes_vary_within_a_class():
    scenes = [procedural.sample_scene("green", "cross", procedural.scene_rng(s)) for s in range(60)]
    assert {s.size for s in scenes} == set(procedural.SIZES)
    assert {s.background for s in scenes} == set(procedural.BACKGROUNDS)
    assert len({round(s.rotation, 6) for s in scenes}) == 60
    assert all(max(abs(x), abs(y)) + s.radius <= 0.95 + 1e-9 for s in scenes for x, y in [s.centre])
    assert all(max(abs(x), abs(y)) <= procedural.MAX_SHIFT for s in scenes for x, y in [s.centre])
    assert len({s.centre for s in scenes}) == 60


def test_captions_name_colour_and_shape_or_one_of_them_when_partial():
    rng = np.random.default_rng(0)
    scene = procedural.sample_scene("purple", "triangle", procedural.scene_rng(1))
    full = [procedural.caption(scene, rng, partial_prob=0.0) for _ in range(50)]
    assert all("purple" in c and "triangle" in c for c in full) and len(set(full)) > 10
    partial = [procedural.caption(scene, rng, partial_prob=1.0) for _ in range(50)]
    assert all(("purple" in c) != ("triangle" in c) for c in partial)


# ------------------------------------------------------------------------------------- on disk


def test_written_dataset_has_coop_layout_and_readable_split_file(tmp_path):
    folder = procedural.write_procedural_dataset(tmp_path, TINY, name="shapes")
    raw = json.loads((folder / procedural.SPLIT_FILE).read_text())
    assert {k: len(v) for k, v in raw.items()} == {"train": 12, "val": 6, "test": 6}
    relpath, label, name = raw["train"][0]
    assert (relpath, label, name) == ("red_circle/train_0000.png", 0, "red circle")
    splits = read_split_file(folder / procedural.SPLIT_FILE, folder / "images")
    item = splits.test[-1]
    pixels = np.asarray(Image.open(item.path).convert("RGB"))
    assert pixels.shape == (16, 16, 3)
    cls, _, scene = list(procedural.split_scenes(TINY, "test"))[-1]
    assert (cls.name, cls.label) == (item.classname, item.label)
    np.testing.assert_array_equal(pixels, procedural.render_scene(scene, 16))
    assert sorted(os.listdir(tmp_path)) == [".shapes.lock", "shapes"]  # no temporary folder left


def test_writing_again_is_a_no_op_and_other_settings_are_refused(tmp_path):
    folder = procedural.write_procedural_dataset(tmp_path, TINY, name="shapes")
    stamp = (folder / procedural.SPLIT_FILE).stat().st_mtime_ns
    assert procedural.write_procedural_dataset(tmp_path, TINY, name="shapes") == folder
    assert (folder / procedural.SPLIT_FILE).stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="Delete that folder"):
        procedural.write_procedural_dataset(tmp_path, replace(TINY, seed=1), name="shapes")


def test_concurrent_writers_produce_one_complete_dataset(tmp_path):
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(procedural.write_procedural_dataset, tmp_path, TINY, "shapes") for _ in range(3)]
        results = {f.result() for f in futures}  # re-raises any writer's error
    assert results == {tmp_path / "shapes"}
    assert sorted(os.listdir(tmp_path)) == [".shapes.lock", "shapes"]


def test_registered_benchmarks_generate_on_first_load(tmp_path):
    default = get_benchmark("procedural")
    assert default.generated and default.num_classes == 48 and default.template == "a photo of a {}."
    assert get_benchmark("procedural_small").sizes == (48 * 16, 48 * 4, 48 * 16)
    register_benchmark(_benchmark("procedural_test_tiny", TINY), overwrite=True)
    data = load_benchmark("procedural_test_tiny", tmp_path)
    assert data.classnames == [c.name for c in TINY.classes]
    assert (len(data.train), len(data.val), len(data.test)) == (12, 6, 6)
    assert data.templates == ["a photo of a {}."]
