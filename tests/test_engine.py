"""Engine parts in isolation: schedule, data order, objective, accumulation, clipping, guards, checkpoints, locks."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from promptinfo.engine.checkpoint import rng_state, set_rng_state
from promptinfo.engine.data import EpochBatchSampler, EpochSeededImages, FeatureBatches
from promptinfo.engine.device import Precision, resolve_precision
from promptinfo.engine.loop import EpochStats, Fit, FitState, NonFiniteLossError, _optimizer_step, train_epoch
from promptinfo.engine.objective import Objective
from promptinfo.engine.optim import build_optimizer, build_scheduler, epoch_lr
from promptinfo.engine.progress import Progress
from promptinfo.engine.rundir import RunFolder, RunFolderBusyError
from promptinfo.engine.runtime import Runtime
from promptinfo.errors import ConfigError
from promptinfo.losses import InformationTerms, cma_loss, information_terms
from promptinfo.methods import MethodOutput, create_method
from tests.conftest import ListBatches, make_backbone


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trainer(**kw):
    base = dict(epochs=5, lr=0.002, warmup_epochs=1, warmup_lr=1e-5, warmup_type="constant", scheduler="cosine",
                optimizer="sgd", momentum=0.9, weight_decay=5e-4)
    return SimpleNamespace(**{**base, **kw})


# --------------------------------------------------------------------------------------------- schedule
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_schedule_is_dassl_constant_warmup_then_cosine_per_epoch():
    t = trainer()
    param = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([{"params": [param]}], t)
    sched = build_scheduler(opt, t)
    seen = []
    for _ in range(t.epochs):
        seen.append(opt.param_groups[0]["lr"])
        sched.step()
    expected = [1e-5] + [0.002 * (1 + math.cos(math.pi * (e - 1) / 5)) / 2 for e in range(1, 5)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[1] == pytest.approx(0.002) and seen[-1] > 0  # cosine with period `epochs`: never reaches zero
    assert [epoch_lr(t, e) for e in range(5)] == pytest.approx(seen, rel=1e-12)
    # the same curve as torch's recursive CosineAnnealingLR stepped after the warm-up epoch
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=5)
    reference = []
    for _ in range(4):
        reference.append(opt2.param_groups[0]["lr"])
        cosine.step()
    assert seen[1:] == pytest.approx(reference, rel=1e-9)


def test_linear_warmup_and_optimizer_choices():
    t = trainer(warmup_epochs=2, warmup_type="linear", scheduler="constant")
    assert [epoch_lr(t, e) for e in range(4)] == pytest.approx([1e-5, (1e-5 + 0.002) / 2, 0.002, 0.002])
    p = torch.nn.Parameter(torch.zeros(1))
    assert isinstance(build_optimizer([{"params": [p]}], trainer(optimizer="adamw")), torch.optim.AdamW)
    opt = build_optimizer([{"params": [p]}], trainer())
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1), requires_grad=False)]}], trainer())


def test_precision_on_cpu_is_fp32_and_half_precision_needs_cuda():
    assert resolve_precision("auto", torch.device("cpu")) == Precision("fp32", None)
    with pytest.raises(ConfigError, match="CUDA only"):
        resolve_precision("bf16", torch.device("cpu"))


# --------------------------------------------------------------------------------------------- data order
def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    def batches(seed, epoch, n=10, bs=4):
        s = EpochBatchSampler(n, bs, seed)
        s.set_epoch(epoch)
        return list(s)

    assert batches(1, 3) == batches(1, 3)
    assert batches(1, 3) != batches(1, 4) and batches(1, 3) != batches(2, 3)
    epoch3 = batches(1, 3)
    assert len(epoch3) == 2 and all(len(b) == 4 for b in epoch3)  # last incomplete batch dropped
    assert all(e == 3 for b in epoch3 for e, _ in b) and len({i for b in epoch3 for _, i in b}) == 8
    small = batches(1, 0, n=3, bs=4)  # fewer items than a batch: one smaller batch, nothing dropped
    assert len(small) == 1 and sorted(i for _, i in small[0]) == [0, 1, 2]


def test_augmentation_is_fixed_by_seed_epoch_and_index(tmp_path):
    from promptinfo.data import Item, build_transform

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    tf = build_transform(make_backbone().preprocess_cfg, train=True)
    data = EpochSeededImages([Item(str(tmp_path / "a.png"), 0, "a")], tf, seed=7)
    torch.manual_seed(123)
    first = data[(2, 0)][0]
    state = torch.get_rng_state()
    torch.manual_seed(999)  # the global generator plays no part
    assert torch.equal(data[(2, 0)][0], first)
    assert not torch.equal(data[(3, 0)][0], first)
    torch.manual_seed(123)
    data[(2, 0)]
    assert torch.equal(torch.get_rng_state(), state)  # and is left untouched


def test_cached_views_are_drawn_per_epoch_deterministically():
    feats = torch.arange(3 * 6 * 2, dtype=torch.float32).view(3, 6, 2)  # [views, n, d]
    labels = torch.arange(6)
    a, b = FeatureBatches(feats, labels, 5, 3), FeatureBatches(feats, labels, 5, 3)
    ea, eb = list(a.epoch(1)), list(b.epoch(1))
    assert len(ea) == 2 and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(ea, eb))
    for x, y in ea:  # each row is view v of its own item: feats[v, i]
        for row, i in zip(x, y):
            assert any(torch.equal(row, feats[v, i]) for v in range(3))
    views = [torch.cat([x for x, _ in FeatureBatches(feats, labels, 5, 6).epoch(e)]) for e in range(4)]
    assert any(not torch.equal(views[0], v) for v in views[1:])


# --------------------------------------------------------------------------------------------- objective
def _output(b=6, c=3, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(b, d, generator=g), dim=-1).requires_grad_()
    txt = F.normalize(torch.randn(c, d, generator=g), dim=-1)
    output = MethodOutput(logits=20 * img @ txt.t(), image_features=img, text_features=txt)
    return output, torch.tensor([0, 1, 2, 0, 1, 2])


class _Method:
    def __init__(self, extra=None):
        self.extra = extra or {}

    def extra_losses(self, output, labels):
        return self.extra


def test_objective_terms_and_weights():
    out, y = _output()
    ce = F.cross_entropy(out.logits, y)
    plain = Objective(None, InformationTerms())(_Method(), out, y)
    assert plain.weights == {"ce": 1.0} and torch.allclose(plain.total, ce)
    cma = Objective(0.3, InformationTerms())(_Method(), out, y)
    expected = 0.7 * ce + 0.3 * cma_loss(out.image_features, out.text_features, y)
    assert cma.weights == {"ce": 0.7, "cma": 0.3} and torch.allclose(cma.total, expected)
    info = InformationTerms(mi_weight=0.5, gap_weight=0.25, use_mir=True, use_hdr=True)
    full = Objective(None, info)(_Method({"kg": torch.tensor(0.125)}), out, y)
    terms = information_terms(out.image_features, out.text_features, y, use_mir=True, use_hdr=True)
    assert set(full.terms) == {"ce", "mir", "hdr", "kg"} and full.weights["kg"] == 1.0
    assert torch.allclose(full.total, ce + 0.5 * terms["mir"] + 0.25 * terms["hdr"] + 0.125)
    assert torch.allclose(full.terms["mir"], terms["mir"])  # reported unweighted
    with pytest.raises(ValueError, match="clashes"):
        Objective(None, InformationTerms())(_Method({"ce": torch.tensor(1.0)}), out, y)


def test_epoch_stats_report_each_term_unweighted_with_its_weight():
    stats = EpochStats()
    stats.add(2, 1, 1.0, {"ce": torch.tensor(1.0), "cma": torch.tensor(0.5)}, {"ce": 0.6, "cma": 0.4})
    stats.add(2, 2, 3.0, {"ce": torch.tensor(3.0), "cma": torch.tensor(0.5)}, {"ce": 0.6, "cma": 0.4})
    assert stats.row() == {"loss": 2.0, "loss/ce": 2.0, "loss/cma": 0.5, "weight/ce": 0.6, "weight/cma": 0.4,
                           "train_acc": 75.0}


# --------------------------------------------------------------------------------------------- the loop
def _coop_fit(grad_accum=1, clip=None, objective=None, lr=0.01, seed=0):
    torch.manual_seed(seed)
    method = create_method("coop", make_backbone(), ["cat", "dog", "bird"], n_ctx=2)
    opt = build_optimizer(method.parameter_groups(), trainer(lr=lr, momentum=0.0, weight_decay=0.0))
    rt = Runtime(torch.device("cpu"), Precision("fp32", None), None, None)
    sched = build_scheduler(opt, trainer(lr=lr, warmup_epochs=0))
    f = Fit(objective or Objective(None, InformationTerms()), opt, sched,
            rt.precision.grad_scaler(rt.device), rt, epochs=1, grad_accum=grad_accum, clip_grad_norm=clip)
    return method, f


def _feature_batch(seed=0, b=8):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, 32, generator=g), dim=-1), torch.randint(0, 3, (b,), generator=g)


def test_gradient_accumulation_matches_the_full_batch_step():
    batch = _feature_batch()
    one, f1 = _coop_fit(grad_accum=1)
    two, f2 = _coop_fit(grad_accum=4)
    for method, f in ((one, f1), (two, f2)):
        train_epoch(method, ListBatches([batch]), f, FitState(), Progress("none", 1), lr=0.01)
    assert not torch.equal(one.prompt.ctx, _coop_fit()[0].prompt.ctx)  # a step was taken
    assert torch.allclose(one.prompt.ctx, two.prompt.ctx, atol=1e-7)


def test_gradient_clipping_bounds_the_step():
    method, f = _coop_fit(clip=1e-3, lr=1.0)
    before = method.prompt.ctx.detach().clone()
    method.prompt.ctx.grad = torch.ones_like(before)
    _optimizer_step(f, [method.prompt.ctx])
    assert (method.prompt.ctx - before).norm().item() == pytest.approx(1e-3, rel=1e-4)  # plain SGD: lr * clipped grad


def test_non_finite_loss_stops_with_a_clear_message():
    class NaNObjective(Objective):
        def __call__(self, method, output, labels):
            terms = super().__call__(method, output, labels)
            terms.terms["ce"] = terms.total = terms.total * float("nan")
            return terms

    method, f = _coop_fit(objective=NaNObjective(None, InformationTerms()))
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, batch 1 .*trainer.lr"):
        train_epoch(method, ListBatches([_feature_batch()]), f, FitState(), Progress("none", 1), lr=0.01)


# --------------------------------------------------------------------------------------------- checkpoints, folders
def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_run_folder_is_exclusive_and_metrics_truncate_on_resume(tmp_path):
    with RunFolder(tmp_path / "run") as run:
        with pytest.raises(RunFolderBusyError, match="Another run is writing"):
            RunFolder(tmp_path / "run").__enter__()
        for epoch in range(4):
            run.append_metrics({"epoch": epoch, "loss": float(epoch)})
        run.truncate_metrics(2)
        assert [row["epoch"] for row in run.read_metrics()] == [0, 1, 2]
    with RunFolder(tmp_path / "run"):  # released on exit
        pass


# --------------------------------------------------------------------------------------------- progress, tensorboard
def test_progress_bar_shows_throughput_and_log_mode_writes_lines(capsys, caplog):
    bar = Progress("bar", log_every=1)
    bar.start_epoch(1, 2, steps=2)
    bar.update(1, 4, 0.5, 1e-3)
    bar.update(2, 4, 0.4, 1e-3)
    shown = str(bar._bar)  # what the terminal line shows (tqdm throttles redraws)
    assert "2/2" in shown and "img_s=" in shown and "loss=0.4000" in shown
    assert bar.end_epoch() >= 0 and "epoch 1/2" in capsys.readouterr().err
    with caplog.at_level("INFO", logger="promptinfo.engine"):
        lines = Progress("log", log_every=2)
        lines.start_epoch(1, 2, steps=3)
        for step in (1, 2, 3):
            lines.update(step, 4, 0.5, 1e-3)
    assert [r.getMessage().split(" loss")[0] for r in caplog.records] == ["epoch 1/2 step 2/3", "epoch 1/2 step 3/3"]
    assert "img/s" in caplog.records[0].getMessage()


def test_tensorboard_without_the_package_says_how_to_get_it(monkeypatch, tmp_path):
    import sys

    from promptinfo.engine.progress import ScalarWriter

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        ScalarWriter(tmp_path)


# --------------------------------------------------------------------------------------------- promptinfo-eval
def test_eval_rebuilds_the_checkpoints_backbone(tmp_path):
    from omegaconf import OmegaConf

    from promptinfo.engine.checkpoint_eval import checkpoint_model_config

    def _model_config(cfg, meta):
        return checkpoint_model_config(cfg.model, meta, cfg.checkpoint)

    cfg = OmegaConf.create({"checkpoint": "p.safetensors",
                            "model": {"name": "ViT-B-16", "pretrained": "openai", "cache_dir": None}})
    meta = {"backbone": "pi-tiny-vit-s", "weights": "random"}
    assert (_model_config(cfg, meta).name, _model_config(cfg, meta).pretrained) == ("pi-tiny-vit-s", None)
    assert _model_config(cfg, {"backbone": "ViT-L-14", "weights": "laion2b"}).pretrained == "laion2b"
    with pytest.raises(ConfigError, match="pass that file again as model.pretrained"):
        _model_config(cfg, {"backbone": "ViT-L-14", "weights": "file-0123456789abcdef"})
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    cfg.model.pretrained = str(weights)
    assert _model_config(cfg, {"backbone": "ViT-L-14", "weights": "file-0123"}).pretrained == str(weights)
    with pytest.raises(ConfigError, match="OpenAI-format checkpoint"):
        _model_config(cfg, {"backbone": "my-clip", "weights": "file-0123"})


# --------------------------------------------------------------------------------------------- method-owned optimisation
def test_a_method_s_parameter_groups_keep_their_own_lr_and_decay_under_the_schedule():
    method = create_method("coop", make_backbone(), ["cat", "dog", "bird"], n_ctx=2)
    method.parameter_groups = lambda: [{"params": [method.prompt.ctx], "lr": 0.5, "weight_decay": 0.0}]
    t = trainer(lr=0.002, warmup_epochs=1, warmup_lr=1e-5)
    opt = build_optimizer(method.parameter_groups(), t)
    sched = build_scheduler(opt, t)
    group = opt.param_groups[0]
    assert (group["weight_decay"], group["momentum"]) == (0.0, 0.9)  # own decay; the trainer's momentum
    assert group["lr"] == pytest.approx(0.5 * 1e-5 / 0.002)  # the warm-up factor of the schedule
    sched.step()
    assert group["lr"] == pytest.approx(0.5)  # its own peak, not the trainer's


def test_after_backward_runs_once_per_step_after_every_micro_batch_s_backward():
    seen = {}
    for accum in (1, 4):
        method, f = _coop_fit(grad_accum=accum)
        calls = seen[accum] = []
        method.after_backward = lambda m=method, calls=calls: calls.append(m.prompt.ctx.grad.clone())
        train_epoch(method, ListBatches([_feature_batch(0), _feature_batch(1)]), f, FitState(), Progress("none", 1),
                    lr=0.01)
    assert len(seen[1]) == len(seen[4]) == 2  # once per optimiser step
    torch.testing.assert_close(seen[4][0], seen[1][0], atol=1e-5, rtol=1e-3)  # after the last micro-batch's backward
