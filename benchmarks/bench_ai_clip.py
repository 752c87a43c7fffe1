"""A generated clip with and without vid3d's handling of what moves on its own.

Runs the whole pipeline twice on the CogVideoX clip (a car the camera follows down a dirt
road), with the ``ai-video`` preset: once as it is ("handled": motion masks for COLMAP and
training, and whatever else the preset turns on), once with ``frames.motion_masks=false``
and ``splat.robust=false`` ("plain"), so that both have the same frames, size and steps.
Then it scores both on the same pixels and prints them side by side:

- ``static PSNR``: held-out frames, on the pixels outside the handled run's masks (the
  static scene: what a reconstruction can be right about), under the colour correction
  interpolated from the neighbouring training frames, as training reports it;
- ``all PSNR``: held-out frames, every pixel;
- ``car kept``: in the car's hand-annotated boxes (``tests/fixtures``) of the held-out
  frames, the share of pixels the render reproduces (within 0.1 of the frame): a car baked
  into the splats is reproduced, a masked one is not. Its smear is what the orbit shows;
- the poses (frames registered, focal length and field of view) and the wall time.

It writes ``orbits.png`` (4 frames of each run's orbit video, one row each) next to the
workspaces: look at it.

    python benchmarks/bench_ai_clip.py --work /tmp/ai-bench      # re-runs resume
    python benchmarks/bench_ai_clip.py --set splat.schedule_scale=0.25   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scoring import finished_trainer, frame_names, held_out_psnr  # noqa: E402
from vid3d.config import Config, load_config  # noqa: E402
from vid3d.pipeline import run_pipeline  # noqa: E402
from vid3d.stages.frames import frame_index  # noqa: E402
from vid3d.workspace import Workspace  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "ai_video" / "cogvideox_suv_dirt_road.mp4"
BOXES = ROOT / "tests" / "fixtures" / "cogvideox_car_boxes.json"
VARIANTS = {"plain": ["frames.motion_masks=false", "splat.robust=false"], "handled": []}


def config(variant: str, extra: list[str]) -> Config:
    """The ai-video preset with the variant's and the user's overrides."""
    return load_config("ai-video", ["device=cpu", *VARIANTS[variant], *extra])


def run(ws: Workspace, cfg: Config) -> dict:
    """The whole pipeline for one variant; its metrics and stage times."""
    t0 = time.perf_counter()
    outcomes = run_pipeline(ws, cfg, ("frames", "poses", "splat", "render"), video=CLIP)
    m = {o.stage: o.metrics for o in outcomes}
    m["seconds"] = {o.stage: o.seconds for o in outcomes}
    m["wall_s"] = time.perf_counter() - t0
    return m


def score(ws: Workspace, static_masks: Workspace, cfg: Config) -> dict:
    """PSNR on the static pixels and on all, and the car boxes' reproduced share."""
    trainer = finished_trainer(ws, cfg.splat)
    data = trainer.data
    names = frame_names(trainer)
    use = {}
    for name in names:  # the handled run's masks, on this run's frames
        path = static_masks.find_mask(name)
        if path is not None:
            use[name] = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127
    static = held_out_psnr(trainer, use)
    every = held_out_psnr(trainer, None)
    boxes = {int(k): v for k, v in json.loads(BOXES.read_text())["boxes"].items()}
    kept = []
    for i in data.test_ids:
        index = frame_index(names[i])
        if index not in boxes:
            continue
        with torch.no_grad():
            render, _ = trainer.render([i])
        s = data.width / 720
        x0, y0, x1, y1 = (int(round(v * s)) for v in boxes[index])
        target = data.images[i, y0:y1, x0:x1].float() / 255.0
        kept.append(float(((render[0, y0:y1, x0:x1] - target).abs().amax(-1) < 0.1).float().mean()))
    return {
        "static_psnr": static["psnr"],
        "all_psnr": every["psnr"],
        "car_kept": float(np.mean(kept)) if kept else float("nan"),
        "held_out": len(data.test_ids),
    }


def orbit_sheet(workspaces: dict[str, Workspace], out: Path, n: int = 4) -> None:
    """``n`` evenly spaced frames of each run's orbit video, one row per run."""
    rows = []
    for variant, ws in workspaces.items():
        cap = cv2.VideoCapture(str(ws.renders / "orbit.mp4"))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for k in range(n):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(k * total / n))
            ok, img = cap.read()
            if ok:
                frames.append(img)
        cap.release()
        row = np.concatenate(frames, 1)
        cv2.putText(row, variant, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        rows.append(row)
    width = min(r.shape[1] for r in rows)
    cv2.imwrite(str(out), np.concatenate([r[:, :width] for r in rows], 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="extra override for both runs, repeatable")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vid3d-ai-bench-"))
    configs = {variant: config(variant, args.set) for variant in VARIANTS}
    workspaces = {variant: Workspace(work / variant) for variant in VARIANTS}
    results = {variant: run(workspaces[variant], configs[variant]) for variant in VARIANTS}
    rows = {}
    for variant, ws in workspaces.items():
        m = results[variant]
        rows[variant] = {
            **score(ws, workspaces["handled"], configs[variant]),
            "registered": f"{m['poses']['registered']}/{m['poses']['total']}",
            "focal_px": m["poses"]["focal_px"],
            "fov_deg": m["poses"].get("fov_deg"),
            "gaussians": m["splat"]["gaussians"],
            "verdict": m["frames"]["verdict"]["level"],
            "seconds": m["seconds"],
            "wall_s": m["wall_s"],
        }
    print(
        f"{'run':8} {'reg':>6} {'focal':>7} {'FOV':>6} {'static PSNR':>12} {'all PSNR':>9} "
        f"{'car kept':>9} {'gauss':>7} {'frames s':>9} {'poses s':>8} {'splat s':>8} {'wall s':>7}"
    )
    for variant, r in rows.items():
        s = r["seconds"]
        print(
            f"{variant:8} {r['registered']:>6} {r['focal_px']:7.1f} {r['fov_deg'] or float('nan'):6.1f} "
            f"{r['static_psnr']:12.2f} {r['all_psnr']:9.2f} {r['car_kept']:9.3f} {r['gaussians']:>7} "
            f"{s['frames']:9.1f} {s['poses']:8.1f} {s['splat']:8.1f} {r['wall_s']:7.1f}"
        )
    d = rows["handled"]["static_psnr"] - rows["plain"]["static_psnr"]
    print(
        f"handled - plain: {d:+.2f} dB on the static pixels of {rows['handled']['held_out']} held-out frames"
    )
    orbit_sheet(workspaces, work / "orbits.png")
    print(f"orbit frames: {work / 'orbits.png'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
