"""README's two commands stay true: CI runs the test command verbatim."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if line.strip() == "```bash"][:2]


def test_ci_runs_readme_test_command_verbatim():
    _, test_command = _readme_commands()
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_main_command_uses_an_installed_console_script():
    main_command, _ = _readme_commands()
    script = main_command.rsplit("/", 1)[-1]
    assert f"{script} = " in (ROOT / "pyproject.toml").read_text()
