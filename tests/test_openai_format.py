"""OpenAI-format checkpoints load with the architecture inferred from the weights, matching OpenAI's code."""

import logging
import sys
import types

import packaging
import packaging.version  # noqa: F401  (the reference package reads packaging.version)
import pytest
import torch

import promptinfo
from promptinfo.backbones import _torchscript
from promptinfo.backbones.openai_format import read_openai_state_dict
from tests.conftest import make_backbone


def _reference_clip():
    """OpenAI's reference package (`pip install openai-clip`); it imports the removed pkg_resources."""
    sys.modules.setdefault("pkg_resources", types.SimpleNamespace(packaging=packaging))
    sys.modules["pkg_resources"].packaging = packaging
    return pytest.importorskip("clip")


@pytest.fixture(scope="module")
def openai_files(tmp_path_factory):
    """A plain state dict and a TorchScript archive of the same tiny OpenAI-architecture weights."""
    root = tmp_path_factory.mktemp("openai")
    source = make_backbone("pi-tiny-vit-quickgelu", seed=7).model
    state = {k: v.half() for k, v in source.state_dict().items()}  # OpenAI ships fp16 weights
    plain = root / "tiny-plain.pt"
    torch.save(state, plain)
    archive = root / "tiny-jit.pt"
    reference = _reference_clip().model.build_model(dict(state)).float().eval()
    for key, value in {"input_resolution": 32, "context_length": 77, "vocab_size": 49408}.items():
        if hasattr(reference, key):  # plain attributes of the reference model
            delattr(reference, key)
        reference.register_buffer(key, torch.tensor(value))  # OpenAI's published archives hold these
    traced = torch.jit.trace_module(reference, {"encode_image": torch.randn(1, 3, 32, 32)})
    torch.jit.save(traced, str(archive))
    return {"plain": plain, "jit": archive}


@pytest.mark.parametrize("kind", ["plain", "jit"])
def test_features_match_openai_reference(openai_files, kind):
    clip = _reference_clip()
    path = str(openai_files[kind])
    ours = promptinfo.create_backbone(path)
    if kind == "jit":
        reference, _ = clip.load(path, device="cpu", jit=False)
    else:  # clip.load re-reads the file object after its TorchScript attempt moved it; do what it does next
        reference = clip.model.build_model(torch.load(path, weights_only=True)).float()
    images = torch.randn(4, 3, 32, 32)
    tokens = clip.tokenize(["a photo of a dog.", "a diagram", "an aerial photograph of farmland with a river"])
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(images), reference.encode_image(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.encode_text(tokens), reference.encode_text(tokens), atol=1e-5, rtol=0)
    assert torch.equal(ours.tokenize(["a photo of a dog."]), clip.tokenize(["a photo of a dog."]))


def test_architecture_inferred_from_weights(openai_files):
    b = promptinfo.create_backbone(str(openai_files["plain"]))
    assert (b.vision_width, b.text_width, b.embed_dim, b.vision_layers, b.grid_size) == (128, 128, 32, 2, (2, 2))
    assert b.name == "tiny-plain" and b.weights_id.startswith("file-")
    assert all(not p.requires_grad for p in b.parameters())


def test_not_a_clip_checkpoint_is_reported(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(promptinfo.errors.WeightsUnavailableError, match="does not look like an OpenAI CLIP"):
        promptinfo.create_backbone(str(path))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "obj": types.SimpleNamespace(x=1)}, path)
    with pytest.raises(promptinfo.errors.WeightsUnavailableError, match="tensor-only state dict"):
        promptinfo.create_backbone(str(path))


def test_a_torchscript_archive_is_read_without_running_its_code(openai_files, monkeypatch):
    expected = dict(torch.jit.load(str(openai_files["jit"]), map_location="cpu").state_dict())
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load ran the archive's code"))
    state = read_openai_state_dict(str(openai_files["jit"]))
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in expected.items())


def test_an_archive_beyond_the_allow_list_runs_only_with_a_warning(openai_files, monkeypatch, caplog):
    monkeypatch.setattr(_torchscript, "_ALLOWED", {})  # as if the archive held a global the reader does not know
    with caplog.at_level(logging.WARNING):
        state = read_openai_state_dict(str(openai_files["jit"]))
    assert "torch.jit.load runs the TorchScript code stored in it" in caplog.text and "sources you trust" in caplog.text
    assert "visual.proj" in state


@pytest.mark.parametrize("damage", ["garbage", "truncated_archive", "truncated_plain"])
def test_damaged_weight_files_are_named(damage, openai_files, tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    if damage == "garbage":
        path.write_bytes(b"<html>quota exceeded</html>")
    else:
        source = openai_files["jit" if damage == "truncated_archive" else "plain"].read_bytes()
        path.write_bytes(source[: len(source) // 2])
    with pytest.raises(promptinfo.errors.WeightsUnavailableError, match="truncated") as err:
        promptinfo.create_backbone(str(path))
    assert str(path) in str(err.value)


def test_a_damaged_open_clip_weights_file_is_named(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(promptinfo.errors.WeightsUnavailableError, match="cannot be loaded as pi-tiny-vit-s") as err:
        promptinfo.create_backbone("pi-tiny-vit-s", pretrained=str(path))
    assert str(path) in str(err.value) and "good copy" in str(err.value)
