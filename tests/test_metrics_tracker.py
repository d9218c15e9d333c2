"""The streaming CollapseTracker against the batch functions, and its closed forms at constructed collapse."""

import math

import pytest
import torch

from promptinfo.metrics import CollapseTracker, collapse_values, effective_rank, information_summary, neural_collapse
from tests.test_metrics import simplex_etf

F64 = torch.float64


def _uneven(seed=0, per_class=(9, 3, 14, 5, 1, 8), dim=7):
    """Noisy features of uneven classes (40 samples, shuffled) and a biased head."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    centres = 2.0 * torch.randn(len(per_class), dim, generator=g, dtype=F64)
    features = centres[labels] + torch.randn(len(labels), dim, generator=g, dtype=F64) + 0.7
    weights = torch.randn(len(per_class), dim, generator=g, dtype=F64)
    bias = torch.randn(len(per_class), generator=g, dtype=F64)
    return features, labels, weights, bias


def _track(tracker, features, labels, weights, bias=None, sizes=(7, 1, 16, 5)):
    start, i = 0, 0
    while start < len(labels):
        stop = start + sizes[i % len(sizes)]
        tracker.update(features[start:stop], weights, labels[start:stop], bias)
        start, i = stop, i + 1
    return tracker.compute()


@pytest.mark.parametrize("center", [True, False])
def test_tracker_equals_batch_functions_on_all_data(center):
    features, labels, weights, bias = _uneven()
    out = _track(CollapseTracker(max_samples=64, center=center), features.float(), labels, weights.float(), bias)
    features, weights = features.float().double(), weights.float().double()  # what the tracker saw
    z = features - features.mean(0) if center else features
    info = information_summary(z, weights[labels])
    assert out["n_seen"] == out["n_sample"] == 40
    for ours, theirs in [("entropy_features", "entropy_x"), ("entropy_head", "entropy_y"),
                         ("entropy_joint", "entropy_joint"), ("mi", "mi"), ("mir", "mir"), ("hdr", "hdr")]:
        assert out[ours] == pytest.approx(float(info[theirs]), abs=1e-10), ours
    assert out["erank_features"] == pytest.approx(float(effective_rank(z)), rel=1e-10)
    assert out["erank_head"] == pytest.approx(float(effective_rank(weights[labels])), rel=1e-10)
    for key, value in neural_collapse(features, labels, weights, bias.float()).items():
        assert out[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert out["entropy_features"] != pytest.approx(out["entropy_head"], abs=1e-3)  # unequal entropies: HDR > 0


def test_tracker_subsample_is_seeded_uniform_and_independent_of_batching():
    features, labels, weights, bias = _uneven(seed=1)
    a, b = CollapseTracker(max_samples=12, seed=3), CollapseTracker(max_samples=12, seed=3)
    out_a = _track(a, features, labels, weights, bias, sizes=(7, 1, 16, 5))
    out_b = _track(b, features, labels, weights, bias, sizes=(40,))
    rows, sample_labels, positions = a.reservoir.sample()
    assert torch.equal(positions, b.reservoir.sample()[2])  # the same positions, whatever the batch sizes
    assert out_a == pytest.approx(out_b, rel=1e-12, abs=1e-14)  # moments merged in other groupings
    assert out_a["n_sample"] == 12 and out_a["n_seen"] == 40
    assert torch.equal(rows, features[positions]) and torch.equal(sample_labels, labels[positions])
    assert positions.unique().numel() == 12 and positions.max() >= 12  # replaced some of the first 12
    info = information_summary(rows - features.mean(0), weights[sample_labels])  # centred by mu_G of all 40
    assert out_a["mir"] == pytest.approx(float(info["mir"]), abs=1e-12)
    # NC1-NC3 stay exact over every sample even with a small reservoir
    for key, value in neural_collapse(features, labels, weights).items():
        if key != "nc4":
            assert out_a[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    other = CollapseTracker(max_samples=12, seed=4)
    _track(other, features, labels, weights, bias)
    assert not torch.equal(other.reservoir.sample()[2], positions)
    a.reset()
    assert _track(a, features, labels, weights, bias) == out_a  # every epoch draws the same positions


def test_reservoir_is_uniform_over_the_stream():
    hits = torch.zeros(40)
    for seed in range(300):
        tracker = CollapseTracker(max_samples=10, seed=seed)
        tracker.reservoir.add(torch.zeros(25, 2, dtype=F64), torch.zeros(25, dtype=torch.long))
        tracker.reservoir.add(torch.zeros(15, 2, dtype=F64), torch.zeros(15, dtype=torch.long))
        hits[tracker.reservoir.sample()[2]] += 1
    expected = 300 * 10 / 40  # 75 per position
    assert hits.sum() == 3000 and (hits - expected).abs().max() < 30  # ~ 4 binomial standard deviations


@pytest.mark.parametrize("num_classes", [10, 5])
def test_tracker_returns_the_closed_forms_at_constructed_collapse(num_classes):
    etf = simplex_etf(num_classes, num_classes + 2)
    offset = torch.zeros(num_classes + 2, dtype=F64)
    offset[:2] = torch.tensor([3.0, -1.0])  # a global mean that centring removes
    labels = torch.arange(num_classes).repeat(6)
    out = _track(CollapseTracker(max_samples=1000), 4.0 * etf[labels] + offset, labels, 2.5 * etf, sizes=(13,))
    closed = collapse_values(num_classes)
    assert out["entropy_features"] == pytest.approx(math.log(num_classes - 1), abs=1e-9)
    assert out["entropy_head"] == pytest.approx(math.log(num_classes - 1), abs=1e-9)
    assert out["mir"] == pytest.approx(closed["mir"], abs=1e-9) and out["hdr"] == pytest.approx(0.0, abs=1e-9)
    assert out["mi"] == pytest.approx(closed["mi"], abs=1e-9)
    assert out["erank_features"] == pytest.approx(num_classes - 1, abs=1e-8)
    for key in ("nc1", "nc2_equinorm_means", "nc2_equiangular_means", "nc2_maxangle_means", "nc3"):
        assert out[key] == pytest.approx(0.0, abs=1e-9), key
    assert out["nc4"] == 1.0
    assert {k: out[f"collapse_{k}"] for k in closed} == closed
    if num_classes == 10:
        assert closed["mir"] == pytest.approx(0.952351, abs=1e-6)


def test_collapse_values_closed_forms():
    assert collapse_values(10)["mir"] == pytest.approx(0.952351, abs=1e-6)
    assert collapse_values(3) == {"entropy": math.log(2), "erank": 2.0, "mi": math.log(2) / 2, "mir": 0.5, "hdr": 0.0}
    assert math.isnan(collapse_values(2)["mir"]) and collapse_values(2)["entropy"] == 0.0
    with pytest.raises(ValueError, match="at least 2 classes"):
        collapse_values(1)


def test_tracker_rejects_bad_input():
    tracker = CollapseTracker()
    with pytest.raises(ValueError, match="before any update"):
        tracker.compute()
    with pytest.raises(ValueError, match="same d"):
        tracker.update(torch.zeros(3, 4), torch.zeros(5, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"lie in \[0, 5\)"):
        tracker.update(torch.ones(3, 4), torch.ones(5, 4), torch.tensor([0, 1, 5]))
    tracker.update(torch.randn(3, 4), torch.ones(5, 4), torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="changed shape"):
        tracker.update(torch.ones(3, 4), torch.ones(6, 4), torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="classes without samples"):
        tracker.compute()
    with pytest.raises(ValueError, match="at least 2 samples"):
        CollapseTracker(max_samples=1)
