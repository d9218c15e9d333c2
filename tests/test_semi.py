"""Protocols with unlabelled images: strategies, plans, the unlabelled objective, and end-to-end runs.

Pins: the class-balanced top-K assignment, FixMatch's and FreeMatch's masks, the growth of K, the
unlabelled loss (masked cross-entropy over mu * B, information terms on trusted images only), the three
plans (which images are labelled, which unlabelled, labels removed), that the hidden labels of unlabelled
images never reach training (shuffling them changes nothing but the analysis columns), exact resumes
with pseudo-label state, and that every method trains under the protocols.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from safetensors.torch import load_file

from promptinfo.data import Item
from promptinfo.engine import protocols as protocols_module
from promptinfo.engine import train
from promptinfo.engine.objective import LossTerms
from promptinfo.engine.protocols import plan_run
from promptinfo.engine.semi import UnlabelledObjective
from promptinfo.engine.unlabelled import unlabelled_order
from promptinfo.errors import ConfigError
from promptinfo.losses import cma_loss, information_terms
from promptinfo.methods import MethodOutput
from promptinfo.pseudo import balanced_top_k, candidate_probs, create_strategy
from tests.datagen import make_benchmark_tree

ANALYSIS_PREFIXES = ("pseudo/accuracy", "pseudo/pool_accuracy", "info_unlabelled/")
"""metrics.jsonl columns computed from the hidden labels (analysis only)."""


class Killed(Exception):
    """Stands for the process being killed."""


# --------------------------------------------------------------------------------------------- strategies
def test_balanced_top_k_gives_each_class_its_most_confident_images_then_the_next_choice():
    probs = torch.tensor([
        [0.90, 0.10, 0.00],
        [0.80, 0.20, 0.00],
        [0.70, 0.25, 0.05],  # third for class 0 (room 2); loses class 1's last place to image 5: class 2
        [0.10, 0.60, 0.30],
        [0.05, 0.15, 0.80],
        [0.40, 0.35, 0.25],  # turned away by class 0, more confident for class 1 than image 2
    ])
    assigned = balanced_top_k(probs, 2)
    assert assigned.tolist() == [0, 0, 2, 1, 2, 1]
    assert balanced_top_k(probs, 1).tolist() == [0, -1, -1, 1, 2, -1]


def test_balanced_top_k_never_exceeds_k_and_fills_every_class_it_can():
    probs = torch.softmax(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)) * 4, dim=1)
    assigned = balanced_top_k(probs, 7)
    assert torch.bincount(assigned[assigned >= 0], minlength=4).tolist() == [7, 7, 7, 7]


def test_fixmatch_trusts_predictions_at_or_above_the_threshold():
    s = create_strategy("fixmatch", 3, torch.arange(3), threshold=0.9)
    pseudo, mask = s.label(torch.tensor([[0.95, 0.05, 0.0], [0.5, 0.5, 0.0], [0.0, 0.1, 0.9]]), torch.arange(3))
    assert pseudo.tolist() == [0, 0, 2] and mask.tolist() == [True, False, True]


def test_freematch_threshold_follows_its_moving_averages():
    s = create_strategy("freematch", 4, torch.arange(2), ema=0.5)
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4]], dtype=torch.float64)
    pseudo, mask = s.label(probs, torch.arange(2))
    tau = 0.5 * 0.5 + 0.5 * 0.75  # global: starts at 1/C, then the mean max-confidence 0.75
    p = torch.tensor([0.5 * 0.5 + 0.5 * 0.75, 0.5 * 0.5 + 0.5 * 0.25])  # per class: mean probabilities
    thresholds = p / p.max() * tau
    assert s.global_threshold.item() == pytest.approx(tau)
    assert pseudo.tolist() == [0, 0] and mask.tolist() == [0.9 >= thresholds[0], 0.6 >= thresholds[0]]
    assert mask.tolist() == [True, False]
    restored = create_strategy("freematch", 4, torch.arange(2), ema=0.5)
    restored.load_state_dict(s.state_dict())
    assert torch.equal(restored.label(probs, torch.arange(2))[1], s.label(probs, torch.arange(2))[1])


def test_top_k_rounds_growth_and_sources():
    grip = create_strategy("topk", 100, torch.arange(5), rounds=10, grow=True, source="model")
    assert [grip.per_class_now(r) for r in (0, 1, 9, 12)] == [2, 4, 20, 20]  # capped at n / classes
    assert [grip.refresh_source(e, 20) for e in (0, 1, 2, 3, 4)] == ["zeroshot", None, "model", None, "model"]
    fpl = create_strategy("topk", 100, torch.arange(5), per_class=16)
    assert [fpl.refresh_source(e, 20) for e in (0, 5, 19)] == ["zeroshot", None, None]
    assert fpl.per_class_now(3) == 16 and fpl.pool().numel() == 0  # empty until the first refresh


def test_balance_weighs_the_pool_against_the_labelled_set_as_fpl():
    """gamma * CE(L) + CE(P) with gamma = |P| / |L| (Menghini et al.'s FPL) is CE(L) + (|L| / |P|) CE(P)
    up to scale: the pseudo-label weight follows the pool's size, and stays `weight` without labelled images."""
    probs = candidate_probs(torch.randn(40, 4, generator=torch.Generator().manual_seed(2)), torch.arange(4))
    grip = create_strategy("topk", 40, torch.arange(4), rounds=4, grow=True, weight=0.5, balance=True)
    assert grip.pseudo_weight(8) == 0.5  # no pool yet
    weights = []
    for epoch in (0, 1, 3):  # one epoch per round: K = 2, 5, 10 of 40 images over 4 classes
        grip.refresh(probs, epoch, 4)
        weights.append(grip.pseudo_weight(8))
    assert [grip.pool().numel() for _ in (0,)] == [40]
    assert weights == [0.5 * 8 / 8, 0.5 * 8 / 20, 0.5 * 8 / 40]
    assert grip.pseudo_weight(0) == 0.5  # unsupervised: nothing to weigh against
    plain = create_strategy("topk", 40, torch.arange(4), weight=0.5)
    plain.refresh(probs, 0, 4)
    assert plain.pseudo_weight(8) == 0.5


def test_top_k_labels_only_candidate_classes():
    s = create_strategy("topk", 6, torch.tensor([2, 3]), per_class=2)
    probs = candidate_probs(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([2, 3]))
    assert torch.all(probs[:, :2] == 0) and torch.allclose(probs.sum(1), torch.ones(6))
    s.refresh(probs, 0, 10)
    labels, mask = s.label(None, s.pool())
    assert set(labels.tolist()) == {2, 3} and mask.all() and s.pool().numel() == 4


def test_unlabelled_order_draws_from_the_pool_and_depends_on_seed_and_epoch_only():
    pool = torch.tensor([3, 5, 8])
    order = unlabelled_order(pool, 3, 2, seed=1, epoch=0)
    assert order.shape == (3, 2) and set(order.flatten().tolist()) <= {3, 5, 8}
    assert sorted(order.flatten()[:3].tolist()) == [3, 5, 8]  # each pass covers the pool once
    assert torch.equal(order, unlabelled_order(pool, 3, 2, seed=1, epoch=0))
    assert not torch.equal(order, unlabelled_order(pool, 3, 2, seed=1, epoch=1))


# --------------------------------------------------------------------------------------------- objective
class _Cfg:
    mi_weight, gap_weight, use_mir, use_hdr, level, cma_weight = 0.2, 0.3, False, False, "batch", 0.4


def _output(b: int = 6, c: int = 3, d: int = 5) -> MethodOutput:
    g = torch.Generator().manual_seed(2)
    image = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    text = torch.nn.functional.normalize(torch.randn(c, d, generator=g), dim=1)
    return MethodOutput(logits=10 * image @ text.t(), image_features=image, text_features=text)


def test_unlabelled_objective_masks_cross_entropy_over_the_whole_batch_and_pins_its_terms():
    out, pseudo = _output(), torch.tensor([0, 1, 2, 0, 1, 2])
    mask = torch.tensor([True, True, False, True, False, True])
    loss = UnlabelledObjective(1.5, _Cfg())(out, pseudo, mask)
    ce = torch.nn.functional.cross_entropy(out.logits, pseudo, reduction="none")
    assert loss.terms["ce"] == pytest.approx(float((ce * mask).sum() / 6))
    info = information_terms(out.image_features[mask], out.text_features, pseudo[mask])
    assert loss.terms["mi"] == pytest.approx(float(info["mi"]))
    assert loss.terms["entropy_gap"] == pytest.approx(float(info["entropy_gap"]))
    assert loss.terms["cma"] == pytest.approx(float(cma_loss(out.image_features[mask], out.text_features, pseudo[mask])))
    assert loss.weights == {"ce": 1.5, "mi": 0.2, "entropy_gap": 0.3, "cma": 0.4}
    expected = sum(loss.weights[k] * loss.terms[k] for k in loss.terms)
    assert float(loss.total) == pytest.approx(float(expected))


def test_unlabelled_objective_leaves_out_information_terms_below_two_trusted_images():
    out, pseudo = _output(), torch.zeros(6, dtype=torch.long)
    loss = UnlabelledObjective(1.0, _Cfg())(out, pseudo, torch.tensor([True] + [False] * 5))
    assert set(loss.terms) == {"ce"} and isinstance(loss, LossTerms)
    none = UnlabelledObjective(1.0, _Cfg())(out, pseudo, torch.zeros(6, dtype=torch.bool))
    assert float(none.total) == 0.0


# --------------------------------------------------------------------------------------------- plans
@pytest.fixture(autouse=True, scope="module")
def _setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_benchmark_tree("oxford_pets", root, n_per_class=10, num_classes=4, split_file=True)  # 5 train per class
    return root


class _Protocol:
    def __init__(self, name: str, shots: int, subsample: str = "all") -> None:
        self.name, self.shots, self.subsample, self.targets = name, shots, subsample, []


def test_semi_supervised_plan_labels_the_few_shot_draw_and_hides_the_rest(data_root):
    few = plan_run("oxford_pets", str(data_root), _Protocol("few_shot", 2), seed=3)
    semi = plan_run("oxford_pets", str(data_root), _Protocol("semi_supervised", 2), seed=3)
    assert semi.train.train == few.train.train  # the same draw as few_shot
    u = semi.unlabelled
    assert len(u.items) == 4 * 5 - 4 * 2 and all(i.label == -1 and i.classname == "" for i in u.items)
    labelled = {i.path for i in semi.train.train}
    assert not labelled & {i.path for i in u.items}
    train = {i.path: i.label for i in plan_run("oxford_pets", str(data_root), _Protocol("unsupervised", 0), 3).unlabelled.items}
    assert set(train) == labelled | {i.path for i in u.items}
    assert u.candidates.tolist() == [0, 1, 2, 3] and [e.name for e in semi.evaluations] == ["test"]


def test_unsupervised_plan_has_class_names_and_no_labelled_image(data_root):
    plan = plan_run("oxford_pets", str(data_root), _Protocol("unsupervised", 0, "base"), seed=1)
    assert plan.train.train == [] and len(plan.train.classnames) == 2
    assert len(plan.unlabelled.items) == 2 * 5 and sorted(set(plan.unlabelled.hidden_labels.tolist())) == [0, 1]


def test_transductive_plan_labels_base_shots_and_hides_novel_images(data_root):
    plan = plan_run("oxford_pets", str(data_root), _Protocol("transductive_zero_shot", 2), seed=1)
    b2n = plan_run("oxford_pets", str(data_root), _Protocol("base2novel", 2), seed=1)
    assert [i.path for i in plan.train.train] == [i.path for i in b2n.train.train]  # base2novel's base shots
    assert len(plan.train.classnames) == 4 and {i.label for i in plan.train.train} == {0, 1}
    assert plan.unlabelled.candidates.tolist() == [2, 3]
    assert sorted(set(plan.unlabelled.hidden_labels.tolist())) == [2, 3] and len(plan.unlabelled.items) == 2 * 5
    assert [(e.name, e.subsample) for e in plan.evaluations] == [("base", "base"), ("novel", "novel")]


# --------------------------------------------------------------------------------------------- end to end
def run(data_root: Path, workdir: Path, *overrides: str, callbacks=()) -> tuple[dict, Path]:
    base = ["debug=tiny", f"dataset.root={data_root}", f"runs_root={workdir / 'runs'}",
            f"feature_cache={workdir / 'features'}", "trainer.info_subset=16", "trainer.batch_size=4", "protocol.shots=2"]
    if not any(o.startswith("method=") for o in overrides):
        base += ["method=coop", "method.n_ctx=2"]
    cfg = compose("train", overrides=[*base, *overrides])
    return train(cfg, callbacks=callbacks), Path(OmegaConf.to_container(cfg, resolve=True)["run_dir"])


def rows(folder: Path) -> list[dict]:
    out = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "time_s"} for row in out]


