"""Layering: the bottom packages import nothing above them (read from the source, not from sys.modules)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "promptinfo"
LOWER = ("backbones", "data", "metrics", "losses")
SHARED = ("discovery", "errors", "io", "lazy")  # leaf modules every layer may use
ENGINE_PUBLIC = set(__import__("promptinfo.engine", fromlist=["__all__"]).__all__)


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of the promptinfo modules that code in `package` imports, at any depth or relatively."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] == "promptinfo"}


def imports_of(path: Path) -> set[str]:
    package = ".".join(("promptinfo", *path.relative_to(PACKAGE).parent.parts))
    return imported_modules(path.read_text(), package)


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_import_nothing_above_them(layer):
    upward = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = sorted(m for m in imports_of(path) if m != "promptinfo" and layer_of(m) not in (*LOWER, *SHARED))
        if bad:
            upward[str(path.relative_to(PACKAGE))] = bad
    assert not upward, f"upward imports: {upward}"


@pytest.mark.parametrize("layer", ("metrics", "losses"))
def test_metrics_and_losses_read_no_data_and_no_backbone(layer):
    for path in (PACKAGE / layer).rglob("*.py"):
        assert not {layer_of(m) for m in imports_of(path)} & {"backbones", "data"}, path


def test_the_import_reader_sees_every_kind_of_import():
    source = ("import promptinfo.engine\nfrom promptinfo.methods import coop\nfrom ..demo import weights\n"
              "def f():\n    from . import clip\n    import torch\n")
    names = imported_modules(source, "promptinfo.backbones")
    assert {layer_of(n) for n in names} == {"engine", "methods", "demo", "backbones"}
    assert "promptinfo.demo.weights" in names and "promptinfo.backbones.clip" in names


def test_tools_use_the_engine_s_public_api_only():
    tools = Path(__file__).parents[1] / "tools"
    for path in sorted(tools.glob("*.py")):
        private = sorted(m for m in imported_modules(path.read_text(), "tools")
                         if m.startswith("promptinfo.engine.") and m.split(".")[2] not in ENGINE_PUBLIC)
        assert not private, f"{path.name} imports engine internals {private}; use promptinfo.engine's public names"
