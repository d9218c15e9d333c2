"""Data preparation without network: downloads are replaced by fakes that lay out files like the real sources."""

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from promptinfo.data import get_benchmark, list_datasets, load_benchmark
from promptinfo.data import prepare as prep
from tests.datagen import make_benchmark_tree

TOOL = Path(__file__).resolve().parents[1] / "tools" / "prepare_data.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("prepare_data_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def offline(monkeypatch):
    """Every download fails the way it does without network; records what was attempted."""
    attempts = []

    def fail(*args, **kwargs):
        attempts.append(args)
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(prep, "fetch_torchvision", fail)
    monkeypatch.setattr(prep, "fetch_url", fail)
    return attempts


def torchvision_layout(key, tmp_path, n=5, k=3):
    """A fake of what ``torchvision.datasets.X(download=True)`` leaves in its folder, built from a datagen tree."""
    source = make_benchmark_tree(key, tmp_path / "generated", n_per_class=n, num_classes=k)

    def fetch(dataset, target, kwargs):
        assert dataset == get_benchmark(key).download.dataset
        for src, dst in get_benchmark(key).download.moves:
            origin = source.path / dst if dst != "." else source.path
            (target / src).parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(origin, target / src) if origin.is_dir() else shutil.copyfile(origin, target / src)

    return source, fetch


