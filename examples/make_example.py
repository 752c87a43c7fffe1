"""Make ``examples/garden.mp4``, the clip the README's first command reconstructs.

The scene is real: the point cloud of the Mip-NeRF 360 "garden" scene that gsplat's
own tests use (``../shared/data/gsplat/test_garden.npz``). Each point becomes a small
isotropic Gaussian (size from its neighbours, colour from the point) and a camera
flies a 100-degree arc around the table at the height of the scene's own cameras,
looking at the table, as a handheld or generated orbit clip would. Frames are drawn
with vid3d's rasterizer and encoded to H.264 with the ffmpeg that imageio-ffmpeg
bundles. The cameras are written next to the clip (``garden_cameras.json``) so the
recovered poses can be checked against them.

    python examples/make_example.py
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch

from vid3d.splats.model import knn_mean_distance
from vid3d.splats.rasterize import rasterize

HERE = Path(__file__).resolve().parent
GARDEN = HERE.parent.parent / "shared" / "data" / "gsplat" / "test_garden.npz"
WIDTH, HEIGHT, FPS, FRAMES = 480, 320, 10, 60
ARC_DEGREES = (-170.0, -70.0)  # azimuths of the arc, around the scene cameras' own


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world [4, 4] in OpenCV axes (x right, y down, z forward)."""
    f = target - position
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([r, np.cross(f, r), f], axis=1)
    c2w[:3, 3] = position
    return c2w


def cameras(data) -> tuple[np.ndarray, np.ndarray]:
    """The arc: camtoworlds [F, 4, 4] and the shared K [3, 3] at the clip's size."""
    scene_c2w = np.linalg.inv(data["viewmats"].astype(np.float64))
    radius = np.linalg.norm(scene_c2w[:, :2, 3], axis=1).mean()
    height = scene_c2w[:, 2, 3].mean()
    target = np.array([0.0, 0.0, 0.05])
    angles = np.radians(np.linspace(*ARC_DEGREES, FRAMES))
    c2w = np.stack([look_at(np.array([radius * np.cos(a), radius * np.sin(a), height]), target,
                            np.array([0.0, 0.0, 1.0])) for a in angles])
    K = data["Ks"][0].astype(np.float64).copy()
    K[0] *= WIDTH / float(data["width"])
    K[1] *= HEIGHT / float(data["height"])
    return c2w, K


def main() -> None:
    data = np.load(GARDEN)
    means = data["means3d"].astype(np.float64)
    scales = np.clip(knn_mean_distance(means), 1e-4, 0.02) * 0.7
    c2w, K = cameras(data)
    g = dict(
        means=torch.tensor(means, dtype=torch.float32),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(len(means), 1),
        scales=torch.tensor(scales, dtype=torch.float32)[:, None].repeat(1, 3),
        opacities=torch.full((len(means),), 0.95),
        colors=torch.tensor(data["colors"], dtype=torch.float32) / 255.0,
    )
    out = HERE / "garden.mp4"
    writer = imageio_ffmpeg.write_frames(
        str(out), (WIDTH, HEIGHT), fps=FPS, codec="libx264", pix_fmt_out="yuv420p",
        quality=None, macro_block_size=1,
        output_params=["-crf", "18", "-preset", "slow", "-movflags", "+faststart"])
    writer.send(None)
    viewmats = torch.linalg.inv(torch.tensor(c2w, dtype=torch.float32))
    Ks = torch.tensor(K, dtype=torch.float32)[None]
    with torch.no_grad():
        for i in range(FRAMES):
            img, _, _ = rasterize(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"],
                                  viewmats[i : i + 1], Ks, WIDTH, HEIGHT,
                                  backgrounds=torch.full((1, 3), 0.5))
            writer.send((img[0].clamp(0, 1).numpy() * 255).round().astype(np.uint8))
    writer.close()
    (HERE / "garden_cameras.json").write_text(json.dumps({
        "width": WIDTH, "height": HEIGHT, "fps": FPS, "K": K.tolist(),
        "camtoworlds": c2w.round(6).tolist(),
        "source": "Mip-NeRF 360 garden point cloud from gsplat's tests (Apache-2.0)",
    }, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {FRAMES} frames {WIDTH}x{HEIGHT})")


if __name__ == "__main__":
    main()
