"""README.md is a test: every command it shows either runs or composes and validates, so it cannot drift.

The README's bash blocks are read command by command (continuation lines joined). A command that needs
something beyond this repository (benchmark images, downloaded weights, the network, a cluster) says so in
a ``# needs ...`` comment, on its own line or at the top of its block; it is checked without running: its
config composes and validates, its arguments parse and name known backbones and datasets, its extras exist.
Every other command must run offline on the demo world: the slow test runs them in order, in a temporary
folder that holds the session's demo job (see ``demo_job`` in conftest.py), as subprocesses of the installed
console scripts. To keep CI short it runs them on the small demo world the tests pretrain (``model=demo_small``,
``dataset=procedural_small``, ``pi-demo-small``, ``promptinfo-demo --variant small``) with 2 training epochs;
nothing else is changed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import importlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCRIPTS = dict(re.findall(r'^(promptinfo-[\w-]+) = "([\w.:]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE))
"""Console script -> its entry point (``module:function``); the argparse ones have ``build_parser``."""
HYDRA_COMMANDS = {
    script: found.group(1) for script, target in SCRIPTS.items()
    if (found := re.search(r'config_name="(\w+)"', (ROOT / (target.split(":")[0].replace(".", "/") + ".py")).read_text()))
}
"""Hydra console script -> the config it composes (torchrun runs promptinfo.cli.train)."""


@dataclass(frozen=True)
class Command:
    """One command of the README: its text as written, its words, and what it needs (None: runs offline)."""

    text: str
    argv: tuple[str, ...]
    needs: str | None

    @property
    def program(self) -> str:
        return self.argv[0]


def readme_blocks() -> list[list[str]]:
    """The lines of every ```bash block, in order."""
    blocks, block = [], None
    for line in README.read_text().splitlines():
        if block is None and line.strip() == "```bash":
            block = []
        elif block is not None and line.strip() == "```":
            blocks.append(block)
            block = None
        elif block is not None:
            block.append(line)
    return blocks


def _needs(comment: str) -> str | None:
    found = re.search(r"\bneeds?\b(.*)", comment)
    return (found.group(1).strip() or "something") if found else None


def _joined(block: list[str]) -> list[str]:
    """The block's non-blank lines, a line ending in a backslash joined with the next."""
    lines, pending = [], ""
    for line in block:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
        elif line.strip() or pending:
            lines.append((pending + line.strip()).strip())
            pending = ""
    return lines


def readme_commands() -> list[Command]:
    """Every command of the README's bash blocks, in order. A ``# needs ...`` comment line applies to the
    commands after it in its block; a trailing ``# ... needs ...`` comment to its own command."""
    commands = []
    for block in readme_blocks():
        block_needs = None
        for text in _joined(block):
            if text.startswith("#"):
                block_needs = _needs(text) or block_needs
                continue
            code, _, comment = text.partition(" #")
            commands.append(Command(text, tuple(shlex.split(code)), _needs(comment) or block_needs))
    return commands


def _setup_commands() -> list[str]:
    return [command.text for command in readme_commands()[:2]]


# --------------------------------------------------------------------------------------------- the top two
def test_ci_runs_readme_test_command_verbatim():
    _, test_command = _setup_commands()
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_main_command_uses_an_installed_console_script():
    main_command, _ = _setup_commands()
    script = main_command.rsplit("/", 1)[-1]
    assert f"{script} = " in (ROOT / "pyproject.toml").read_text()


def test_the_readme_shows_runnable_commands_beyond_the_top_two():
    commands = readme_commands()[2:]
    offline = [c for c in commands if c.needs is None]
    assert {c.program for c in offline} >= {"promptinfo-train", "promptinfo-eval", "promptinfo-inspect",
                                            "promptinfo-report"}, [c.text for c in offline]
    assert any(c.needs for c in commands)  # and the ones that need data say so


# --------------------------------------------------------------------------------------------- checks
def hydra_overrides(command: Command) -> tuple[str, list[str]] | None:
    """(config name, overrides) of a promptinfo-train/-eval or torchrun command; None for other programs."""
    argv = list(command.argv)
    if argv[0] == "torchrun":
        argv = ["promptinfo-train", *argv[argv.index("promptinfo.cli.train") + 1:]]
    if argv[0] not in HYDRA_COMMANDS:
        return None
    return HYDRA_COMMANDS[argv[0]], [a for a in argv[1:] if a not in ("-m", "--multirun")]


