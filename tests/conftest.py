"""Shared fixtures: tiny randomly initialised CLIP backbones (nothing is downloaded), the demo weights cache and
one short demo job per session."""

import contextlib
import io
import json
import os
from pathlib import Path

import pytest
import torch
from filelock import FileLock

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


class ListBatches:
    """Fixed batches for the engine's `train_epoch`, the same list every epoch.

    Args:
        kind: "features" (cached image features) or "images".
    """

    def __init__(self, batches, kind: str = "features") -> None:
        self.batches, self.kind = batches, kind

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int):
        return iter(self.batches)


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


DEMO_EPOCHS = 20
"""Epochs of every learned method in the session's demo job (the small variant)."""


class Job:
    """The outcome of one `promptinfo-demo` call: exit status, printed text and the run folders."""

    def __init__(self, root: Path, status: int, stdout: str) -> None:
        self.root, self.status, self.stdout = root, status, stdout
        self.runs = root / "runs" / "demo"

    def folder(self, label: str) -> Path:
        return self.runs / "procedural_small" / label / "base2novel" / "shots16_seed1"

    def results(self, label: str) -> dict:
        return json.loads((self.folder(label) / "results.json").read_text())

    def metrics(self, label: str) -> list[dict]:
        return [json.loads(line) for line in (self.folder(label) / "metrics.jsonl").read_text().splitlines()]


def run_demo(root: Path, *extra: str) -> tuple[int, str]:
    from promptinfo.cli import demo as demo_cli

    out = io.StringIO()
    argv = ["--variant", "small", "--epochs", str(DEMO_EPOCHS), "--runs-root", str(root / "runs"),
            "--data-root", str(root / "data"), *extra]
    with contextlib.redirect_stdout(out):
        status = demo_cli.main(argv)
    return status, out.getvalue()


@pytest.fixture(scope="module")
def demo_job(tmp_path_factory, demo_cache):
    """The demo job, with the session's demo weights and its own feature cache, data and runs in a temporary folder.

    Run once per test session: the first xdist worker to get here runs it, the others read its outcome.
    """
    root = session_temp(tmp_path_factory) / "demo_job"
    outcome = root / "outcome.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTINFO_HOME", str(demo_cache))
        mp.setenv("PROMPTINFO_CACHE", str(root / "cache"))
        root.mkdir(exist_ok=True)
        with FileLock(str(root.with_suffix(".lock"))):
            if not outcome.is_file():
                status, stdout = run_demo(root)
                outcome.write_text(json.dumps({"status": status, "stdout": stdout}))
        recorded = json.loads(outcome.read_text())
        yield Job(root, recorded["status"], recorded["stdout"])
    torch.set_num_threads(threads)


