"""Fake benchmark trees in each benchmark's real on-disk layout, with tiny images, for tests.

``make_benchmark_tree(key, root)`` writes ``root/<folder>/`` the way the real download lays it out
(annotation files included) and returns what a correct reader must find: class names in label
order and the number of images. ``make_tree_from_split_file`` writes every image a real split file
lists, so loaders can be checked against the published split sizes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from promptinfo.data import get_benchmark

FOLDERS = {
    "imagenet": "imagenet", "caltech101": "caltech-101", "oxford_pets": "oxford_pets",
    "stanford_cars": "stanford_cars", "oxford_flowers": "oxford_flowers", "food101": "food-101",
    "fgvc_aircraft": "fgvc_aircraft", "sun397": "sun397", "dtd": "dtd", "eurosat": "eurosat", "ucf101": "ucf101",
    "imagenet_v2": "imagenetv2", "imagenet_sketch": "imagenet-sketch", "imagenet_a": "imagenet-adversarial",
    "imagenet_r": "imagenet-rendition",
}


@dataclass
class GeneratedTree:
    """What was written: the benchmark folder, and what its reader must return."""

    path: Path
    classnames: list[str]  # expected names in label order
    n_images: int
    manifest: list[tuple[str, int, str]]  # (path relative to the benchmark folder, label, class name)


# ------------------------------------------------------------------------------------------ images
_BYTES: dict[tuple, bytes] = {}


def image_bytes(size: int = 8, color: tuple[int, int, int] = (120, 90, 60), fmt: str = "JPEG") -> bytes:
    """Encoded bytes of a tiny solid-colour image (memoised: big trees copy the same bytes)."""
    key = (size, color, fmt)
    if key not in _BYTES:
        buf = io.BytesIO()
        Image.new("RGB", (size, size), color).save(buf, format=fmt)
        _BYTES[key] = buf.getvalue()
    return _BYTES[key]


def write_image(path: Path, size: int = 8, distinct: bool = True) -> None:
    """A tiny JPEG at ``path``; with ``distinct``, four quadrants coloured from a hash of the file name
    (images differ, and crops or flips of one image differ too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not distinct:
        path.write_bytes(image_bytes(size))
        return
    digest = hashlib.md5(path.name.encode()).digest()
    image = Image.new("RGB", (size, size))
    half = size // 2
    for q in range(4):
        box = ((q % 2) * half, (q // 2) * half, (q % 2 + 1) * half, (q // 2 + 1) * half)
        image.paste(tuple(digest[3 * q : 3 * q + 3]), box)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue())


# ------------------------------------------------------------------------------------ generators
def make_benchmark_tree(
    key: str,
    root: str | Path,
    n_per_class: int = 10,
    num_classes: int | None = None,
    split_file: bool | str | Path | None = None,
    image_size: int = 8,
    distinct: bool = True,
) -> GeneratedTree:
    """Write a small tree of benchmark ``key`` under ``root`` in its real layout.

    Args:
        n_per_class: images per class (at least 5, so the 50/20/30 and 80/20 cuts are non-empty).
        num_classes: number of classes (default: a handful, including the special cases of the
            benchmark's name normalisation).
        split_file: ``None``: no split file (the loader rebuilds it); ``True``: also write a split
            file (first 50% train, next 20% val, rest test per class, unlike any random cut);
            a path: write only the images listed in that real split file and copy it.
    """
    root = Path(root)
    if split_file not in (None, True, False):
        return make_tree_from_split_file(key, root, split_file)
    if n_per_class < 5:
        raise ValueError("n_per_class must be at least 5")
    folder = root / FOLDERS[key]
    tree = _GENERATORS[key](folder, n_per_class, num_classes, image_size, distinct)
    if split_file is True:
        _write_manifest_split(key, tree)
    return tree


def make_tree_from_split_file(key: str, root: str | Path, split_path: str | Path) -> GeneratedTree:
    """Write a tiny image at every path of a real ``split_zhou_*.json`` and copy the file beside them."""
    bench = get_benchmark(key)
    folder = Path(root) / bench.folder
    image_root = folder / bench.image_dir
    split = json.loads(Path(split_path).read_text())
    data = image_bytes()
    base, prefix = str(image_root), bench.image_dir
    made: set[str] = set()
    manifest, names = [], {}
    for items in split.values():
        for rel, label, name in items:  # plain os calls: tens of thousands of files in about a second
            path = os.path.join(base, rel)
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.write(fd, data)
            os.close(fd)
            manifest.append((f"{prefix}/{rel}" if prefix else rel, label, name))
            names[label] = name
    shutil.copyfile(split_path, folder / bench.split_file)
    return GeneratedTree(folder, [names[y] for y in range(len(names))], len(manifest), manifest)


def _write_manifest_split(key: str, tree: GeneratedTree) -> None:
    bench = get_benchmark(key)
    if bench.split_file is None:
        raise ValueError(f"{key} has no split file")
    image_root = tree.path / bench.image_dir
    by_label: dict[int, list] = {}
    for rel, label, name in tree.manifest:
        by_label.setdefault(label, []).append([str((tree.path / rel).relative_to(image_root)), label, name])
    split = {"train": [], "val": [], "test": []}
    for rows in by_label.values():
        n_train, n_val = len(rows) // 2, max(1, len(rows) // 5)
        split["train"] += rows[:n_train]
        split["val"] += rows[n_train:n_train + n_val]
        split["test"] += rows[n_train + n_val:]
    (tree.path / bench.split_file).write_text(json.dumps(split))


def _tree(folder: Path, classnames: list[str], manifest: list) -> GeneratedTree:
    return GeneratedTree(folder, classnames, len(manifest), manifest)


def _pick(pairs: list, num_classes: int | None) -> list:
    if num_classes is not None and num_classes > len(pairs):
        raise ValueError(f"this generator knows {len(pairs)} classes; asked for {num_classes}")
    return pairs[: num_classes or len(pairs)]


def _class_folders(folder: Path, image_dir: str, classes: list[tuple[str, str]], n: int, size: int,
                   distinct: bool, stem: Callable[[str, int], str]) -> list:
    """``image_dir/<folder>/<stem>`` for each class; label = rank of the folder name in sorted order."""
    order = {f: y for y, f in enumerate(sorted(f for f, _ in classes))}
    manifest = []
    for f, name in classes:
        for i in range(n):
            rel = f"{image_dir}/{f}/{stem(f, i)}"
            write_image(folder / rel, size, distinct)
            manifest.append((rel, order[f], name))
    return manifest


def _sorted_names(classes: list[tuple[str, str]]) -> list[str]:
    return [name for _, name in sorted(classes)]


CALTECH = [("Faces", "face"), ("Leopards", "leopard"), ("Motorbikes", "motorbike"), ("accordion", "accordion"),
           ("airplanes", "airplane"), ("anchor", "anchor"), ("car_side", "car_side"), ("yin_yang", "yin_yang")]


def _caltech101(folder, n, k, size, distinct):
    classes = _pick(CALTECH, k)
    stem = lambda f, i: f"image_{i + 1:04d}.jpg"  # noqa: E731
    manifest = _class_folders(folder, "101_ObjectCategories", classes, n, size, distinct, stem)
    for ignored in ("BACKGROUND_Google", "Faces_easy"):
        for i in range(3):
            write_image(folder / "101_ObjectCategories" / ignored / f"image_{i + 1:04d}.jpg", size, distinct)
    return _tree(folder, _sorted_names(classes), manifest)


DTD_CLASSES = [(c, c) for c in ("banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "zigzagged")]


def _dtd(folder, n, k, size, distinct):
    classes = _pick(DTD_CLASSES, k)
    manifest = _class_folders(folder, "images", classes, n, size, distinct, lambda f, i: f"{f}_{i + 1:04d}.jpg")
    for extra in ("labels/labels_joint_anno.txt", "imdb/imdb.mat"):
        (folder / extra).parent.mkdir(parents=True, exist_ok=True)
        (folder / extra).write_text("")
    return _tree(folder, _sorted_names(classes), manifest)


EUROSAT = [("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"),
           ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
           ("Highway", "Highway or Road"), ("Industrial", "Industrial Buildings"), ("Pasture", "Pasture Land"),
           ("PermanentCrop", "Permanent Crop Land"), ("Residential", "Residential Buildings"), ("River", "River"),
           ("SeaLake", "Sea or Lake")]


def _eurosat(folder, n, k, size, distinct):
    classes = _pick(EUROSAT, k)
    manifest = _class_folders(folder, "2750", classes, n, size, distinct, lambda f, i: f"{f}_{i + 1}.jpg")
    return _tree(folder, _sorted_names(classes), manifest)


FOOD = [(c, c) for c in ("apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "bibimbap", "waffles")]


def _food101(folder, n, k, size, distinct):
    classes = _pick(FOOD, k)
    manifest = _class_folders(folder, "images", classes, n, size, distinct, lambda f, i: f"{1000 + i}.jpg")
    meta = folder / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "classes.txt").write_text("\n".join(sorted(f for f, _ in classes)) + "\n")
    stems = [rel.split("/", 1)[1].rsplit(".", 1)[0] for rel, _, _ in manifest]
    (meta / "train.txt").write_text("\n".join(stems[::2]) + "\n")
    (meta / "test.txt").write_text("\n".join(stems[1::2]) + "\n")
    return _tree(folder, _sorted_names(classes), manifest)


PETS = ["Abyssinian", "american_bulldog", "basset_hound", "Bengal", "Birman", "great_pyrenees", "yorkshire_terrier"]


def _oxford_pets(folder, n, k, size, distinct):
    breeds = _pick(PETS, k)
    lines = {"trainval.txt": [], "test.txt": []}
    manifest = []
    for class_id, breed in enumerate(breeds, start=1):
        species = 1 if breed[0].isupper() else 2
        for i in range(n):
            stem = f"{breed}_{100 + i}"
            write_image(folder / "images" / f"{stem}.jpg", size, distinct)
            part = "trainval.txt" if i < (n * 3) // 5 else "test.txt"
            lines[part].append(f"{stem} {class_id} {species} {class_id}")
            manifest.append((f"images/{stem}.jpg", class_id - 1, breed.lower()))
    for name, rows in lines.items():
        (folder / "annotations" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "annotations" / name).write_text("\n".join(rows) + "\n")
    return _tree(folder, [b.lower() for b in breeds], manifest)


CARS = [("AM General Hummer SUV 2000", "2000 AM General Hummer SUV"), ("Acura RL Sedan 2012", "2012 Acura RL Sedan"),
        ("Audi R8 Coupe 2012", "2012 Audi R8 Coupe"), ("Tesla Model S Sedan 2012", "2012 Tesla Model S Sedan"),
        ("smart fortwo Convertible 2012", "2012 smart fortwo Convertible")]


def _stanford_cars(folder, n, k, size, distinct):
    import numpy as np
    from scipy.io import savemat

    classes = _pick(CARS, k)
    manifest, annos = [], {"cars_train": [], "cars_test": []}
    for label, (_, name) in enumerate(classes):
        for i in range(n):
            split = "cars_train" if i < (n * 3) // 5 else "cars_test"
            fname = f"{len(annos[split]) + 1:05d}.jpg"
            write_image(folder / split / fname, size, distinct)
            annos[split].append((fname, label + 1))
            manifest.append((f"{split}/{fname}", label, name))
    (folder / "devkit").mkdir(parents=True, exist_ok=True)
    names = np.empty((1, len(classes)), dtype=object)
    names[0, :] = [raw for raw, _ in classes]
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": names})
    targets = (("cars_train", "devkit/cars_train_annos.mat"), ("cars_test", "cars_test_annos_withlabels.mat"))
    for split, target in targets:
        records = np.zeros((1, len(annos[split])), dtype=[("bbox_x1", "O"), ("class", "O"), ("fname", "O")])
        for j, (fname, class_id) in enumerate(annos[split]):
            records[0, j] = (np.array([[1]], np.uint8), np.array([[class_id]], np.uint8), np.array([fname]))
        savemat(folder / target, {"annotations": records})
    return _tree(folder, [name for _, name in classes], manifest)


FLOWERS = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold"]


def _oxford_flowers(folder, n, k, size, distinct):
    import numpy as np
    from scipy.io import savemat

    names = _pick(FLOWERS, k)
    labels = [1 + y for y in range(len(names)) for _ in range(n)]
    random.Random(0).shuffle(labels)  # classes interleaved, first appearances out of label order
    manifest = []
    for j, label in enumerate(labels):
        rel = f"jpg/image_{j + 1:05d}.jpg"
        write_image(folder / rel, size, distinct)
        manifest.append((rel, label - 1, names[label - 1]))
    savemat(folder / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    ids = np.arange(1, len(labels) + 1)[None]
    savemat(folder / "setid.mat", {"trnid": ids[:, 0::3], "valid": ids[:, 1::3], "tstid": ids[:, 2::3]})
    (folder / "cat_to_name.json").write_text(json.dumps({str(i + 1): nm for i, nm in enumerate(names)}))
    return _tree(folder, names, manifest)


AIRCRAFT = ["707-320", "A300B4", "BAE 146-200", "Cessna 172", "F-16A/B", "Tu-154"]


def _fgvc_aircraft(folder, n, k, size, distinct):
    variants = _pick(AIRCRAFT, k)
    lists = {"train": [], "val": [], "test": []}
    manifest, image_id = [], 1000000
    for label, variant in enumerate(variants):
        for i in range(n):
            image_id += 1
            write_image(folder / "images" / f"{image_id}.jpg", size, distinct)
            split = ("train", "val", "test")[i % 3]
            lists[split].append(f"{image_id} {variant}")
            manifest.append((f"images/{image_id}.jpg", label, variant))
    (folder / "variants.txt").write_text("\n".join(variants) + "\n")
    for split, rows in lists.items():
        (folder / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
    return _tree(folder, variants, manifest)


SUN = [("/a/abbey", "abbey"), ("/a/apartment_building/outdoor", "outdoor apartment_building"),
       ("/b/bakery/shop", "shop bakery"), ("/c/church/outdoor", "outdoor church"), ("/k/kitchen", "kitchen")]


def _sun397(folder, n, k, size, distinct):
    classes = _pick(SUN, k)
    lists = {"Training_01.txt": [], "Testing_01.txt": []}
    manifest = []
    for label, (category, name) in enumerate(classes):
        for i in range(n):
            image = f"{category}/sun_{hashlib.md5(f'{category}{i}'.encode()).hexdigest()[:16]}.jpg"
            write_image(folder / "SUN397" / image[1:], size, distinct)
            lists["Training_01.txt" if i < n // 2 else "Testing_01.txt"].append(image)
            manifest.append((f"SUN397{image}", label, name))
    (folder / "ClassName.txt").write_text("\n".join(c for c, _ in classes) + "\n")
    for name, rows in lists.items():
        (folder / name).write_text("\n".join(rows) + "\n")
    return _tree(folder, [name for _, name in classes], manifest)


UCF = [("ApplyEyeMakeup", "Apply_Eye_Makeup"), ("Archery", "Archery"), ("BabyCrawling", "Baby_Crawling"),
       ("PlayingDaf", "Playing_Daf"), ("YoYo", "Yo_Yo")]


def _ucf101(folder, n, k, size, distinct):
    classes = _pick(UCF, k)
    lists = {"trainlist01.txt": [], "testlist01.txt": []}
    manifest = []
    for label, (action, renamed) in enumerate(classes):
        for i in range(n):
            video = f"v_{action}_g{i + 1:02d}_c01"
            write_image(folder / "UCF-101-midframes" / renamed / f"{video}.jpg", size, distinct)
            if i < (n * 3) // 5:
                lists["trainlist01.txt"].append(f"{action}/{video}.avi {label + 1}")
            else:
                lists["testlist01.txt"].append(f"{action}/{video}.avi")
            manifest.append((f"UCF-101-midframes/{renamed}/{video}.jpg", label, renamed))
    lists_dir = folder / "ucfTrainTestlist"
    lists_dir.mkdir(parents=True, exist_ok=True)
    (lists_dir / "classInd.txt").write_text("\n".join(f"{y + 1} {a}" for y, (a, _) in enumerate(classes)) + "\n")
    for name, rows in lists.items():
        (lists_dir / name).write_text("\n".join(rows) + "\n")
    return _tree(folder, [r for _, r in classes], manifest)


def _wnids(k: int) -> list[tuple[str, str]]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return [(f"n{1440764 + 9973 * i:08d}", IMAGENET_CLASSNAMES[i]) for i in range(k)]


def _write_classnames(folder: Path, pairs: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classnames.txt").write_text("\n".join(f"{w} {name}" for w, name in pairs) + "\n")


def _imagenet(folder, n, k, size, distinct):
    pairs = _wnids(k or 6)
    manifest = []
    for label, (wnid, name) in enumerate(pairs):
        for i in range(n):
            for split, stem in (("train", f"{wnid}_{i}.JPEG"), ("val", f"ILSVRC2012_val_{label * n + i:08d}.JPEG")):
                rel = f"images/{split}/{wnid}/{stem}"
                write_image(folder / rel, size, distinct)
                manifest.append((rel, label, name))
    _write_classnames(folder, pairs)
    return _tree(folder, [nm for _, nm in pairs], manifest)


def _imagenet_v2(folder, n, k, size, distinct):
    pairs = _wnids(k or 6)
    manifest = []
    for label, (_, name) in enumerate(pairs):
        for i in range(n):
            name_hash = hashlib.md5(f"{label}-{i}".encode()).hexdigest()
            rel = f"imagenetv2-matched-frequency-format-val/{label}/{name_hash}.jpeg"
            write_image(folder / rel, size, distinct)
            manifest.append((rel, label, name))
    _write_classnames(folder, pairs)
    return _tree(folder, [nm for _, nm in pairs], manifest)


def _imagenet_folders(image_dir: str, subset: bool):
    """Sketch (all classes) or -A/-R (every other class of classnames.txt, re-indexed from 0)."""

    def generate(folder, n, k, size, distinct):
        pairs = _wnids(2 * (k or 4) if subset else (k or 6))
        present = pairs[::2] if subset else pairs
        manifest = []
        for label, (wnid, name) in enumerate(present):
            for i in range(n):
                rel = f"{image_dir}/{wnid}/{'sketch' if not subset else 'img'}_{i}.JPEG"
                write_image(folder / rel, size, distinct)
                manifest.append((rel, label, name))
        if subset:
            (folder / image_dir / "README.txt").write_text("200 ImageNet classes\n")
        _write_classnames(folder, pairs)
        return _tree(folder, [nm for _, nm in present], manifest)

    return generate


_GENERATORS = {
    "caltech101": _caltech101, "dtd": _dtd, "eurosat": _eurosat, "food101": _food101, "oxford_pets": _oxford_pets,
    "stanford_cars": _stanford_cars, "oxford_flowers": _oxford_flowers, "fgvc_aircraft": _fgvc_aircraft,
    "sun397": _sun397, "ucf101": _ucf101, "imagenet": _imagenet, "imagenet_v2": _imagenet_v2,
    "imagenet_sketch": _imagenet_folders("images", subset=False),
    "imagenet_a": _imagenet_folders("imagenet-a", subset=True),
    "imagenet_r": _imagenet_folders("imagenet-r", subset=True),
}
NEEDS_SCIPY = ("stanford_cars", "oxford_flowers")
