"""A small synthetic scene with known cameras, rendered with vid3d's own rasterizer.

Used by the training tests: Gaussians on a textured box seen by a ring of cameras;
the "SfM points" are the Gaussians' centres with noise, as structure from motion would
give them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from vid3d.scene import Scene
from vid3d.splats.rasterize import rasterize


def look_at(position: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    f = target - position
    f = f / np.linalg.norm(f)
    r = np.cross(f, np.asarray(up))
    r = r / np.linalg.norm(r)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([r, np.cross(f, r), f], axis=1)
    c2w[:3, 3] = position
    return c2w


def make_scene(
    folder: Path,
    n_views: int = 10,
    width: int = 64,
    height: int = 48,
    n_gaussians: int = 1500,
    seed: int = 0,
    brightness: np.ndarray | None = None,
) -> Scene:
    """Render ``n_views`` images of a random textured blob into ``folder``.

    Args:
        brightness: [n_views] optional per-image gain (flicker) applied to the images.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    means = rng.uniform(-1, 1, (n_gaussians, 3)) * np.array([1.0, 1.0, 0.5])
    colors = rng.uniform(0, 1, (n_gaussians, 3))
    angles = np.linspace(0, np.pi / 2, n_views)
    c2w = np.stack([look_at(np.array([4 * np.cos(a), 4 * np.sin(a), 1.5]), np.zeros(3)) for a in angles])
    K = np.array([[width * 1.0, 0, width / 2], [0, width * 1.0, height / 2], [0, 0, 1]])
    t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    n = n_gaussians
    with torch.no_grad():
        imgs, _, _ = rasterize(
            t(means),
            t(np.tile([1.0, 0, 0, 0], (n, 1))),
            t(np.full((n, 3), 0.08)),
            t(np.full(n, 0.9)),
            t(colors),
            torch.linalg.inv(t(c2w)),
            t(np.repeat(K[None], n_views, 0)),
            width,
            height,
            backgrounds=torch.zeros(n_views, 3),
        )
    paths = []
    for i, img in enumerate(imgs.numpy()):
        if brightness is not None:
            img = img * brightness[i]
        path = folder / f"frame_{i:05d}.png"
        cv2.imwrite(
            str(path), cv2.cvtColor((img.clip(0, 1) * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
        )
        paths.append(path)
    points = means[::3] + rng.normal(0, 0.05, means[::3].shape)
    return Scene(
        names=[p.name for p in paths],
        camtoworlds=c2w,
        Ks=np.repeat(K[None], n_views, 0),
        width=width,
        height=height,
        image_paths=paths,
        mask_paths=[None] * n_views,
        points=points,
        colors=(colors[::3] * 255).astype(np.uint8),
    )
