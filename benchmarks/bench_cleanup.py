"""Floater and outlier cleanup on trained splats: what it removes, what it costs.

On a workspace trained without the splat stage's own cleanup (``splat.cleanup=false``;
``WS``, or without one, ``--video`` (re10k ``0c11dbe781b1c11c_svdxt`` by default) is run
through frames, poses and splat with ``--preset`` into ``--work``, ~5 minutes with
"fast" on a 2-core CPU), prints the Gaussians before and after
:meth:`vid3d.splats.trainer.Trainer.remove_outliers` (the splat stage's cleanup: the
criteria of :func:`vid3d.splats.cleanup.outlier_reasons`, checked on the training views)
and how many each criterion removed (or kept back), the
held-out PSNR before and after (goal: at most 0.1 dB lost), the floater share on the
default orbit before and after (:func:`vid3d.splats.cleanup.floater_share`: the share
of the picture painted by Gaussians nearer than half the depth of the surfaces that the
training views show, reprojected into the orbit's views),
the orbit's coverage before and after (:mod:`vid3d.coverage`: mean and worst frame), the
same for the kind of path ``auto`` picks for the clip (at full size),
and the seconds the cleanup took. When the cleanup polished (trained on after a removal
that cost too much: ``splat.cleanup_polish_steps``), it also prints the uncleaned splats
trained the same number of steps more, the fair comparison.

    python benchmarks/bench_cleanup.py [WS] [--preset fast] [--work DIR] [--video CLIP]
        [--option min_views=3 ...]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scoring import finished_trainer, held_out_psnr  # noqa: E402
from vid3d.auto_path import training_views  # noqa: E402
from vid3d.camera_paths import make_path  # noqa: E402
from vid3d.config import load_config  # noqa: E402
from vid3d.coverage import summarize  # noqa: E402
from vid3d.pipeline import run_pipeline  # noqa: E402
from vid3d.splats.cleanup import REASONS, floater_share, orbit_cameras, surface_points  # noqa: E402
from vid3d.splats.model import load_checkpoint  # noqa: E402
from vid3d.stages.render import render_inputs  # noqa: E402
from vid3d.workspace import Workspace  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "re10k" / "videos" / "0c11dbe781b1c11c_svdxt.mp4"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def parse_options(items: list[str]) -> dict[str, float]:
    """``key=value`` pairs for :func:`vid3d.splats.cleanup.find_outliers` (numbers)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    return out


def workspace(args: argparse.Namespace) -> Workspace:
    """The trained workspace to measure: ``WS``, or the clip trained into ``--work``."""
    if args.ws is not None:
        return Workspace(args.ws)
    work = args.work or Path(tempfile.mkdtemp(prefix="vid3d-cleanup-"))
    ws = Workspace(work / args.video.stem)
    t0 = time.perf_counter()
    cfg = load_config(args.preset, ["device=cpu", "splat.cleanup=false"])
    run_pipeline(ws, cfg, ("frames", "poses", "splat"), video=args.video)
    print(f"trained {ws.root} with the {args.preset} preset in {time.perf_counter() - t0:.0f} s")
    return ws


def orbit_coverage(splats: dict, scene, orbit) -> dict:
    """Mean and worst-frame coverage of ``orbit`` (training frame) by the scene's views."""
    cov = training_views(render_inputs(splats), scene, np.eye(4))
    return summarize(cov.of(orbit, len(orbit)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ws", nargs="?", type=Path, default=None, help="a trained workspace")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--video", type=Path, default=CLIP, help="the clip to train when no WS is given")
    ap.add_argument("--option", action="append", default=[], help="find_outliers option, key=value")
    args = ap.parse_args()
    ws = workspace(args)
    cfg = load_config(args.preset, ["device=cpu", "splat.cleanup=false"])
    trainer = finished_trainer(ws, cfg.splat)
    if load_checkpoint(ws.ckpt, "cpu").state.get("config_hash", "").split("-")[0] != cfg.section_hash(
        "splat"
    ):
        print("note: the workspace was not trained with splat.cleanup=false; it may be cleaned already")
    scene = trainer.data.scene  # the training frame
    splats = {k: v.detach() for k, v in trainer.splats.items()}
    orbit = orbit_cameras(scene.camtoworlds, scene.Ks, scene.width, scene.height, scene.points)
    psnr_before = held_out_psnr(trainer, None)["psnr"]
    # the reference: the surfaces the training views show, from the splats as trained
    surface = surface_points(splats, scene.camtoworlds, scene.Ks, scene.width, scene.height)
    share_before = floater_share(splats, orbit, surface)
    cov_before = orbit_coverage(splats, scene, orbit)
    # the kind of path the render stage's auto path picks for these cameras, at full size
    auto = make_path(
        "auto",
        scene.camtoworlds,
        scene.Ks,
        scene.width,
        scene.height,
        orbit.width,
        orbit.height,
        len(orbit),
        points=scene.points,
    )
    auto_before = orbit_coverage(splats, scene, auto)

    # the splat stage's own cleanup: outlier_reasons, checked on the training views
    report = trainer.remove_outliers(
        polish_steps=trainer.cfg.cleanup_polish_steps, **parse_options(args.option)
    )
    kept = {k: v.detach() for k, v in trainer.splats.items()}
    psnr_after = held_out_psnr(trainer, None)["psnr"]
    share_after = floater_share(kept, orbit, surface)
    cov_after = orbit_coverage(kept, scene, orbit)
    auto_after = orbit_coverage(kept, scene, auto)

    print(f"{ws.root}: {len(scene)} training views {scene.width}x{scene.height}, {cpu_model()}")
    print(f"options: {parse_options(args.option) or 'defaults'}")
    print(f"Gaussians          {report['before']:>9} -> {report['after']:<9}")
    for reason in REASONS:
        back = report["kept_back"].get(reason, 0)
        print(
            f"  removed {reason:10} {report['removed'][reason]:>7}" + (f" ({back} kept back)" if back else "")
        )
    print(f"held-out PSNR      {psnr_before:9.3f} -> {psnr_after:.3f} dB ({psnr_after - psnr_before:+.3f})")
    print(f"floater share      {share_before:9.4f} -> {share_after:.4f} ({len(orbit)} orbit views)")
    print(
        f"orbit coverage     {cov_before['mean']:9.4f} -> {cov_after['mean']:.4f} mean, "
        f"{cov_before['worst']:.4f} -> {cov_after['worst']:.4f} worst frame"
    )
    print(
        f"{auto.name + ' coverage':18} {auto_before['mean']:9.4f} -> {auto_after['mean']:.4f} mean, "
        f"{auto_before['worst']:.4f} -> {auto_after['worst']:.4f} worst frame (auto's kind, full size)"
    )
    print(f"cleanup seconds    {report['seconds']:9.2f}")
    if report["polish_steps"]:
        # the fair baseline: the same extra steps without the cleanup
        n = report["polish_steps"]
        plain = finished_trainer(ws, cfg.splat)
        for _ in range(n):
            plain.step()
        share = floater_share({k: v.detach() for k, v in plain.splats.items()}, orbit, surface)
        print(f"polished           {n} steps after the removal; without the cleanup, {n} more steps give")
        print(
            f"                   held-out PSNR {held_out_psnr(plain, None)['psnr']:.3f} dB, floater share {share:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
