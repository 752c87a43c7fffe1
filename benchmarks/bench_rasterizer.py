"""Speed and memory of the CPU rasterizer backends: native kernel vs pure PyTorch.

Run ``python benchmarks/bench_rasterizer.py`` (``--threads 1`` for a per-core
comparison that stays fair on a busy machine: with two threads, eager torch's
many small OpenMP regions slow down badly when other processes compete for the
cores, the two numba kernels much less). Every (scene, backend) case runs
in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its own.
A case times one full training-style step: ``rasterize()`` (projection, SH
degree 3, tile lists, compositing) forward plus ``backward()`` of a weighted
sum of the image and alpha, as the median of a few repetitions after one
warm-up. Subprocesses run with ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=100000000000`` (glibc keeps freed memory; eager torch
autograd is ~3x slower without it on small machines) unless
``--system-malloc`` is given.

Scenes: random Gaussians spread over the view frustum at depths 2 to 8, with
footprints of one to tens of pixels (log-uniform 2D sigma of 0.7 to 7 px,
anisotropic, random rotations) and mixed opacities; and the garden scene of
gsplat's test data (``/work/shared/data/gsplat/test_garden.npz``, first
camera, all 138,766 Gaussians, isotropic scale 0.01, opacity 0.5).

Measured on the 2-core development machine (Intel Xeon, AVX-512, torch
2.13.0+cpu, numba 0.68.1, malloc variables set), 2026-11-23, load average 2.8
before and 2.0 after (the machine is shared; in busy periods every figure was
up to 10x worse, the torch ones more)::

    scene           isects      native ms              torch ms      speed-up   native MB    torch MB
    10k 256x256      43124  56 / 55 [112]      697 / 695 [1390] 12.5x / 12.7x    386 (93)   731 (439)
    50k 256x256     216859 121 / 119 [241]    4022 / 3886 [7942] 33.2x / 32.6x   458 (147) 1509 (1198)
    10k 512x512      43887  58 / 57 [118]      697 / 680 [1390] 12.0x / 11.9x   398 (102)   982 (685)
    50k 512x512     220378 254 / 252 [508]    2984 / 2924 [5890] 11.7x / 11.6x   473 (162) 1507 (1196)
    garden 648x420  432854 351 / 348 [696]   9720 / 9513 [19055] 27.7x / 27.4x   598 (273) 1783 (1458)

With ``--threads 1`` (native ms / torch ms, speed-up): 96 / 1191 (12.4x),
212 / 6828 (32.2x), 103 / 1298 (12.6x), 476 / 5684 (11.9x), 705 / 16058
(22.8x). The torch reference checkpoints its tile batches; without that (plain
autograd keeping every intermediate) it took 523 ms at 10k 256x256 (9.3x the
native time), 552 ms at 10k 512x512 (9.5x) and 2.1 to 5.2 s with a 9.5 GB peak
at 50k 512x512 (8.4x or more).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

GARDEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsplat" / "test_garden.npz"
CASES = {
    "10k 256x256": (10_000, 256, 256),
    "50k 256x256": (50_000, 256, 256),
    "10k 512x512": (10_000, 512, 512),
    "50k 512x512": (50_000, 512, 512),
    "garden 648x420": None,
}
REPS = {"cpu": 7, "torch": 2}


def random_scene(n: int, width: int, height: int, seed: int = 0) -> dict:
    """Gaussians in front of one pinhole camera, looking like a training scene.

    Args:
        n: Number of Gaussians.
        width: Image width.
        height: Image height.
        seed: Random seed.

    Returns:
        Keyword arguments of ``rasterize`` (SH degree 3 colours).
    """
    g = torch.Generator().manual_seed(seed)
    f = float(max(width, height))
    depth = 2.0 + 6.0 * torch.rand(n, generator=g)  # [N]
    size = torch.tensor([width, height])
    pix = torch.rand(n, 2, generator=g) * size * 1.1 - 0.05 * size  # [N, 2] pixel positions
    means = torch.stack(
        [(pix[:, 0] - width / 2) / f * depth, (pix[:, 1] - height / 2) / f * depth, depth], dim=-1
    )  # [N, 3]
    sigma_px = torch.exp(torch.empty(n).uniform_(-0.35, 1.95, generator=g))  # 0.7 to 7 px
    aniso = torch.exp(torch.empty(n, 3).uniform_(-0.4, 0.4, generator=g))  # [N, 3]
    scales = (sigma_px * depth / f)[:, None] * aniso  # [N, 3]
    sh = torch.randn(n, 16, 3, generator=g) * 0.1
    sh[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / 0.28209479
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return dict(
        means=means,
        quats=torch.randn(n, 4, generator=g),
        scales=scales,
        opacities=torch.sigmoid(torch.randn(n, generator=g) * 2.0),
        colors=sh,
        viewmats=torch.eye(4)[None],
        Ks=K[None],
        width=width,
        height=height,
        sh_degree=3,
    )


def garden_scene() -> dict:
    """The garden point cloud of gsplat's tests as isotropic Gaussians, first camera."""
    import numpy as np

    data = np.load(GARDEN)
    means = torch.from_numpy(data["means3d"])  # [N, 3]
    n = len(means)
    sh = torch.zeros(n, 16, 3)
    sh[:, 0] = (torch.from_numpy(data["colors"]).float() / 255.0 - 0.5) / 0.28209479
    return dict(
        means=means,
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
        scales=torch.full((n, 3), 0.01),
        opacities=torch.full((n,), 0.5),
        colors=sh,
        viewmats=torch.from_numpy(data["viewmats"][:1]),
        Ks=torch.from_numpy(data["Ks"][:1]),
        width=int(data["width"]),
        height=int(data["height"]),
        sh_degree=3,
    )