@pytest.fixture(scope="module")
def hydra_context():
    """One hydra context for the module's compositions (initialising it per compose costs more than composing)."""
    from hydra import initialize_config_module

    for script in HYDRA_COMMANDS:  # a command's module may store its own schema (promptinfo-collapse)
        importlib.import_module(SCRIPTS[script].split(":")[0])
    with initialize_config_module("promptinfo_configs", version_base="1.3"):
        yield


def composed_jobs(name: str, overrides: list[str]) -> list:
    """The validated config of the command, or of the first and last job of its sweep (in a hydra context)."""
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    from promptinfo.engine.validate import validate_eval_config, validate_train_config

    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    first = compose(name, overrides=fixed, return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (first.hydra.sweeper.get("params") or {}).items()]
    jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides([*params, *overrides]), None)[0]
    configs = [compose(name, overrides=list(job), return_hydra_config=True) for job in jobs[:1] + jobs[1:][-1:]]
    validated = []
    for cfg in configs:
        if name == "train" and "_target_" in cfg.hydra.launcher:
            import hydra.utils

            hydra.utils.get_class(cfg.hydra.launcher._target_)  # the launcher plugin is installed
        with open_dict(cfg):
            del cfg["hydra"]
            if name == "eval":
                cfg.checkpoint = None  # checked against the training commands' run folders instead
        validators = {"train": validate_train_config, "eval": validate_eval_config}
        validated.append(validators[name](cfg) if name in validators else OmegaConf.create(
            OmegaConf.to_container(cfg, resolve=True)))
    return validated


def check_without_running(command: Command, run_dirs: set[str]) -> None:
    """Parse, compose and validate a command that needs data, weights or the network."""
    hydra_form = hydra_overrides(command)
    if hydra_form is not None:
        name, overrides = hydra_form
        configs = composed_jobs(name, overrides)
        if name == "train":
            run_dirs.update(cfg.run_dir for cfg in configs)
        checkpoint = next((o.split("=", 1)[1] for o in overrides if o.startswith("checkpoint=")), None)
        if checkpoint:  # the prompts of a training command shown before it
            assert str(Path(checkpoint).parent) in run_dirs, (command.text, sorted(run_dirs))
        return
    if command.program in SCRIPTS:
        parse_argparse_command(command)
        return
    if "pip" in command.program or "pip install" in command.text:
        extras = re.findall(r'\.\[(\w+)\]', command.text)
        for extra in extras:
            assert re.search(rf"^{extra} = \[", (ROOT / "pyproject.toml").read_text(), re.MULTILINE), command.text
        return
    pytest.fail(f"the README test does not know how to check {command.text!r}")


def collapse_config(command: Command):
    """The validated config of a promptinfo-collapse command (in a hydra context)."""
    from hydra import compose

    from promptinfo.cli import collapse  # noqa: F401  (registers the command's schema)
    from promptinfo.collapse import validate_collapse_config

    return validate_collapse_config(compose("collapse", overrides=list(command.argv[1:])))


def interpolation_eval_config(command: Command):
    """The validated evaluation config of a promptinfo-interpolate command, its checkpoints aside (their dataset
    is the one A was trained on: the procedural one here)."""
    from hydra import compose

    from promptinfo.cli import interpolate
    from promptinfo.engine.validate import validate_eval_config

    args = interpolate.build_parser().parse_args(list(command.argv[1:]))
    return validate_eval_config(compose("eval", overrides=["dataset=procedural", *args.overrides]))


def parse_argparse_command(command: Command):
    """The parsed arguments of an argparse console script; promptinfo-inspect's backbone, weights tag and
    datasets exist."""
    cli = importlib.import_module(SCRIPTS[command.program].split(":")[0])
    assert hasattr(cli, "build_parser"), f"{command.text!r}: the README test cannot parse {command.program}"
    args = cli.build_parser().parse_args(list(command.argv[1:]))
    if command.program == "promptinfo-inspect" and args.checkpoint is None:  # not a prompt's nearest words
        from promptinfo import list_backbones, list_datasets

        assert args.model in list_backbones(), command.text
        assert args.pretrained is None or (args.model, args.pretrained) in list_backbones(pretrained=True)
        assert set(args.datasets) <= set(list_datasets()), command.text
    return args


