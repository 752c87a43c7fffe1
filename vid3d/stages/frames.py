"""The frames stage: choose the video frames that become training images.

Reads the input video; writes ``images/frame_<index:05d>.jpg`` (the kept frames,
named by their index in the video so that name order is time order),
``masks/<image stem>.png`` (white = use, black = a static overlay; only when an
overlay was found) and ``frames.json`` (every decoded frame: index, time,
sharpness, motion, shot, kept or why it was dropped).

How it works:

1. One decoding pass analyses every frame on its luma plane: sharpness (variance
   of the Laplacian at <= 640 px), a cut score (histogram and thumbnail change),
   bar statistics (full resolution), overlay statistics and a small grey copy for
   motion (at ``cfg.frames.analysis_size``). Meanwhile the sharpest frame of each
   of ``2 * target`` fine time windows is kept decoded (YUV, at most
   ``POOL_BYTES``), so the kept frames usually need no second decoding pass.
2. Shots: hard cuts split the video; the longest shot (or ``shot``) is used.
3. Bars are cropped; a static overlay becomes a mask.
4. Sampling: the shot is split into ``target`` equal time windows and the
   sharpest candidate of each is selected; then near-duplicates (too little
   motion from the previous kept frame, dominant motion of tracked features) are
   dropped, and a camera that barely moves stops the stage (NotEnoughMotionError)
   before anything is written.
5. The kept frames are cropped, area-resized to ``max_size`` and saved; frames
   missing from the pool (a short shot, a large video) come from a second pass.

Outputs are swapped in atomically, so a failure leaves earlier outputs as they were.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import Config, FramesConfig
from ..errors import InputError, NotEnoughMotionError, VideoError
from ..progress import NULL_REPORTER, Reporter
from ..video import analysis as A
from ..video.decode import Frame, VideoInfo, VideoReader
from ..workspace import Workspace, atomic_dir, write_json

IMAGE_NAME = "frame_{index:05d}.jpg"
"""File name of a kept frame in ``images/``; ``index`` is the frame's position in the video."""
MASK_NAME = "{stem}.png"
"""File name of a frame's mask in ``masks/``: ``{stem}`` is the image name without its
extension, ``{image}`` the whole image name (COLMAP's own convention is ``"{image}.png"``)."""

SHARPNESS_SIZE = 640  # long side of the grey frames sharpness is measured on
THUMB_SIZE = 64  # long side of the cut-detection thumbnails
POOL_BYTES = 384 << 20  # most memory for decoded candidate frames; beyond it, decode twice
MAX_STORED = 2000  # most small grey frames kept in memory for motion analysis (~60 kB each)
MOTION_SAMPLES = 24  # sampled pairs for the typical motion and the static-camera check
TRAVEL_QUANTILE = 75  # percentile of their displacements that counts as the camera travel
SLOW_CLIP_FACTOR = 0.3  # near-duplicate threshold cap, times the typical sample motion
NOISE_MOTION = 2e-4  # displacements below this fraction of the diagonal are tracking noise

# reasons a decoded frame is not kept
KEPT = "kept"
OTHER_SHOT = "other_shot"
BLURRIER = "blurrier_in_window"
NO_MOTION = "no_motion"


def image_name(index: int) -> str:
    """The ``images/`` file name of the frame with this index in the video."""
    return IMAGE_NAME.format(index=index)


def mask_name(image: str) -> str:
    """The ``masks/`` file name of an image file name."""
    return MASK_NAME.format(stem=Path(image).stem, image=image)


@dataclass
class _Pass1:
    """What the analysis pass measured, one entry per decoded frame."""

    times: list[float] = field(default_factory=list)
    sharp: list[float] = field(default_factory=list)
    cut_scores: list[tuple[float, float]] = field(default_factory=list)
    small: dict[int, np.ndarray] = field(default_factory=dict)  # index -> [h, w] uint8
    small_stride: int = 1
    # the sharpest frame of each fine window, kept decoded so that the kept frames
    # need no second decoding pass: (segment, window) -> (sharpness, frame)
    pool: dict[tuple[int, int], tuple[float, Frame]] | None = None

    def pooled(self) -> dict[int, Frame]:
        """The pooled frames by index (empty when the pool was off)."""
        return {f.index: f for _, f in (self.pool or {}).values()}


