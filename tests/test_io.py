"""Atomic writes: the target appears whole or not at all, with the mode a plain open() would give it."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from promptinfo.io import atomic_path, read_json, write_json


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_failed_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    write_json(target, {"accuracy": 50.0})
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as tmp:
            tmp.write_text("{\"accura")
            raise RuntimeError("interrupted")
    assert read_json(target) == {"accuracy": 50.0}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_the_target_gets_the_umask_mode_even_from_a_writer_that_creates_private_files(tmp_path, umask_022):
    target = tmp_path / "sub" / "prompt.safetensors"  # missing folders are created
    with atomic_path(target) as tmp:
        save_file({"ctx": torch.arange(6.0).view(2, 3)}, str(tmp))  # safetensors writes 0600
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert torch.equal(load_file(str(target))["ctx"], torch.arange(6.0).view(2, 3))
    assert [p.name for p in target.parent.iterdir()] == ["prompt.safetensors"]