def test_every_command_that_needs_data_or_weights_composes_and_validates(hydra_context):
    """Commands are checked in order, so an eval's checkpoint must be a training command's output shown before."""
    run_dirs: set[str] = set()
    checked = 0
    for command in readme_commands()[2:]:
        if command.needs is not None:
            check_without_running(command, run_dirs)
            checked += 1
        elif hydra_overrides(command) is not None and hydra_overrides(command)[0] == "train":
            run_dirs.update(cfg.run_dir for cfg in composed_jobs(*hydra_overrides(command)))
    assert checked > 0


def test_commands_without_a_needs_note_run_offline_on_the_demo_world(hydra_context):
    """A command that composes to a benchmark other than the procedural one, or to downloaded weights, must say
    what it needs; the offline ones compose and validate too (the slow test below runs them)."""
    for command in readme_commands()[2:]:
        if command.needs is not None:
            continue
        hydra_form = hydra_overrides(command)
        if hydra_form is not None:
            for cfg in composed_jobs(*hydra_form):
                dataset = OmegaConf.select(cfg, "dataset.name", default="procedural")
                offline = dataset.startswith("procedural") and OmegaConf.select(cfg, "model.pretrained") in ("procedural", None)
                assert offline, f"{command.text!r} needs data or weights: add a '# needs' note"
        elif command.program in SCRIPTS:
            args = parse_argparse_command(command)
            if command.program == "promptinfo-inspect" and args.checkpoint is None:
                assert set(args.datasets) <= {"procedural", "procedural_small"} and args.pretrained == "procedural"
        elif command.program == "promptinfo-collapse":
            assert collapse_config(command).data.name.startswith("procedural"), command.text
        elif command.program == "promptinfo-interpolate":
            assert interpolation_eval_config(command).model.pretrained in ("procedural", None), command.text
        else:
            pytest.fail(f"{command.text!r} has no '# needs' note and is not a command the README test can run")


# --------------------------------------------------------------------------------------------- running
SMALL_WORLD = (("model=demo", "model=demo_small"), ("dataset=procedural", "dataset=procedural_small"),
               ("pi-demo-default", "pi-demo-small"), ("/procedural/", "/procedural_small/"))


def on_the_small_world(command: Command) -> list[str]:
    """The command's words on the small demo world, with the console script of this environment."""
    argv = []
    for word in command.argv:
        for default, small in SMALL_WORLD:
            word = word.replace(default, small) if default.startswith("/") else (small if word == default else word)
        argv.append("procedural_small" if word == "procedural" and argv and argv[-1] == "--datasets" else word)
    if argv[0] == "promptinfo-collapse":
        argv += ["data.name=procedural_small", "trainer.epochs=2"]
    if argv[0] == "promptinfo-train":
        argv += ["trainer.epochs=2"]
        if any(word.startswith("experiment=demo") for word in argv):  # demo and demo_semi
            argv += ["model=demo_small", "dataset=procedural_small"]
    if argv[0] == "promptinfo-collapse":
        argv += ["trainer.epochs=2"]
    if argv[0] == "promptinfo-demo":
        argv += ["--variant", "small", "--epochs", "2"]
    return [str(Path(sys.executable).parent / argv[0]), *argv[1:]]


@pytest.mark.slow
def test_the_readme_commands_run_in_order_after_the_demo(demo_job, demo_cache, tmp_path):
    assert demo_job.status == 0, demo_job.stdout
    shutil.copytree(demo_job.root / "runs", tmp_path / "runs")
    shutil.copytree(demo_job.root / "cache", tmp_path / "cache")
    (tmp_path / "data").symlink_to(demo_job.root / "data")
    env = {**os.environ, "PROMPTINFO_HOME": str(demo_cache), "PROMPTINFO_CACHE": str(tmp_path / "cache"),
           "PROMPTINFO_DATA": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    ran = 0
    for command in readme_commands()[2:]:
        if command.needs is not None:
            continue
        argv = on_the_small_world(command)
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command.text}\n-> {shlex.join(argv)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        ran += 1
    assert ran >= 4
