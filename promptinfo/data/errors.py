"""Errors raised by the data layer: each names the file or folder at fault and how to fix it."""

from promptinfo.errors import PromptInfoError


class DataNotFoundError(PromptInfoError, FileNotFoundError):
    """A benchmark's folder, annotation file or images are missing or incomplete."""


class SplitFileError(PromptInfoError, ValueError):
    """A split file is malformed, or its labels and class names disagree."""


class CorruptImageError(PromptInfoError, OSError):
    """An image file exists but cannot be decoded."""


class DownloadError(PromptInfoError, RuntimeError):
    """A public source could not be fetched; the message says how to fetch it by hand."""


def prepare_command(key: str, root: str = "DATA_ROOT") -> str:
    """The command that downloads and lays out benchmark ``key`` under ``root``."""
    return f"python tools/prepare_data.py {key} --root {root}"
