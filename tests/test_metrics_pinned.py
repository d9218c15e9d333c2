"""MIR, HDR, MI and the Renyi entropies pinned against a direct numpy computation on inputs whose two
entropies differ, where the plausible variants of each formula (min vs max denominator, signed vs
absolute difference, natural vs other logs, a wrong Renyi prefactor) give different numbers."""

import math
import re

import numpy as np
import pytest
import torch

from promptinfo.metrics import effective_rank, hdr, information_summary, matrix_entropy, mir, mutual_information

ORDERS = [1.0, 0.5, 2.0, 3.0]


def _unequal_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x: 14 scattered rows in 9-d (high entropy); y: 14 rows near a plane in 5-d (low entropy)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((14, 9))
    y = rng.standard_normal((14, 2)) @ rng.standard_normal((2, 5)) + 0.05 * rng.standard_normal((14, 5))
    return x, y


def _kernel(a: np.ndarray) -> np.ndarray:
    rows = a / np.linalg.norm(a, axis=1, keepdims=True)
    return rows @ rows.T / len(a)


def _entropy(k: np.ndarray, alpha: float) -> float:
    """Matrix (Renyi) entropy of a unit-trace PSD kernel from its eigenvalues, in nats."""
    eig = np.clip(np.linalg.eigvalsh(k), 0.0, None)
    eig = eig[eig > 1e-15]
    if alpha == 1.0:
        return float(-(eig * np.log(eig)).sum())
    return float(np.log((eig**alpha).sum()) / (1.0 - alpha))


def _direct(x: np.ndarray, y: np.ndarray, alpha: float) -> dict[str, float]:
    kx, ky = _kernel(x), _kernel(y)
    hx, hy = _entropy(kx, alpha), _entropy(ky, alpha)
    hxy = _entropy(kx * ky * len(x), alpha)  # Hadamard product renormalised to unit trace
    mi = hx + hy - hxy
    return {"entropy_x": hx, "entropy_y": hy, "entropy_joint": hxy, "mi": mi,
            "mir": mi / min(hx, hy), "hdr": abs(hx - hy) / max(hx, hy)}


@pytest.mark.parametrize("alpha", ORDERS)
@pytest.mark.parametrize("path", ["samples", "features", "auto"])
def test_information_summary_matches_the_direct_computation_on_unequal_entropies(alpha, path):
    x, y = _unequal_pair()
    expected = _direct(x, y, alpha)
    hx, hy, mi = expected["entropy_x"], expected["entropy_y"], expected["mi"]
    assert hx - hy > 0.5  # the inputs separate the variants: min/max, swapped or signed ratios
    assert abs(mi / max(hx, hy) - expected["mir"]) > 0.05 and abs((hx - hy) / min(hx, hy) - expected["hdr"]) > 0.05
    got = information_summary(torch.from_numpy(x), torch.from_numpy(y), alpha=alpha, path=path)
    for key, value in expected.items():
        assert got[key].item() == pytest.approx(value, abs=1e-9), key
    swapped = information_summary(torch.from_numpy(y), torch.from_numpy(x), alpha=alpha, path=path)
    assert swapped["entropy_x"].item() == pytest.approx(hy, abs=1e-9)
    for key in ("mi", "mir", "hdr", "entropy_joint"):  # symmetric in x and y
        assert swapped[key].item() == pytest.approx(expected[key], abs=1e-9), key


