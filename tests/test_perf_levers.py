"""The speed levers change how fast numbers come, never the numbers (up to float32 rounding).

Text truncation, CoCoOp's one-pass prompts, training on cached features and channels-last weights are
each compared on and off; `trainer.compile` is checked to wrap the encoders (compiling itself takes
minutes on a CPU and is exercised by `tools/bench.py --compile`). `tools/bench.py` gets a tiny smoke run.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from promptinfo.backbones.clip import length_buckets
from promptinfo.engine import validate_train_config
from promptinfo.engine.build import apply_speed_options, build_runtime
from promptinfo.engine.schema import TrainerConfig
from promptinfo.errors import ConfigError
from promptinfo.methods import create_method
from tests.conftest import make_backbone

CLASSES = ["tabby cat", "golden retriever dog", "red panda", "sports car", "x"]
ROOT = Path(__file__).resolve().parents[1]


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _method(name: str, truncate: bool, **options):
    backbone = make_backbone("pi-tiny-vit-s")
    backbone.truncate_text = truncate
    torch.manual_seed(3)
    return create_method(name, backbone, CLASSES, **options)


def _logits_and_grads(method, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = method(images)
    method.zero_grad(set_to_none=True)
    logits.logsumexp(dim=1).sum().backward()
    grads = {k: p.grad.clone() for k, p in method.prompt.named_parameters()}
    return logits.detach(), grads


def _assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float32 rounding of sums whose length or order differs (tolerance relative to b's scale)."""
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.detach().abs().max())))


@pytest.mark.parametrize(("name", "options"), [("coop", {}), ("maple", {"depth": 3})])
def test_text_truncation_keeps_logits_and_gradients(name, options):
    full, short = _method(name, truncate=False, **options), _method(name, truncate=True, **options)
    assert full.tokens.shape[1] == full.backbone.context_length
    assert short.tokens.shape[1] < full.tokens.shape[1] // 2  # the longest prompt ends well before token 77
    images = _images(3)
    logits_full, grads_full = _logits_and_grads(full, images)
    logits_short, grads_short = _logits_and_grads(short, images)
    _assert_close(logits_short, logits_full)
    assert grads_full.keys() == grads_short.keys()
    for key in grads_full:
        _assert_close(grads_short[key], grads_full[key])


def _partitions(m: int, k: int):
    """Every split of m sorted distinct lengths into at most k contiguous groups, as group end indices."""
    for parts in range(1, k + 1):
        for ends in itertools.combinations(range(1, m), parts - 1):
            yield [*ends, m]


def test_length_buckets_are_the_cheapest_contiguous_grouping():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(3, 12) for _ in range(rng.randint(1, 60))]
        max_buckets, min_rows = rng.randint(1, 4), rng.choice([1, 5, 16])
        buckets = length_buckets(lengths, max_buckets, min_rows)
        assert sorted(r for rows, _ in buckets for r in rows) == list(range(len(lengths)))  # each row once
        assert all(length == max(lengths[r] for r in rows) for rows, length in buckets)
        assert len(buckets) <= max_buckets and (len(buckets) == 1 or all(len(rows) >= min_rows for rows, _ in buckets))
        distinct = sorted(set(lengths))
        best = min(
            sum(sum(1 for n in lengths if lo <= n <= distinct[end - 1]) * distinct[end - 1]
                for lo, end in zip([distinct[0], *(distinct[e] for e in ends[:-1])], ends))
            for ends in _partitions(len(distinct), max_buckets)
            if len(ends) == 1 or all(sum(1 for n in lengths if lo <= n <= distinct[end - 1]) >= min_rows
                                     for lo, end in zip([distinct[0], *(distinct[e] for e in ends[:-1])], ends))
        )
        assert sum(len(rows) * length for rows, length in buckets) == best


