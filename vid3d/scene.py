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

    def transformed(self, T: np.ndarray) -> "Scene":
        """The scene moved by a similarity ``T [4, 4]`` (rotation times scale, translation)."""
        T = np.asarray(T, dtype=np.float64)
        scale = np.cbrt(np.linalg.det(T[:3, :3]))
        c2w = T[None] @ self.camtoworlds
        c2w[:, :3, :3] /= scale  # keep rotations orthonormal
        points = self.points @ T[:3, :3].T + T[:3, 3]
        return replace(self, camtoworlds=c2w, points=points)


def normalization_transform(camtoworlds: np.ndarray, align_up: bool = False) -> np.ndarray:
    """A similarity that centres the cameras and scales them into the unit ball.

    Args:
        camtoworlds: [N, 4, 4] cameras.
        align_up: Also rotate the cameras' mean up direction (-y in OpenCV axes) onto
            +z. Default: False, so that splats' spherical harmonics need no rotation
            when they are moved back to the SfM frame.

    Returns:
        [4, 4] float64 ``T`` with ``x_normalized = T @ x_world``.
    """
    centers = camtoworlds[:, :3, 3]
    R = np.eye(3)
    if align_up:
        up = -camtoworlds[:, :3, 1].mean(axis=0)
        up /= np.linalg.norm(up) + 1e-12
        R = _rotation_a_to_b(up, np.array([0.0, 0.0, 1.0]))
    center = centers.mean(axis=0)
    dist = np.linalg.norm(centers - center, axis=1).max()
    scale = 1.0 / dist if dist > 1e-9 else 1.0
    T = np.eye(4)
    T[:3, :3] = scale * R
    T[:3, 3] = -scale * (R @ center)
    return T


def _rotation_a_to_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation turning unit vector ``a`` onto unit vector ``b``."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1 + 1e-9:  # opposite: turn 180 degrees about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)
