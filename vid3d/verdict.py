"""The verdict on a clip: can it give a 3D scene at all? Said before the expensive work.

Owns every check of a clip's fitness and its wording. The frames stage judges what it
measured (:func:`judge_frames`: the camera's travel, the frames kept, scene cuts, the
parallax of a few frame pairs, what moves on its own); the poses stage judges what
COLMAP found (:func:`judge_poses`: frames registered, the focal length against the
self-calibration). A hopeless clip raises one error naming what is wrong and what kind
of clip would work; a doubtful one goes on with a warning per reason. The stages keep
their verdicts in their metrics (``frames.json``'s summary, ``poses.json``);
``report.json`` holds both under ``verdict`` (:func:`combine`).

A verdict is a JSON-safe dict::

    {"level": "ok" | "doubtful",
     "reasons": [{"check": "cuts", "level": "note" | "doubtful", "message": "..."}],
     "figures": {"travel": 0.21, "frames": 49, "parallax_score": 0.5, ...}}
"""

from __future__ import annotations

from typing import Any

from vid3d.config import FramesConfig
from vid3d.errors import NoParallaxError, NotEnoughFramesError, NotEnoughMotionError, TooMuchMotionError
from vid3d.progress import Reporter
from vid3d.video.motion import NO_PARALLAX_MAJORITY

MIN_FRAMES = 3
"""Fewer kept frames than this stop the run: too few views to triangulate and train on."""
FEW_FRAMES = 12
"""Fewer kept frames than this (or a shot shorter than :data:`SHORT_SHOT` seconds) is doubtful."""
SHORT_SHOT = 1.5
FOCAL_DRIFT = 1.5
"""Bundle adjustment's focal length more than this factor away from a confident
self-calibration is doubtful (a camera that follows its subject forward leaves the
focal length free to drift: a wrong field of view bends the whole scene)."""
CONFIDENT_CALIBRATION = 20
"""Frame pairs the self-calibration must rest on to be trusted against bundle adjustment."""
LOW_REGISTRATION = 0.9


def new(figures: dict[str, Any] | None = None) -> dict[str, Any]:
    """An empty "ok" verdict with these figures."""
    return {"level": "ok", "reasons": [], "figures": dict(figures or {})}


def doubt(verdict: dict[str, Any], check: str, message: str, reporter: Reporter, note: bool = False) -> None:
    """Add a reason to ``verdict``: a warning (doubtful), or with ``note`` a logged remark."""
    level = "note" if note else "doubtful"
    verdict["reasons"].append({"check": check, "level": level, "message": message})
    if note:
        reporter.log(message)
    else:
        verdict["level"] = "doubtful"
        reporter.warn(message)


def judge_frames(
    figures: dict[str, Any], fc: FramesConfig, reporter: Reporter, video_name: str = "the clip"
) -> dict[str, Any]:
    """Judge the frames stage's figures (before anything is written).

    Args:
        figures: ``travel`` (camera travel, fraction of the diagonal), ``frames``
            (kept), ``shot_seconds``, ``shots``, and optionally ``parallax_score`` and
            ``rotation_only`` (share of rotation-only pairs) from
            :func:`vid3d.video.motion.clip_parallax`.
        fc: The frames configuration (``min_motion``).

    Raises:
        NotEnoughMotionError: The camera barely moves.
        NoParallaxError: The camera only turns, or the picture slides.
        NotEnoughFramesError: Fewer than :data:`MIN_FRAMES` frames are kept.
    """
    v = new(figures)
    if figures["travel"] < fc.min_motion:
        raise NotEnoughMotionError(
            f"the camera barely moves in {video_name} (it travels {figures['travel']:.2%} of the image "
            f"diagonal, less than {fc.min_motion:.2%}); structure from motion needs a moving camera",
            "try a clip where the camera travels around or along the scene, or lower "
            "frames.min_motion if the motion is real but small",
        )
    if figures.get("rotation_only", 0.0) > NO_PARALLAX_MAJORITY:
        _no_parallax(figures["parallax_score"], figures["rotation_only"])
    if figures["frames"] < MIN_FRAMES:
        raise NotEnoughFramesError(
            f"only {figures['frames']} distinct frames in {video_name}: too few views to reconstruct",
            "use a longer clip (2 s or more), or keep more frames with --set frames.target_fps=...",
        )
    if figures["frames"] < FEW_FRAMES or figures["shot_seconds"] < SHORT_SHOT:
        doubt(
            v,
            "short",
            f"the clip is short ({figures['frames']} distinct frames, {figures['shot_seconds']:.1f} s): "
            "expect a sparse, blurry reconstruction",
            reporter,
        )
    if figures["shots"] > 1:
        doubt(
            v,
            "cuts",
            f"the video has {figures['shots']} shots; only the one used ({figures['shot_seconds']:.1f} s) "
            "is reconstructed (choose another with --shot)",
            reporter,
            note=True,
        )
    return v


