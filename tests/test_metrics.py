"""Matrix entropy, MI, MIR, HDR, effective rank, NC statistics and accuracy.

Pins down the closed forms of arXiv 2406.03999 at neural collapse, invariances, the
agreement of the n x n, d x d and Khatri-Rao paths, and finite exact gradients.
"""

import math

import pytest
import torch

from promptinfo.metrics import (
    AccuracyCount,
    accuracy,
    class_information,
    class_means,
    effective_rank,
    gram,
    harmonic_mean,
    hdr,
    information_summary,
    matrix_entropy,
    mir,
    mutual_information,
    neural_collapse,
    sampled_information,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=F64)


def _orthogonal(d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(_randn(d, d, seed=seed))
    return q


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """[C, dim] unit rows with pairwise cosine -1/(C-1), randomly rotated (dim >= C - 1)."""
    centring = torch.eye(num_classes, dtype=F64) - 1.0 / num_classes
    complement = torch.linalg.eigh(centring).eigenvectors[:, 1:]  # [C, C-1] basis orthogonal to ones
    coords = math.sqrt(num_classes / (num_classes - 1)) * centring @ complement  # [C, C-1]
    return coords @ _orthogonal(dim, seed)[: num_classes - 1]  # [C, dim]


def mir_at_collapse(c: int) -> float:
    return 1 / (c - 1) + (c - 2) * math.log(c - 2) / ((c - 1) * math.log(c - 1))


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("path", ["auto", "samples", "features"])
def test_orthonormal_rows_have_entropy_log_n(path):
    x = _orthogonal(10)[:6] * torch.arange(1, 7, dtype=F64)[:, None]  # scaled orthonormal rows
    assert matrix_entropy(x, path=path).item() == pytest.approx(math.log(6), abs=1e-9)
    assert matrix_entropy(x, normalized=True, path=path).item() == pytest.approx(1.0, abs=1e-9)
    assert effective_rank(x, path=path).item() == pytest.approx(6.0, abs=1e-8)
    assert matrix_entropy(x, alpha=2.0, path=path).item() == pytest.approx(math.log(6), abs=1e-9)


def test_parallel_rows_have_zero_entropy_and_unit_rank():
    x = _randn(1, 5).repeat(7, 1) * torch.arange(1, 8, dtype=F64)[:, None]
    assert matrix_entropy(x).item() == pytest.approx(0.0, abs=1e-9)
    assert effective_rank(x).item() == pytest.approx(1.0, abs=1e-9)


def test_gram_has_unit_diagonal_and_matches_cosines():
    x = _randn(5, 3)
    g = gram(x * 7.0)
    assert g.shape == (5, 5) and g.dtype == F64
    torch.testing.assert_close(torch.diagonal(g), torch.ones(5, dtype=F64))
    torch.testing.assert_close(g, torch.nn.functional.cosine_similarity(x[:, None], x[None], dim=-1))


@pytest.mark.parametrize(
    "num_classes,per_class,dim,path",
    [(10, 3, 12, "auto"), (10, 3, 12, "samples"), (10, 3, 12, "features"), (100, 1, 100, "auto")],
)  # C = 100 with path="features" would build a 10,000 x 10,000 Khatri-Rao matrix
def test_neural_collapse_closed_forms(num_classes, per_class, dim, path):
    etf = simplex_etf(num_classes, dim)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    z, w = etf[labels], etf[labels]  # features collapsed onto the ETF, equal to the classifier weights
    info = information_summary(z, w, path=path)
    log_c1 = math.log(num_classes - 1)
    assert info["entropy_x"].item() == pytest.approx(log_c1, abs=1e-6)
    assert info["entropy_y"].item() == pytest.approx(log_c1, abs=1e-6)
    assert info["hdr"].item() == pytest.approx(0.0, abs=1e-6)
    assert info["mir"].item() == pytest.approx(mir_at_collapse(num_classes), abs=1e-6)
    assert mir(z, w, path=path).item() == pytest.approx({10: 0.952351, 100: 0.997813}[num_classes], abs=1e-6)


def test_class_level_information_at_collapse_uses_means_against_weights():
    etf = simplex_etf(10, 16)
    labels = torch.arange(10).repeat(4)
    features = 3.0 * etf[labels]
    info = class_information(features, labels, etf)
    assert info["mir"].item() == pytest.approx(0.952351, abs=1e-6)
    assert info["hdr"].item() == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- invariances and bounds


def test_invariant_to_rotation_row_scaling_and_permutation():
    x, y = _randn(15, 6, seed=1), _randn(15, 4, seed=2)
    base = information_summary(x, y)
    perm = torch.randperm(15, generator=_gen(3))
    scales = torch.rand(15, 1, generator=_gen(4), dtype=F64) * 5 + 0.1
    variants = [
        (x @ _orthogonal(6, 5), y @ _orthogonal(4, 6)),
        (x * scales, y * scales.flip(0)),
        (x[perm], y[perm]),
    ]
    for xv, yv in variants:
        for key, value in information_summary(xv, yv).items():
            torch.testing.assert_close(value, base[key], rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_mutual_information_is_between_zero_and_min_entropy(seed):
    g = _gen(seed)
    n, dx, dy = 14, int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g))
    x = torch.randn(n, dx, generator=g, dtype=F64)
    mix = torch.randn(dx, dy, generator=g, dtype=F64)
    y = (seed % 3) * x @ mix + torch.randn(n, dy, generator=g, dtype=F64)  # independent to strongly related
    info = information_summary(x, y)
    assert -1e-10 <= info["mi"].item() <= min(info["entropy_x"].item(), info["entropy_y"].item()) + 1e-10
    assert -1e-10 <= info["mir"].item() <= 1 + 1e-10
    assert 0 <= info["hdr"].item() <= 1