def prompt(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "prompt.safetensors"))


SEMI = ("protocol=semi_supervised", "trainer.epochs=3", "pseudo.threshold=0.3", "pseudo.mu=2",
        "loss.unlabelled.mi_weight=0.2", "loss.unlabelled.gap_weight=0.2", "loss.unlabelled.cma_weight=0.2")


@pytest.mark.parametrize("views", [2, pytest.param(0, marks=pytest.mark.slow)])
def test_hidden_labels_of_unlabelled_images_never_reach_training(views, data_root, tmp_path, monkeypatch):
    common = (*SEMI, f"trainer.train_views={views}")
    plain, plain_dir = run(data_root, tmp_path / "a", *common)
    hide = protocols_module.hide_labels

    def shuffled(items, candidates):  # every unlabelled image gets another image's label
        labels = [item.label for item in items]
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(0)).tolist()
        return hide([Item(i.path, labels[j], i.classname) for i, j in zip(items, order)], candidates)

    monkeypatch.setattr(protocols_module, "hide_labels", shuffled)
    other, other_dir = run(data_root, tmp_path / "b", *common)
    assert other["evaluations"] == plain["evaluations"]
    assert all(torch.equal(prompt(other_dir)[k], v) for k, v in prompt(plain_dir).items())
    differing = set()
    for a, b in zip(rows(plain_dir), rows(other_dir)):
        training = {k: v for k, v in a.items() if not k.startswith(ANALYSIS_PREFIXES)}
        assert training == {k: v for k, v in b.items() if not k.startswith(ANALYSIS_PREFIXES)}
        differing |= {k for k in a if a[k] != b.get(k)}
    assert differing and all(k.startswith(ANALYSIS_PREFIXES) for k in differing)  # the shuffle reached the report
    assert rows(plain_dir)[-1]["pseudo/labelled"] > 0 and "loss_u/mi" in rows(plain_dir)[-1]