def run_case(name: str, backend: str) -> dict:
    """Time forward+backward of one scene with one backend (in this process)."""
    from vid3d.splats.rasterize import rasterize

    scene = garden_scene() if CASES[name] is None else random_scene(*CASES[name])
    names = ("means", "quats", "scales", "opacities", "colors")
    params = {k: scene.pop(k).requires_grad_() for k in names}
    C, H, W = 1, scene["height"], scene["width"]
    weights = torch.rand(C, H, W, 3, generator=torch.Generator().manual_seed(1))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, cpu_times, n_isects = [], [], 0
    for rep in range(REPS[backend] + 1):
        for p in params.values():
            p.grad = None
        start, cpu_start = time.perf_counter(), time.process_time()
        img, alpha, info = rasterize(
            params["means"],
            params["quats"],
            params["scales"],
            params["opacities"],
            params["colors"],
            scene["viewmats"],
            scene["Ks"],
            W,
            H,
            sh_degree=scene["sh_degree"],
            backend=backend,
        )
        ((img * weights).sum() + alpha.sum()).backward()
        if rep > 0:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        n_isects = len(info["flatten_ids"])
    return {
        "ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "cpu_ms": 1000 * statistics.median(cpu_times),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "base_mb": rss_before,
        "n_isects": n_isects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc")
    parser.add_argument("--threads", type=int, help="torch and numba threads (default: all cores)")
    parser.add_argument("--only", nargs="*", default=list(CASES), help="case names to run")
    parser.add_argument("--native-only", action="store_true", help="skip the torch reference")
    args = parser.parse_args()
    if args.case:  # child process: one case
        print(json.dumps(run_case(args.case, args.backend)))
        return

    env = dict(os.environ)
    if not args.system_malloc:
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_="100000000000")
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
    malloc = "glibc default" if args.system_malloc else "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1e11"
    print(f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, malloc: {malloc}")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(
        "ms: wall time of forward+backward of rasterize(), SH degree 3, after a warm-up: "
        "median / min of the repetitions, [median process CPU time, all threads]; "
        "speed-up: torch / native, of medians and of minima; "
        "MB: peak RSS of the case's process (growth over the RSS before the first step)"
    )
    header = (
        f"{'scene':<15}{'isects':>7}{'native ms':>22}{'torch ms':>25}{'speed-up':>14}"
        f"{'native MB':>12}{'torch MB':>12}"
    )
    print(header)
    print("-" * len(header))
    for name in args.only:
        if CASES[name] is None and not GARDEN.exists():
            print(f"{name:<16} skipped: {GARDEN} not found")
            continue
        res = {}
        for backend in ("cpu",) if args.native_only else ("cpu", "torch"):
            out = subprocess.run(
                [sys.executable, __file__, "--case", name, "--backend", backend],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            res[backend] = json.loads(out.stdout.strip().splitlines()[-1])
        ms = {b: f"{r['ms']:.0f} / {r['min_ms']:.0f} [{r['cpu_ms']:.0f}]" for b, r in res.items()}
        mem = {b: f"{r['peak_mb']:.0f} ({r['peak_mb'] - r['base_mb']:.0f})" for b, r in res.items()}
        ratio = "-"
        if "torch" in res:
            ratio = (
                f"{res['torch']['ms'] / res['cpu']['ms']:.1f}x / "
                f"{res['torch']['min_ms'] / res['cpu']['min_ms']:.1f}x"
            )
        print(
            f"{name:<15}{res['cpu']['n_isects']:>7}{ms['cpu']:>22}{ms.get('torch', '-'):>25}"
            f"{ratio:>14}{mem['cpu']:>12}{mem.get('torch', '-'):>12}",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