def test_identical_inputs_have_zero_hdr_and_consistent_mi():
    x = _randn(9, 4)
    assert hdr(x, 2 * x).item() == 0.0
    assert 0.0 < mir(x, x).item() <= 1.0
    info = information_summary(x, x)
    torch.testing.assert_close(info["mi"], 2 * info["entropy_x"] - info["entropy_joint"])


# ---------------------------------------------------------------- paths, batching, dtypes


@pytest.mark.parametrize("n,d", [(30, 5), (5, 30), (8, 8)])
@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_entropy_paths_agree_in_value_and_gradient(n, d, alpha):
    values, grads = [], []
    for path in ("samples", "features"):
        x = _randn(n, d, seed=7).requires_grad_(True)
        h = matrix_entropy(x, alpha=alpha, path=path)
        h.backward()
        values.append(h.detach())
        grads.append(x.grad)
    torch.testing.assert_close(values[0], values[1], rtol=0, atol=1e-10)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-8)


def test_khatri_rao_and_gram_joint_paths_agree():
    results = {}
    for path in ("samples", "features", "auto"):
        x, y = _randn(40, 4, seed=8).requires_grad_(True), _randn(40, 5, seed=9).requires_grad_(True)
        info = information_summary(x, y, path=path)  # features: 4x4, 5x5 and Khatri-Rao 20x20
        info["mi"].backward()
        results[path] = (info, x.grad, y.grad)
    for path in ("features", "auto"):
        for key in results["samples"][0]:
            torch.testing.assert_close(results[path][0][key], results["samples"][0][key], rtol=0, atol=1e-10)
        torch.testing.assert_close(results[path][1], results["samples"][1], rtol=0, atol=1e-8)
        torch.testing.assert_close(results[path][2], results["samples"][2], rtol=0, atol=1e-8)


def test_renyi_order_two_matches_frobenius_form_and_order_one_is_the_limit():
    x = _randn(7, 3)
    k = gram(x) / 7
    expected = -torch.log((k * k).sum())  # tr K^2 = ||K||_F^2 for symmetric K
    torch.testing.assert_close(matrix_entropy(x, alpha=2.0), expected, rtol=0, atol=1e-12)
    assert matrix_entropy(x, alpha=1.0 + 1e-7).item() == pytest.approx(matrix_entropy(x).item(), abs=1e-6)


def test_batched_inputs_match_per_item_results():
    x, y = _randn(3, 7, 4, seed=10), _randn(3, 7, 2, seed=11)
    h = matrix_entropy(x)
    info = information_summary(x, y)
    assert h.shape == (3,) and info["mir"].shape == (3,)
    for i in range(3):
        torch.testing.assert_close(h[i], matrix_entropy(x[i]))
        torch.testing.assert_close(info["mir"][i], mir(x[i], y[i]))


