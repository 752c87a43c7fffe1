"""Reconstruction quality and training speed on the shared clips.

Runs the whole pipeline (frames, poses, splat; no render) on the 25-frame RealEstate10K
clips and the CogVideoX clip, and prints, per clip and preset: frames registered,
held-out PSNR and SSIM (every 8th frame held out, see vid3d.splats.trainer.held_out_ids),
Gaussians, steps, training steps per second, and wall time per stage. A summary line gives
the mean PSNR per preset.

PSNR and SSIM score each held-out frame against the render under the colour correction
interpolated from its neighbouring training frames (the clip's auto exposure at that
moment, predicted without looking at the frame); "raw" is the PSNR of the uncorrected
render, as novel views come out.

    python benchmarks/bench_quality.py                      # default preset, all clips
    python benchmarks/bench_quality.py --presets fast,default --clips 0bf152ef84195293_svdxt
    python benchmarks/bench_quality.py --json results.json

Workspaces go to a temporary folder (or --work DIR, which also makes re-runs resume).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vid3d.config import load_config
from vid3d.errors import Vid3dError
from vid3d.pipeline import run_pipeline
from vid3d.workspace import Workspace

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def default_clips() -> list[Path]:
    clips = sorted((DATA / "re10k" / "videos").glob("*_svdxt.mp4"))
    return clips + [DATA / "ai_video" / "cogvideox_suv_dirt_road.mp4"]


def run_one(video: Path, preset: str, work: Path, overrides: list[str]) -> dict:
    ws = Workspace(work / preset / video.stem)
    cfg = load_config(preset, ["device=cpu", *overrides])
    t0 = time.perf_counter()
    row = {"clip": video.stem, "preset": preset}
    try:
        outcomes = run_pipeline(ws, cfg, ("frames", "poses", "splat"), video=video)
    except Vid3dError as e:
        return {**row, "error": e.one_line(), "wall_s": time.perf_counter() - t0}
    m = {o.stage: o.metrics for o in outcomes}
    s = {o.stage: o.seconds for o in outcomes}
    return {
        **row,
        "frames": m["frames"].get("kept"),
        "registered": f"{m['poses'].get('registered')}/{m['poses'].get('total')}",
        "psnr": m["splat"]["psnr"],
        "ssim": m["splat"]["ssim"],
        "psnr_raw": m["splat"].get("psnr_raw"),
        "psnr_initial": m["splat"].get("psnr_initial"),
        "gaussians": m["splat"]["gaussians"],
        "steps": m["splat"]["steps"],
        "steps_per_s": m["splat"].get("steps_per_second"),
        "size": f"{m['splat']['width']}x{m['splat']['height']}",
        "poses_s": s["poses"],
        "splat_s": s["splat"],
        "wall_s": time.perf_counter() - t0,
        "psnr_per_frame": m["splat"].get("psnr_per_frame"),
        "history": m["splat"].get("history"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="default")
    ap.add_argument("--clips", default="", help="comma-separated clip names (default: all)")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="extra override, repeatable")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    clips = default_clips()
    if args.clips:
        wanted = set(args.clips.split(","))
        clips = [c for c in clips if c.stem in wanted]
    work = args.work or Path(tempfile.mkdtemp(prefix="vid3d-bench-"))
    rows = []
    header = (
        f"{'clip':34} {'preset':8} {'frames':>6} {'reg':>6} {'PSNR':>6} {'raw':>6} {'SSIM':>6} "
        f"{'init':>6} {'gauss':>7} {'steps':>6} {'it/s':>6} {'size':>8} {'poses s':>8} "
        f"{'splat s':>8} {'wall s':>7}"
    )
    print(header, flush=True)
    for preset in args.presets.split(","):
        for clip in clips:
            r = run_one(clip, preset, work, args.set)
            rows.append(r)
            if "error" in r:
                print(f"{r['clip']:34} {preset:8} error: {r['error']}", flush=True)
                continue
            print(
                f"{r['clip']:34} {preset:8} {r['frames']:>6} {r['registered']:>6} {r['psnr']:6.2f} "
                f"{r['psnr_raw'] or float('nan'):6.2f} {r['ssim']:6.3f} {r['psnr_initial'] or float('nan'):6.2f} {r['gaussians']:>7} "
                f"{r['steps']:>6} {r['steps_per_s'] or 0:6.1f} {r['size']:>8} {r['poses_s']:8.1f} "
                f"{r['splat_s']:8.1f} {r['wall_s']:7.1f}",
                flush=True,
            )
    for preset in args.presets.split(","):
        ok = [r for r in rows if r["preset"] == preset and "error" not in r]
        re10k = [r["psnr"] for r in ok if not r["clip"].startswith("cogvideox")]
        re10k_raw = [r["psnr_raw"] for r in ok if not r["clip"].startswith("cogvideox")]
        failed = sum(1 for r in rows if r["preset"] == preset and "error" in r)
        if ok:
            print(
                f"summary {preset}: mean held-out PSNR {np.mean([r['psnr'] for r in ok]):.2f} dB over "
                f"{len(ok)} clips (re10k only: {np.mean(re10k) if re10k else float('nan'):.2f} dB, "
                f"uncorrected {np.mean(re10k_raw) if re10k else float('nan'):.2f} dB), "
                f"mean SSIM {np.mean([r['ssim'] for r in ok]):.3f}, slowest clip "
                f"{max(r['wall_s'] for r in ok):.0f} s, {failed} failed",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
