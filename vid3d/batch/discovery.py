"""Finding a batch's videos (:func:`find_videos`) and naming their workspaces
(:func:`workspace_name`)."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from vid3d.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi")
"""File extensions taken as videos (any letter case)."""


def find_videos(
    folder: Path, *, recursive: bool = False, glob: str | None = None, exclude: Sequence[Path] = ()
) -> list[Path]:
    """The videos in a folder, sorted by their path relative to it.

    Hidden files and folders, folders in ``exclude`` and vid3d workspaces (folders with
    a ``.vid3d`` manifest folder, whose renders are videos too) are left out.

    Args:
        folder: The folder to search.
        recursive: Search sub-folders too. Default: False.
        glob: Keep only videos whose path relative to ``folder`` or whose file name
            matches this pattern (fnmatch: ``*_svd.mp4``, ``scenes/*``). Default: all.
        exclude: Folders to leave out (the batch's output folder). Default: none.

    Returns:
        Paths of the videos (``folder`` joined with their relative paths).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", "give the folder that holds the videos")
    excluded = {Path(p).resolve() for p in exclude}
    found: list[Path] = []

    def visit(d: Path) -> None:
        if d.resolve() in excluded or (d / ".vid3d").is_dir():
            return
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                if recursive:
                    visit(p)
            elif p.suffix.lower() in VIDEO_SUFFIXES:
                rel = p.relative_to(folder).as_posix()
                if glob is None or fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(p.name, glob):
                    found.append(p)

    visit(folder)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def workspace_name(video: Path, folder: Path) -> str:
    """The workspace folder name of a video: ``<stem>-<8 hex digits>``.

    The digits hash the video's path relative to ``folder``, so the name is stable
    and unique within the batch; the stem keeps it readable (characters other than
    letters, digits, ``.``, ``_`` and ``-`` become ``_``; at most 60 of them).
    """
    rel = Path(video).relative_to(folder).as_posix()
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(video).stem).strip(".")[:60] or "video"
    return f"{stem}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
