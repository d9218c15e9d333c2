"""Neural-collapse statistics against their definitions where the variants differ (uneven norms, a bias,
more samples than one chunk, tiny scales), accuracy counts added across batches, the streaming tracker's
reservoir (algorithm R) and defaults, and the metrics' input checks, each named by the message it promises."""

import math

import pytest
import torch

from promptinfo.metrics import (
    AccuracyCount,
    class_information,
    class_means,
    information_summary,
    neural_collapse,
    sampled_information,
)
from promptinfo.metrics import collapse, collapse_values
from promptinfo.metrics.tracker import CollapseTracker, Reservoir

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _noisy(num_classes: int = 5, per_class: int = 6, dim: int = 8, seed: int = 0):
    """Class means of unequal norms, scattered features, random classifier weights."""
    labels = torch.arange(num_classes).repeat(per_class)
    centres = _randn(num_classes, dim, seed=seed) * torch.linspace(0.5, 3.0, num_classes, dtype=F64)[:, None]
    features = centres[labels] + 0.7 * _randn(len(labels), dim, seed=seed + 1)
    return features, labels, _randn(num_classes, dim, seed=seed + 2)


def _angles(rows: torch.Tensor) -> tuple[float, float]:
    unit = rows / rows.norm(dim=1, keepdim=True)
    c = rows.shape[0]
    cos = torch.stack([unit[i] @ unit[j] for i in range(c) for j in range(c) if i != j])
    return cos.std(correction=0).item(), (cos + 1 / (c - 1)).abs().mean().item()


def _nc4(features, labels, weights, bias):
    means = torch.stack([features[labels == k].mean(0) for k in range(weights.shape[0])])
    nearest = torch.cdist(features, means).argmin(1)
    return (nearest == (features @ weights.T + bias).argmax(1)).double().mean().item()


def test_equiangularity_and_max_angle_match_their_definitions():
    features, labels, weights = _noisy()
    stats = neural_collapse(features, labels, weights)
    means = torch.stack([features[labels == k].mean(0) for k in range(5)]) - features.mean(0)
    assert (stats["nc2_equiangular_means"], stats["nc2_maxangle_means"]) == pytest.approx(_angles(means), rel=1e-10)
    assert (stats["nc2_equiangular_weights"], stats["nc2_maxangle_weights"]) == pytest.approx(_angles(weights), rel=1e-10)
    centred = neural_collapse(features, labels, weights, center_weights=True)
    assert centred["nc2_equiangular_weights"] == pytest.approx(_angles(weights - weights.mean(0))[0], rel=1e-10)


def test_nc4_uses_the_bias_and_counts_past_one_chunk():
    features, labels, weights = _noisy(num_classes=4, per_class=2051, dim=3, seed=4)  # 8204 samples > 8192
    assert features.shape[0] > collapse._CHUNK
    bias = torch.tensor([2.0, -1.5, 0.5, 0.0], dtype=F64)
    with_bias = neural_collapse(features, labels, weights, bias=bias)["nc4"]
    without = neural_collapse(features, labels, weights)["nc4"]
    assert with_bias == pytest.approx(_nc4(features, labels, weights, bias), abs=1e-12)
    assert without == pytest.approx(_nc4(features, labels, weights, torch.zeros(4, dtype=F64)), abs=1e-12)
    assert abs(with_bias - without) > 0.01 and with_bias != _nc4(features, labels, weights, -bias)


def test_nc1_is_scale_invariant_down_to_tiny_features():
    features, labels, weights = _noisy()
    reference = neural_collapse(features, labels, weights)["nc1"]
    for scale in (1e-6, 1e3):
        assert neural_collapse(scale * features, labels, weights)["nc1"] == pytest.approx(reference, rel=1e-6)


def test_neural_collapse_input_checks():
    features, labels, weights = _noisy()
    width = r"^features must be \[n, d\] and weights \[C, d\] with the same width d \(for per-image classifiers "
    for bad_features, bad_weights in ((features[None], weights), (features, weights[None]), (features, weights[:, :4])):
        with pytest.raises(ValueError, match=width + r"average them over images first\), got"):
            neural_collapse(bad_features, labels, bad_weights)
    message = r"^labels must be an integer tensor \[n=30\], got "
    with pytest.raises(ValueError, match=message + r"\(29,\) torch.int64$"):
        neural_collapse(features, labels[:29], weights)
    with pytest.raises(ValueError, match=message + r"\(30,\) torch.float64$"):
        neural_collapse(features, labels.double(), weights)
    with pytest.raises(ValueError, match=message + r"\(1, 30\)"):
        neural_collapse(features, labels[None], weights)
    with pytest.raises(ValueError, match=r"^bias must have shape \[C=5\], got \(8,\)$"):
        neural_collapse(features, labels, weights, bias=torch.zeros(8, dtype=F64))
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, 5\) to index weights$"):
        neural_collapse(features, torch.where(labels == 4, 5, labels), weights)
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, 5\)"):
        neural_collapse(features, torch.where(labels == 4, -1, labels), weights)
    with pytest.raises(ValueError, match=r"^neural-collapse statistics need at least 2 classes$"):
        neural_collapse(features[labels == 0], labels[labels == 0], weights[:1])
    two = labels < 2
    assert math.isfinite(neural_collapse(features[two], labels[two], weights[:2])["nc1"])  # 2 classes suffice


