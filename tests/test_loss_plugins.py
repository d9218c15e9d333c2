"""Methods' regularizers as `loss=` plug-ins: KgCoOp's knowledge-guided term and PromptSRC's self-consistency
terms on any method, equal to the terms of the methods that introduced them, and from the command line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from promptinfo import create_method
from promptinfo.backbones import normalize
from promptinfo.engine import train
from promptinfo.engine.objective import Objective
from promptinfo.engine.schema import LossConfig
from promptinfo.errors import ConfigError
from promptinfo.losses import InformationTerms
from promptinfo.losses.consistency import knowledge_distance, self_consistency
from promptinfo.methods.regularizers import KnowledgeGuided, SelfConsistency
from promptinfo.methods.zeroshot import zeroshot_classifier
from tests.datagen import make_benchmark_tree

CLASSES = ["cat", "dog", "bird", "fish"]
PET_TEMPLATES = ["a photo of a {}, a type of pet."]
FEW_TEMPLATES = ["a photo of a {}.", "a sketch of a {}.", "art of the {}."]


def _images(backbone, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, backbone.preprocess_cfg.size, backbone.preprocess_cfg.size, generator=g)


def _objective(**plugins):
    cfg = OmegaConf.structured(LossConfig)
    for key, value in plugins.items():
        OmegaConf.update(cfg, key, value)
    return Objective.from_config(cfg)


def test_kg_plugin_on_coop_equals_kgcoops_own_objective(tiny_backbone):
    """CoOp with KgCoOp's context and loss.kg.weight=8 is KgCoOp: the same terms, the same gradients."""
    kgcoop = create_method("kgcoop", tiny_backbone, CLASSES, dataset_templates=PET_TEMPLATES)
    coop = create_method("coop", tiny_backbone, CLASSES, n_ctx=4, ctx_init="a photo of a",
                         dataset_templates=PET_TEMPLATES)
    images, labels = _images(tiny_backbone), torch.tensor([0, 1, 2, 3, 1])
    own = Objective.from_config(OmegaConf.structured(LossConfig))
    plugged = _objective(**{"kg.weight": 8.0})
    plugged.prepare(coop)
    a, b = own(kgcoop, kgcoop.forward_output(images), labels), plugged(coop, coop.forward_output(images), labels)
    assert a.weights == {"ce": 1.0, "kg": 1.0} and b.weights == {"ce": 1.0, "kg": 8.0}
    torch.testing.assert_close(b.terms["kg"] * 8.0, a.terms["kg"], rtol=0, atol=0)
    torch.testing.assert_close(b.total, a.total, rtol=0, atol=0)
    a.total.backward(), b.total.backward()
    torch.testing.assert_close(coop.prompt.ctx.grad, kgcoop.prompt.ctx.grad, rtol=0, atol=0)
    # the frozen side is the dataset's first template, not CLIP's default
    frozen = zeroshot_classifier(tiny_backbone, CLASSES, PET_TEMPLATES)
    torch.testing.assert_close(b.terms["kg"], knowledge_distance(coop.text_features(), frozen), rtol=0, atol=0)


def test_scl_plugin_on_ivlp_equals_promptsrcs_own_terms(tiny_backbone):
    """IVLP with loss.scl (25/10/1) gives PromptSRC's L_SCL terms for the same prompts and templates."""
    options = dict(n_ctx_text=2, n_ctx_vision=2, depth_text=2, depth_vision=2)
    torch.manual_seed(3)
    src = create_method("promptsrc", tiny_backbone, CLASSES, templates=FEW_TEMPLATES, **options)
    ivlp = create_method("ivlp", tiny_backbone, CLASSES, **options)
    ivlp.prompt.load_state_dict({k: v for k, v in src.prompt.state_dict().items() if not k.startswith("gpa_")})
    plugged = _objective(**{"scl.text_weight": 25.0, "scl.image_weight": 10.0, "scl.logits_weight": 1.0,
                            "scl.templates": FEW_TEMPLATES})
    plugged.prepare(ivlp)
    assert ivlp.keep_frozen_image_features
    src.train(), ivlp.train()
    images, labels = _images(tiny_backbone), torch.tensor([0, 1, 2, 3, 1])
    out = ivlp.forward_output(images)
    torch.testing.assert_close(out.frozen_image_features, normalize(tiny_backbone.encode_image(images)), rtol=0, atol=0)
    ours = plugged(ivlp, out, labels)
    theirs = src.extra_losses(src.forward_output(images), labels)
    for name, weight in {"scl_text": 25.0, "scl_image": 10.0, "scl_logits": 1.0}.items():
        assert ours.weights[name] == weight
        torch.testing.assert_close(weight * ours.terms[name], theirs[name], rtol=1e-6, atol=1e-7)
    assert float(ours.terms["scl_image"].detach()) > 0  # prompted image side: not the frozen features


def test_scl_terms_are_the_published_formulas():
    """Unequal shapes and values, so a swapped or mis-reduced term shows: L1 means, KL(frozen || prompted)/numel."""
    g = torch.Generator().manual_seed(0)
    text, frozen_text = torch.randn(3, 4, 5, generator=g), torch.randn(4, 5, generator=g)
    image, frozen_image = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    logits, frozen_logits = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    with warnings.catch_warnings():  # the softmax axis is named: no deprecation warning at every step
        warnings.simplefilter("error")
        terms = self_consistency(text, frozen_text, image, frozen_image, logits, frozen_logits)
    torch.testing.assert_close(terms["scl_text"], (text - frozen_text[None]).abs().mean())
    torch.testing.assert_close(terms["scl_image"], (image - frozen_image).abs().mean())
    p, q = frozen_logits.softmax(1), logits.softmax(1)
    torch.testing.assert_close(terms["scl_logits"], (p * (p.log() - q.log())).sum() / 12)


