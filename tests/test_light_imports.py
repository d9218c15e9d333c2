"""Imports deferred until needed: `--help` of every console command, and the options hydra composes, load
without torch, torchvision and open_clip; the torch-free configs agree with the classes that use them.

(How fast `--help` answers is measured by tools/cli_latency.py, not here.)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from promptinfo.cli._hydra import asks_only_for_help
from promptinfo.engine import config_store
from promptinfo.errors import ConfigError
from promptinfo.methods.registry import find_method_config, list_methods, method_class, method_configs
from promptinfo.pseudo.registry import find_strategy_config, list_strategies, strategy_class, strategy_configs
from promptinfo.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "open_clip")
SCRIPTS = dict(re.findall(r'^(promptinfo-[\w-]+) = "([\w.]+):main"', (ROOT / "pyproject.toml").read_text(), re.M))


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_help_of_every_console_command_imports_no_torch():
    """In one fresh interpreter: `promptinfo-train --help` composes its config and lists every group, the argparse
    commands print their usage, and the other hydra commands' modules load and their configs compose as
    their `--help` composes them (hydra's listing of the groups, the slow part, runs once); none of it loads
    torch, torchvision or open_clip."""
    hydra_commands = {"promptinfo-train", "promptinfo-eval", "promptinfo-collapse"}
    assert hydra_commands | {"promptinfo-report", "promptinfo-demo"} <= set(SCRIPTS)
    out = run_python(f"""
        import contextlib, importlib, io, json, sys
        from hydra import compose, initialize_config_module
        from promptinfo.cli._hydra import register_configs_for
        helps = {{}}
        for script, module in {sorted(SCRIPTS.items())!r}:
            sys.argv = [script, "--help"]
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                main = importlib.import_module(module).main
                if script in {sorted(hydra_commands - {"promptinfo-train"})!r}:
                    register_configs_for(sys.argv[1:])
                    with initialize_config_module("promptinfo_configs", version_base="1.3"):
                        print(compose(script.removeprefix("promptinfo-")))
                    continue
                try:
                    main()
                except SystemExit as end:
                    assert end.code in (0, None), (script, end.code)
            helps[script] = text.getvalue()
        print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules], "helps": helps}}))
    """)
    result = json.loads(out)
    assert result["heavy"] == [], f"--help imported {result['heavy']}"
    assert set(result["helps"]) == set(SCRIPTS) - hydra_commands | {"promptinfo-train"}
    assert all("usage" in text for name, text in result["helps"].items() if name != "promptinfo-train")
    train = result["helps"]["promptinfo-train"]
    assert f"method: {', '.join(list_methods())}\n" in train and "pseudo: " in train and "== Config ==" in train
    assert "\nmethod:\n  name: coop\n  n_ctx: 16\n" in train  # the default method's options, composed


def test_the_built_in_configs_load_without_torch_and_cover_every_built_in_class():
    out = run_python(f"""
        import sys
        from promptinfo.methods.registry import method_configs
        from promptinfo.pseudo.registry import strategy_configs
        import promptinfo.data, promptinfo.engine.validate
        from promptinfo.engine.config_store import known_without_imports
        with known_without_imports():
            import promptinfo_configs  # what hydra imports to compose: every group and option is stored
        print(sorted(method_configs(import_modules=False)), sorted(strategy_configs(import_modules=False)),
              [m for m in {HEAVY!r} if m in sys.modules])
    """)
    assert out.split("\n")[0] == f"{list_methods()} {list_strategies()} []"
    for name in list_methods():
        assert method_class(name).Config is find_method_config(name) is method_configs()[name], name
    for name in list_strategies():
        assert strategy_class(name).Config is find_strategy_config(name) is strategy_configs()[name], name


def test_old_import_paths_of_the_configs_still_work():
    from promptinfo.methods.base import MethodConfig
    from promptinfo.methods.coop import CoOpConfig
    from promptinfo.methods.kgcoop import KgCoOpConfig
    from promptinfo.methods.promptsrc import PromptSRCConfig
    from promptinfo.pseudo import StrategyConfig
    from promptinfo.pseudo.fixmatch import FixMatchConfig, StrongViewConfig
    from promptinfo.pseudo.freematch import FreeMatchConfig

    assert issubclass(KgCoOpConfig, CoOpConfig) and issubclass(FreeMatchConfig, StrongViewConfig)
    assert find_method_config("promptsrc") is PromptSRCConfig and find_strategy_config("fixmatch") is FixMatchConfig
    assert issubclass(FixMatchConfig, StrategyConfig) and dataclasses.fields(MethodConfig) == ()


def test_every_public_name_of_a_lazy_package_resolves_even_where_a_submodule_has_that_name():
    import promptinfo.engine.evaluate  # noqa: F401  (the module of the public function `evaluate`)
    from promptinfo.engine import evaluate

    assert callable(evaluate) and evaluate.__module__ == "promptinfo.engine.evaluate"
    for name in ("promptinfo", "promptinfo.engine", "promptinfo.methods", "promptinfo.pseudo", "promptinfo.data"):
        package = importlib.import_module(name)
        for public in package.__all__:
            assert not isinstance(getattr(package, public), types.ModuleType), (name, public)
        assert set(package.__all__) <= set(dir(package)), name
        with pytest.raises(AttributeError, match=f"module '{name}' has no attribute 'nothing_here'"):
            package.nothing_here  # noqa: B018


def test_only_a_bare_help_request_skips_importing_the_method_modules():
    cases = {("--help",): True, ("-h",): True, ("--hydra-help",): True, (): False, ("method=maple", "--help"): False,
             ("--cfg", "job"): False, ("-m", "seed=1,2"): False}
    assert {args: asks_only_for_help(args) for args in cases} == cases
    with config_store.known_without_imports():
        assert not config_store._import_modules
    assert config_store._import_modules


@pytest.mark.slow
def test_shell_completion_offers_the_methods_of_the_group():
    """Hydra lists a group before it composes anything here: the configs are registered before hydra runs."""
    command = Path(sys.executable).parent / "promptinfo-train"
    env = {**os.environ, "COMP_LINE": "promptinfo-train method=", "COMP_POINT": "24"}
    done = subprocess.run([str(command), "-sc", "query=bash"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and done.stdout.split() == [f"method={m}" for m in list_methods()], done


@pytest.fixture
def things(tmp_path, monkeypatch):
    """The registry of a fresh package `things_for_test`, whose module `late` registers class `late`."""
    package = tmp_path / "things_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "configs.py").write_text("")
    (package / "registry.py").write_text(
        "from promptinfo.registry import Registry\n"
        "THINGS = Registry('thing', 'things', lambda name: f'thing {name!r}', 'things_for_test')\n")
    (package / "late.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass

        from things_for_test.registry import THINGS


        @dataclass
        class LateConfig:
            size: int = 3


        @THINGS.register("late")
        class Late:
            Config = LateConfig
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from things_for_test.registry import THINGS

    yield THINGS
    for name in [n for n in sys.modules if n.split(".")[0] == "things_for_test"]:
        del sys.modules[name]


def test_a_registry_imports_its_package_on_the_first_lookup_of_a_class_or_an_unknown_key(things):
    @things.register_config("early")
    @dataclasses.dataclass
    class EarlyConfig:
        size: int = 1

    assert things.configs(import_modules=False) == {"early": EarlyConfig}
    assert "things_for_test.late" not in sys.modules
    assert things.find_config("early") is EarlyConfig and "things_for_test.late" not in sys.modules
    assert things.find_config("late").__name__ == "LateConfig" and things.get("late").__name__ == "Late"
    assert things.names() == ["early", "late"] and things.config("late", {"size": 5}).size == 5
    with pytest.raises(ConfigError, match=r"Unknown thing 'lat'; valid things: \['early', 'late'\]"):
        things.config("lat", {})


def test_a_class_registers_under_a_config_s_key_only_with_that_config(things):
    @dataclasses.dataclass
    class AConfig:
        size: int = 1

    @dataclasses.dataclass
    class BConfig:
        size: int = 2

    things.register_config("a")(AConfig)
    with pytest.raises(ValueError, match=r"thing 'a': Wrong.Config is BConfig, but AConfig is registered under 'a'"):
        things.register("a")(type("Wrong", (), {"Config": BConfig}))
    right = things.register("a")(type("Right", (), {"Config": AConfig}))
    assert things.get("a") is right and right.registry_name == "a"
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        things.register("a")(type("Again", (), {"Config": AConfig}))
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        things.register_config("a")(BConfig)