def _no_parallax(score: float, share: float) -> None:
    raise NoParallaxError(
        f"the clip has no parallax (a homography explains {share:.0%} of the frame pairs tested, "
        f"parallax score {score:.2f}): the camera only turns or the picture slides, so the splats "
        "would be a flat backdrop",
        "use a clip whose camera moves through or around a static scene (an orbit, a walk, "
        "a drone flight), not a pan, a tilt or a zoom; to try anyway: --set frames.parallax_check=false",
    )


def judge_motion(
    verdict: dict[str, Any], moving: dict[str, Any], fc: FramesConfig, reporter: Reporter
) -> None:
    """Add the motion masks' figures (``moving``: ``mean``, ``max``) to the frames verdict.

    Raises:
        TooMuchMotionError: More than ``fc.max_moving_fraction`` of the picture moves.
    """
    verdict["figures"].update(moving_mean=moving["mean"], moving_max=moving["max"])
    if moving["mean"] > fc.max_moving_fraction:
        raise TooMuchMotionError(
            f"{moving['mean']:.0%} of the picture moves on its own (more than "
            f"frames.max_moving_fraction={fc.max_moving_fraction:.0%}): there is too little static "
            "scene to reconstruct",
            "use a clip of a static scene with a moving camera, or raise frames.max_moving_fraction",
        )
    if moving["mean"] > fc.max_moving_fraction / 2:
        doubt(
            verdict,
            "moving",
            f"{moving['mean']:.0%} of the picture moves on its own: it is masked, but little static "
            "scene is left to reconstruct",
            reporter,
        )


def judge_poses(metrics: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Judge what COLMAP found (the poses stage's metrics): frames left out, and a focal
    length that drifted far from a confident self-calibration."""
    calib = metrics.get("calibration") or {}
    focal = metrics.get("focal_px")
    v = new(
        {
            "registered_fraction": metrics.get("registered_fraction"),
            "focal_px": focal,
            "calibrated_focal_px": calib.get("focal"),
            "fov_deg": metrics.get("fov_deg"),
        }
    )
    frac = metrics.get("registered_fraction") or 0.0
    if frac < LOW_REGISTRATION:
        doubt(
            v,
            "registered",
            f"COLMAP placed only {metrics.get('registered')}/{metrics.get('total')} frames: the scene "
            "may move, or parts of the clip lack texture",
            reporter,
        )
    c = calib.get("focal")
    # A calibration outside the plausible range was clipped before mapping (the pairs did
    # not determine the focal length): nothing to compare the result with.
    determined = c and abs(calib.get("initial_focal", c) - c) <= 1e-6 * c
    if focal and determined and calib.get("pairs", 0) >= CONFIDENT_CALIBRATION:
        ratio = max(focal / c, c / focal)
        v["figures"]["focal_drift"] = round(ratio, 3)
        if ratio > FOCAL_DRIFT:
            doubt(
                v,
                "focal",
                f"the focal length drifted in bundle adjustment to {focal:.0f} px from the "
                f"{c:.0f} px the frame pairs imply: the geometry may be bent",
                reporter,
            )
    return v


def combine(*verdicts: dict[str, Any] | None) -> dict[str, Any]:
    """One verdict of the stages' (missing ones left out): the worst level, every
    reason and figure."""
    out = new()
    for v in verdicts:
        if not v:
            continue
        out["reasons"] += v.get("reasons", [])
        out["figures"].update(v.get("figures", {}))
        if v.get("level") == "doubtful":
            out["level"] = "doubtful"
    return out
