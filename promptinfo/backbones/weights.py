"""Weights tags as data: a registry of resolvers that turn `(architecture, tag)` into a local weights file.

open_clip's own tags (`openai`, `laion2b_s34b_b88k`, ...) need no entry here. Code above this layer
registers further tags; the demo registers `procedural`, which pretrains its tiny CLIPs on first use:

    register_weights("procedural", models=["pi-demo-default"], resolve=lambda name, cache_dir: path)

The backbones package never imports the code that registers a tag.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Resolver = Callable[[str, "str | None"], "str | os.PathLike"]
"""`resolve(architecture, cache_dir)` -> path of a weights file that `open_clip.create_model` loads."""


@dataclass(frozen=True)
class WeightsTag:
    """A registered tag: the architectures it has weights for and how to get a file of them."""

    tag: str
    models: tuple[str, ...]
    resolve: Resolver


_TAGS: dict[str, WeightsTag] = {}


def register_weights(tag: str, models: Iterable[str], resolve: Resolver) -> None:
    """Serve weights tagged `tag` for `models` through `resolve` (registering a tag again replaces it)."""
    _TAGS[tag] = WeightsTag(tag=tag, models=tuple(models), resolve=resolve)


def registered_weights() -> list[tuple[str, str]]:
    """`(architecture, tag)` pairs of every registered tag."""
    return [(model, entry.tag) for entry in _TAGS.values() for model in entry.models]


def registered_tags() -> list[str]:
    """Every registered weights tag, sorted."""
    return sorted(_TAGS)


def resolve_weights(name: str, tag: str | None, cache_dir: str | None) -> str | None:
    """The weights file of a registered `(name, tag)` pair, or None when no resolver serves it."""
    entry = _TAGS.get(tag) if tag is not None else None
    if entry is None or name not in entry.models:
        return None
    return str(entry.resolve(name, cache_dir))
