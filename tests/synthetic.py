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

from vid3d.camera_paths import look_at
from vid3d.scene import Scene
from vid3d.splats.rasterize import rasterize


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
    ring = np.stack([4 * np.cos(angles), 4 * np.sin(angles), np.full(n_views, 1.5)], axis=1)  # [V, 3]
    c2w = look_at(ring, np.zeros(3), np.array([0.0, 0.0, 1.0]))  # [V, 4, 4], z up
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