def test_kg_plugin_on_image_conditioned_text_features(tiny_backbone):
    """CoCoOp's per-image classifiers: the distance is averaged over images and classes."""
    cocoop = create_method("cocoop", tiny_backbone, CLASSES)
    plugin = KnowledgeGuided("a photo of a {}.")
    out = cocoop.forward_output(_images(tiny_backbone))
    assert out.text_features.dim() == 3
    frozen = zeroshot_classifier(tiny_backbone, CLASSES, ["a photo of a {}."])
    expected = 0.5 * (out.text_features - frozen[None]).pow(2).sum(-1).mean()
    torch.testing.assert_close(plugin(cocoop, out)["kg"], expected)


def test_plugins_follow_the_class_list(tiny_backbone):
    coop = create_method("coop", tiny_backbone, CLASSES, n_ctx=2)
    plugin = SelfConsistency(FEW_TEMPLATES)
    out = coop.forward_output(_images(tiny_backbone))
    first = plugin(coop, out)
    assert plugin.frozen.features.shape[0] == 4
    coop.set_classnames(["bus", "tulip"])
    out2 = coop.forward_output(_images(tiny_backbone))
    second = plugin(coop, out2)
    assert out2.logits.shape == (5, 2) and torch.isfinite(second["scl_text"])
    assert plugin.frozen.features.shape[0] == 2
    assert float(first["scl_image"].detach()) == 0.0  # frozen image side: prompted and frozen features coincide


def test_kg_plugin_template_wins_over_the_datasets_and_is_computed_once_per_class_list(tiny_backbone, monkeypatch):
    import promptinfo.methods.regularizers as regularizers

    calls = []

    def counted(*args, **kwargs):
        calls.append(list(args[1]))
        return zeroshot_classifier(*args, **kwargs)

    monkeypatch.setattr(regularizers, "zeroshot_classifier", counted)
    coop = create_method("coop", tiny_backbone, CLASSES, n_ctx=2, dataset_templates=PET_TEMPLATES)
    plugin = KnowledgeGuided("a sketch of a {}.")
    out = coop.forward_output(_images(tiny_backbone))
    frozen = zeroshot_classifier(tiny_backbone, CLASSES, ["a sketch of a {}."])
    for _ in range(2):
        torch.testing.assert_close(plugin(coop, out)["kg"], knowledge_distance(out.text_features, frozen))
    coop.set_classnames(["bus", "tulip"])
    plugin(coop, coop.forward_output(_images(tiny_backbone)))
    assert calls == [CLASSES, ["bus", "tulip"]]


def test_plugin_templates_without_a_class_slot_are_refused():
    with pytest.raises(ConfigError) as error:
        KnowledgeGuided("a photo.")
    assert str(error.value) == "loss.kg.template='a photo.' must contain '{}' once, where the class name goes."
    for templates in ([], ["a photo of a {}.", "a photo."]):
        with pytest.raises(ConfigError) as error:
            SelfConsistency(templates)
        assert str(error.value) == "loss.scl.templates must be null or templates that each contain '{}' once."


def test_a_plugin_that_repeats_the_methods_own_term_is_refused(tiny_backbone):
    with pytest.raises(ConfigError, match=r"kgcoop already applies its own \['kg'\].*method=coop"):
        _objective(**{"kg.weight": 8.0}).prepare(create_method("kgcoop", tiny_backbone, CLASSES))
    src = create_method("promptsrc", tiny_backbone, CLASSES, depth_text=2, depth_vision=2)
    with pytest.raises(ConfigError, match="scl_image"):
        _objective(**{"scl.image_weight": 1.0}).prepare(src)
    _objective(**{"scl.image_weight": 0.0}).prepare(src)  # weight 0: the plug-in is off


def test_prompted_image_side_without_frozen_features_is_explained(tiny_backbone):
    maple = create_method("maple", tiny_backbone, CLASSES, depth=2)
    maple.train()
    out = maple.forward_output(_images(tiny_backbone))  # keep_frozen_image_features not set
    with pytest.raises(ValueError, match="keep_frozen_image_features"):
        SelfConsistency(FEW_TEMPLATES)(maple, out)


# ------------------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_benchmark_tree("oxford_pets", root, n_per_class=10, num_classes=4, split_file=True)
    return root


@pytest.mark.parametrize("overrides, terms", [
    (("method=coop", "method.n_ctx=2", "loss=kg"), {"kg": 8.0}),
    (("method=maple", "method.depth=2", "loss=scl"), {"scl_text": 25.0, "scl_image": 10.0, "scl_logits": 1.0}),
    (("method=coop", "method.n_ctx=2", "loss=cma", "loss.kg.weight=2.0", "loss.scl.text_weight=5.0"),
     {"kg": 2.0, "scl_text": 5.0, "cma": None}),
])
def test_plugins_train_from_the_command_line(overrides, terms, data_root, tmp_path):
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        cfg = compose("train", overrides=[
            "debug=tiny", f"dataset.root={data_root}", f"runs_root={tmp_path / 'runs'}",
            f"feature_cache={tmp_path / 'features'}", "trainer.info_subset=0", "trainer.batch_size=4",
            "trainer.epochs=2", "protocol.shots=4", *overrides])
    results = train(cfg)
    run_dir = Path(OmegaConf.to_container(cfg, resolve=True)["run_dir"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    for name, weight in terms.items():
        assert f"loss/{name}" in last and last[f"loss/{name}"] >= 0
        if weight is not None:
            assert last[f"weight/{name}"] == weight
    assert results["status"] == "finished"
