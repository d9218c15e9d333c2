"""`promptinfo-export`: a trained prompt as a file to share, with a human-readable card.

The exported `prompt.safetensors` is the run's prompt file with its metadata completed from the run folder
(the results of every evaluation); `README.md` beside it says what the prompt was trained on, how well it
does, and how to load it. `promptinfo.load_method` rebuilds the method from such a file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from promptinfo.errors import PromptInfoError
from promptinfo.io import atomic_path

PROMPT_FILE = "prompt.safetensors"
RESULTS_FILE = "results.json"


class ExportError(PromptInfoError, ValueError):
    """What `promptinfo-export` was given is not a run folder or prompt file."""


@dataclass(frozen=True)
class Exported:
    """The files written by `export_prompt`."""

    prompt: Path
    card: Path


def export_prompt(source: str | os.PathLike, out: str | os.PathLike) -> Exported:
    """Write `out/prompt.safetensors` (metadata completed with the run's results) and `out/README.md`.

    Args:
        source: a run folder, or a `prompt.safetensors` (a `results.json` beside it is read when present).
        out: the folder to write (created; existing files of the same names are replaced).
    """
    from safetensors.torch import save_file

    from promptinfo.methods import read_prompt_checkpoint

    prompt = _prompt_path(Path(source))
    tensors, meta = read_prompt_checkpoint(prompt)
    results = _results(prompt.parent / RESULTS_FILE)
    if results is not None:
        meta["results"] = {name: ev["accuracy"] for name, ev in results.get("evaluations", {}).items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / PROMPT_FILE) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"promptinfo": json.dumps(meta)})
    with atomic_path(out / "README.md") as tmp:
        Path(tmp).write_text(prompt_card(meta))
    return Exported(out / PROMPT_FILE, out / "README.md")


def _prompt_path(source: Path) -> Path:
    prompt = source / PROMPT_FILE if source.is_dir() else source
    if not prompt.is_file():
        raise ExportError(f"{source} is neither a run folder with a {PROMPT_FILE} nor a prompt file; pass a finished "
                          "run's folder (runs/.../shots16_seed1) or its prompt.safetensors.")
    return prompt


def _results(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExportError(f"{path} is damaged ({err}); rerun the run with overwrite=true, or export the prompt file "
                          "alone from a folder without it.") from None


def prompt_card(meta: dict) -> str:
    """The Markdown card of a prompt file's metadata."""
    options = ", ".join(f"`{k}={v}`" for k, v in meta["config"].items())
    classes = meta["classnames"]
    trained = ", ".join(f"{k} {meta[k]}" for k in ("dataset", "protocol", "shots", "seed", "epochs") if meta.get(k) is not None)
    lines = [
        f"# {meta['method']} prompt for {meta['backbone']}",
        "",
        f"- **Method**: `{meta['method']}` ({options or 'default options'})",
        f"- **Backbone**: `{meta['backbone']}`, weights `{meta['weights']}`",
        f"- **Trained on**: {trained or 'unknown (not recorded)'}",
        f"- **Classes** ({len(classes)}): {', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}",
        f"- **Templates**: {'; '.join(meta.get('templates') or []) or 'the method defaults'}",
        "- **Transfers to other classes**: " + ("no (class-specific contexts)" if meta["class_specific"] else "yes"),
        "",
    ]
    if meta.get("results"):
        lines += ["| evaluation | accuracy (%) |", "| :--- | ---: |"]
        lines += [f"| {name} | {acc:.2f} |" for name, acc in meta["results"].items()] + [""]
    lines += _how_to_load(meta)
    return "\n".join(lines) + "\n"


def _how_to_load(meta: dict) -> list[str]:
    weights = meta["weights"]
    pretrained = "None" if weights == "random" else (
        "'/path/to/the/weights/file'" if weights.startswith("file-") else repr(weights))
    return [
        "## Use it",
        "",
        "```python",
        "import promptinfo",
        "",
        f"backbone = promptinfo.create_backbone({meta['backbone']!r}, pretrained={pretrained})",
        'method = promptinfo.load_method("prompt.safetensors", backbone)  # classnames=[...] for other classes',
        "logits = method(images)  # [batch, classes]",
        "```",
        "",
        "```bash",
        "promptinfo-predict path/to/images --checkpoint prompt.safetensors --out predictions/",
        "```",
    ]
