"""Benchmark of the moving-subject masks (:mod:`vid3d.video.motion`) on real clips.

Clips (from ``../shared/data``):

- ``ai_video/cogvideox_suv_dirt_road.mp4``: the camera follows a car (49 frames,
  720x480); the car's box is annotated by hand in every 4th frame;
- the four ``re10k/videos/*_svdxt.mp4`` walkthroughs (25 frames, 576x320): static rooms;
- ``sprite``: ``0c11dbe781b1c11c_svdxt.mp4`` with a textured 40x40 patch moving on its
  own path across it;
- ``no parallax``: a crop window sliding and zooming over one still photo (20 frames);
- ``edge/static_camera_tree.avi``: a fixed camera on a tree; a hand passes from
  frame ~53 on.

Per clip it prints the mean masked share of the picture, the recall of the subject
(car: share of the annotated frames where it is found, i.e. >= 50% of the box covered
and >= 70% of the mask within the box grown by 15%; sprite: share of the frames with
>= 80% of the sprite masked), the parallax score (share of the flow matches F explains
and a homography does not: about 0 without parallax), the rotation-only verdict and
the seconds per frame (best of ``--repeat`` runs). It writes contact sheets (mask in
red, hand boxes in green) to ``OUT/motion_sheet.png`` (CogVideoX),
``OUT/motion_sprite.png`` and ``OUT/motion_tree.png``.

Usage::

    python benchmarks/bench_motion.py [OUT] [--repeat 1] [--set FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_motion import (  # noqa: E402
    CAR,
    PHOTO,
    RE10K,
    SPRITE_BASE,
    SPRITE_DONOR,
    box_mask,
    box_scores,
    car_boxes,
    found,
    iou,
    read_video,
    sliding_crop_clip,
    sprite_clip,
    textured_patch,
)
from vid3d.video.motion import MotionConfig, clip_parallax, moving_masks, parallax_score  # noqa: E402

DATA = REPO.parent / "shared" / "data"
WALKS = [
    "0bf152ef84195293_svdxt.mp4",
    "0c11dbe781b1c11c_svdxt.mp4",
    "0c9b371cc6225682_svdxt.mp4",
    "0f47577ab3441480_svdxt.mp4",
]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def contact_sheet(
    frames: list[np.ndarray],
    masks: list[np.ndarray],
    indices: list[int],
    path: Path,
    boxes: dict[int, tuple[int, int, int, int]] | None = None,
    cols: int = 5,
    width: int = 360,
) -> None:
    """Frames with the mask tinted red and boxes in green, ``cols`` per row, as a PNG."""
    tiles = []
    for i in indices:
        f = frames[i].copy()
        m = masks[i]
        f[m] = (0.5 * f[m] + np.array([127, 0, 0])).astype(np.uint8)
        if boxes and i in boxes:
            x0, y0, x1, y1 = boxes[i]
            cv2.rectangle(f, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), 2)
        h, w = f.shape[:2]
        f = cv2.resize(f, (width, round(width * h / w)), interpolation=cv2.INTER_AREA)
        cv2.putText(f, str(i), (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
        tiles.append(f)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[k : k + cols]) for k in range(0, len(tiles), cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def run(frames: list[np.ndarray], cfg: MotionConfig, repeat: int):
    """The fastest of ``repeat`` mask runs, and the frames stage's parallax check."""
    best = None
    for _ in range(repeat):
        r = moving_masks(frames, config=cfg)
        if best is None or r.seconds < best.seconds:
            best = r
    return best, clip_parallax(frames, config=cfg)


