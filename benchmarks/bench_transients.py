"""What moves on its own, kept out of static scenes: a pasted sprite, and no harm done.

Two measurements, each run through the whole pipeline (frames, poses, splat) with one
preset (``--preset``, default ``fast``):

1. **Sprite.** ``re10k 0c11dbe781b1c11c_svdxt`` (a static room, the camera walks) with a
   textured 40x40 patch moving on its own path across it (``tests/test_motion.py``'s
   ``sprite_clip``). Runs: the clean clip; the sprite clip as it is ("plain"); with
   ``frames.motion_masks`` ("masked"); with the robust loss too ("masked+robust"). Every
   run is scored on the same pixels: held-out frames, outside the sprite's box grown by
   half its size. Goal: the masked run within 1 dB of the clean clip.
2. **Static scenes.** The four ``re10k *_svdxt`` clips with and without
   ``frames.motion_masks`` (scored as training scores them: the masked run leaves out
   what it masked). Goal: masks under 2% of the picture, held-out PSNR within 0.2 dB.

    python benchmarks/bench_transients.py [--preset fast] [--work DIR] [--only sprite|static]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scoring import finished_trainer, frame_names, held_out_psnr  # noqa: E402
from tests.test_motion import (  # noqa: E402
    RE10K,
    SPRITE_BASE,
    SPRITE_DONOR,
    _encode,
    box_mask,
    read_video,
    sprite_clip,
    textured_patch,
)
from vid3d.config import load_config  # noqa: E402
from vid3d.pipeline import run_pipeline  # noqa: E402
from vid3d.stages.frames import frame_index  # noqa: E402
from vid3d.workspace import Workspace  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RUNS = {
    "clean": [],
    "plain": [],
    "masked": ["frames.motion_masks=true"],
    "masked+robust": ["frames.motion_masks=true", "splat.robust=true"],
}


def reconstruct(video: Path, ws: Workspace, preset: str, overrides: list[str]) -> dict:
    cfg = load_config(preset, ["device=cpu", *overrides])
    outcomes = run_pipeline(ws, cfg, ("frames", "poses", "splat"), video=video)
    return {o.stage: o.metrics for o in outcomes}


def sprite(work: Path, preset: str) -> None:
    base = read_video(DATA / RE10K / SPRITE_BASE)
    patch = textured_patch(read_video(DATA / RE10K / SPRITE_DONOR)[0], 40)
    frames, boxes = sprite_clip(base, patch)
    clips = {"clean": _encode(base, work / "clean.mp4"), "sprite": _encode(frames, work / "sprite.mp4")}
    print(f"{'run':14} {'reg':>6} {'masked':>7} {'PSNR bg':>8} {'PSNR all':>9} {'train PSNR':>10}")
    rows = {}
    for run, overrides in RUNS.items():
        ws = Workspace(work / run)
        m = reconstruct(clips["clean" if run == "clean" else "sprite"], ws, preset, overrides)
        trainer = finished_trainer(ws, load_config(preset, ["device=cpu", *overrides]).splat)
        names = frame_names(trainer)
        h, w = trainer.data.height, trainer.data.width
        s = w / base[0].shape[1]
        use = {}
        for n in names:
            x0, y0, x1, y1 = (int(round(v * s)) for v in boxes[frame_index(n)])
            use[n] = ~box_mask((h, w), (x0, y0, x1, y1), 0.5)
        bg = held_out_psnr(trainer, use)["psnr"]
        every = held_out_psnr(trainer, None)["psnr"]
        masked = m["frames"].get("moving", {}).get("mean", 0.0)
        rows[run] = bg
        print(
            f"{run:14} {m['poses']['registered']:>3}/{m['poses']['total']:<2} {masked:7.3f} {bg:8.2f} "
            f"{every:9.2f} {m['splat']['psnr']:10.2f}",
            flush=True,
        )
    for run in ("plain", "masked", "masked+robust"):
        print(f"{run} - clean on the background: {rows[run] - rows['clean']:+.2f} dB")


def static(work: Path, preset: str) -> None:
    print(f"{'clip':28} {'PSNR':>6} {'masked PSNR':>11} {'delta':>6} {'masked':>7}")
    deltas = []
    for video in sorted((DATA / RE10K).glob("*_svdxt.mp4")):
        plain = reconstruct(video, Workspace(work / "static" / video.stem), preset, [])
        masked = reconstruct(
            video, Workspace(work / "static-masked" / video.stem), preset, ["frames.motion_masks=true"]
        )
        a, b = plain["splat"]["psnr"], masked["splat"]["psnr"]
        deltas.append(b - a)
        print(
            f"{video.stem:28} {a:6.2f} {b:11.2f} {b - a:+6.2f} {masked['frames']['moving']['mean']:7.4f}",
            flush=True,
        )
    print(f"mean delta {np.mean(deltas):+.2f} dB, worst {min(deltas):+.2f} dB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--only", choices=("sprite", "static"), default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vid3d-transients-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "sprite"):
        sprite(work, args.preset)
    if args.only in (None, "static"):
        static(work, args.preset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
