"""Errors raised for user mistakes: each message says what was wrong and how to fix it."""


class PromptInfoError(Exception):
    """Base class of promptinfo's user-facing errors."""


class ConfigError(PromptInfoError, ValueError):
    """A configuration value (backbone, method, dataset, option) is unknown or invalid."""


class WeightsUnavailableError(PromptInfoError, FileNotFoundError):
    """Pretrained weights could not be found or downloaded."""


class BackboneNotSupportedError(PromptInfoError, ValueError):
    """The backbone lacks what a method needs (e.g. deep vision prompts on a ResNet tower)."""


class CheckpointMismatchError(PromptInfoError, ValueError):
    """A prompt checkpoint does not fit the method, backbone or class list it is loaded onto."""


class DamagedFileError(PromptInfoError, ValueError):
    """A file the toolkit reads is truncated, garbled or not the kind of file its name says.

    Attributes:
        path: the damaged file.
        problem: what is wrong with it.
        fix: what the user can do about it.
    """

    def __init__(self, path, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path} is damaged: {problem}. {fix}")
