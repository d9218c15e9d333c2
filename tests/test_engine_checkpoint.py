"""Resume checkpoints in isolation: what a checkpoint holds, that restoring it continues the run exactly
(prompt, optimiser moments, schedule position, gradient scaler, every generator), and the refusals."""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from promptinfo.engine.resume import FORMAT_VERSION, load_resume_checkpoint, restore, save_resume_checkpoint
from promptinfo.engine.optim import build_optimizer, build_scheduler
from promptinfo.errors import CheckpointMismatchError, DamagedFileError

TRAINER = SimpleNamespace(epochs=6, lr=0.01, warmup_epochs=1, warmup_lr=1e-3, warmup_type="constant",
                          scheduler="cosine", optimizer="sgd", momentum=0.9, weight_decay=5e-4)


class _Method(torch.nn.Module):
    """What the checkpoint reads of a method: its `prompt` module."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.prompt = torch.nn.Module()
        self.prompt.ctx = torch.nn.Parameter(torch.randn(4, 6, generator=generator))
        self.prompt.proj = torch.nn.Linear(6, 3)


def _training_objects(seed: int, scale: float = 2.0**10):
    method = _Method(seed)
    optimizer = build_optimizer([{"params": list(method.prompt.parameters())}], TRAINER)
    scheduler = build_scheduler(optimizer, TRAINER)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    return method, optimizer, scheduler, scaler


def _train_steps(method, optimizer, scheduler, scaler, steps: int) -> None:
    for _ in range(steps):
        loss = (method.prompt.proj(method.prompt.ctx) ** 2).sum() * torch.rand(())  # draws from the generator
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()


def _next_draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_restore_continues_exactly_where_the_checkpoint_was_written(tmp_path):
    path = tmp_path / "resume.pt"
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    objects = _training_objects(seed=0)
    _train_steps(*objects, steps=3)
    method, optimizer, scheduler, scaler = objects
    save_resume_checkpoint(path, method=method, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                           epoch=3, step=17, fingerprint="abc")
    draws = _next_draws()
    _train_steps(*objects, steps=2)
    expected = {k: v.clone() for k, v in method.prompt.state_dict().items()}

    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    fresh = _training_objects(seed=5, scale=4.0)
    state = load_resume_checkpoint(path, "abc")
    assert (state["format"], state["epoch"], state["step"]) == (FORMAT_VERSION, 3, 17)
    assert restore(state, method=fresh[0], optimizer=fresh[1], scheduler=fresh[2], scaler=fresh[3]) == (3, 17)
    assert fresh[2].last_epoch == 3 and fresh[3].get_scale() == scaler.get_scale() != 4.0
    again = _next_draws()  # every generator is back where it was when the checkpoint was written
    assert again[:2] == draws[:2] and torch.equal(again[2], draws[2])
    _train_steps(*fresh, steps=2)
    for key, value in fresh[0].prompt.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_a_checkpoint_holds_plain_tensors_and_skips_a_disabled_scaler(tmp_path):
    path = tmp_path / "resume.pt"
    method, optimizer, scheduler, _ = _training_objects(seed=0)
    save_resume_checkpoint(path, method=method, optimizer=optimizer, scheduler=scheduler,
                           scaler=torch.amp.GradScaler("cpu", enabled=False), epoch=1, step=4, fingerprint="f")
    state = torch.load(path, weights_only=True)
    assert state["scaler"] == {} and set(state["prompt"]) == {"ctx", "proj.weight", "proj.bias"}
    assert all(not v.requires_grad for v in state["prompt"].values())
    save_resume_checkpoint(path, method=method, optimizer=optimizer, scheduler=scheduler, scaler=None,
                           epoch=1, step=4, fingerprint="f")
    assert torch.load(path, weights_only=True)["scaler"] == {}
    enabled = torch.amp.GradScaler("cpu", init_scale=8.0)
    before = enabled.get_scale()
    restore(load_resume_checkpoint(path, "f"), method=method, optimizer=optimizer, scheduler=scheduler,
            scaler=enabled)
    assert enabled.get_scale() == before  # nothing saved, nothing loaded
    assert [p.name for p in tmp_path.iterdir()] == ["resume.pt"]  # written atomically, no temporary left


def test_a_checkpoint_of_another_config_or_format_is_refused(tmp_path):
    path = tmp_path / "resume.pt"
    method, optimizer, scheduler, scaler = _training_objects(seed=0)
    save_resume_checkpoint(path, method=method, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                           epoch=2, step=8, fingerprint="mine")
    message = (rf"^{path} was written by a run with a different training config \(fingerprint mine vs other\)\. "
               r"Give this run its own folder \(label=NAME names the variant in folders and tables; or run_dir=PATH\), "
               r"or pass overwrite=true to start this folder afresh\.$")
    with pytest.raises(CheckpointMismatchError, match=message):
        load_resume_checkpoint(path, "other")
    state = torch.load(path, weights_only=True)
    state["format"] = FORMAT_VERSION + 1
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=rf"^{path} has checkpoint format 2, expected 1\. Pass over"):
        load_resume_checkpoint(path, "mine")


def test_numpy_cached_gaussian_survives_the_round_trip(tmp_path):
    """NumPy's legacy generator keeps the second value of each Box-Muller pair (has_gauss, gauss)."""
    from promptinfo.engine.resume import rng_state, set_rng_state

    np.random.seed(3)
    np.random.randn()  # leaves a cached gaussian
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = np.random.randn(3)
    np.random.seed(4)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert np.array_equal(np.random.randn(3), expected)


