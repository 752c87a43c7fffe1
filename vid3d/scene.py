"""Cameras and points of a reconstructed scene, in plain numpy.

:class:`Scene` is what the splat and render stages see of structure from motion;
only :mod:`vid3d.sfm` builds one from pycolmap objects (``vid3d.sfm.load_scene``).
Cameras follow gsplat's conventions: ``camtoworlds [N, 4, 4]`` in OpenCV axes
(x right, y down, z forward) and pinhole pixel intrinsics ``Ks [N, 3, 3]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np


@dataclass
class Scene:
    names: list[str]
    """Image file names of the registered frames, in time (file-name) order."""
    camtoworlds: np.ndarray
    """[N, 4, 4] float64 camera-to-world, OpenCV axes."""
    Ks: np.ndarray
    """[N, 3, 3] float64 pinhole intrinsics of the images in ``image_paths``."""
    width: int
    height: int
    image_paths: list[Path]
    """Pinhole (undistorted) images to train on, one per camera."""
    mask_paths: list[Path | None]
    """Masks (white = use) matching ``image_paths``, or None per image."""
    points: np.ndarray
    """[P, 3] float64 SfM points."""
    colors: np.ndarray
    """[P, 3] uint8 point colours."""

    def __len__(self) -> int:
        return len(self.names)

    def transformed(self, T: np.ndarray) -> Scene:
        """The scene moved by a similarity ``T [4, 4]`` (rotation times scale, translation)."""
        T = np.asarray(T, dtype=np.float64)
        scale = np.cbrt(np.linalg.det(T[:3, :3]))
        c2w = T[None] @ self.camtoworlds
        c2w[:, :3, :3] /= scale  # keep rotations orthonormal
        points = self.points @ T[:3, :3].T + T[:3, 3]
        return replace(self, camtoworlds=c2w, points=points)


def normalization_transform(camtoworlds: np.ndarray) -> np.ndarray:
    """A similarity that centres the cameras and scales them into the unit ball (no
    rotation, so splats' spherical harmonics need none when they go back to the SfM frame).

    Args:
        camtoworlds: [N, 4, 4] cameras.

    Returns:
        [4, 4] float64 ``T`` with ``x_normalized = T @ x_world``.
    """
    centers = camtoworlds[:, :3, 3]
    center = centers.mean(axis=0)
    dist = np.linalg.norm(centers - center, axis=1).max()
    scale = 1.0 / dist if dist > 1e-9 else 1.0
    T = np.eye(4)
    T[:3, :3] = scale * np.eye(3)
    T[:3, 3] = -scale * center
    return T