@pytest.mark.parametrize(("name", "options"), [("coop", {}), ("maple", {"depth": 3}), ("cocoop", {})])
def test_length_buckets_keep_text_features_and_gradients(name, options):
    classes = [" ".join(["word"] * (1 + i % 9)) + f" {i}" for i in range(40)]  # 40 prompts of 9 lengths
    method = create_method(name, make_backbone("pi-tiny-vit-s"), classes, **options)
    image_features = torch.nn.functional.normalize(torch.randn(3, method.backbone.embed_dim), dim=-1)

    def features_and_grads(buckets: int):
        method.backbone.text_buckets = buckets
        method.zero_grad(set_to_none=True)
        text = method.text_features(image_features if name == "cocoop" else None)
        text.square().sum().backward()
        return text.detach(), {k: p.grad.clone() for k, p in method.prompt.named_parameters() if p.grad is not None}

    calls = []
    hook = method.backbone.model.ln_final.register_forward_hook(lambda *args: calls.append(1))
    split, split_grads = features_and_grads(4)
    assert len(calls) > 1  # the pass was split
    one, one_grads = features_and_grads(1)
    hook.remove()
    _assert_close(split, one)
    assert split_grads.keys() == one_grads.keys() and split_grads
    for key in one_grads:
        _assert_close(split_grads[key], one_grads[key])


def test_length_buckets_take_per_sequence_deep_prompts():
    backbone = make_backbone("pi-tiny-vit-s")
    tokens = backbone.tokenize([" ".join(["a"] * (1 + i % 6)) for i in range(36)])
    embeddings = backbone.token_embedding(tokens)
    deep = [torch.randn(36, 2, backbone.text_width)]  # one prompt pair per sequence
    backbone.text_buckets = 3
    split = backbone.encode_text_embeddings(embeddings, tokens, deep)
    backbone.text_buckets = 1
    _assert_close(split, backbone.encode_text_embeddings(embeddings, tokens, deep))


def test_cocoop_one_pass_in_chunks_equals_one_pass_per_image():
    looped = _method("cocoop", truncate=True, batch_images=False)
    chunked = _method("cocoop", truncate=True, max_text_batch=2 * len(CLASSES) + 1)  # 2 images per pass
    assert chunked._images_per_pass() == 2 and looped._images_per_pass() == 1
    images = _images(5)  # passes of 2, 2 and 1 images
    (logits_a, grads_a), (logits_b, grads_b) = _logits_and_grads(looped, images), _logits_and_grads(chunked, images)
    _assert_close(logits_b, logits_a)
    for key in grads_a:
        _assert_close(grads_b[key], grads_a[key])


@pytest.mark.parametrize("name", ["coop", "cocoop"])
def test_step_on_cached_features_equals_step_on_the_images(name):
    """A frozen image side makes a training step on stored features the same as one on the images."""
    method = _method(name, truncate=True)
    rt = build_runtime(TrainerConfig(device="cpu", precision="fp32"), method.backbone)
    images = _images(4)
    features = rt.encode_fn(method)(images)  # what the feature cache stores
    on_images = rt.forward(method, images, "images")
    on_features = rt.forward(method, features, "features")
    _assert_close(on_features.logits, on_images.logits)
    grads = []
    for out in (on_images, on_features):
        method.zero_grad(set_to_none=True)
        out.logits.logsumexp(dim=1).sum().backward()
        grads.append([p.grad.clone() for p in method.prompt.parameters()])
    for a, b in zip(*grads):
        _assert_close(b, a)


@pytest.mark.parametrize("model", ["pi-tiny-rn", "pi-tiny-vit-s"])
def test_channels_last_keeps_image_features(model):
    plain, fast = make_backbone(model), make_backbone(model)
    apply_speed_options(fast, TrainerConfig(channels_last=True))
    convs = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    images = _images(2, size=plain.preprocess_cfg.size)
    with torch.no_grad():
        _assert_close(fast.encode_image(images), plain.encode_image(images))


