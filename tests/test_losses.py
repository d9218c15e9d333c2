"""CMA loss, its per-dataset weights, and the information-interplay terms."""

import math

import pytest
import torch

from promptinfo.data import cma_lambda
from promptinfo.losses import (
    InformationTerms,
    cma_loss,
    cma_weights,
    information_terms,
    weighted_sum,
)
from promptinfo.metrics import (
    class_information,
    information_summary,
    matrix_entropy,
    mutual_information,
)

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def simplex_etf(num_classes: int, dim: int) -> torch.Tensor:
    centring = torch.eye(num_classes, dtype=F64) - 1.0 / num_classes
    basis, _ = torch.linalg.qr(_randn(dim, num_classes))  # [dim, C] orthonormal columns
    return math.sqrt(num_classes / (num_classes - 1)) * centring @ basis.T


# ---------------------------------------------------------------- CMA


def test_cma_is_zero_when_every_image_equals_its_text_feature():
    text = _randn(4, 8)
    labels = torch.tensor([0, 0, 0, 2, 2, 3])
    scales = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 7.0], dtype=F64)[:, None]
    images = text[labels] * scales  # same directions, any norm
    assert cma_loss(images, text, labels).item() == pytest.approx(0.0, abs=1e-9)


def test_cma_grows_with_scatter_and_stays_in_unit_interval():
    text = _randn(3, 16, seed=1)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2])
    noise = _randn(9, 16, seed=2)
    losses = [cma_loss(text[labels] + s * noise, text, labels).item() for s in (0.0, 0.1, 0.5, 2.0, 10.0)]
    assert losses == sorted(losses) and losses[0] == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < losses[-1] <= 1.0


def test_cma_matches_per_class_definition():
    images, text = _randn(7, 5, seed=3), _randn(6, 5, seed=4)
    labels = torch.tensor([4, 1, 4, 4, 0, 1, 5])
    expected = torch.stack([
        matrix_entropy(torch.cat([images[labels == c], text[c : c + 1]]), normalized=True) for c in (0, 1, 4, 5)
    ]).mean()
    assert cma_loss(images, text, labels).item() == pytest.approx(expected.item(), abs=1e-12)


def test_cma_single_image_group_is_binary_entropy_over_log_two():
    image, text = _randn(1, 6, seed=5), _randn(1, 6, seed=6)
    cos = torch.nn.functional.cosine_similarity(image, text).item()
    p = (1 + cos) / 2  # eigenvalues of the 2x2 kernel are (1 +- cos) / 2
    expected = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    assert cma_loss(image, text, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-12)


def test_cma_ignores_classes_absent_from_the_batch():
    images, text = _randn(5, 4, seed=7), _randn(6, 4, seed=8).requires_grad_(True)
    labels = torch.tensor([0, 2, 2, 5, 0])
    loss = cma_loss(images, text, labels)
    loss.backward()
    assert text.grad[[1, 3, 4]].abs().max().item() == 0.0
    changed = text.detach().clone()
    changed[[1, 3, 4]] = _randn(3, 4, seed=9)
    # with gradients on both sides: eigh and the gradient-free eigvalsh may differ in the last bit
    assert cma_loss(images, changed.requires_grad_(True), labels).item() == loss.item()


def test_cma_gradient_pulls_images_toward_their_text_feature():
    text = _randn(2, 12, seed=10)
    labels = torch.tensor([0, 0, 0, 1, 1])
    images = (text[labels] + 0.8 * _randn(5, 12, seed=11)).requires_grad_(True)
    loss = cma_loss(images, text, labels)
    (grad,) = torch.autograd.grad(loss, images)
    moved = images.detach() - 0.05 * grad / grad.norm()
    cos = torch.nn.functional.cosine_similarity
    assert (cos(moved, text[labels]) > cos(images.detach(), text[labels])).all()
    assert cma_loss(moved, text, labels).item() < loss.item()


def test_cma_with_per_image_text_features_uses_mean_of_normalised_rows():
    images, shared = _randn(4, 6, seed=12), _randn(3, 6, seed=13)
    labels = torch.tensor([2, 0, 2, 2])
    expanded = shared.expand(4, 3, 6) * torch.tensor([1.0, 3.0, 0.2, 5.0], dtype=F64)[:, None, None]
    assert cma_loss(images, expanded, labels).item() == pytest.approx(cma_loss(images, shared, labels).item(), abs=1e-12)
    per_image = _randn(4, 3, 6, seed=14)
    rows = torch.nn.functional.normalize(per_image[[0, 2, 3], 2], dim=1)
    expected_class2 = matrix_entropy(torch.cat([images[[0, 2, 3]], rows.mean(0, keepdim=True)]), normalized=True)
    expected_class0 = matrix_entropy(torch.cat([images[[1]], per_image[1, 0:1]]), normalized=True)
    expected = (expected_class0 + expected_class2) / 2
    assert cma_loss(images, per_image, labels).item() == pytest.approx(expected.item(), abs=1e-12)


def test_cma_gradients_are_finite_at_zero_loss_and_dtype_follows_images():
    text = _randn(2, 8, seed=15).float()
    labels = torch.tensor([0, 0, 1])
    images = text[labels].clone().requires_grad_(True)
    loss = cma_loss(images, text, labels)
    assert loss.dtype == torch.float32
    (grad,) = torch.autograd.grad(loss, images)
    assert torch.isfinite(grad).all()


