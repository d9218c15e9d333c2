"""Shared fixtures: tiny randomly initialised CLIP backbones (nothing is downloaded), the demo weights cache."""

import os
from pathlib import Path

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


@pytest.fixture(scope="module")
def hydra_configs():
    """The package's hydra configs for `compose`, with one torch thread, for a test module's tiny runs."""
    from hydra import initialize_config_module

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        yield
    torch.set_num_threads(threads)


def session_temp(tmp_path_factory) -> Path:
    """This test session's temporary folder, shared by the session's pytest-xdist workers."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """One demo-weights cache for the session: the small demo CLIP is pretrained once, by whichever test
    gets there first (``ensure_demo_backbone`` makes the others wait on its file lock)."""
    return session_temp(tmp_path_factory) / "demo_weights"
