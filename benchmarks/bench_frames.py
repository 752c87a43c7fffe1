"""Benchmark of the frames stage against plain decoding.

For each clip (default: ``edge/drone_with_scene_cut.mp4``, 1280x720 30 fps 10 s,
and ``ai_video/cogvideox_suv_dirt_road.mp4``, 720x480 8 fps 49 frames, from
``../shared/data``), measures, best of ``--repeat`` runs (the machine may be shared):

- ``decode``: PyAV decoding of every frame, no pixel conversion (the floor);
- ``cv2 read``: OpenCV ``VideoCapture.read`` of every frame to BGR (what a plain
  frame dump costs before writing anything);
- ``stage``: :func:`vid3d.stages.frames.run` with the given preset, into a
  temporary workspace (both decoding passes, analysis, selection, JPEG writing);

as frames of the video per second, and the ratio ``stage / decode`` and
``stage / cv2 read`` of the times. Also prints how many frames were kept, how many
decoding passes the stage needed, and its own split of its time.

Usage::

    python benchmarks/bench_frames.py [VIDEO ...] [--repeat 3] [--preset default]
                                      [--set frames.FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2

from vid3d.config import load_config
from vid3d.stages import frames
from vid3d.video.decode import VideoReader
from vid3d.workspace import Workspace

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CLIPS = ["edge/drone_with_scene_cut.mp4", "ai_video/cogvideox_suv_dirt_road.mp4"]


def decode_only(video: Path) -> int:
    """Decode every frame with PyAV (no conversion); return the frame count."""
    n = 0
    with VideoReader(video) as reader:
        for _ in reader.frames():
            n += 1
    return n


def cv2_read(video: Path) -> int:
    """Read every frame as BGR with OpenCV; return the frame count."""
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path, help="videos (default: the shared 720p and 480p clips)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best counts")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    args = ap.parse_args()
    cfg = load_config(args.preset, args.overrides)
    videos = args.videos or [DATA / c for c in CLIPS]

    print(
        f"{'clip':34s} {'size':>9s} {'frames':>6s} {'decode fps':>10s} {'cv2 read fps':>12s} "
        f"{'stage fps':>9s} {'stage/decode':>12s} {'stage/cv2':>9s} {'kept':>5s} {'passes':>6s}  stage split (s)"
    )
    for video in videos:
        t_dec, n = best_time(lambda: decode_only(video), args.repeat)
        t_cv, _ = best_time(lambda: cv2_read(video), args.repeat)

        def stage():
            with tempfile.TemporaryDirectory() as tmp:
                return frames.run(video, Workspace(Path(tmp) / "ws"), cfg)

        t_st, m = best_time(stage, args.repeat)
        split = ", ".join(f"{k} {v:.2f}" for k, v in m["timing"].items() if k != "total")
        print(
            f"{video.name[:34]:34s} {m['width']:>4d}x{m['height']:<4d} {n:>6d} {n / t_dec:>10.0f} "
            f"{n / t_cv:>12.0f} {n / t_st:>9.0f} {t_st / t_dec:>11.2f}x {t_st / t_cv:>8.2f}x "
            f"{m['kept']:>5d} {m['decode_passes']:>6d}  {split}"
        )


if __name__ == "__main__":
    main()
