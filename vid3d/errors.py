"""Errors raised by vid3d.

Library code raises a :class:`Vid3dError` subclass with a ``message`` (what
happened) and a ``hint`` (what to try). Only the CLI turns them into a line of
text and an exit code (see :mod:`vid3d.cli`).
"""

from __future__ import annotations

import errno
import shutil


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


class NoParallaxError(NotEnoughMotionError):
    """The camera only turns (or the picture slides): nothing to triangulate."""


class NotEnoughFramesError(Vid3dError):
    """The clip gives too few distinct frames to reconstruct."""


class TooMuchMotionError(Vid3dError):
    """Most of the picture moves on its own: too little static scene."""


class PosesError(Vid3dError):
    """Structure from motion registered too few frames."""


class TrainingError(Vid3dError):
    """Splat training cannot run or diverged."""


class RenderError(Vid3dError):
    """Rendering or video encoding failed."""


class MissingStageError(Vid3dError):
    """A stage needs the output of an earlier stage that has not run."""

    exit_code = 2


class WorkspaceError(InputError):
    """A folder cannot be used as a workspace (not vid3d's, a file, not writable)."""


class WorkspaceBusyError(Vid3dError):
    """Another process is writing the workspace."""

    exit_code = 3


class FileSystemError(Vid3dError):
    """The disk is full, read-only or not writable, or a path cannot be used."""


def os_error(e: OSError) -> FileSystemError:
    """A one-line :class:`FileSystemError` for an ``OSError``: what failed, where, what to try."""
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    what = e.strerror or str(e)
    hints = {
        errno.ENOSPC: "free some disk space and run the command again; finished stages are kept",
        errno.EDQUOT: "free some space within your quota and run the command again",
        errno.EFBIG: "the file grew past the size allowed here (ulimit -f); raise the limit "
        "or write to another disk",
        errno.EROFS: "the folder is on a read-only file system: copy the workspace somewhere "
        "writable, or give --out a writable folder",
        errno.EACCES: "you may not write there: check the permissions, or choose another folder",
        errno.EPERM: "you may not write there: check the permissions, or choose another folder",
        errno.ENAMETOOLONG: "use a shorter path",
        errno.EISDIR: "give a file path, not a folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    }
    return FileSystemError(f"{what}{where}", hints.get(e.errno, "check the path and the disk"))


def storage_hint(path) -> str | None:
    """Why writes under ``path`` may be failing, if the disk says so: little free space, or
    a file-size limit (``ulimit -f``) on this process. None when neither holds."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        free = None
    if free is not None and free < 256 << 20:
        return (
            f"only {free / 2**20:.0f} MB are free on the disk of {path}: free some space "
            "and run the command again"
        )
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            return (
                f"files may not grow past {soft} bytes here (ulimit -f): raise the limit "
                "and run the command again"
            )
    except (ImportError, OSError, ValueError):
        pass
    return None