def test_cma_rejects_bad_inputs():
    images, text = _randn(3, 4), _randn(5, 4)
    with pytest.raises(ValueError, match="labels must lie in"):
        cma_loss(images, text, torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="integer tensor"):
        cma_loss(images, text, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="text_features must be"):
        cma_loss(images, _randn(5, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="per-image"):
        cma_loss(images, _randn(2, 5, 4), torch.tensor([0, 1, 2]))


# ---------------------------------------------------------------- CMA weights


def test_cma_lambda_table_matches_the_authors_defaults():
    constant = {"imagenet": 0.1, "caltech101": 0.8, "oxford_pets": 0.9, "stanford_cars": 0.1, "oxford_flowers": 0.7,
                "food101": 0.8, "fgvc_aircraft": 0.8, "sun397": 0.2, "eurosat": 0.1}
    for dataset, lam in constant.items():
        assert [cma_lambda(dataset, s) for s in (1, 2, 4, 8, 16)] == [lam] * 5
    assert [cma_lambda("dtd", s) for s in (1, 2, 4, 8, 16)] == [0.4, 0.4, 0.7, 0.7, 0.7]
    assert [cma_lambda("ucf101", s) for s in (1, 2, 4, 8, 16)] == [0.8, 0.8, 0.8, 0.6, 0.6]
    with pytest.raises(ValueError, match="no CMA lambda"):
        cma_lambda("cifar10", 4)
    with pytest.raises(ValueError, match="no CMA lambda"):
        cma_lambda("procedural", 4)  # registered, but the authors give no value
    with pytest.raises(ValueError, match="shots in"):
        cma_lambda("dtd", 3)
    with pytest.raises(ValueError, match="positive integer"):
        cma_lambda("imagenet", 0)
    assert cma_weights(0.3) == {"ce": 0.7, "cma": 0.3}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cma_weights(1.5)


# ---------------------------------------------------------------- interplay terms


def test_batch_terms_are_signed_to_minimise():
    images, text = _randn(6, 5, seed=20), _randn(3, 5, seed=21)
    labels = torch.tensor([0, 1, 2, 0, 1, 1])
    info = information_summary(images, text[labels])
    terms = information_terms(images, text, labels)
    assert set(terms) == {"mi", "entropy_gap"}
    assert terms["mi"].item() == pytest.approx(-info["mi"].item(), abs=1e-6)
    assert terms["entropy_gap"].item() == pytest.approx(abs(info["entropy_x"] - info["entropy_y"]).item(), abs=1e-6)
    ratios = information_terms(images, text, labels, use_mir=True, use_hdr=True)
    assert set(ratios) == {"mir", "hdr"}
    assert ratios["mir"].item() == pytest.approx(1 - info["mir"].item(), abs=1e-6)
    assert ratios["hdr"].item() == pytest.approx(info["hdr"].item(), abs=1e-6)


def test_class_level_terms_use_class_means_against_their_weights():
    images, text = _randn(9, 7, seed=22), _randn(6, 7, seed=23)
    labels = torch.tensor([5, 1, 1, 3, 5, 3, 3, 1, 0])
    terms = information_terms(images, text, labels, use_mir=True, use_hdr=True, level="class")
    info = class_information(images, labels, text)
    assert terms["mir"].item() == pytest.approx(1 - info["mir"].item(), abs=1e-6)
    assert terms["hdr"].item() == pytest.approx(info["hdr"].item(), abs=1e-6)


def test_terms_at_neural_collapse_hit_the_closed_form_with_finite_gradients():
    etf = simplex_etf(10, 16)
    labels = torch.arange(10).repeat(3)
    images = (2.0 * etf[labels]).requires_grad_(True)
    text = etf.clone().requires_grad_(True)
    terms = information_terms(images, text, labels, use_mir=True, use_hdr=True)
    assert terms["mir"].item() == pytest.approx(1 - 0.952351, abs=1e-6)
    assert terms["hdr"].item() == pytest.approx(0.0, abs=1e-6)
    grads = torch.autograd.grad(terms["mir"] + terms["hdr"], (images, text))
    assert all(torch.isfinite(g).all() for g in grads)


def test_mi_term_step_increases_mutual_information():
    images, text = _randn(8, 6, seed=24).requires_grad_(True), _randn(4, 6, seed=25)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    term = information_terms(images, text, labels)["mi"]
    (grad,) = torch.autograd.grad(term, images)
    moved = images.detach() - 0.01 * grad / grad.norm()
    assert mutual_information(moved, text[labels]).item() > mutual_information(images.detach(), text[labels]).item()


def test_information_terms_config_and_weighted_sum():
    config = InformationTerms(mi_weight=0.5, gap_weight=0.25, use_mir=True, level="class")
    images, text = _randn(6, 5, seed=26), _randn(6, 2, 5, seed=27)  # per-image classifier [B, C, d]
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    terms = config(images, text, labels)
    assert set(terms) == set(config.weights()) == {"mir", "entropy_gap"}
    total = weighted_sum(terms, config.weights())
    assert total.item() == pytest.approx(0.5 * terms["mir"].item() + 0.25 * terms["entropy_gap"].item())
    with pytest.raises(ValueError, match="same names"):
        weighted_sum(terms, {"mi": 1.0})
    with pytest.raises(ValueError, match="level"):
        InformationTerms(level="sample")
    with pytest.raises(ValueError, match="weights must be >= 0"):
        InformationTerms(mi_weight=-1.0)
