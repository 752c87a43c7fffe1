"""Benchmark of the poses stage against RealEstate10K reference cameras.

For every clip in ``../shared/data/re10k/videos`` (every frame, decoded with
OpenCV to ``<work>/<clip>/images/frame_00000.jpg ...``), runs
:func:`vid3d.stages.poses.run` and compares the registered cameras with
``../shared/data/re10k/poses/<clip>.txt``:

- ``reg``: registered frames / frames.
- ``rot mean``, ``rot max``: relative rotation error in degrees over ALL pairs of
  registered frames, ``angle(R_est_j R_est_i^T (R_gt_j R_gt_i^T)^T)``.
- ``traj %``: mean camera-centre error after a Sim(3) (Umeyama) alignment of the
  estimated to the reference centres, as a percentage of the reference
  trajectory length (sum of consecutive centre distances).
- ``f err %``: error of the focal lengths found against the reference (fx, fy in
  pixels; the 384x256 clips have non-square pixels, fy/fx = 1.19).

Usage::

    python benchmarks/bench_poses.py [--work DIR] [--clips ID ...] [--set poses.FIELD=VALUE ...]

Prints a table and a summary line; exits 1 when the target (every frame
registered, mean rotation error under 1 degree on every clip) is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from vid3d.config import load_config
from vid3d.errors import Vid3dError
from vid3d.sfm import load_scene
from vid3d.stages import poses
from vid3d.workspace import Workspace

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "re10k"


def decode_all(video: Path, out: Path) -> int:
    """Write every frame of ``video`` to ``out/frame_00000.jpg`` ... (JPEG quality 95)."""
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.imwrite(str(out / f"frame_{i:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        i += 1
    cap.release()
    return i


def load_reference(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reference cameras of a clip.

    Returns:
        ``intrinsics [N, 4]`` (fx, fy, cx, cy normalised by width/height) and
        ``w2c [N, 4, 4]`` world-to-camera in OpenCV axes.
    """
    rows = [list(map(float, line.split())) for line in path.read_text().splitlines()[1:] if line.strip()]
    intr = np.array([r[1:5] for r in rows])
    w2c = np.tile(np.eye(4), (len(rows), 1, 1))
    w2c[:, :3, :4] = np.array([r[7:19] for r in rows]).reshape(-1, 3, 4)
    return intr, w2c


def rotation_errors(w2c_est: np.ndarray, w2c_ref: np.ndarray) -> np.ndarray:
    """Relative rotation errors in degrees over all pairs ``i < j`` of cameras [N, 4, 4]."""
    R, G = w2c_est[:, :3, :3], w2c_ref[:, :3, :3]
    errs = []
    for i in range(len(R)):
        for j in range(i + 1, len(R)):
            d = (R[j] @ R[i].T) @ (G[j] @ G[i].T).T
            errs.append(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1.0, 1.0))))
    return np.array(errs) if errs else np.zeros(1)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``|s R src + t - dst|`` for points [N, 3]."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(xd.T @ xs / len(src))
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var) if var > 0 else 1.0
    return s, R, mu_d - s * R @ mu_s


def trajectory_error(c2w_est: np.ndarray, c2w_ref: np.ndarray) -> float:
    """Mean centre error after Sim(3) alignment, in percent of the reference path length."""
    a, b = c2w_est[:, :3, 3], c2w_ref[:, :3, 3]
    if len(a) < 3:
        return float("nan")
    s, R, t = umeyama(a, b)
    aligned = s * a @ R.T + t
    length = np.linalg.norm(np.diff(b, axis=0), axis=1).sum()
    return float(100 * np.linalg.norm(aligned - b, axis=1).mean() / max(length, 1e-12))