def test_float32_input_is_computed_in_float64():
    x = _randn(20, 6).float()
    h = matrix_entropy(x)
    assert h.dtype == F64
    torch.testing.assert_close(h, matrix_entropy(x.double()), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- gradients


def test_gradcheck_entropies_and_ratios_at_generic_points():
    x, y = _randn(4, 3, seed=12).requires_grad_(True), _randn(4, 2, seed=13).requires_grad_(True)
    wide = _randn(4, 5).requires_grad_(True)  # full-rank 4 x 4 kernel on the samples path
    for alpha in (1.0, 0.5, 2.0):
        assert torch.autograd.gradcheck(lambda a, alpha=alpha: matrix_entropy(a, alpha=alpha), (x,))
        assert torch.autograd.gradcheck(lambda a, alpha=alpha: matrix_entropy(a, alpha=alpha, path="samples"), (wide,))
    assert torch.autograd.gradcheck(effective_rank, (x,))
    assert torch.autograd.gradcheck(mutual_information, (x, y))
    assert torch.autograd.gradcheck(mir, (x, y))
    assert torch.autograd.gradcheck(hdr, (x, y))
    x9, y9 = _randn(9, 2, seed=14).requires_grad_(True), _randn(9, 2, seed=15).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: mutual_information(a, b, path="features"), (x9, y9))  # Khatri-Rao 4x4


