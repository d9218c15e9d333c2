"""Every config under configs/ composes and validates; bad configs stop with the promised messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from promptinfo.data import list_datasets
from promptinfo.engine import validate_eval_config, validate_train_config
from promptinfo.engine.schema import PROTOCOLS
from promptinfo.errors import ConfigError
from promptinfo.methods import list_methods
from promptinfo.methods.registry import method_class

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_GROUPS = ("model", "method", "loss", "dataset", "protocol", "trainer", "experiment", "debug")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.fixture(autouse=True, scope="module")
def _hydra():
    """One hydra context for the module (initialising it per compose costs more than composing)."""
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        yield


def compose_train(overrides: list[str], name: str = "train"):
    return compose(name, overrides=overrides)


# --------------------------------------------------------------------------------------------- composition
@pytest.mark.parametrize(  # the experiment presets compose every group again: slow
    "group", [pytest.param(g, marks=pytest.mark.slow) if g == "experiment" else g for g in TRAIN_GROUPS]
)
def test_every_option_of_every_group_composes_and_validates(group):
    for option in options(group):
        cfg = validate_train_config(compose_train([f"{group}={option}"]))
        assert cfg.trainer.epochs is not None and cfg.trainer.epochs >= 0, (group, option)


@pytest.mark.slow
def test_every_schedule_is_selected_by_its_method_and_protocol():
    for stem in options("schedule"):
        method, protocol = next((m, stem[len(m) + 1:]) for m in list_methods() if stem.startswith(m + "_"))
        assert protocol in PROTOCOLS, stem
        raw = OmegaConf.load(CONFIGS / "schedule" / f"{stem}.yaml")
        cfg = validate_train_config(compose_train([f"method={method}", f"protocol={protocol}"]))
        for key, value in raw.trainer.items():
            if key != "epochs" or value is not None:
                assert cfg.trainer[key] == value, (stem, key)
        for key, value in raw.method.items():
            assert cfg.method[key] == value, (stem, key)


def test_per_dataset_schedules_apply_to_their_dataset_only_and_yield_to_the_command_line():
    for path in sorted((CONFIGS / "schedule_dataset").glob("*.yaml")):
        stem = path.stem
        method = next(m for m in list_methods() if stem.startswith(m + "_"))
        protocol = next(p for p in PROTOCOLS if stem[len(method) + 1:].startswith(p + "_"))
        dataset = stem[len(method) + len(protocol) + 2:]
        assert dataset in options("dataset"), stem
        raw = OmegaConf.load(path)
        cfg = validate_train_config(compose_train([f"method={method}", f"protocol={protocol}", f"dataset={dataset}"]))
        assert {k: cfg.method[k] for k in raw.method} == dict(raw.method), stem
    gpa = lambda cfg: (cfg.method.gpa_mean, cfg.method.gpa_std)  # noqa: E731
    few_shot = ["method=promptsrc", "protocol=few_shot"]
    assert gpa(compose_train([*few_shot, "dataset=stanford_cars"])) == (45.0, 5.0)
    assert gpa(compose_train([*few_shot, "dataset=caltech101"])) == (30.0, 30.0)
    assert gpa(compose_train(["method=promptsrc", "protocol=base2novel", "dataset=stanford_cars"])) == (15.0, 1.0)
    assert gpa(compose_train(["experiment=promptsrc_vitb16_few_shot", "dataset=dtd"])) == (45.0, 5.0)
    assert gpa(compose_train([*few_shot, "dataset=eurosat", "method.gpa_mean=20"])) == (20.0, 5.0)


def test_eval_root_and_its_groups_compose_and_validate():
    cfg = validate_eval_config(compose_train([], name="eval"))
    assert cfg.method.name == "zeroshot" and cfg.checkpoint is None
    for option in options("model") + ["tiny"]:
        validate_eval_config(compose_train([f"model={option}"], name="eval"))


def test_published_schedules():
    """The numbers of the papers, as the presets resolve them."""
    def resolved(*overrides):
        return validate_train_config(compose_train(list(overrides)))

    coop = {s: resolved("experiment=coop_vitb16_few_shot", f"protocol.shots={s}").trainer.epochs
            for s in (1, 2, 4, 8, 16)}
    assert coop == {1: 50, 2: 100, 4: 100, 8: 200, 16: 200}
    c = resolved("experiment=coop_vitb16_few_shot", "dataset=imagenet", "protocol.shots=16")
    assert (c.trainer.epochs, c.trainer.batch_size, c.trainer.lr, c.method.n_ctx) == (50, 32, 0.002, 16)
    c = resolved("experiment=coop_vitb16_base2novel", "dataset=dtd")
    assert c.method.ctx_init == "a photo of a" and c.trainer.epochs == 200
    c = resolved("experiment=cocoop_vitb16_base2novel")
    assert (c.method.n_ctx, c.trainer.batch_size, c.trainer.epochs, c.trainer.lr) == (4, 1, 10, 0.002)
    c = resolved("dataset=oxford_pets", "method=maple", "protocol=base2novel", "seed=1")
    maple = (c.method.n_ctx, c.method.depth, c.trainer.batch_size, c.trainer.lr, c.trainer.epochs)
    assert maple == (2, 9, 4, 0.0035, 5)
    c = resolved("experiment=maple_vitb16_cross_dataset")
    assert (c.method.depth, c.trainer.lr, c.trainer.epochs, c.dataset.name) == (3, 0.0026, 2, "imagenet")
    assert len(c.protocol.targets) == 10
    for c in (resolved("experiment=coop_vitb16_few_shot"), resolved("method=maple")):  # the shared recipe
        t = c.trainer
        assert (t.optimizer, t.momentum, t.weight_decay, t.warmup_epochs, t.warmup_lr, t.warmup_type) == (
            "sgd", 0.9, 5e-4, 1, 1e-5, "constant")


def test_cma_weight_auto_is_the_authors_lambda_and_the_run_folder_is_derived():
    c = validate_train_config(compose_train(["experiment=coop_cma_vitb16_few_shot", "dataset=dtd", "protocol.shots=2"]))
    assert c.loss.cma.enabled and c.loss.cma.weight == 0.4
    assert c.run_dir == "runs/coop_cma_vitb16_few_shot/dtd/coop/few_shot/shots2_seed1"
    c = validate_train_config(compose_train(["seed=3"]))
    assert c.run_dir == "runs/default/oxford_pets/coop/few_shot/shots16_seed3"


# --------------------------------------------------------------------------------------------- coverage
def test_method_yamls_list_exactly_the_method_options():
    assert options("method") == list_methods()
    for name in list_methods():
        keys = set(OmegaConf.load(CONFIGS / "method" / f"{name}.yaml")) - {"name"}
        assert keys == {f.name for f in dataclasses.fields(method_class(name).Config)}, name


def test_every_dataset_and_protocol_has_a_yaml():
    assert options("dataset") == list_datasets()
    assert options("protocol") == sorted(PROTOCOLS)
    for name in list_datasets():
        assert OmegaConf.load(CONFIGS / "dataset" / f"{name}.yaml").name == name


# --------------------------------------------------------------------------------------------- bad configs
def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        validate_train_config(compose_train(overrides))
    return str(info.value)


def test_unknown_key_names_the_key_and_the_valid_ones():
    message = _error(["+trainer.epochz=3"])
    assert "'trainer.epochz'" in message and "'epochs'" in message and "Did you mean 'epochs'" in message
    message = _error(["+method.n_ctxx=3"])
    assert "'method.n_ctxx'" in message and "n_ctx" in message and "class_token_position" in message


def test_wrong_type_names_the_key():
    message = _error(["trainer.epochs=abc"])
    assert "'trainer.epochs'" in message and "abc" in message
    assert "'method.n_ctx'" in _error(["method.n_ctx=many"])
    assert "'loss.cma.enabled'" in _error(["loss.cma.enabled=maybe"])


def test_unknown_names_list_the_valid_choices():
    message = _error(["dataset.name=oxford_petz"])
    assert "dataset.name='oxford_petz'" in message and "Did you mean ['oxford_pets'" in message
    assert all(name in message for name in list_datasets())
    message = _error(["method.name=mapel"])
    assert "method.name='mapel'" in message and all(name in message for name in list_methods())
    message = _error(["model.name=ViT-B-61"])
    assert "model.name='ViT-B-61'" in message and "ViT-B-16" in message
    assert "protocol.name='fewshot'" in _error(["protocol.name=fewshot"])
    assert "trainer.precision='fp8'" in _error(["trainer.precision=fp8"])
    assert "protocol.targets[1]='nope'" in _error(["protocol=cross_dataset", "protocol.targets=[dtd,nope]"])


def test_inconsistent_values_are_refused():
    assert "grad_accum" in _error(["trainer.batch_size=10", "trainer.grad_accum=3"])
    assert "lambda must lie in [0, 1]" in _error(["loss=cma", "loss.cma.weight=1.5"])
    assert "set trainer.epochs" in _error(["protocol.shots=3"])
    assert "protocol.targets" in _error(["protocol=cross_dataset", "protocol.targets=[]"])
    assert "trainer.crop_scale=[0.0, 1.0]" in _error(["trainer.crop_scale=[0.0,1.0]"])
    assert "trainer.crop_scale=[0.9, 0.5]" in _error(["trainer.crop_scale=[0.9,0.5]"])
    assert "[low, high]" in _error(["trainer.crop_scale=[0.5]"])
    assert "trainer.hflip=1.5" in _error(["trainer.hflip=1.5"])


def test_unknown_group_option_is_refused_by_hydra_with_the_available_ones():
    with pytest.raises(ConfigCompositionException) as info:
        compose_train(["method=mapel"])
    assert "maple" in str(info.value.__cause__ or info.value)
