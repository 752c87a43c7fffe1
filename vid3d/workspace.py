"""The workspace: one folder per video, its paths, manifests and atomic writes.

Layout (a valid COLMAP dataset: ``images/`` + ``sparse/0``)::

    <ws>/vid3d.toml              resolved configuration of the last run
    <ws>/images/                 selected frames
    <ws>/masks/                  per-frame masks (white = use), if any
    <ws>/frames.json             every decoded frame and what became of it
    <ws>/colmap/                 COLMAP database and log
    <ws>/sparse/0/               cameras.bin images.bin points3D.bin
    <ws>/poses.json              cameras per registered frame, SfM metrics
    <ws>/splats/                 point_cloud.ply, scene.splat, ckpt.pt
    <ws>/renders/                orbit.mp4
    <ws>/report.json, report.html
    <ws>/undistorted/            undistorted frames for training (non-pinhole cameras)
    <ws>/.vid3d/workspace.json   the marker: this folder is a vid3d workspace
    <ws>/.vid3d/<stage>.json     stage manifests
    <ws>/.vid3d/lock             held by the process writing the workspace
    <ws>/.vid3d/journal/         the running stage's undo record (vid3d.transaction)
    <ws>/.vid3d/resume/          state of an unfinished training, to resume from
    <ws>/.vid3d/logs/            logs of batch workers

Every file is written to a temporary name next to its target and renamed into
place (:func:`atomic_path`, :func:`atomic_dir`), so an interrupted run never
leaves a file that looks complete but is not.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace. Creating the object touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config_toml(self) -> Path:
        return self.root / "vid3d.toml"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def masks(self) -> Path:
        return self.root / "masks"

    @property
    def frames_json(self) -> Path:
        return self.root / "frames.json"

    @property
    def colmap(self) -> Path:
        return self.root / "colmap"

    @property
    def database(self) -> Path:
        return self.colmap / "database.db"

    @property
    def sparse(self) -> Path:
        return self.root / "sparse"

    @property
    def sparse0(self) -> Path:
        return self.sparse / "0"

    @property
    def poses_json(self) -> Path:
        return self.root / "poses.json"

    @property
    def splats(self) -> Path:
        return self.root / "splats"

    @property
    def ply(self) -> Path:
        return self.splats / "point_cloud.ply"

    @property
    def splat_file(self) -> Path:
        return self.splats / "scene.splat"

    @property
    def ckpt(self) -> Path:
        return self.splats / "ckpt.pt"

    @property
    def renders(self) -> Path:
        return self.root / "renders"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def meta(self) -> Path:
        return self.root / ".vid3d"

    @property
    def colmap_masks(self) -> Path:
        """The masks under COLMAP's names (``<image name>.png``), made by the poses stage."""
        return self.colmap / "masks"

    @property
    def undistorted(self) -> Path:
        """The cache of undistorted images and masks (non-pinhole cameras only)."""
        return self.root / "undistorted"

    @property
    def marker(self) -> Path:
        """The file that makes a folder a vid3d workspace."""
        return self.meta / "workspace.json"

    @property
    def lock(self) -> Path:
        return self.meta / "lock"

    @property
    def journal(self) -> Path:
        return self.meta / "journal"

    @property
    def logs(self) -> Path:
        return self.meta / "logs"

    @property
    def batch_log(self) -> Path:
        """What a batch worker printed while it ran this workspace."""
        return self.logs / "batch.log"

    @property
    def resume_ckpt(self) -> Path:
        """Training state of an unfinished training run (``--force`` discards it).

        Kept apart from ``splats/ckpt.pt`` so that an interrupted or failed training
        never changes a finished workspace's splats; the next run resumes from it.
        """
        return self.meta / "resume" / "splat.pt"

    # ---- masks: the one place that names mask files (white = use, black = ignore)

    MASK_NAME = "{stem}.png"
    """File name of an image's mask in ``masks/`` (the frames stage's naming, recorded in
    frames.json): ``{stem}`` is the image name without its extension."""
    COLMAP_MASK_NAME = "{image}.png"
    """COLMAP's file name of an image's mask: ``{image}`` is the whole image name."""

    @staticmethod
    def _mask_file(pattern: str, image_name: str) -> str:
        return pattern.format(stem=Path(image_name).stem, image=image_name)

    def mask_for(self, image_name: str) -> Path:
        """The frames stage's mask of an image: ``masks/<image stem>.png``."""
        return self.masks / self._mask_file(self.MASK_NAME, image_name)

    def find_mask(self, image_name: str) -> Path | None:
        """The mask of an image if there is one: :meth:`mask_for`, or a mask under COLMAP's
        name (``masks/<image name>.png``, as a user's own masks may be named)."""
        colmap_named = self.masks / self._mask_file(self.COLMAP_MASK_NAME, image_name)
        for p in (self.mask_for(image_name), colmap_named):
            if p.is_file():
                return p
        return None

    def colmap_mask_for(self, image_name: str) -> Path:
        """The mask of an image under COLMAP's name: ``colmap/masks/<image name>.png``."""
        return self.colmap_masks / self._mask_file(self.COLMAP_MASK_NAME, image_name)

    def manifest_path(self, stage: str) -> Path:
        return self.meta / f"{stage}.json"

    def read_manifest(self, stage: str) -> dict[str, Any] | None:
        """The stage's manifest, or None when the stage has not finished here."""
        path = self.manifest_path(stage)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if not e.filename:  # a writer that says "disk full" without saying where
            e.filename = str(path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; swap it in on success.

    A previous ``path`` is replaced only once the new one is complete; on an
    exception the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = _tmp_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    """Write a JSON file atomically (indented, UTF-8, strict: NaN and infinities become null)."""
    text = json.dumps(json_safe(data), indent=2, allow_nan=False, ensure_ascii=False)
    write_text(path, text + "\n")


def json_safe(obj: Any) -> Any:
    """``obj`` with paths as strings, arrays as lists and non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy and torch arrays and scalars
        return json_safe(obj.tolist())
    if hasattr(obj, "item"):
        return json_safe(obj.item())
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def fingerprint_paths(paths: list[Path]) -> str:
    """A hash of files' contents and names (folders recursively).

    Names are taken relative to each path's parent, so a workspace that is copied or
    moved keeps its fingerprints; contents, not modification times, so a copy that
    did not keep the times does too.
    """
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            rel = q.relative_to(p.parent).as_posix()
            h.update(f"{rel}\0{q.stat().st_size}\0{_content_hash(q)}\n".encode())
    return h.hexdigest()[:16]


_HASHES: dict[tuple[str, int, int, int], str] = {}


def _content_hash(path: Path) -> str:
    """SHA-256 of a file, remembered for this process while size, inode and mtime hold."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_ino, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def fingerprint_file(path: Path) -> str:
    """A content hash of a source file: its size and the first and last 4 MiB."""
    path = Path(path)
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(4 << 20))
        if size > 8 << 20:
            f.seek(-(4 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:16]