class _Pickled:
    """An arbitrary object: `weights_only=True` loading must refuse to build it."""


def test_extra_state_is_kept_and_defaults_to_empty(tmp_path):
    method, optimizer, scheduler, scaler = _training_objects(seed=0)
    kwargs = dict(method=method, optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=1, step=2,
                  fingerprint="f")
    save_resume_checkpoint(tmp_path / "a.pt", **kwargs)
    assert load_resume_checkpoint(tmp_path / "a.pt", "f")["extra"] == {}
    save_resume_checkpoint(tmp_path / "b.pt", **kwargs, extra={"pseudo": {"counts": torch.arange(3)}})
    assert torch.equal(load_resume_checkpoint(tmp_path / "b.pt", "f")["extra"]["pseudo"]["counts"], torch.arange(3))


def test_unreadable_checkpoints_are_damaged_files_and_code_is_never_run(tmp_path):
    fix = (r"The run cannot resume from it\. Pass overwrite=true to start this run folder afresh \(it replaces the "
           r"folder's files; copy the checkpoint elsewhere first to keep it\), or use another run_dir\.$")
    garbled = tmp_path / "garbled.pt"
    garbled.write_bytes(b"not a checkpoint")
    with pytest.raises(DamagedFileError, match=rf"^{garbled} is damaged: torch cannot read it \(\w+\): it is "
                                               rf"truncated or not a checkpoint\. " + fix):
        load_resume_checkpoint(garbled, "f")
    method, optimizer, scheduler, scaler = _training_objects(seed=0)
    path = tmp_path / "code.pt"
    save_resume_checkpoint(path, method=method, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                           epoch=1, step=2, fingerprint="f")
    state = torch.load(path, weights_only=True)
    torch.save({**state, "extra": {"object": _Pickled()}}, path)  # loads only with weights_only=False
    with pytest.raises(DamagedFileError, match=r"torch cannot read it \(UnpicklingError\)"):
        load_resume_checkpoint(path, "f")


def test_restore_refuses_a_prompt_of_another_shape():
    method, optimizer, scheduler, scaler = _training_objects(seed=0)
    state = {"prompt": {"ctx": torch.zeros(4, 6)}}  # proj's tensors missing
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"proj\.weight\", \"proj\.bias\""):
        restore(state, method=method, optimizer=optimizer, scheduler=scheduler, scaler=scaler)


def test_a_checkpoint_missing_part_of_the_state_is_damaged(tmp_path):
    method, optimizer, scheduler, scaler = _training_objects(seed=0)
    path = tmp_path / "resume.pt"
    save_resume_checkpoint(path, method=method, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                           epoch=1, step=2, fingerprint="f")
    state = torch.load(path, weights_only=True)
    del state["rng"]
    torch.save(state, path)
    found = re.escape(str(sorted(state)))
    fix = r"\. The run cannot resume from it\. Pass overwrite=true to start this run folder afresh"
    with pytest.raises(DamagedFileError, match=rf"^{path} is damaged: it lacks parts of the resume state \(found {found}\){fix}"):
        load_resume_checkpoint(path, "f")
    torch.save([1, 2], path)
    with pytest.raises(DamagedFileError, match=r"it lacks parts of the resume state \(found list\)"):
        load_resume_checkpoint(path, "f")