@pytest.mark.parametrize("alpha", ORDERS)
def test_the_single_metric_functions_agree_with_the_direct_computation(alpha):
    x, y = _unequal_pair(seed=1)
    expected = _direct(x, y, alpha)
    tx, ty = torch.from_numpy(x).float(), torch.from_numpy(y).float()  # float32 in, float64 inside
    assert mir(tx, ty, alpha=alpha).item() == pytest.approx(_direct(tx.double().numpy(), y, alpha)["mir"], abs=1e-9)
    assert mir(tx, ty, alpha=alpha).item() == pytest.approx(expected["mir"], abs=1e-6)
    assert hdr(tx, ty, alpha=alpha).item() == pytest.approx(expected["hdr"], abs=1e-6)
    assert mutual_information(tx, ty, alpha=alpha).item() == pytest.approx(expected["mi"], abs=1e-6)
    assert matrix_entropy(ty, alpha=alpha).item() == pytest.approx(expected["entropy_y"], abs=1e-6)
    assert effective_rank(tx, alpha=alpha).item() == pytest.approx(math.exp(expected["entropy_x"]), rel=1e-6)
    normalized = matrix_entropy(tx, alpha=alpha, normalized=True).item()
    assert normalized == pytest.approx(expected["entropy_x"] / math.log(14), abs=1e-6)


def test_renyi_entropies_decrease_with_the_order_and_differ_on_a_non_flat_spectrum():
    _, y = _unequal_pair()
    values = [matrix_entropy(torch.from_numpy(y), alpha=a).item() for a in (0.5, 1.0, 2.0, 3.0)]
    assert all(a > b + 1e-3 for a, b in zip(values, values[1:]))  # strictly: the spectrum is far from flat
    k = _kernel(y)
    assert values[2] == pytest.approx(-math.log((k * k).sum()), abs=1e-12)  # collision entropy: -log ||K||_F^2


def test_spectra_below_the_rounding_noise_count_as_zero_for_small_orders():
    """A rank-2 kernel of 30 samples: its 28 zero eigenvalues must not add lambda^0.5 of rounding noise."""
    rng = np.random.default_rng(3)
    y = rng.standard_normal((30, 2))
    eig = np.linalg.eigvalsh(_kernel(y))[-2:]  # the two non-zero eigenvalues
    expected = math.log(np.sqrt(eig).sum()) / 0.5
    got = matrix_entropy(torch.from_numpy(y), alpha=0.5, path="samples").item()
    assert got == pytest.approx(expected, abs=1e-12)


def test_defaults_are_von_neumann_entropies():
    x, y = (torch.from_numpy(a) for a in _unequal_pair(seed=2))
    expected = _direct(x.numpy(), y.numpy(), 1.0)
    assert mir(x, y).item() == pytest.approx(expected["mir"], abs=1e-9)
    assert hdr(x, y).item() == pytest.approx(expected["hdr"], abs=1e-9)
    assert mutual_information(x, y).item() == pytest.approx(expected["mi"], abs=1e-9)
    assert effective_rank(x).item() == pytest.approx(math.exp(expected["entropy_x"]), rel=1e-9)


@pytest.mark.parametrize("path,sizes", [("samples", [14, 14, 14]), ("features", [9, 5, 45]), ("auto", [9, 5, 14])])
def test_every_function_decomposes_the_matrices_its_path_names(path, sizes, monkeypatch):
    """`path` picks the side whose matrix is decomposed (x: 14 x 9, y: 14 x 5, joint Khatri-Rao 45)."""
    from promptinfo.metrics import _spectral

    seen = []
    entropy_of = _spectral.entropy_of
    monkeypatch.setattr(_spectral, "entropy_of", lambda k, alpha: seen.append(k.shape[-1]) or entropy_of(k, alpha))
    x, y = (torch.from_numpy(a) for a in _unequal_pair())
    for fn in (information_summary, mutual_information, mir, hdr):
        seen.clear()
        fn(x, y, path=path)
        assert seen == sizes, fn.__name__
    for fn in (matrix_entropy, effective_rank):
        seen.clear()
        fn(x, path=path)
        assert seen == sizes[:1], fn.__name__


def test_batched_pairs_choose_their_side_from_the_feature_widths(monkeypatch):
    """[2, 30, 3] and [2, 30, 4]: the joint Khatri-Rao width 12 is below n = 30, so "auto" takes it."""
    from promptinfo.metrics import _spectral

    seen = []
    entropy_of = _spectral.entropy_of
    monkeypatch.setattr(_spectral, "entropy_of", lambda k, alpha: seen.append(k.shape[-1]) or entropy_of(k, alpha))
    x, y = torch.randn(2, 30, 3, dtype=torch.float64), torch.randn(2, 30, 4, dtype=torch.float64)
    information_summary(x, y)
    assert seen == [3, 4, 12]


