"""Every config under configs/ composes and validates; bad configs stop with the promised messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from promptinfo.data import list_datasets
from promptinfo.engine import validate_eval_config, validate_train_config
from promptinfo.engine.schema import PROTOCOLS, DatasetConfig, LossConfig, ProtocolConfig, TrainerConfig
from promptinfo.engine.validate import method_options
from promptinfo.errors import ConfigError
from promptinfo.methods import list_methods
from promptinfo.methods.registry import method_class

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_GROUPS = ("model", "method", "loss", "dataset", "protocol", "trainer", "experiment", "debug")
SCHEDULE_GROUPS = ("schedule_method", "schedule", "schedule_dataset")


def options(group: str) -> list[str]:
    """The choices hydra offers for `group`: YAML files and the ConfigStore's typed nodes."""
    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


@pytest.fixture(autouse=True, scope="module")
def _hydra():
    """One hydra context for the module (initialising it per compose costs more than composing)."""
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        yield


def compose_train(overrides: list[str], name: str = "train"):
    return compose(name, overrides=overrides)


def resolved(*overrides: str):
    return validate_train_config(compose_train(list(overrides)))


# --------------------------------------------------------------------------------------------- composition
@pytest.mark.parametrize(  # the experiment presets compose every group again: slow
    "group", [pytest.param(g, marks=pytest.mark.slow) if g == "experiment" else g for g in TRAIN_GROUPS]
)
def test_every_option_of_every_group_composes_and_validates(group):
    for option in options(group):
        cfg = validate_train_config(compose_train([f"{group}={option}"]))
        assert cfg.trainer.epochs is not None and cfg.trainer.epochs >= 0, (group, option)


def _split_schedule(group: str, stem: str) -> tuple[str, str | None, str | None]:
    """(method, protocol, dataset) a schedule file is selected by."""
    method = next(m for m in list_methods() if stem == m or stem.startswith(m + "_"))
    if group == "schedule_method":
        assert stem == method
        return method, None, None
    rest = stem[len(method) + 1:]
    protocol = next(p for p in PROTOCOLS if rest == p or rest.startswith(p + "_"))
    dataset = rest[len(protocol) + 1:] or None
    assert (dataset is None) == (group == "schedule"), stem
    return method, protocol, dataset


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.slow
@pytest.mark.parametrize("group", SCHEDULE_GROUPS)
def test_every_schedule_is_selected_by_its_method_protocol_and_dataset(group):
    for stem in options(group):
        method, protocol, dataset = _split_schedule(group, stem)
        assert dataset is None or dataset in list_datasets(), stem
        overrides = [f"method={method}", f"protocol={protocol or 'base2novel'}"] + [
            f"dataset={d}" for d in [dataset] if d]  # no method has a base2novel schedule over its method-wide one
        raw = OmegaConf.to_container(compose(f"{group}/{stem}"))
        raw = raw.get(group, raw)  # a package-global schedule composed on its own
        cfg = resolved(*overrides)
        for key, value in _leaves({k: v for k, v in raw.items() if k in ("method", "trainer")}):
            assert OmegaConf.select(cfg, key) == value, (stem, key)
    assert resolved("method=maple", "protocol=cross_dataset", "trainer.lr=0.123").trainer.lr == 0.123  # CLI wins


def test_schedules_hold_only_deltas_from_the_typed_defaults():
    """A schedule value equal to the default it overrides would be a second holder of that default."""
    for group in SCHEDULE_GROUPS:
        for path in sorted((CONFIGS / group).glob("*.yaml")):
            raw = OmegaConf.to_container(OmegaConf.load(path))
            method = _split_schedule(group, path.stem)[0]
            defaults = {"method": dataclasses.asdict(method_class(method).Config()),
                        "trainer": dataclasses.asdict(TrainerConfig())}
            for key, value in _leaves({k: v for k, v in raw.items() if k in defaults}):
                assert OmegaConf.select(OmegaConf.create(defaults), key) != value, (path.name, key)