def test_missing_classes_are_listed_up_to_ten_including_the_last():
    features, labels, weights = _noisy()
    with pytest.raises(ValueError, match=r"classes without samples: \[4\]\.\.\.$"):
        neural_collapse(features[labels < 4], labels[labels < 4], weights)
    wide = _randn(14, 8, seed=9)
    kept = labels < 2
    with pytest.raises(ValueError, match=r"classes without samples: \[2, 3, 4, 5, 6, 7, 8, 9, 10, 11\]\.\.\.$"):
        neural_collapse(features[kept], labels[kept], wide)


def test_accuracy_counts_add_both_fields():
    assert AccuracyCount(3, 5) + AccuracyCount(2, 4) == AccuracyCount(5, 9)


def test_class_information_passes_order_and_path_on():
    features, labels, weights = _noisy(seed=7)
    means, classes = class_means(features, labels)
    for alpha in (2.0, 0.5):
        got = class_information(features, labels, weights, alpha=alpha, path="features")
        expected = information_summary(means, weights[classes], alpha=alpha, path="features")
        for key in expected:
            assert torch.equal(got[key], expected[key]), (alpha, key)


def test_inspection_input_checks():
    features, labels, weights = _noisy()
    with pytest.raises(ValueError, match=r"^labels must be a 1-D tensor with one entry per sample \(30\), got shape \(29,\)$"):
        class_means(features, labels[:29])
    with pytest.raises(ValueError, match=r"^labels must be a 1-D tensor with one entry per sample \(30\), got shape \(1, 30\)$"):
        class_means(features, labels[None])
    with pytest.raises(ValueError, match=r"^labels must hold integer class indices, got dtype torch.float32$"):
        class_means(features, labels.float())
    with pytest.raises(ValueError, match=r"^labels must hold integer class indices, got dtype torch.bool$"):
        class_means(features, labels > 2)
    with pytest.raises(ValueError, match=r"^features must be \[n, d\], got shape \(1, 30, 8\)$"):
        class_means(features[None], labels)
    zero = features.clone()
    zero[2] = 0
    with pytest.raises(ValueError, match=r"^features has zero or non-finite rows"):
        class_means(zero, labels)
    with pytest.raises(ValueError, match=r"^weights must be \[C, d\] classifier weights, got shape \(8,\)$"):
        class_information(features, labels, weights[0])
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, 4\) to index weights \[C, d\]$"):
        class_information(features, labels, weights[:4])
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, 5\)"):
        class_information(features, torch.where(labels == 0, -1, labels), weights)


def test_sampled_information_spread_of_two_subsets_is_the_sample_std():
    x, y = _randn(40, 6, seed=20), _randn(40, 5, seed=21)
    two = sampled_information(x, y, subset_size=10, num_subsets=2, seed=1)["mir"]
    a, b = two["values"]
    assert a != b and two["std"] == pytest.approx(abs(a - b) / math.sqrt(2), rel=1e-12)


# ---------------------------------------------------------------- streaming tracker
@pytest.mark.parametrize("size, n", [(3, 300), (10, 40)])  # a big reservoir on a short stream: many late draws count
def test_reservoir_slots_follow_algorithm_r(size, n):
    seed = 5
    rows = torch.arange(n, dtype=F64)[:, None].repeat(1, 2)
    reservoir = Reservoir(size, seed)
    for start in range(0, n, 7):  # uneven batches
        reservoir.add(rows[start : start + 7], torch.arange(start, min(start + 7, n)))
    draws = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    kept = list(range(size))
    for position in range(size, n):
        slot = int(draws[position] * (position + 1))  # uniform over 0 .. position
        if slot < size:
            kept[slot] = position
    _, labels, positions = reservoir.sample()
    assert positions.tolist() == sorted(kept) and labels.tolist() == sorted(kept)


def test_the_smallest_reservoir_and_the_defaults():
    assert Reservoir(2, 0).size == 2
    with pytest.raises(ValueError, match=r"^the reservoir needs room for at least 2 samples, got max_samples=1$"):
        Reservoir(1, 0)
    tracker = CollapseTracker()
    assert (tracker.reservoir.size, tracker.reservoir.seed) == (1024, 0)


def test_closed_forms_for_two_classes():
    values = collapse_values(2)
    assert (values["entropy"], values["mi"], values["erank"], values["hdr"]) == (0.0, 0.0, 1.0, 0.0)


def test_tracker_input_messages():
    tracker = CollapseTracker(max_samples=8)
    features, weights, labels = torch.randn(4, 3), torch.randn(2, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"^labels must be integer class indices \[b=4\], got \(3,\) torch\.int64$"):
        tracker.update(features, weights, labels[:3])
    with pytest.raises(ValueError, match=r"^labels must be integer class indices \[b=4\], got \(4,\) torch\.float32$"):
        tracker.update(features, weights, labels.float())
    with pytest.raises(ValueError, match=r"^labels must be integer class indices \[b=4\], got \(4,\) torch\.bool$"):
        tracker.update(features, weights, labels.bool())
    with pytest.raises(ValueError, match=r"^bias must have shape \[C=2\], got \(3,\)$"):
        tracker.update(features, weights, labels, bias=torch.zeros(3))
    bad = features.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^features contain NaN or inf; the tracker needs finite features$"):
        tracker.update(bad, weights, labels)
    with pytest.raises(ValueError, match=r"^features must be"):
        tracker.update(features[None], weights, labels)
    tracker.update(features, weights, labels)
    with pytest.raises(ValueError, match=r"within an epoch; call reset\(\) between heads$"):
        tracker.update(features, torch.randn(3, 3), labels)