@pytest.mark.slow
def test_compile_wraps_both_encoders_once_and_is_off_by_default():
    backbone = make_backbone()
    apply_speed_options(backbone, TrainerConfig())
    assert not hasattr(backbone.encode_image, "_torchdynamo_orig_callable")
    apply_speed_options(backbone, TrainerConfig(compile=True))
    for name in ("encode_image", "encode_text_embeddings"):
        wrapped = getattr(backbone, name)
        assert wrapped._torchdynamo_orig_callable == getattr(type(backbone), name).__get__(backbone)
    first = backbone.encode_image
    apply_speed_options(backbone, TrainerConfig(compile=True))
    assert backbone.encode_image is first  # not compiled twice


def test_trainer_speed_options_compose_with_their_defaults_and_are_typed():
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        cfg = validate_train_config(compose("train", overrides=[]))
        assert cfg.trainer.channels_last is True and cfg.trainer.compile is False
        assert cfg.trainer.num_workers > 0 and cfg.trainer.persistent_workers and cfg.trainer.pin_memory
        with pytest.raises(ConfigError, match="trainer.compile"):
            validate_train_config(compose("train", overrides=["trainer.compile=maybe"]))


def test_bench_tool_runs_and_reports_ratios(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench", ROOT / "tools" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    args = bench.parse_args([
        "--model", "pi-tiny-vit-s", "--device", "cpu", "--classes", "3", "--shots", "2", "--coop-batch", "2",
        "--cocoop-batch", "2", "--maple-batch", "2", "--train-views", "2", "--epochs", "3", "--eval-images", "6",
        "--eval-sample", "2", "--eval-batch", "4", "--image-size", "40", "30", "--repeats", "1", "--warmup", "0",
        "--sections", "train", "eval", "levers", "--json", str(tmp_path / "bench.json"),
    ])
    rows = {r["name"]: r for r in bench.run(args)["rows"]}
    ladder = {f"{m} train step: {v}" for m in ("coop", "cocoop") for v in bench.VARIANTS} | {
        "maple train step: ours, no shared prefix", "maple train step: ours"}
    assert set(rows) == {"coop train epoch", "coop train, all epochs incl. cache fill", *ladder,
                         "zeroshot eval", "coop eval", "cocoop eval", "maple eval",
                         "lever: text truncation (coop text fwd+bwd)", "lever: text length buckets (coop text fwd+bwd)",
                         "lever: shared prefix (coop text fwd+bwd)", "lever: cocoop one pass for many images",
                         "lever: shared prefix (cocoop text fwd+bwd)", "lever: channels-last (image encoder fwd)"}
    for row in rows.values():
        assert row["ratio"] == pytest.approx(row["straightforward"] / row["ours"])
        assert (row["met"] is None) == (row["target"] is None)
    for name in ladder:  # the original code's formulation gives our logits; cached views alone resample augmentations
        assert rows[name]["measured"]["max_logit_difference"] < 1e-4
        assert rows[name]["changes_augmentations"] == ("cached views" in name) and rows[name]["exact"] != ("cached" in name)
    assert rows["coop train step: ours"]["settings"]["text_tokens"]["original"] == 77
    assert rows["coop train epoch"]["settings"]["steps_per_epoch"] == 3
    assert rows["coop train epoch"]["measured"]["max_logit_difference"] < 1e-4
    assert (tmp_path / "bench.json").is_file()


def test_bench_extrapolates_the_original_memory_along_a_line(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench", ROOT / "tools" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench", bench)
    spec.loader.exec_module(bench)
    seen = []

    def measured(spec, variant, args, device):
        seen.append((spec["classes"], variant))
        return {"peak_bytes": 1000 + 10 * spec["classes"], "step_s": 0.5 + 0.01 * spec["classes"], "how": "test"}

    monkeypatch.setattr(bench, "_memory_of", measured)
    args = bench.parse_args(["--memory-fit-classes", "100", "200", "--device", "cpu"])
    spec = {"method": "coop", "classes": 1000}
    out = bench._original_memory(spec, args, torch.device("cpu"))
    assert seen == [(100, "original"), (200, "original")]
    assert out["peak_bytes"] == pytest.approx(11000) and out["step_s"] == pytest.approx(10.5)
    assert bench._original_memory({**spec, "classes": 150}, args, torch.device("cpu"))["peak_bytes"] == 2500