@pytest.mark.slow
@pytest.mark.parametrize("setting", [
    ("pseudo=freematch", "trainer.train_views=2"),  # adaptive-threshold state
    ("pseudo=ifpl", "pseudo.rounds=3"),  # the pool rebuilt every epoch from the model
])
def test_semi_supervised_runs_resume_exactly(setting, data_root, tmp_path):
    common = ("protocol=semi_supervised", "trainer.epochs=3", "pseudo.mu=2", *setting)
    reference, reference_dir = run(data_root, tmp_path / "ref", *common)

    def die(state, row):
        if state.epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        run(data_root, tmp_path / "cut", *common, callbacks=(die,))
    resumed, folder = run(data_root, tmp_path / "cut", *common)
    assert resumed["evaluations"] == reference["evaluations"] and resumed["epochs"] == 3
    assert all(torch.equal(prompt(folder)[k], v) for k, v in prompt(reference_dir).items())
    assert rows(folder) == rows(reference_dir)
    assert "resuming after epoch 2" in (folder / "train.log").read_text()


@pytest.mark.slow
def test_unsupervised_and_transductive_runs_report_pseudo_labels(data_root, tmp_path):
    results, folder = run(data_root, tmp_path, "protocol=unsupervised", "pseudo=fpl", "trainer.epochs=2",
                          "pseudo.mu=2")
    last = rows(folder)[-1]
    assert "train_acc" not in last and last["pseudo/pool"] == 4 * 5 and last["pseudo/labelled"] == last["pseudo/seen"]
    assert last["step"] == 2 * math.ceil(20 / (2 * 4))  # one pass over the unlabelled set
    results, folder = run(data_root, tmp_path, "protocol=transductive_zero_shot", "pseudo=grip", "trainer.epochs=2")
    assert set(results["evaluations"]) == {"base", "novel"} and "harmonic_mean" in results
    assert rows(folder)[-1]["pseudo/pool"] == 2  # round 1 of 10: 10 images / (10 rounds x 2 classes), at least 1