def test_failed_download_gives_an_actionable_message(tmp_path, offline):
    report = prep.prepare("oxford_pets", tmp_path)
    assert not report.ok and len(offline) == 2  # the images, then the split file
    text = report.format()
    assert "torchvision.datasets.OxfordIIITPet failed" in text and "download it by hand" in text
    assert f"python tools/prepare_data.py oxford_pets --root {tmp_path}" in text
    assert "drive.google.com/file/d/1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs" in text
    assert str(tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json") in text
    assert "status: NOT ready" in text
    assert not (tmp_path / ".downloads" / "oxford_pets").exists()


def test_cli_exit_codes(tmp_path, offline, capsys):
    tool = load_tool()
    assert tool.main(["dtd", "--root", str(tmp_path)]) == 1
    assert "PROBLEM" in capsys.readouterr().out
    assert tool.main(["not_a_dataset", "--root", str(tmp_path)]) == 2
    before = len(offline)
    assert tool.main(["all", "--root", str(tmp_path), "--no-download"]) == 1
    assert len(offline) == before  # --no-download fetches nothing
    out = capsys.readouterr().out
    assert all(f"== {key} " in out for key in list_datasets())


@pytest.mark.parametrize("key", ["dtd", "eurosat", "food101", "caltech101", "fgvc_aircraft", "oxford_pets"])
def test_download_is_laid_out_in_the_coop_layout(key, tmp_path, monkeypatch):
    source, fetch = torchvision_layout(key, tmp_path)
    split_file = get_benchmark(key).split_file

    def fetch_url(url, dest):  # serve the split file the generated tree would have
        make_benchmark_tree(key, tmp_path / "with_split", n_per_class=5, num_classes=3, split_file=True)
        shutil.copyfile(tmp_path / "with_split" / get_benchmark(key).folder / split_file, dest)

    monkeypatch.setattr(prep, "fetch_torchvision", fetch)
    monkeypatch.setattr(prep, "fetch_url", fetch_url)
    report = prep.prepare(key, tmp_path / "data")
    assert report.counts is not None and report.counts[0] == 3, report.format()
    assert any("downloaded" in a for a in report.actions)
    assert not (tmp_path / "data" / ".downloads" / key).exists()
    data = load_benchmark(key, tmp_path / "data")
    assert data.classnames == source.classnames
    if split_file:
        assert data.split_source == split_file
    assert any("counts differ from the paper's" in p for p in report.problems)  # a small fake is not the paper's


def test_malformed_download_is_removed_and_reported(tmp_path, monkeypatch):
    _, fetch = torchvision_layout("dtd", tmp_path)
    monkeypatch.setattr(prep, "fetch_torchvision", fetch)
    monkeypatch.setattr(prep, "fetch_url", lambda url, dest: dest.write_text("<html>quota exceeded</html>"))
    report = prep.prepare("dtd", tmp_path / "data")
    assert any("came back malformed" in p and "by hand" in p for p in report.problems)
    # the loader then rebuilds the split the original way, so the data is still readable
    assert report.counts is not None and report.counts[0] == 3


def test_sun397_partitions_archive_is_unpacked_when_the_split_file_fails(tmp_path, monkeypatch):
    _, fetch = torchvision_layout("sun397", tmp_path, n=10)
    generated = tmp_path / "generated" / "sun397"

    def fetch_url(url, dest):
        if not url.endswith("Partitions.zip"):
            raise OSError("offline")
        with zipfile.ZipFile(dest, "w") as z:  # a single top folder, unwrapped on extraction
            for name in ("ClassName.txt", "Training_01.txt", "Testing_01.txt"):
                z.write(generated / name, f"Partitions/{name}")

    monkeypatch.setattr(prep, "fetch_torchvision", fetch)
    monkeypatch.setattr(prep, "fetch_url", fetch_url)
    report = prep.prepare("sun397", tmp_path / "data")
    assert (tmp_path / "data" / "sun397" / "Training_01.txt").is_file()
    assert not (tmp_path / "data" / "sun397" / "Partitions.zip").exists()
    assert report.counts is not None and report.counts[0] == 3


@pytest.mark.parametrize("key", ["imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r",
                                 "stanford_cars", "ucf101"])
def test_manual_datasets_print_exact_steps(key, tmp_path, offline):
    report = prep.prepare(key, tmp_path)
    folder = tmp_path / get_benchmark(key).folder
    assert str(folder) in report.manual and "{dir}" not in report.manual
    assert "TO DO BY HAND" in report.format() and not report.ok
    assert all("torchvision" not in str(a) for a in offline)  # nothing is downloaded for them


def test_imagenet_classnames_are_written_from_the_folders_and_copied_to_variants(tmp_path, offline):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    train = tmp_path / "imagenet" / "images" / "train"
    wnids = [f"n{1000000 + 7 * i:08d}" for i in range(1000)]
    for w in wnids:
        (train / w).mkdir(parents=True)
    report = prep.prepare("imagenet", tmp_path)
    lines = (tmp_path / "imagenet" / "classnames.txt").read_text().splitlines()
    assert lines[0] == f"{wnids[0]} {IMAGENET_CLASSNAMES[0]}" and len(lines) == 1000
    assert any("wrote" in a for a in report.actions) and offline == []  # no need to fetch the CoOp file
    (tmp_path / "imagenet-sketch").mkdir()
    prep.prepare("imagenet_sketch", tmp_path)
    assert (tmp_path / "imagenet-sketch" / "classnames.txt").read_text().splitlines() == lines


def test_ready_benchmark_is_only_verified(tmp_path, offline):
    make_benchmark_tree("eurosat", tmp_path, n_per_class=5, split_file=True)
    report = prep.prepare("eurosat", tmp_path)
    assert offline == [] and report.counts == (10, 20, 10, 20)
    assert json.loads((tmp_path / "eurosat" / "split_zhou_EuroSAT.json").read_text())


def test_flowers_download_is_laid_out(tmp_path, monkeypatch):
    pytest.importorskip("scipy")
    source, fetch = torchvision_layout("oxford_flowers", tmp_path)
    monkeypatch.setattr(prep, "fetch_torchvision", fetch)
    monkeypatch.setattr(prep, "fetch_url", lambda url, dest: (_ for _ in ()).throw(OSError("offline")))
    (tmp_path / "data" / "oxford_flowers").mkdir(parents=True)
    shutil.copyfile(source.path / "cat_to_name.json", tmp_path / "data" / "oxford_flowers" / "cat_to_name.json")
    report = prep.prepare("oxford_flowers", tmp_path / "data")
    assert report.counts is not None and report.counts[0] == 3, report.format()
    assert load_benchmark("oxford_flowers", tmp_path / "data").classnames == source.classnames