def test_per_dataset_schedules_apply_to_their_dataset_only_and_yield_to_the_command_line():
    gpa = lambda cfg: (cfg.method.gpa_mean, cfg.method.gpa_std)  # noqa: E731
    few_shot = ["method=promptsrc", "protocol=few_shot"]
    assert gpa(compose_train([*few_shot, "dataset=stanford_cars"])) == (45.0, 5.0)
    assert gpa(compose_train([*few_shot, "dataset=caltech101"])) == (30.0, 30.0)
    assert gpa(compose_train(["method=promptsrc", "protocol=base2novel", "dataset=stanford_cars"])) == (15.0, 1.0)
    assert gpa(compose_train([*few_shot, "dataset=eurosat", "method.gpa_mean=20"])) == (20.0, 5.0)


def test_eval_root_and_its_groups_compose_and_validate():
    cfg = validate_eval_config(compose_train([], name="eval"))
    assert cfg.method.name == "zeroshot" and cfg.checkpoint is None and cfg.method.templates is None
    for option in options("model") + ["tiny"]:
        validate_eval_config(compose_train([f"model={option}"], name="eval"))


def test_cma_weight_auto_is_the_authors_lambda_and_the_run_folder_is_derived():
    c = resolved("loss=cma", "dataset=dtd", "protocol.shots=2")
    assert c.loss.cma.enabled and c.loss.cma.weight == 0.4
    assert c.experiment_name == "coop_cma_vitb16_few_shot"
    assert c.run_dir == "runs/coop_cma_vitb16_few_shot/dtd/coop/few_shot/shots2_seed1"
    c = resolved("seed=3")
    assert c.run_dir == "runs/coop_vitb16_few_shot/oxford_pets/coop/few_shot/shots16_seed3"
    c = resolved("method=maple", "protocol=base2novel", "loss=interplay", "model=demo")
    assert c.experiment_name == "maple_interplay_pidemodefault_base2novel"
    assert resolved("experiment_name=mine").run_dir.startswith("runs/mine/")
    assert resolved("experiment=demo").experiment_name == "demo"


# --------------------------------------------------------------------------------------------- one holder
def test_composed_method_options_are_the_dataclass_defaults():
    """No YAML holds a method default: `method=<name>` composes the method's `Config` itself."""
    assert options("method") == list_methods() and not (CONFIGS / "method").exists()
    for name in list_methods():
        composed = OmegaConf.to_container(compose_train([f"method={name}", "protocol=zeroshot"]).method)
        assert composed == {"name": name, **dataclasses.asdict(method_class(name).Config())}, name
        typed = method_options(resolved(f"method={name}", "protocol=zeroshot").method)
        assert typed == dataclasses.asdict(method_class(name).Config()), name


def test_composed_trainer_loss_protocol_and_dataset_are_the_dataclass_defaults():
    cfg = compose_train(["protocol=few_shot"])
    assert OmegaConf.to_container(cfg.trainer) == dataclasses.asdict(TrainerConfig())
    assert OmegaConf.to_container(cfg.loss) == dataclasses.asdict(LossConfig())
    assert OmegaConf.to_container(cfg.protocol) == dataclasses.asdict(ProtocolConfig())
    assert OmegaConf.to_container(cfg.dataset) == dataclasses.asdict(DatasetConfig())
    cpu = compose_train(["trainer=cpu"]).trainer
    assert (cpu.device, cpu.num_workers, cpu.lr) == ("cpu", 0, TrainerConfig().lr)  # a delta over the defaults


def test_every_benchmark_is_a_dataset_choice_without_a_yaml():
    assert options("dataset") == list_datasets() and not (CONFIGS / "dataset").exists()
    for name in list_datasets():
        assert compose_train([f"dataset={name}"]).dataset.name == name
    assert options("protocol") == sorted(PROTOCOLS)


def test_zeroshot_kgcoop_and_prograd_take_the_dataset_templates_of_their_authors():
    """From the command line, zero-shot CLIP's, KgCoOp's and ProGrad's frozen features use the dataset's
    template (KgCoOp and ProGrad their authors' own tables, which differ from CoOp's on DTD)."""
    from promptinfo.data import get_benchmark

    for name in ("zeroshot", "kgcoop", "prograd"):
        method = resolved(f"method={name}", "dataset=dtd").method
        assert method.get("templates", method.get("template")) is None  # filled from the data at build time
    dtd = get_benchmark("dtd")
    assert dtd.template == "{} texture." and dtd.method_templates == {"kgcoop": "a photo of a {}, a type of texture.",
                                                                       "prograd": "a texture of {}."}


def test_yaml_count_is_at_most_half_of_the_121_before_issue_16():
    assert len(list(CONFIGS.rglob("*.yaml"))) <= 60


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