def test_gradcheck_at_repeated_eigenvalues():
    etf = simplex_etf(4, 3).requires_grad_(True)  # 3x3 spectrum {1/3,1/3,1/3}; joint {1/3, 2/9 x3}
    other = simplex_etf(4, 3, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(matrix_entropy, (etf,))
    assert torch.autograd.gradcheck(mutual_information, (etf, other))
    orthonormal = _orthogonal(5)[:4].clone().requires_grad_(True)  # K = I/4
    assert torch.autograd.gradcheck(matrix_entropy, (orthonormal,))


def test_gradients_finite_at_neural_collapse_and_for_identical_inputs():
    etf = simplex_etf(10, 16)
    labels = torch.arange(10).repeat(3)
    z = etf[labels].clone().requires_grad_(True)
    w = etf[labels].clone().requires_grad_(True)
    for path in ("samples", "features"):
        info = information_summary(z, w, path=path)
        total = info["mi"] + info["mir"] + info["hdr"] + info["entropy_x"]
        gz, gw = torch.autograd.grad(total, (z, w))
        assert torch.isfinite(gz).all() and torch.isfinite(gw).all()
    x = _randn(6, 3).requires_grad_(True)
    for fn in (mutual_information, mir, hdr):
        (g,) = torch.autograd.grad(fn(x, x), (x,))
        assert torch.isfinite(g).all()


# ---------------------------------------------------------------- errors


def test_bad_inputs_raise_actionable_errors():
    x = _randn(5, 3)
    with pytest.raises(ValueError, match="zero or non-finite rows"):
        matrix_entropy(torch.cat([x, torch.zeros(1, 3, dtype=F64)]))
    with pytest.raises(ValueError, match="zero or non-finite rows"):
        matrix_entropy(torch.cat([x, torch.full((1, 3), float("nan"), dtype=F64)]))
    with pytest.raises(ValueError, match="alpha"):
        matrix_entropy(x, alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        matrix_entropy(x, alpha=float("inf"))
    with pytest.raises(ValueError, match="path"):
        matrix_entropy(x, path="fast")
    with pytest.raises(ValueError, match="same number of paired samples"):
        mir(x, _randn(4, 3))
    with pytest.raises(ValueError, match="n >= 2"):
        matrix_entropy(x[:1], normalized=True)
    with pytest.raises(ValueError, match=r"\[\.\.\., n, d\]"):
        matrix_entropy(torch.ones(3, dtype=F64))


# ---------------------------------------------------------------- inspection helpers


def test_class_means_are_means_of_normalised_features_of_present_classes():
    features = torch.tensor([[2.0, 0.0], [0.0, 5.0], [0.0, 1.0], [3.0, 4.0]], dtype=F64)
    labels = torch.tensor([7, 7, 2, 2])
    means, classes = class_means(features, labels)
    assert classes.tolist() == [2, 7]
    torch.testing.assert_close(means, torch.tensor([[0.3, 0.9], [0.5, 0.5]], dtype=F64))


def test_sampled_information_is_seeded_and_reports_spread():
    x, y = _randn(200, 6, seed=20), _randn(200, 5, seed=21)
    a = sampled_information(x, y, subset_size=50, num_subsets=4, seed=3)
    b = sampled_information(x, y, subset_size=50, num_subsets=4, seed=3)
    c = sampled_information(x, y, subset_size=50, num_subsets=4, seed=4)
    assert a == b and a["mir"]["values"] != c["mir"]["values"]
    assert set(a) == {"entropy_x", "entropy_y", "entropy_joint", "mi", "mir", "hdr"}
    vals = a["mi"]["values"]
    assert len(vals) == 4 and a["mi"]["std"] == pytest.approx(torch.tensor(vals, dtype=F64).std().item(), abs=1e-12)
    full = sampled_information(x, y, subset_size=200, num_subsets=1)
    assert full["mir"]["mean"] == pytest.approx(mir(x, y).item(), abs=1e-10) and full["mir"]["std"] == 0.0
    with pytest.raises(ValueError, match="subset_size"):
        sampled_information(x, y, subset_size=500)


# ---------------------------------------------------------------- neural collapse


def _collapsed(num_classes=5, per_class=4, dim=8):
    etf = simplex_etf(num_classes, dim - 1)
    offset = torch.zeros(dim, dtype=F64)
    offset[-1] = 2.0  # global mean orthogonal to the classifier
    labels = torch.arange(num_classes).repeat(per_class)
    features = torch.cat([etf, torch.zeros(num_classes, 1, dtype=F64)], 1)[labels] + offset
    weights = torch.cat([etf, torch.zeros(num_classes, 1, dtype=F64)], 1)
    return features, labels, weights


def test_neural_collapse_statistics_vanish_at_collapse():
    features, labels, weights = _collapsed()
    stats = neural_collapse(features, labels, weights)
    for key in ("nc1", "nc2_equinorm_means", "nc2_equinorm_weights", "nc2_equiangular_means",
                "nc2_equiangular_weights", "nc2_maxangle_means", "nc2_maxangle_weights", "nc3"):
        assert stats[key] == pytest.approx(0.0, abs=1e-9), key
    assert stats["nc4"] == 1.0


def test_neural_collapse_statistics_match_definitions_on_noisy_features():
    features, labels, weights = _collapsed()
    features = features + 0.3 * _randn(*features.shape, seed=30)
    weights = weights + 0.2 * _randn(*weights.shape, seed=31)
    stats = neural_collapse(features, labels, weights)
    c = weights.shape[0]
    means = torch.stack([features[labels == k].mean(0) for k in range(c)])
    centred = means - features.mean(0)
    within = features - means[labels]
    sigma_w = within.T @ within / len(labels)
    sigma_b = centred.T @ centred / c
    nc1 = torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True, rtol=1e-10)) / c
    assert stats["nc1"] == pytest.approx(nc1.item(), rel=1e-8)
    norms = centred.norm(dim=1)
    assert stats["nc2_equinorm_means"] == pytest.approx((norms.std(correction=0) / norms.mean()).item(), rel=1e-10)
    nc3 = (weights / weights.norm() - centred / centred.norm()).pow(2).sum()
    assert stats["nc3"] == pytest.approx(nc3.item(), rel=1e-10)
    ncc = torch.cdist(features, means).argmin(1)
    assert stats["nc4"] == pytest.approx((ncc == (features @ weights.T).argmax(1)).double().mean().item())
    assert stats["nc1"] > 0 and stats["nc2_equiangular_means"] > 0


def test_neural_collapse_requires_every_class():
    features, labels, weights = _collapsed()
    keep = labels != 3
    with pytest.raises(ValueError, match="classes without samples: \\[3\\]"):
        neural_collapse(features[keep], labels[keep], weights)


# ---------------------------------------------------------------- accuracy


def test_accuracy_counts_top1_and_topk_and_adds_up():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.2], [0.3, 0.4, 0.5], [0.2, 0.5, 0.3]])
    labels = torch.tensor([1, 2, 1, 0])
    assert accuracy(logits, labels) == AccuracyCount(1, 4)
    assert accuracy(logits, labels, topk=2) == AccuracyCount(3, 4)
    total = accuracy(logits[:2], labels[:2]) + accuracy(logits[2:], labels[2:])
    assert total == AccuracyCount(1, 4) and total.percent == 25.0
    with pytest.raises(ValueError, match="labels must lie"):
        accuracy(logits, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="zero samples"):
        _ = AccuracyCount(0, 0).percent


def test_harmonic_mean():
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(50.0, 50.0) == 50.0
    with pytest.raises(ValueError, match="non-negative"):
        harmonic_mean(-1.0, 3.0)