def _analyse(reader: VideoReader, fc: FramesConfig, reporter: Reporter
             ) -> tuple[_Pass1, A.BarDetector, A.OverlayDetector]:
    info = reader.info
    sharp_size = A.fit_long_side(info.width, info.height, SHARPNESS_SIZE)
    small_size = A.fit_long_side(info.width, info.height, fc.analysis_size)
    thumb_size = A.fit_long_side(info.width, info.height, THUMB_SIZE)
    stride = max(1, -(-info.frame_count // MAX_STORED)) if info.frame_count else 1
    p = _Pass1(small_stride=stride)
    bars, overlay = A.BarDetector(), A.OverlayDetector()
    prev: tuple[np.ndarray, np.ndarray] | None = None
    pool_n = 2 * _target(fc, info.duration)  # fine windows over the whole clip
    segment = 0  # bumped at every possible cut, so that no window spans one
    with reporter.task("Decoding and analysing frames", total=info.frame_count or None) as task:
        for frame in reader.frames():
            grey = frame.grey()  # [H, W]
            if fc.crop_bars:
                bars.add(grey)
            mid = A.resize_area(grey, sharp_size)
            small = A.resize_area(mid, small_size)
            thumb = A.resize_area(small, thumb_size)
            p.times.append(frame.time)
            p.sharp.append(A.sharpness(mid))
            hist = A.cut_features(thumb)
            p.cut_scores.append(A.cut_score(*prev, hist, thumb) if prev else (0.0, 0.0))
            prev = hist, thumb
            if frame.index % stride == 0:
                p.small[frame.index] = small
            if frame.index == 0 and info.duration > 0 and pool_n * frame.nbytes <= POOL_BYTES:
                p.pool = {}
            if p.pool is not None:
                h, d = p.cut_scores[-1]
                segment += h >= A.CUT_MIN_HIST and d >= A.CUT_MIN_DIFF
                key = (segment, min(max(int(frame.time / info.duration * pool_n), 0), pool_n - 1))
                if key not in p.pool or p.pool[key][0] < p.sharp[-1]:
                    frame.drop_cache()
                    p.pool[key] = (p.sharp[-1], frame)
            if fc.overlay_masks:
                overlay.add(small)
            task.advance()
    return p, bars, overlay


def _target(fc: FramesConfig, duration: float) -> int:
    """How many frames to keep from a shot of this duration."""
    n = int(round(duration * fc.target_fps)) if fc.target_fps > 0 else fc.target_frames
    return max(1, min(n, fc.max_frames))


def _check_complete(info: VideoInfo, n: int, last_time: float, error: str | None,
                    reporter: Reporter) -> float:
    """The fraction of the header's duration that decoded; raise or warn when short."""
    frame_dt = 1.0 / info.fps if info.fps else 0.0
    if info.duration > 0:
        coverage = min(1.0, (last_time + frame_dt) / info.duration)
    elif info.frame_count:
        coverage = min(1.0, n / info.frame_count)
    else:
        coverage = 1.0
    why = f" ({error})" if error else ""
    if coverage < 0.5:
        raise VideoError(
            f"{info.path.name} is truncated or damaged: only {n} frames ({coverage:.0%} of its "
            f"{info.duration:.1f} s) could be decoded{why}",
            "re-download or re-export the video; a partial copy cannot be reconstructed reliably")
    if n < 2:
        raise VideoError(f"{info.path.name} holds a single frame, not a moving video",
                         "give a video in which the camera moves through or around the scene")
    if coverage < 0.9 or error:
        reporter.warn(f"{info.path.name} decoded only up to {last_time:.2f} s of {info.duration:.2f} s"
                      f"{why}; the rest of the video is missing or damaged, continuing with what decoded")
    return coverage


def _shots(times: np.ndarray, cuts: list[int], fps: float) -> list[dict[str, Any]]:
    bounds = [0, *cuts, len(times)]
    dt = 1.0 / fps if fps else (float(np.median(np.diff(times))) if len(times) > 1 else 0.0)
    shots = []
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        end = float(times[b]) if b < len(times) else float(times[-1]) + dt
        shots.append({"index": k, "start": round(float(times[a]), 4), "end": round(end, 4),
                      "first_frame": a, "frames": b - a})
    return shots


def _pick_shot(shots: list[dict[str, Any]], shot: int | None) -> int:
    if shot is None:
        return max(range(len(shots)), key=lambda k: (shots[k]["end"] - shots[k]["start"], -k))
    if not 0 <= shot < len(shots):
        listing = "; ".join(f"{s['index']}: {s['start']:.2f}-{s['end']:.2f} s" for s in shots)
        raise InputError(f"shot {shot} does not exist; the video has {len(shots)} shot(s) ({listing})",
                         f"choose a shot between 0 and {len(shots) - 1}")
    return shot


def _small_for(p: _Pass1, index: int) -> np.ndarray:
    """The stored small grey frame nearest to ``index``."""
    s = p.small_stride
    key = int(round(index / s)) * s
    while key not in p.small and key > 0:
        key -= s
    return p.small[key]


MIN_CORNERS = 8  # fewer trackable corners than this in every frame: nothing to reconstruct


def _motion(p: _Pass1, selected: list[int], box: tuple[int, int, int, int],
            exclude: np.ndarray | None, fc: FramesConfig, diag: float
            ) -> tuple[dict[int, float], list[int], float, float]:
    """Near-duplicate filtering and the camera-travel check.

    Returns:
        The motion of each selected frame from the previous kept one (fraction of the
        diagonal; inf when tracking was lost), the kept indices, the camera travel
        and the near-duplicate threshold used.
    """
    x0, y0, x1, y1 = box

    def crop(img: np.ndarray) -> np.ndarray:
        return img[y0:y1, x0:x1]

    mask = None if exclude is None else crop(exclude)
    if not selected:
        return {}, [], 0.0, 0.0
    tracks: dict[int, A.Tracks] = {}
    pairs: dict[tuple[int, int], float] = {}

    def disp(i: int, j: int) -> float:
        """Motion from frame i to frame j, as a fraction of the diagonal."""
        if (i, j) not in pairs:
            if i not in tracks:
                tracks[i] = A.features(crop(_small_for(p, i)), mask)
            pairs[i, j] = A.displacement(tracks[i], crop(_small_for(p, j))) / diag
        return pairs[i, j]

    # the typical motion between consecutive samples, to recognise a slow clip
    # (frames that did not move at all, as repeated frames of screen captures, do not count)
    step = max(1, (len(selected) - 1) // MOTION_SAMPLES)
    consecutive = [disp(selected[k], selected[k + 1]) for k in range(0, len(selected) - 1, step)]
    if tracks and all(t.points is None or len(t.points) < MIN_CORNERS for t in tracks.values()):
        raise InputError("the frames have almost nothing to track (blank or uniform pictures): "
                         "structure from motion needs a textured, static scene",
                         "check that the clip shows a scene; a black or single-colour clip "
                         "cannot be reconstructed")
    if consecutive and not any(np.isfinite(c) for c in consecutive):
        raise InputError("no two consecutive frames show the same things (every feature is lost "
                         "between them): the clip looks like noise, or the picture changes "
                         "completely from frame to frame",
                         "use a continuous shot of a scene; for a fast camera, keep more frames "
                         "(--set frames.target_fps=...)")
    moving = [c for c in consecutive if np.isfinite(c) and c > NOISE_MOTION]
    typical = float(np.percentile(moving, 75)) if moving else float("inf")
    threshold = max(NOISE_MOTION, min(fc.dup_motion, SLOW_CLIP_FACTOR * typical))
    # camera travel: how far sampled frames are from the first one (a high quantile,
    # not the maximum: a gust through foliage can fool a single measurement)
    step = max(1, len(selected) // MOTION_SAMPLES)
    samples = sorted(set(selected[step::step] + selected[-1:]) - {selected[0]})
    # (a frame that shares no tracks with the first one has moved out of its view: a
    # whole diagonal, rather than an infinity that the quantile cannot interpolate)
    dists = [min(disp(selected[0], i), 1.0) for i in samples]
    travel = float(np.percentile(dists, TRAVEL_QUANTILE)) if dists else 0.0
    # greedy: keep a frame when it moved enough from the last kept one
    motion = {selected[0]: 0.0}
    kept = [selected[0]]
    for i in selected[1:]:
        motion[i] = disp(kept[-1], i)
        if motion[i] >= threshold:
            kept.append(i)
    return motion, kept, travel, threshold


def _write_outputs(reader_path: Path, ws: Workspace, keep: list[int], pooled: dict[int, Frame],
                   info: VideoInfo, box: tuple[int, int, int, int], out_size: tuple[int, int],
                   mask_img: np.ndarray | None, fc: FramesConfig, frames_doc: dict[str, Any],
                   reporter: Reporter) -> None:
    """Save the kept frames (from the pool, else from a second decoding pass), the
    masks and frames.json."""
    wanted = set(keep)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(fc.jpeg_quality)]
    mask_png = None if mask_img is None else cv2.imencode(".png", mask_img)[1].tobytes()

    def save(frame: Frame) -> None:
        name = image_name(frame.index)
        ok, buf = cv2.imencode(".jpg", frame.picture(box, out_size), params)
        if not ok:
            raise VideoError(f"frame {frame.index} could not be encoded as JPEG",
                             "check the jpeg_quality setting")
        (img_dir / name).write_bytes(buf.tobytes())
        if mask_png is not None:
            (mask_dir / mask_name(name)).write_bytes(mask_png)
        wanted.discard(frame.index)

    with atomic_dir(ws.images) as img_dir, atomic_dir(ws.masks) as mask_dir:
        with reporter.task("Saving frames", total=len(keep)) as task:
            for i in sorted(wanted & pooled.keys()):
                save(pooled.pop(i))
                task.advance()
            if wanted:
                with VideoReader(reader_path) as reader:
                    for frame in reader.frames(stop=max(wanted) + 1):
                        if frame.index in wanted:
                            save(frame)
                            task.advance()
        if wanted:
            raise VideoError(f"{len(wanted)} selected frames of {info.path.name} did not decode again",
                             "the file may have changed while it was read; run again")
        if mask_img is None:
            # an empty masks/ would replace the old one; remove it after the swap instead
            shutil.rmtree(mask_dir, ignore_errors=True)
            mask_dir.mkdir()
    if mask_img is None and ws.masks.exists() and not any(ws.masks.iterdir()):
        ws.masks.rmdir()
    write_json(ws.frames_json, frames_doc)


def run(video: Path, ws: Workspace, cfg: Config, reporter: Reporter = NULL_REPORTER,
        shot: int | None = None) -> dict[str, Any]:
    """Select the training frames of a video and save them in the workspace.

    Args:
        video: The input video file.
        ws: The workspace; ``images/``, ``masks/`` and ``frames.json`` are replaced.
        cfg: The configuration; only ``cfg.frames`` is used.
        reporter: Progress and warnings.
        shot: Which shot to use (0-based, in time order) when the video has scene
            cuts. Default: the longest.

    Returns:
        Metrics for ``report.json``: ``video``, ``width``, ``height``, ``fps``,
        ``duration``, ``frame_count``, ``rotation``, ``codec``, ``crop_box``
        ``[x0, y0, x1, y1]``, ``output_size`` ``[w, h]``, ``decoded``, ``selected``,
        ``kept``, ``dropped`` (count by reason), ``shots`` (index, start, end,
        first_frame, frames, used), ``shot``, ``overlay_mask`` (bool),
        ``mask_coverage`` (fraction of the picture masked), ``motion`` (travel,
        near-duplicate threshold, median kept-frame motion, as fractions of the
        diagonal), ``coverage`` (decoded fraction of the duration), ``warnings``,
        ``decode_passes`` (1, or 2 when kept frames had to be decoded again),
        ``timing`` (seconds: ``analyse``, ``select``, ``write``, ``total``).
        ``motion`` values are ``"lost"`` where feature tracking failed.

    Raises:
        InputError: The video does not exist, or ``shot`` is out of range.
        VideoError: The file is not a decodable video, or is truncated too badly.
        NotEnoughMotionError: The camera barely moves in the shot (nothing is written).
    """
    fc = cfg.frames
    video = Path(video)
    t_start = time.perf_counter()
    warnings_before = len(getattr(reporter, "warnings", []))

    # ---- pass 1: decode and analyse every frame
    with VideoReader(video) as reader:
        info = reader.info
        p, bars, overlay = _analyse(reader, fc, reporter)
        decode_error = reader.decode_error
    n = len(p.times)
    times = np.asarray(p.times)
    coverage = _check_complete(info, n, float(times[-1]) if n else 0.0, decode_error, reporter)
    t_analysed = time.perf_counter()

    # ---- shots
    cuts = A.find_cuts(np.asarray(p.cut_scores, np.float32), info.fps) if fc.cut_detection else []
    shots = _shots(times, cuts, info.fps)
    used = _pick_shot(shots, shot)
    for s in shots:
        s["used"] = s["index"] == used
    a = shots[used]["first_frame"]
    b = a + shots[used]["frames"]
    if len(shots) > 1:
        others = ", ".join(f"{s['start']:.2f}-{s['end']:.2f} s" for s in shots if not s["used"])
        reporter.log(f"{len(shots)} shots (scene cuts at "
                     f"{', '.join(f'{times[c]:.2f} s' for c in cuts)}); using shot {used} "
                     f"({shots[used]['start']:.2f}-{shots[used]['end']:.2f} s), not {others}")

    # ---- geometry: bars, output size, overlay mask
    box = bars.crop_box() if fc.crop_bars else (0, 0, info.width, info.height)
    if box[2] == 0:
        box = (0, 0, info.width, info.height)
    x0, y0, x1, y1 = box
    out_size = A.fit_long_side(x1 - x0, y1 - y0, fc.max_size)
    sh, sw = p.small[0].shape
    sx, sy = sw / info.width, sh / info.height
    sx0, sy0 = int(np.ceil(x0 * sx)), int(np.ceil(y0 * sy))
    sbox = (sx0, sy0, max(sx0 + 1, int(x1 * sx)), max(sy0 + 1, int(y1 * sy)))  # box in small frames
    overlay_small = overlay.mask(sbox) if fc.overlay_masks else None
    mask_img = None
    mask_coverage = 0.0
    if overlay_small is not None:
        crop = overlay_small[sy0:sbox[3], sx0:sbox[2]].astype(np.uint8) * 255
        up = cv2.resize(crop, out_size, interpolation=cv2.INTER_LINEAR) > 127
        mask_coverage = float(up.mean())
        mask_img = np.where(up, 0, 255).astype(np.uint8)  # white = use
        reporter.log(f"static overlay found: {mask_coverage:.1%} of the picture is masked")

    # ---- selection: sharpest frame per window, then near-duplicates
    target = _target(fc, shots[used]["end"] - shots[used]["start"])
    sharp = np.asarray(p.sharp)
    pooled = p.pooled()
    candidates = sorted(i for i in pooled if a <= i < b)
    if b - a <= target or len(candidates) < 1.5 * target:
        candidates = list(range(a, b))  # the pool is too coarse for this shot: any frame
    pos = A.sharpest_in_windows(times[candidates], sharp[candidates], target,
                                span=(float(times[a]), float(times[b - 1])))
    selected = [candidates[q] for q in pos]
    sdiag = float(np.hypot(sbox[2] - sbox[0], sbox[3] - sbox[1]))
    motion, kept, travel, dup_threshold = _motion(p, selected, sbox, overlay_small, fc, sdiag)
    if travel < fc.min_motion:
        raise NotEnoughMotionError(
            f"the camera barely moves in {video.name} (it travels {travel:.2%} of the image "
            f"diagonal, less than {fc.min_motion:.2%}); structure from motion needs a moving camera",
            "try a clip where the camera travels around or along the scene, or lower "
            "frames.min_motion if the motion is real but small")
    t_selected = time.perf_counter()

    # ---- frames.json, images, masks
    kept_set, selected_set = set(kept), set(selected)
    reasons: list[str] = []
    entries = []
    for i in range(n):
        if not a <= i < b:
            reason = OTHER_SHOT
        elif i not in selected_set:
            reason = BLURRIER
        elif i not in kept_set:
            reason = NO_MOTION
        else:
            reason = KEPT
        reasons.append(reason)
        m = motion.get(i)
        entries.append({
            "index": i, "time": round(float(times[i]), 4), "sharpness": round(p.sharp[i], 2),
            "motion": None if m is None else (round(m, 5) if np.isfinite(m) else "lost"),
            "shot": int(np.searchsorted(cuts, i, side="right")), "kept": reason == KEPT,
            "reason": None if reason == KEPT else reason,
            "image": image_name(i) if reason == KEPT else None,
        })
    dropped = dict(Counter(r for r in reasons if r != KEPT))
    finite_motion = [motion[i] for i in kept[1:] if np.isfinite(motion[i])]
    metrics: dict[str, Any] = {
        "video": str(video), "width": info.width, "height": info.height, "fps": round(info.fps, 4),
        "duration": round(info.duration, 4), "frame_count": info.frame_count,
        "rotation": info.rotation, "codec": info.codec,
        "crop_box": list(box), "output_size": list(out_size),
        "decoded": n, "selected": len(selected), "kept": len(kept), "dropped": dropped,
        "shots": shots, "shot": used,
        "overlay_mask": mask_img is not None, "mask_coverage": round(mask_coverage, 5),
        "motion": {"travel": round(travel, 5) if np.isfinite(travel) else "lost",
                   "dup_threshold": round(dup_threshold, 6),
                   "median_kept": round(float(np.median(finite_motion)), 5) if finite_motion else None},
        "coverage": round(coverage, 4),
    }
    doc = {"video": metrics["video"], "image_name": IMAGE_NAME, "mask_name": MASK_NAME,
           "summary": metrics, "frames": entries}
    from_pool = {i: pooled[i] for i in kept if i in pooled}
    metrics["decode_passes"] = 1 if len(from_pool) == len(kept) else 2
    del p, pooled  # release the frames that were not kept
    _write_outputs(video, ws, kept, from_pool, info, box, out_size, mask_img, fc, doc, reporter)
    t_end = time.perf_counter()
    metrics["warnings"] = list(getattr(reporter, "warnings", []))[warnings_before:]
    metrics["timing"] = {"analyse": round(t_analysed - t_start, 3),
                         "select": round(t_selected - t_analysed, 3),
                         "write": round(t_end - t_selected, 3), "total": round(t_end - t_start, 3)}
    why = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(dropped.items()) if v)
    reporter.log(f"kept {len(kept)} of {n} frames" + (f" (dropped: {why})" if why else ""))
    return metrics
