"""Zero-shot inspection: metrics on hand-built features, and the promptinfo-inspect command end to end."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from promptinfo.backbones import normalize
from promptinfo.cli.inspect import main as inspect_main
from promptinfo.data import build_transform, load_benchmark, load_rgb
from promptinfo.methods import create_method
from promptinfo.metrics import matrix_entropy
from promptinfo.report.zeroshot_inspection import METRIC_DESCRIPTIONS, inspect_features, subset_indices
from tests.conftest import make_backbone
from tests.datagen import make_benchmark_tree


def collapsed(num_classes: int = 4, per_class: int = 3, width: int = 6):
    """Every image feature equals its class weight; the weights are orthonormal (perfect neural collapse)."""
    weights = torch.eye(num_classes, width)  # [C, d]
    labels = torch.arange(num_classes).repeat_interleave(per_class)  # [n]
    return weights[labels].clone(), labels, weights


def test_perfect_collapse_gives_the_textbook_values():
    features, labels, weights = collapsed()
    metrics = inspect_features(features, labels, weights, pair_size=12, pair_subsets=2).metrics
    # K_Z = K_{W_y} is block diagonal with four equal blocks: eigenvalues 1/4 (x4), H = log 4; K_W = I/4, H = log 4.
    # Kz * Kw = Kz (0/1 entries), so H(Z, W_y) = log 4, MI = log 4, MIR = 1, HDR = 0.
    expected = {"accuracy": 100.0, "entropy_image": math.log(4), "erank_image": 4.0, "entropy_text": math.log(4),
                "erank_text": 4.0, "entropy_classifier": math.log(4), "erank_classifier": 4.0,
                "entropy_joint": math.log(4), "mi": math.log(4), "mir": 1.0, "hdr": 0.0, "mi_std": 0.0,
                "class_mir": 1.0, "class_hdr": 0.0, "nc1": 0.0, "nc4": 1.0}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    assert (metrics["n_images"], metrics["n_classes"], metrics["pair_subset_size"]) == (12, 4, 12)
    assert set(METRIC_DESCRIPTIONS) <= set(metrics)


def test_accuracy_counts_swapped_images():
    features, labels, weights = collapsed()
    features[[0, 5]] = features[[5, 0]]  # image 0 (class 0) now looks like class 1 and image 5 like class 0
    metrics = inspect_features(features, labels, weights, pair_size=12, pair_subsets=1).metrics
    assert metrics["accuracy"] == pytest.approx(100.0 * 10 / 12, abs=1e-12)
    assert metrics["mir"] < 1.0 and metrics["nc1"] > 0.0


def test_label_weights_follow_the_class_frequencies():
    weights = torch.eye(2, 3)
    labels = torch.tensor([0, 0, 0, 1])
    metrics = inspect_features(weights[labels], labels, weights, pair_size=4, pair_subsets=1).metrics
    # K_{W_y} has eigenvalues 3/4 and 1/4; K_W = I/2.
    assert metrics["entropy_text"] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), abs=1e-12)
    assert metrics["entropy_classifier"] == pytest.approx(math.log(2), abs=1e-12)


def test_spectra_are_sorted_and_unit_trace():
    features, labels, weights = collapsed()
    spectra = inspect_features(features + 0.1, labels, weights, pair_size=4, pair_subsets=1).spectra
    assert set(spectra) == {"image features Z", "text weights W", "class means"}
    for values in spectra.values():
        assert (values[:-1] >= values[1:]).all() and values.sum() == pytest.approx(1.0, abs=1e-9)


def test_subset_indices_are_seeded_sorted_and_unique():
    first = subset_indices(100, 10, seed=3)
    assert torch.equal(first, subset_indices(100, 10, seed=3)) and not torch.equal(first, subset_indices(100, 10, seed=4))
    assert first.tolist() == sorted(set(first.tolist())) and len(first) == 10
    assert torch.equal(subset_indices(5, None, 0), torch.arange(5)) and torch.equal(subset_indices(5, 9, 0), torch.arange(5))


def test_bad_inputs_are_refused():
    features, labels, weights = collapsed()
    with pytest.raises(ValueError, match="labels must lie"):
        inspect_features(features, labels + 1, weights)
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        inspect_features(features[:, :5], labels, weights)


@pytest.fixture(scope="module")
def dtd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_benchmark_tree("dtd", root, n_per_class=10, num_classes=4, split_file=True)
    return root


def direct_zero_shot(root):
    """Accuracy and features computed without the inspection code or the feature cache."""
    backbone = make_backbone("pi-tiny-vit-s", seed=0)  # what the command builds for --seed 0 and no weights
    data = load_benchmark("dtd", root)
    method = create_method("zeroshot", backbone, data.classnames, templates=data.templates)
    transform = build_transform(backbone.preprocess_cfg, train=False)
    images = torch.stack([transform(load_rgb(item.path)) for item in data.test])
    labels = torch.tensor([item.label for item in data.test])
    with torch.no_grad():
        features = normalize(backbone.encode_image(images))
        predictions = method.classify(features).logits.argmax(1)
    return 100.0 * float((predictions == labels).sum()) / len(labels), features


def test_inspect_command_matches_direct_computation(dtd_root, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", "pi-tiny-vit-s", "--datasets", "dtd", "--data-root", str(dtd_root), "--out", str(out),
            "--feature-cache", str(tmp_path / "cache"), "--device", "cpu", "--pair-size", "6", "--pair-subsets", "2"]
    assert inspect_main(argv) == 0
    frame = pd.read_csv(out / "inspect.csv")
    assert list(frame.columns[:7]) == ["dataset", "n_test", "n_images_skipped", "templates", "split_source",
                                       "backbone", "weights"]
    assert list(frame.columns[7:7 + len(METRIC_DESCRIPTIONS)]) == list(METRIC_DESCRIPTIONS)
    row = frame.iloc[0]
    accuracy, features = direct_zero_shot(dtd_root)
    assert (row["dataset"], row["n_images"], row["n_classes"], row["weights"]) == ("dtd", 12, 4, "random")
    assert row["accuracy"] == accuracy
    assert row["entropy_image"] == pytest.approx(float(matrix_entropy(features)), abs=1e-6)
    for name in ("spectra.png", "metrics.png", "inspect.md", "inspect.tex", "inspect.json"):
        assert (out / name).stat().st_size > 500, name
    assert (out / "spectra.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "inspect.json").read_text())
    assert len(report["datasets"][0]["spectra"]["text weights W"]) == 4
    assert "| accuracy | zero-shot top-1 accuracy (%) |" in capsys.readouterr().out


@pytest.mark.slow
def test_inspect_subset_is_deterministic(dtd_root, tmp_path):
    def run(out):
        argv = ["--model", "pi-tiny-vit-s", "--datasets", "dtd", "--data-root", str(dtd_root), "--out", str(out),
                "--feature-cache", str(tmp_path / "cache"), "--device", "cpu", "--subset", "5", "--seed", "3",
                "--pair-size", "4", "--pair-subsets", "2", "--format", "csv"]
        assert inspect_main(argv) == 0
        return pd.read_csv(out / "inspect.csv")

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first.iloc[0]["n_images"] == 5 and first.iloc[0]["n_test"] == 12
    pd.testing.assert_frame_equal(first, second)
    assert not (tmp_path / "a" / "inspect.md").exists()


def test_inspect_command_reports_missing_data(tmp_path, capsys):
    argv = ["--model", "pi-tiny-vit-s", "--datasets", "dtd", "--data-root", str(tmp_path / "nowhere"),
            "--out", str(tmp_path / "out"), "--device", "cpu", "--feature-cache", str(tmp_path / "cache")]
    assert inspect_main(argv) == 2
    assert "promptinfo-inspect: error:" in capsys.readouterr().err
