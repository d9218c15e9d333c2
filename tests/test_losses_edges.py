"""Loss edge cases where a plausible slip changes the answer: the inclusive ends of the CMA weight, the
level an `InformationTerms` config asks for, and the messages of the input checks."""

import pytest
import torch

from promptinfo.losses import InformationTerms, cma_loss, cma_weights, information_terms, weighted_sum

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_cma_weight_ends_are_allowed():
    assert cma_weights(0.0) == {"ce": 1.0, "cma": 0.0}
    assert cma_weights(1.0) == {"ce": 0.0, "cma": 1.0}
    with pytest.raises(ValueError, match=r"^CMA lambda must lie in \[0, 1\], got -0.1$"):
        cma_weights(-0.1)


def test_information_terms_config_passes_its_level_on():
    images, text = _randn(9, 6, seed=1), _randn(4, 6, seed=2)
    labels = torch.tensor([0, 1, 1, 2, 3, 3, 3, 0, 2])
    config = InformationTerms(mi_weight=1.0, gap_weight=1.0, use_mir=True, use_hdr=True, level="class")
    expected = information_terms(images, text, labels, use_mir=True, use_hdr=True, level="class")
    batch = information_terms(images, text, labels, use_mir=True, use_hdr=True, level="batch")
    got = config(images, text, labels)
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    assert got["mir"].item() != pytest.approx(batch["mir"].item(), abs=1e-3)


def test_loss_input_messages():
    images, text, labels = _randn(4, 5), _randn(3, 5, seed=1), torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"^no loss terms to sum$"):
        weighted_sum({}, {})
    zero = images.clone()
    zero[1] = 0.0
    with pytest.raises(ValueError, match=r"^image_features has zero or non-finite rows \(e\.g\. sample indices \[1\]\)"):
        cma_loss(zero, text, labels)
    with pytest.raises(ValueError, match=r"^level must be one of \('batch', 'class'\), got 'sample'$"):
        information_terms(images, text, labels, level="sample")


def test_loss_shape_messages():
    images, text, labels = _randn(4, 5), _randn(3, 5, seed=1), torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"^image_features must be \[B, d\], got shape \(1, 4, 5\)$"):
        cma_loss(images[None], text, labels)
    with pytest.raises(ValueError, match=r"^per-image text_features \[B, C, d\] need B = 4 rows, got 2$"):
        cma_loss(images, _randn(2, 3, 5), labels)
    with pytest.raises(ValueError, match=r"^the batch is empty; losses need at least one sample$"):
        cma_loss(images[:0], text, labels[:0])
    for bad_text in (text.clone(), text.expand(4, 3, 5).clone()):
        bad_text[..., 1, :] = 0.0  # class 1's text feature (of every image)
        with pytest.raises(ValueError, match=r"^text_features has zero or non-finite rows"):
            cma_loss(images, bad_text, labels)
        with pytest.raises(ValueError, match=r"^text_features has zero or non-finite rows"):
            information_terms(images, bad_text, labels, level="class")


def test_information_terms_weights_are_keyed_like_its_terms():
    images, text, labels = _randn(6, 5), _randn(3, 5, seed=1), torch.tensor([0, 1, 2, 0, 1, 2])
    for use_mir in (False, True):
        for use_hdr in (False, True):
            config = InformationTerms(mi_weight=0.5, gap_weight=2.0, use_mir=use_mir, use_hdr=use_hdr)
            weights = config.weights()
            assert set(weights) == set(config(images, text, labels))
            assert weights == {"mir" if use_mir else "mi": 0.5, "hdr" if use_hdr else "entropy_gap": 2.0}