def bench_clip(clip: str, work: Path, overrides: list[str]) -> dict:
    """Run the poses stage on one clip and compare it with the reference."""
    ws = Workspace(work / clip)
    if not ws.images.is_dir() or not any(ws.images.iterdir()):
        decode_all(DATA / "videos" / f"{clip}.mp4", ws.images)
    cfg = load_config("default", overrides)
    names = poses.list_images(ws)
    intr, ref = load_reference(DATA / "poses" / f"{clip}.txt")
    row = {"clip": clip, "frames": len(names)}
    t0 = time.perf_counter()
    try:
        m = poses.run(ws, cfg)
    except Vid3dError as e:
        row.update(error=e.one_line(), seconds=time.perf_counter() - t0, registered=0)
        return row
    row["seconds"] = time.perf_counter() - t0
    scene = load_scene(ws)
    idx = [names.index(n) for n in scene.names]
    w2c = np.linalg.inv(scene.camtoworlds)
    rot = rotation_errors(w2c, ref[idx])
    fx_ref, fy_ref = intr[0, 0] * m["width"], intr[0, 1] * m["height"]
    fx, fy = m["focal_xy_px"]
    row.update(
        registered=m["registered"],
        rot_mean=float(rot.mean()),
        rot_max=float(rot.max()),
        traj=trajectory_error(scene.camtoworlds, np.linalg.inv(ref[idx])),
        f_err=100 * max(abs(fx / fx_ref - 1), abs(fy / fy_ref - 1)),
        model=m["camera_model"],
        attempts=len(m["attempts"]),
        reproj=m["mean_reprojection_error"],
        timings=m["timings"],
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="workspaces folder (default: a temporary one)")
    ap.add_argument("--clips", nargs="*", default=None, help="clip ids (default: all)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="poses.FIELD=VALUE")
    args = ap.parse_args(argv)
    clips = args.clips or sorted(p.stem for p in (DATA / "videos").glob("*.mp4"))
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_poses_")
        args.work = Path(tmp.name)
    header = (
        f"{'clip':<24} {'reg':>6} {'rot mean':>8} {'rot max':>8} {'traj %':>7} {'f err %':>7} "
        f"{'model':<14} {'att':>3} {'reproj':>6} {'extract':>7} {'match':>6} {'calib':>6} {'map':>6} {'total s':>7}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for clip in clips:
        r = bench_clip(clip, args.work, args.overrides)
        rows.append(r)
        if "error" in r:
            print(f"{clip:<24} {0:>3}/{r['frames']:<2} FAILED: {r['error']}")
        else:
            t = r["timings"]
            print(
                f"{clip:<24} {r['registered']:>3}/{r['frames']:<2} {r['rot_mean']:>8.2f} {r['rot_max']:>8.2f} "
                f"{r['traj']:>7.2f} {r['f_err']:>7.1f} {r['model']:<14} {r['attempts']:>3} {r['reproj']:>6.3f} "
                f"{t['extract']:>7.1f} {t['match']:>6.1f} {t['calibrate']:>6.1f} {t['map']:>6.1f} {r['seconds']:>7.1f}"
            )
        sys.stdout.flush()
    ok = [r for r in rows if "error" not in r]
    all_reg = sum(r["registered"] == r["frames"] for r in rows)
    under1 = sum(r.get("rot_mean", 99) < 1.0 for r in rows)
    print(
        f"summary: {all_reg}/{len(rows)} clips fully registered "
        f"({sum(r['registered'] for r in rows)}/{sum(r['frames'] for r in rows)} frames), "
        f"{under1}/{len(rows)} clips with mean rotation error < 1 deg (all pairs); "
        f"mean of rot means {np.mean([r['rot_mean'] for r in ok]) if ok else float('nan'):.2f} deg, "
        f"worst rot max {max([r['rot_max'] for r in ok], default=float('nan')):.2f} deg, "
        f"mean traj {np.mean([r['traj'] for r in ok]) if ok else float('nan'):.2f} %, "
        f"total {sum(r['seconds'] for r in rows):.0f} s"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0 if all_reg == len(rows) and under1 == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
