"""Short extension paths: a method or a benchmark is one module, found without a hand-kept import list, and
the README's example method becomes a command-line choice whose options are its dataclass defaults."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import promptinfo.data.benchmarks
import promptinfo.methods
from promptinfo.discovery import import_submodules
from promptinfo.methods import list_methods

ROOT = Path(__file__).resolve().parents[1]


def test_import_submodules_imports_every_public_module_of_a_package(tmp_path, monkeypatch):
    package = tmp_path / "plugins_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("beta", "alpha", "_private"):
        (package / f"{name}.py").write_text(f"import sys\nsys.modules[__name__].LOADED = {name!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins_for_test

    assert import_submodules("plugins_for_test", plugins_for_test.__path__) == [
        "plugins_for_test.alpha", "plugins_for_test.beta"]
    assert sys.modules["plugins_for_test.alpha"].LOADED == "alpha" and "plugins_for_test._private" not in sys.modules


def test_every_method_and_benchmark_module_is_found_without_a_list():
    keys = set()
    for path in (ROOT / "promptinfo" / "methods").glob("*.py"):
        keys |= set(re.findall(r'@register_method\("(\w+)"\)', path.read_text()))
    assert keys == set(list_methods())  # listing the methods imports every module of the package
    for package in (promptinfo.methods, promptinfo.data.benchmarks):
        folder = Path(package.__file__).parent
        modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
        assert {m for m in modules if f"{package.__name__}.{m}" in sys.modules} == modules, package.__name__
        init = Path(package.__file__).read_text()
        named = modules - {"registry", "base", "prompt_file", "configs"}  # the package's own names live there
        assert not any(re.search(rf"\b{m}\b", init) for m in named), init


@pytest.mark.slow
def test_the_readme_example_method_is_a_command_line_choice_with_its_dataclass_defaults():
    readme = (ROOT / "README.md").read_text()
    extending = readme[readme.index("## Extending"):]
    example = re.search(r"```python\n(.*?)```", extending, re.S).group(1)
    check = textwrap.dedent("""
        from hydra import compose, initialize_config_module
        from promptinfo.engine import validate_train_config
        from promptinfo.engine.config_store import register_configs
        from promptinfo.engine.validate import method_options

        register_configs()  # a method registered after the engine was imported
        with initialize_config_module("promptinfo_configs", version_base="1.3"):
            cfg = validate_train_config(compose("train", overrides=["method=shortcoop", "dataset=dtd"]))
        assert method_options(cfg.method) == {"n_ctx": 4, "ctx_init": None, "csc": False,
                                              "class_token_position": "end", "init_std": 0.02}, cfg.method
        assert cfg.experiment_name == "shortcoop_vitb16_few_shot"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", example + check], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