@pytest.mark.slow
@pytest.mark.parametrize("method", [
    ("method=cocoop",), ("method=maple", "method.depth=2"), ("method=kgcoop",),
    ("method=promptsrc", "method.depth_text=2", "method.depth_vision=2"), ("method=ivlp", "method.depth_text=2", "method.depth_vision=2"),
    ("method=vpt", "method.depth_vision=2"),
])
def test_every_method_trains_with_unlabelled_images(method, data_root, tmp_path):
    results, folder = run(data_root, tmp_path, "protocol=semi_supervised", *method, "trainer.epochs=1",
                          "pseudo.threshold=0.01", "pseudo.mu=1", "loss.unlabelled.mi_weight=0.1",
                          "loss.unlabelled.cma_weight=0.1")
    last = rows(folder)[-1]
    assert last["pseudo/labelled"] == last["pseudo/seen"] == 2 * 4 and {"loss_u/mi", "loss_u/cma"} <= set(last)
    assert math.isfinite(last["loss"]) and results["evaluations"]["test"]["total"] == 4 * 3


# --------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("overrides, message", [
    (("protocol=semi_supervised", "loss.unlabelled.mi_weight=-0.1"), "loss.unlabelled.mi_weight=-0.1"),
    (("protocol=semi_supervised", "pseudo.threshold=1.5"), "pseudo.threshold=1.5"),
    (("protocol=semi_supervised", "pseudo.mu=0"), "pseudo.mu=0"),
    (("protocol=semi_supervised", "protocol.shots=-1"), "leaves none unlabelled"),
    (("protocol=semi_supervised", "pseudo=topk", "pseudo.source=oracle"), "pseudo.source='oracle'"),
    (("protocol=transductive_zero_shot", "protocol.subsample=base"), "leave protocol.subsample=all"),
])
def test_bad_unlabelled_settings_fail_at_start_up(overrides, message, data_root, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        run(data_root, tmp_path, *overrides)


def test_unknown_strategy_lists_the_valid_ones():
    from promptinfo.engine.validate import validate_train_config

    cfg = compose("train", overrides=["debug=tiny", "protocol=semi_supervised"])
    cfg.pseudo.name = "mixmatch"
    with pytest.raises(ConfigError, match="Unknown pseudo.name='mixmatch'.*fixmatch, freematch, topk"):
        validate_train_config(cfg)


# --------------------------------------------------------------------------------------------- presets
PUBLISHED = {
    # preset: (values, where they come from)
    "fpl": ({"name": "topk", "per_class": 16, "rounds": 1, "balance": True},
            "BatsResearch/menghini-neurips23-code methods_config/textual_fpl_config.yml: N_PSEUDOSHOTS 16; "
            "methods/semi_supervised_learning/textual_fpl.py: balance_param |P| / |L| on the labelled loss"),
    "ifpl": ({"name": "topk", "per_class": 16, "rounds": 10, "grow": False, "source": "model", "balance": True},
             "methods_config/iterative_textual_fpl_config.yml: N_PSEUDOSHOTS 16, STEP_QUANTILE 10"),
    "grip": ({"name": "topk", "rounds": 10, "grow": True, "source": "model", "balance": True},
             "methods_config/grip_textual_config.yml: STEP_QUANTILE 10; methods/*/pseudo_iterative.py grows K"),
    "fixmatch": ({"name": "fixmatch", "threshold": 0.95, "mu": 7, "weight": 1.0},
                 "google-research/fixmatch fixmatch.py flags: confidence 0.95, uratio 7, wu 1"),
    "freematch": ({"name": "freematch", "ema": 0.999}, "FreeMatch (Wang et al., ICLR 2023): ema_p 0.999"),
}


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_pseudo_presets_hold_the_published_settings(preset):
    from promptinfo.engine.validate import validate_train_config

    values, source = PUBLISHED[preset]
    cfg = validate_train_config(compose("train", overrides=["debug=tiny", "protocol=semi_supervised",
                                                            f"pseudo={preset}"]))
    assert {k: cfg.pseudo[k] for k in values} == values, source


def test_semi_supervised_protocol_labels_two_shots_as_menghini_et_al():
    cfg = compose("train", overrides=["protocol=semi_supervised"])
    assert cfg.protocol.shots == 2  # N_LABEL: 2 in menghini-neurips23-code's methods_config/*.yml


# --------------------------------------------------------------------------------------------- report
def test_report_tables_pseudo_labels_with_seed_means(tmp_path):
    from promptinfo.report import build_tables, load_runs

    for seed, (acc, pseudo_acc) in {1: (60.0, 70.0), 2: (64.0, 74.0)}.items():
        folder = tmp_path / f"coop+fpl/semi_supervised/shots2_seed{seed}"
        folder.mkdir(parents=True)
        results = {"status": "finished", "method": "coop+fpl", "dataset": "dtd", "protocol": "semi_supervised",
                   "shots": 2, "seed": seed, "backbone": "ViT-B-16", "weights": "openai", "experiment": None,
                   "evaluations": {"test": {"dataset": "dtd", "subsample": "all", "correct": int(acc * 10),
                                            "total": 1000, "accuracy": acc}},
                   "pseudo_labels": {"accuracy": pseudo_acc, "labelled": 100 + seed, "seen": 200}, "wall_time_s": 1.0}
        (folder / "results.json").write_text(json.dumps(results))
    [table] = build_tables(load_runs(tmp_path).frame)
    row = table.display.iloc[0]
    assert table.name == "pseudo_labels" and (row["Protocol"], row["Dataset"]) == ("semi_supervised", "dtd")
    assert row["Test"] == "62.00 ± 2.83" and row["Pseudo-label acc."] == "72.00"
    assert row["Pseudo-labelled / epoch"] == "102"  # mean of 101 and 102, rounded for display
