"""Shared fixtures: tiny randomly initialised CLIP backbones (nothing is downloaded)."""

import pytest
import torch

import promptinfo

torch.set_num_threads(1)  # tiny models: threading overhead dominates, and xdist runs one worker per core


def make_backbone(name: str = "pi-tiny-vit-s", seed: int = 0) -> promptinfo.Backbone:
    """A tiny random backbone; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return promptinfo.create_backbone(name)


@pytest.fixture(scope="session")
def tiny_backbone() -> promptinfo.Backbone:
    return make_backbone("pi-tiny-vit-s")


@pytest.fixture(scope="session", params=["pi-tiny-vit-s", "pi-tiny-vit-m"])
def vit_backbone(request) -> promptinfo.Backbone:
    """Two differently sized tiny ViT backbones, for tests every method must pass on both."""
    return make_backbone(request.param)