def test_batched_values_with_gradients_stay_per_item():
    x = torch.randn(3, 8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    h = matrix_entropy(x)
    assert h.shape == (3,)
    for i in range(3):
        assert h[i].item() == pytest.approx(matrix_entropy(x[i].detach()).item(), abs=1e-12)


def test_errors_name_the_bad_argument():
    x, y = (torch.from_numpy(a) for a in _unequal_pair())
    y_bad = y.clone()
    y_bad[3] = 0.0
    with pytest.raises(ValueError, match=r"^y has zero or non-finite rows \(e\.g\. sample indices \[3\]\)"):
        information_summary(x, y_bad)
    with pytest.raises(ValueError, match=r"^x has zero or non-finite rows \(e\.g\. sample indices \[3\]\)"):
        information_summary(y_bad, x)
    with pytest.raises(ValueError, match=r"^x and y must be feature matrices \[\.\.\., n, dx\] and \[\.\.\., n, dy\]"):
        mir(x, y[:5])
    with pytest.raises(ValueError, match=r"^normalized matrix entropy divides by log n and needs n >= 2 samples"):
        matrix_entropy(x[:1], normalized=True)


def test_tiny_true_eigenvalues_are_kept_and_only_rounding_noise_is_dropped():
    """20 rows: 19 orthonormal ones and a 20th at angle theta from the first. The spectrum of K is 18 x 1/20
    and (1 +- cos theta) / 20; with 1 - cos theta = 4e-14 the smallest eigenvalue, 2e-15, is far above
    the rounding noise (~1e-17) and below 20 * eps, so it must count in the order-1/2 entropy."""
    theta = math.acos(1 - 4e-14)
    x = torch.eye(20, dtype=torch.float64)
    x[19] = 0.0
    x[19, 0], x[19, 19] = math.cos(theta), math.sin(theta)
    c = float(x[19, 0])
    eig = [1 / 20] * 18 + [(1 + c) / 20, (1 - c) / 20]
    expected = 2 * math.log(sum(math.sqrt(e) for e in eig))
    without_smallest = 2 * math.log(sum(math.sqrt(e) for e in eig[:-1]))
    assert expected - without_smallest > 1e-8
    for grad in (False, True):
        got = matrix_entropy(x.clone().requires_grad_(grad), alpha=0.5, path="samples").item()
        assert got == pytest.approx(expected, abs=2e-9)


def test_empty_and_bad_single_inputs_are_named():
    x, _ = (torch.from_numpy(a) for a in _unequal_pair())
    for empty in (x[:0], x[:, :0], torch.zeros(2, 3, 0, dtype=torch.float64), torch.zeros(2, 0, 3, dtype=torch.float64)):
        shape = tuple(empty.shape)
        with pytest.raises(ValueError, match=rf"^x is empty \(shape {re.escape(str(shape))}\); pass at least one"):
            matrix_entropy(empty)
    bad = x.clone()
    bad[5, 2] = float("inf")
    with pytest.raises(ValueError, match=r"^x has zero or non-finite rows \(e\.g\. sample indices \[5\]\)"):
        matrix_entropy(bad)


def test_bad_rows_are_listed_by_sample_index_up_to_five():
    x = torch.ones(2, 9, 3, dtype=torch.float64)
    x[1, [1, 2, 4, 6, 7, 8]] = 0.0  # six bad samples of the second batch item
    message = (r"^x has zero or non-finite rows \(e\.g\. sample indices \[1, 2, 4, 6, 7\]\); matrix entropy needs "
               r"finite, non-zero feature vectors: drop or fix those samples$")
    with pytest.raises(ValueError, match=message):
        matrix_entropy(x)
