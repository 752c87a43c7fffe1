"""Errors raised by vid3d.

Library code raises a :class:`Vid3dError` subclass with a ``message`` (what
happened) and a ``hint`` (what to try). Only the CLI turns them into a line of
text and an exit code (see :mod:`vid3d.cli`).
"""

from __future__ import annotations


class Vid3dError(Exception):
    """Base class of every error vid3d raises on purpose.

    Args:
        message: What happened, in one sentence.
        hint: What the user can try, in one sentence. Default: none.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint as one line of text."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(Vid3dError):
    """A preset, a ``--set`` override or a config file is invalid."""

    exit_code = 2


class InputError(Vid3dError):
    """An input file or workspace is missing or unusable."""

    exit_code = 2


class VideoError(InputError):
    """A file cannot be decoded as a video, or is truncated."""


class NotEnoughMotionError(Vid3dError):
    """The camera moves too little for structure from motion."""


class PosesError(Vid3dError):
    """Structure from motion registered too few frames."""


class TrainingError(Vid3dError):
    """Splat training cannot run or diverged."""


class RenderError(Vid3dError):
    """Rendering or video encoding failed."""


class MissingStageError(Vid3dError):
    """A stage needs the output of an earlier stage that has not run."""

    exit_code = 2