def row(name: str, r, par, recall: str) -> None:
    n = len(r.masks)
    print(
        f"{name:30s} {n:4d} {np.mean(r.fraction):8.2%} {recall:>22s} {parallax_score(r):9.2f} "
        f"{'yes' if r.clip_rotation_only else 'no':>9s} {r.seconds / n:8.3f} "
        f"{par.score:8.2f} {par.rotation_only:8.0%} {par.seconds:7.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "out", nargs="?", default="/tmp", type=Path, help="folder for the contact sheets (default /tmp)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per clip; the fastest counts")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a MotionConfig field, e.g. --set threshold=5",
    )
    args = ap.parse_args()
    cfg = MotionConfig()
    for item in args.set:
        key, _, value = item.partition("=")
        cfg = dataclasses.replace(cfg, **{key: type(getattr(cfg, key))(value)})

    print(f"CPU: {cpu_name()}; OpenCV {cv2.__version__}; threads {cv2.getNumThreads()}")
    print(f"config: {cfg}")
    print(
        f"{'clip':30s} {'n':>4s} {'masked':>8s} {'recall':>22s} {'parallax':>9s} "
        f"{'rot-only':>9s} {'s/frame':>8s} {'check':>8s} {'rot pairs':>8s} {'check s':>7s}"
    )

    # the car the camera follows
    frames = read_video(DATA / CAR)
    r, par = run(frames, cfg, args.repeat)
    boxes = car_boxes()
    hits = [found(r.masks[i], b) for i, b in boxes.items()]
    cover = np.mean([box_scores(r.masks[i], b)[0] for i, b in boxes.items()])
    flicker = np.median([iou(a, b) for a, b in zip(r.masks, r.masks[1:])])
    row("cogvideox car", r, par, f"{sum(hits)}/{len(hits)} (box {cover:.0%})")
    print(
        f"{'':30s} per annotated frame (covered/inside): "
        + " ".join(
            f"{i}:{c:.2f}/{s:.2f}" for i, (c, s) in ((i, box_scores(r.masks[i], b)) for i, b in boxes.items())
        )
    )
    print(f"{'':30s} median IoU of consecutive masks {flicker:.2f}")
    contact_sheet(frames, r.masks, list(range(0, 49, 3)), args.out / "motion_sheet.png", boxes)

    # static walkthroughs
    for name in WALKS:
        row(name, *run(read_video(DATA / RE10K / name), cfg, args.repeat), "-")

    # a sprite moving on its own path
    base = read_video(DATA / RE10K / SPRITE_BASE)
    patch = textured_patch(read_video(DATA / RE10K / SPRITE_DONOR)[0], 40)
    frames, sboxes = sprite_clip(base, patch)
    r, par = run(frames, cfg, args.repeat)
    rec = [float(m[box_mask(m.shape, b)].mean()) for m, b in zip(r.masks, sboxes)]
    outside = np.mean([(m & ~box_mask(m.shape, b, 0.5)).mean() for m, b in zip(r.masks, sboxes)])
    row(
        "sprite on " + SPRITE_BASE[:8],
        r,
        par,
        f"{np.mean([x >= 0.8 for x in rec]):.0%} (mean {np.mean(rec):.0%})",
    )
    print(f"{'':30s} masked away from the sprite: {outside:.2%}")
    contact_sheet(
        frames,
        r.masks,
        list(range(0, len(frames), 3)),
        args.out / "motion_sprite.png",
        dict(enumerate(sboxes)),
    )

    # no parallax: a crop window over one still photo
    name, index = PHOTO
    r, par = run(sliding_crop_clip(read_video(DATA / RE10K / name)[index]), cfg, args.repeat)
    row(f"no parallax ({name[:8]} #{index})", r, par, "-")

    # a fixed camera; a hand passes at the end
    frames = read_video(DATA / "edge" / "static_camera_tree.avi")
    r, par = run(frames, cfg, args.repeat)
    row("static camera tree", r, par, f"{np.mean(r.fraction[:50]):.1%} / {np.mean(r.fraction[54:]):.1%}")
    print(f"{'':30s} (recall column: masked share before / after the hand enters)")
    contact_sheet(frames, r.masks, list(range(0, len(frames), 5)), args.out / "motion_tree.png")
    print(
        f"contact sheets: {args.out / 'motion_sheet.png'}, {args.out / 'motion_sprite.png'}, "
        f"{args.out / 'motion_tree.png'}"
    )


if __name__ == "__main__":
    main()
