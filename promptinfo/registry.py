"""A registry of classes with a typed `Config`, under lowercase keys: the methods' and the pseudo-labelling
strategies' (`promptinfo.methods.registry`, `promptinfo.pseudo.registry`)."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable

from promptinfo.discovery import import_submodules
from promptinfo.errors import ConfigError


class Registry:
    """Classes by key, each with a `Config` dataclass of its options.

    The built-in classes live in the modules of `package` (torch); their configs in its `configs` module
    (torch-free), registered there with `register_config`, so that the keys and options are known without
    importing a model (what hydra needs to compose a config or print `--help`). The package's modules are
    imported on the first lookup of a class, or of a key no config registered; a class registered from
    anywhere else (a plug-in) brings its `Config` along.

    Args:
        noun: what a class is, for the duplicate-key error ("method").
        plural: what the keys are, for the unknown-key error ("methods").
        describe: how errors name a key, e.g. `lambda name: f"method {name!r}"`.
        package: the package whose modules register the built-in classes, e.g. "promptinfo.methods".
    """

    def __init__(self, noun: str, plural: str, describe: Callable[[str], str], package: str) -> None:
        self.noun, self.plural, self.describe, self.package = noun, plural, describe, package
        self._classes: dict[str, type] = {}
        self._configs: dict[str, type] = {}
        self._imported = False

    def register_config(self, name: str) -> Callable[[type], type]:
        """Dataclass decorator adding a built-in class's `Config` under `name` (the class itself registers
        with `register(name)` in its own module)."""

        def add(config: type) -> type:
            if name in self._configs:
                raise ValueError(f"{self.noun} {name!r} is registered twice")
            self._configs[name] = config
            return config

        return add

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator adding a class under `name` (it gets `registry_name`) with its `Config`."""

        def add(cls: type) -> type:
            if name in self._classes:
                raise ValueError(f"{self.noun} {name!r} is registered twice")
            known = self.configs(import_modules=False).get(name)
            if known not in (None, cls.Config):
                raise ValueError(f"{self.noun} {name!r}: {cls.__name__}.Config is {cls.Config.__name__}, but "
                                 f"{known.__name__} is registered under {name!r}; use it or another key")
            cls.registry_name = name
            self._classes[name] = cls
            self._configs[name] = cls.Config
            return cls

        return add

    def configs(self, import_modules: bool = True) -> dict[str, type]:
        """Key -> `Config` of every registered class: the built-in ones and those registered so far, and,
        with `import_modules`, those of every module of the package (a module dropped into it; torch loads)."""
        importlib.import_module(f"{self.package}.configs")
        if import_modules:
            self._import_modules()
        return dict(self._configs)

    def names(self) -> list[str]:
        """Every key, sorted."""
        return sorted(self.configs())

    def get(self, name: str) -> type:
        """The class under `name`; an unknown key lists the valid ones and the closest."""
        if name not in self._classes:
            self._import_modules()
        if name not in self._classes:
            raise ConfigError(self._unknown(name))
        return self._classes[name]

    def find_config(self, name: str) -> type | None:
        """The `Config` dataclass of `name` (None for an unknown key), read without importing the class where
        its config is built in."""
        return self.configs(import_modules=False).get(name) or self.configs().get(name)

    def config(self, name: str, options: dict, keep_none: bool = True):
        """`find_config(name)(**options)`; an unknown key or option is refused, and None values keep the
        defaults unless `keep_none`."""
        config = self.find_config(name)
        if config is None:
            raise ConfigError(self._unknown(name))
        fields = {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ConfigError(f"Unknown option(s) {unknown} for {self.describe(name)}; valid options: {sorted(fields)}.")
        return config(**{k: v for k, v in options.items() if keep_none or v is not None})

    def _unknown(self, name: str) -> str:
        assert name not in self._configs, f"{self.noun} {name!r} has a registered config but no class"
        close = difflib.get_close_matches(name, list(self._configs), n=3)
        return f"Unknown {self.describe(name)}; valid {self.plural}: {self.names()} (close: {close})."

    def _import_modules(self) -> None:
        """Import every module of the package once: each registers its classes."""
        if self._imported:
            return
        self._imported = True
        try:
            import_submodules(self.package, importlib.import_module(self.package).__path__)
        except BaseException:
            self._imported = False
            raise
