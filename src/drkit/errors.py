"""One exception family so the CLI can refuse with a one-line reason instead of a traceback."""
from __future__ import annotations


class DrkitError(Exception):
    """Base class: the message is a complete, user-facing, one-line reason."""


class SourceError(DrkitError):
    """A dataset source cannot be parsed, found or decoded."""


class RecipeError(DrkitError):
    """An augmentation recipe or view parameter is invalid."""


class TeacherError(DrkitError):
    """A teacher spec cannot be loaded or does not fit the data."""


class StoreError(DrkitError):
    """A reinforced store is missing, corrupt, or does not match what it is used with."""


class CheckpointError(DrkitError):
    """A model checkpoint directory is missing or inconsistent."""


def one_line(exc: BaseException) -> str:
    """A foreign exception as ``Type: first line`` -- the reason inside a one-line refusal."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
