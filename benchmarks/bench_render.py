"""Render-stage speed: frames per second of rendering and of H.264 encoding.

Gaussians are made from the Mip-NeRF 360 garden point cloud (138,766 points, about
the size of a default-preset scene) with ``init_splats`` and rendered along an orbit
of its cameras, one frame per rasterizer call, as ``vid3d render`` does. Encoding
is timed separately (x264 ``medium``, crf 18), on the rendered frames repeated.

Usage::

    python benchmarks/bench_render.py                      # 720p and 1080p, all points
    python benchmarks/bench_render.py --frames 3 --resolutions 360p 720p 1080p
    python benchmarks/bench_render.py --gaussians 300000   # points repeated with jitter

Reads ``../shared/data/gsplat/test_garden.npz``; writes nothing outside a
temporary folder.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vid3d.camera_paths import make_path
from vid3d.device import resolve_device
from vid3d.splats.model import init_splats
from vid3d.splats.rasterize import resolve_backend
from vid3d.stages.render import render_frames
from vid3d.video.encode import VideoWriter, output_size

GARDEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsplat" / "test_garden.npz"


def garden_splats(n: int | None, sh_degree: int):
    d = np.load(GARDEN)
    points, colors = d["means3d"].astype(np.float64), d["colors"]
    if n is not None and n != len(points):
        rng = np.random.default_rng(0)
        idx = rng.choice(len(points), n, replace=n > len(points))
        jitter = rng.normal(scale=0.005, size=(n, 3)) * (np.arange(n) >= len(points))[:, None]
        points, colors = points[idx] + jitter, colors[idx]
    splats = {k: v.detach() for k, v in init_splats(points, colors, sh_degree, 0.5, 1.0).items()}
    # Some view dependence so that SH evaluation costs what it costs after training.
    if sh_degree > 0:
        splats["shN"] = torch.randn_like(splats["shN"]) * 0.05
    c2w = np.linalg.inv(d["viewmats"].astype(np.float64))
    return splats, points, c2w, d["Ks"].astype(np.float64), int(d["width"]), int(d["height"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resolutions", nargs="+", default=["720p", "1080p"])
    ap.add_argument("--frames", type=int, default=4, help="frames rendered per resolution")
    ap.add_argument("--gaussians", type=int, default=None, help="default: the 138,766 points")
    ap.add_argument("--sh-degree", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--encode-frames", type=int, default=60, help="frames encoded per resolution")
    args = ap.parse_args()

    device = resolve_device(args.device)
    backend = resolve_backend(args.backend, device)
    splats, points, c2w, Ks, w, h = garden_splats(args.gaussians, args.sh_degree)
    n = len(splats["means"])
    print(
        f"vid3d render benchmark: {n:,} Gaussians, SH degree {args.sh_degree}, device {device}, "
        f"backend {backend}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )

    # Warm-up (kernel compilation, caches) on a tiny frame.
    tiny = make_path("orbit", c2w, Ks, w, h, 64, 36, 1, points=points)
    t = time.perf_counter()
    next(render_frames(splats, args.sh_degree, tiny, device=device, backend=backend))
    print(f"warm-up (first call): {time.perf_counter() - t:.2f} s")

    print(f"{'resolution':>10} {'size':>10} {'render fps':>11} {'s/frame':>8} {'encode fps':>11}")
    for res in args.resolutions:
        W, H = output_size(res, "16:9")
        path = make_path("orbit", c2w, Ks, w, h, W, H, args.frames, points=points)
        frames = []
        t = time.perf_counter()
        for f in render_frames(splats, args.sh_degree, path, device=device, backend=backend):
            frames.append(f)
        render_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            with VideoWriter(Path(tmp) / "bench.mp4", W, H, fps=30, crf=18, preset="medium") as wr:
                for i in range(args.encode_frames):
                    wr.write(frames[i % len(frames)])
            encode_s = time.perf_counter() - t
        print(
            f"{res:>10} {f'{W}x{H}':>10} {args.frames / render_s:>11.3f} "
            f"{render_s / args.frames:>8.2f} {args.encode_frames / encode_s:>11.1f}"
        )


if __name__ == "__main__":
    main()
