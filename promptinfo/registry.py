"""A registry of classes with a typed `Config`, under lowercase keys: the methods' and the pseudo-labelling
strategies' (`promptinfo.methods.registry`, `promptinfo.pseudo.registry`)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

from promptinfo.errors import ConfigError


class Registry:
    """Classes by key, each with a `Config` dataclass of its options.

    Args:
        noun: what a class is, for the duplicate-key error ("method").
        plural: what the keys are, for the unknown-key error ("methods").
        describe: how errors name a key, e.g. `lambda name: f"method {name!r}"`.
    """

    def __init__(self, noun: str, plural: str, describe: Callable[[str], str]) -> None:
        self.noun, self.plural, self.describe = noun, plural, describe
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator adding a class under `name` (it gets `registry_name`)."""

        def add(cls: type) -> type:
            if name in self._classes:
                raise ValueError(f"{self.noun} {name!r} is registered twice")
            cls.registry_name = name
            self._classes[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        """Every key, sorted."""
        return sorted(self._classes)

    def get(self, name: str) -> type:
        """The class under `name`; an unknown key lists the valid ones and the closest."""
        if name not in self._classes:
            close = difflib.get_close_matches(name, list(self._classes), n=3)
            raise ConfigError(f"Unknown {self.describe(name)}; valid {self.plural}: {self.names()} (close: {close}).")
        return self._classes[name]

    def config(self, name: str, options: dict, keep_none: bool = True):
        """`get(name).Config(**options)`; unknown options are refused, and None values keep the defaults unless
        `keep_none`."""
        cls = self.get(name)
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ConfigError(f"Unknown option(s) {unknown} for {self.describe(name)}; valid options: {sorted(fields)}.")
        return cls.Config(**{k: v for k, v in options.items() if keep_none or v is not None})
