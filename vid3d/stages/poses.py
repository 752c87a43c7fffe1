"""The poses stage: structure from motion with pycolmap.

Reads:
    ``<ws>/images/``  frames (JPEG), file-name order = time order.
    ``<ws>/masks/``   optional, one mask per frame (white = use), named
                      ``<image stem>.png`` (``<image name>.png`` is accepted too;
                      :meth:`Workspace.find_mask`).

Writes:
    ``<ws>/colmap/database.db``  features and matches of the winning attempt.
    ``<ws>/colmap/colmap.log``   COLMAP's log.
    ``<ws>/colmap/masks/``       the masks under COLMAP's names (``<image name>.png``).
    ``<ws>/colmap/.attempts/``   the attempts' scratch databases and models (removed at the end).
    ``<ws>/sparse/0/``           the largest model of the best attempt (atomically).
    ``<ws>/poses.json``          per-frame cameras and the metrics (atomically).

Steps: SIFT with ONE shared camera (and the masks), sequential or exhaustive
matching, a check that the camera moves at all, self-calibration of the focal
length from the verified pairs' fundamental matrices
(:mod:`vid3d.sfm.calibration`), then global (GLOMAP, default) or incremental
(COLMAP) mapping whose bundle adjustment refines the focal length(s) from there.
When an attempt registers too few frames a retry ladder runs (more features and
exhaustive matching, relaxed initialisation, the other mapper); every attempt is
recorded and the best one wins. Of several models the largest is kept and the
sizes of the others are reported.

The code, in the order :func:`run` calls it: :func:`ladder` lists the rungs
(:class:`Rung`); :func:`_climb` runs them until one is good enough;
:func:`_run_attempt` runs one rung (:func:`_extract`, :func:`_match`,
:func:`_set_camera`, :func:`_map`) and returns an :class:`Attempt`; :func:`_winner`
picks the best attempt or explains the failure; :func:`_write_model`,
:func:`_metrics` and :func:`_write_poses_json` write the outputs.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vid3d import verdict
from vid3d.config import CameraModel, Config, PosesConfig
from vid3d.errors import ConfigError, MissingStageError, PosesError, storage_hint
from vid3d.progress import NULL_REPORTER, Reporter
from vid3d.sfm import colmap
from vid3d.sfm.calibration import focal_from_fundamentals
from vid3d.workspace import Workspace, atomic_dir, atomic_path, write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EXHAUSTIVE_RETRY_MAX = 100
"""The retry ladder matches exhaustively up to this many frames, else with twice the overlap."""
FOCAL_RANGE = (0.4, 2.0)
"""The self-calibrated focal length is clipped to this range times the longer image side
(fields of view of 103 to 28 degrees) before bundle adjustment starts from it."""
PLAUSIBLE_FOCAL = (0.2, 5.0)
"""With camera_model "auto", a focal length found outside this range times the longer
side counts as a degenerate self-calibration (see :data:`MAX_PIXEL_ASPECT`)."""
MAX_PIXEL_ASPECT = 1.25
"""With camera_model "auto", fx/fy beyond this counts as a degenerate self-calibration and
the frames are mapped again with one focal length. It admits a 16:9 video squashed to 3:2
(1.19, the 384x256 re10k clips) but not much more: generated videos have square pixels."""
CAMERA_MODELS = typing.get_args(CameraModel)  # the config's choices are the stage's


@dataclass
class Rung:
    """Settings of one rung of the retry ladder."""

    reason: str
    max_num_features: int
    matcher: str
    mapper: str
    init_min_num_inliers: int
    init_min_tri_angle: float
    abs_pose_min_num_inliers: int = 30
    min_num_matches: int = 15
    overlap: int = 10
    """Sequential matching: frames matched with each frame's next ones."""

    def key(self) -> tuple:
        d = asdict(self)
        d.pop("reason")
        return tuple(sorted(d.items()))


@dataclass
class Attempt:
    """What one rung of the retry ladder gave."""

    index: int
    """Position of the rung in the ladder (0-based)."""
    record: dict[str, Any]
    """The attempt's entry in the metrics' ``attempts``."""
    models: list[colmap.Model]
    """The models found, largest first (possibly none)."""
    database: Path
    """The attempt's database (features, matches and its camera), in the scratch folder."""
    calibration: dict[str, Any] | None
    """The focal self-calibration (:func:`calibrate`, plus ``initial_focal``), or None."""
    pairs: list[colmap.PairStats]
    """Matches of consecutive frames (empty when no model was found)."""

    @property
    def best(self) -> colmap.Model | None:
        """The largest model, or None."""
        return self.models[0] if self.models else None

    @property
    def registered(self) -> int:
        """Frames registered in the largest model."""
        return self.models[0].size if self.models else 0


def _zero_timings() -> dict[str, float]:
    return {"extract": 0.0, "match": 0.0, "calibrate": 0.0, "map": 0.0}


@dataclass
class _Run:
    """What the attempts of one run share: the inputs, the feature and match databases
    made so far (attempts with the same settings reuse them) and the seconds per step."""

    ws: Workspace
    cfg: Config
    names: list[str]
    """The frames, in time order."""
    work: Path
    """Scratch folder of the attempts (``<ws>/colmap/.attempts``)."""
    mask_dir: Path | None
    """The masks under COLMAP's names, or None."""
    reporter: Reporter
    timings: dict[str, float] = field(default_factory=_zero_timings)
    features: dict[int, Path] = field(default_factory=dict)
    """``max_num_features`` -> database with the extracted features."""
    keypoints: dict[int, dict[str, int]] = field(default_factory=dict)
    """``max_num_features`` -> keypoints per image."""
    matches: dict[tuple[int, str, int], Path] = field(default_factory=dict)
    """``(max_num_features, matcher, overlap)`` -> database with those matches."""

    @property
    def n(self) -> int:
        return len(self.names)


@dataclass
class _Camera:
    """The camera an attempt maps with (the focal fallback of :func:`_map` changes it)."""

    model: str
    """COLMAP camera model."""
    focal: float
    """Initial focal length in pixels (fx = fy)."""
    side: int
    """Longer image side in pixels."""
    refine: bool
    """Whether bundle adjustment refines the intrinsics."""
    calibration: dict[str, Any] | None
    """The focal self-calibration, or None."""
    fallback: str | None = None
    """``"one focal"`` or ``"fixed focal"`` after an implausible result, else None."""


def list_images(ws: Workspace) -> list[str]:
    """Image file names in ``ws.images``, sorted (= time order)."""
    if not ws.images.is_dir():
        return []
    return sorted(
        p.name
        for p in ws.images.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def fitted_overlap(n: int, pc: PosesConfig) -> int:
    """Sequential matching overlap for ``n`` frames (``pc.sequential_overlap`` if set)."""
    if pc.sequential_overlap > 0:
        return min(pc.sequential_overlap, max(n - 1, 1))
    return min(max(n - 1, 1), max(10, min(20, n // 10)))


def choose_matcher(n: int, pc: PosesConfig) -> str:
    """``"exhaustive"`` or ``"sequential"`` for ``n`` frames."""
    if pc.matcher == "auto":
        return "exhaustive" if n < pc.exhaustive_below else "sequential"
    return pc.matcher


def ladder(n: int, pc: PosesConfig) -> list[Rung]:
    """The retry ladder: the configured attempt first, then ever more permissive ones.

    Args:
        n: Number of frames.
        pc: Poses configuration.

    Returns:
        At most ``pc.max_attempts`` distinct rungs.
    """
    first = Rung(
        "configured",
        pc.max_num_features,
        choose_matcher(n, pc),
        pc.mapper,
        pc.init_min_num_inliers,
        pc.init_min_tri_angle,
        overlap=fitted_overlap(n, pc),
    )
    if n <= EXHAUSTIVE_RETRY_MAX:
        more = replace(
            first,
            reason="more features, exhaustive matching",
            max_num_features=max(2 * pc.max_num_features, 16384),
            matcher="exhaustive",
        )
    else:  # exhaustive matching of hundreds of frames takes too long on a CPU
        more = replace(
            first,
            reason="more features, wider sequential matching",
            max_num_features=max(2 * pc.max_num_features, 16384),
            overlap=min(n - 1, 2 * first.overlap),
        )
    relaxed = replace(
        more,
        reason="relaxed initialisation",
        init_min_num_inliers=30,
        init_min_tri_angle=4.0,
        abs_pose_min_num_inliers=15,
        min_num_matches=10,
    )
    other = replace(
        relaxed, reason="other mapper", mapper="global" if first.mapper == "incremental" else "incremental"
    )
    out, seen = [], set()
    for a in (first, more, relaxed, other):
        if a.key() not in seen:
            seen.add(a.key())
            out.append(a)
    return out[: max(1, pc.max_attempts)]


def _check(pc: PosesConfig) -> None:
    if pc.camera_model not in CAMERA_MODELS:
        raise ConfigError(
            f"poses.camera_model {pc.camera_model!r} is not supported",
            f"choose one of {', '.join(CAMERA_MODELS)}",
        )
    if pc.matcher not in ("auto", "sequential", "exhaustive"):
        raise ConfigError(f"poses.matcher {pc.matcher!r} is unknown", "choose auto, sequential or exhaustive")
    if pc.mapper not in ("incremental", "global"):
        raise ConfigError(f"poses.mapper {pc.mapper!r} is unknown", "choose incremental or global")


def _colmap_masks(ws: Workspace, names: list[str], reporter: Reporter) -> Path | None:
    """The masks under COLMAP's names (:meth:`Workspace.colmap_mask_for`) in ``ws.colmap_masks``.

    A frame without a mask gets an all-white one (use every pixel). Returns None when
    the workspace has no ``masks/``.
    """
    if not ws.masks.is_dir():
        return None
    with atomic_dir(ws.colmap_masks) as tmp:
        missing = 0
        for n in names:
            src = ws.find_mask(n)
            dst = tmp / ws.colmap_mask_for(n).name  # made in tmp, swapped into place at the end
            if src is None:
                missing += 1
                import cv2  # only for the rare missing mask

                img = cv2.imread(str(ws.images / n), cv2.IMREAD_GRAYSCALE)
                cv2.imwrite(str(dst), np.full_like(img, 255))
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    if missing:
        reporter.warn(f"{missing} of {len(names)} frames have no mask in {ws.masks}; using all of them")
    return ws.colmap_masks


def calibrate(db: Path, min_pairs: int = 3) -> dict[str, Any] | None:
    """Self-calibrate the focal length from the database's fundamental matrices.

    Args:
        db: Database with verified matches.
        min_pairs: Least usable pairs (general two-view configuration, 30+ inliers).

    Returns:
        :func:`vid3d.sfm.calibration.focal_from_fundamentals`'s dict, or None when
        too few pairs are usable (COLMAP's focal guess is used then).
    """
    cam = colmap.camera_info(db)
    Fs, inliers = colmap.fundamental_matrices(db)
    if len(Fs) < min_pairs or not cam:
        return None
    return focal_from_fundamentals(Fs, inliers, cam["width"], cam["height"])


def _final_model_name(pc: PosesConfig) -> str:
    return "PINHOLE" if pc.camera_model == "auto" else pc.camera_model


def _diagnose(
    pairs: list[colmap.PairStats], keypoints: dict[str, int], width: int, height: int
) -> tuple[str, str]:
    """The likely cause of a failed reconstruction, and what to try."""
    kp = np.median(list(keypoints.values())) if keypoints else 0
    verified = np.median([p.verified for p in pairs]) if pairs else 0
    ratios = [p.inlier_ratio for p in pairs if p.matches]
    ratio = np.median(ratios) if ratios else 0.0
    flows = [p.flow for p in pairs if np.isfinite(p.flow)]
    diag = math.hypot(width, height) or 1.0
    travel = float(np.sum(flows)) / diag if flows else 0.0
    rot = np.mean([p.config in ("PANORAMIC", "PLANAR_OR_PANORAMIC") for p in pairs]) if pairs else 0.0
    if kp < 200:
        return (
            f"too few features (median {kp:.0f} per frame): the frames are featureless, blurry or dark",
            "use sharper, more textured footage, or raise poses.max_num_features",
        )
    if verified < 30:
        return (
            f"consecutive frames share too few verified matches (median {verified:.0f}): "
            "fast motion, blur, or a scene that changes between frames",
            "keep more frames (frames.target_frames) or use steadier footage",
        )
    if travel < 0.05:
        return (
            f"too little camera motion: the image content moves only {100 * travel:.1f}% of the "
            "frame diagonal over the whole clip",
            "use a clip where the camera moves sideways or around the subject",
        )
    if ratio < 0.5:
        return (
            f"many matches disagree with one camera motion (median inlier ratio {ratio:.2f}): "
            "much of the scene moves",
            "mask moving objects (white = use) or choose a clip with a static scene",
        )
    if rot > 0.5:
        return (
            "too little parallax: most consecutive frame pairs fit a homography (the camera "
            "rotates in place, or the scene is flat)",
            "use a clip where the camera moves sideways or around the subject, keep more frames, "
            'or try poses.mapper="global"',
        )
    return (
        "too little parallax or a moving scene",
        'try poses.mapper="global", more frames, or a clip where the camera moves around a static scene',
    )


def _check_motion(
    db: Path, names: list[str], pairs: list[tuple[int, int]], kps: dict[str, int], pc: PosesConfig
) -> None:
    """Raise :class:`PosesError` when the matched features hardly move: a static camera."""
    stats = colmap.pair_stats(db, [(names[i], names[j]) for i, j in pairs])
    flows = [p.flow for p in stats if np.isfinite(p.flow)]
    cam = colmap.camera_info(db)
    diag = math.hypot(cam.get("width", 0), cam.get("height", 0)) or 1.0
    if len(flows) < 1 or np.median(list(kps.values()) or [0]) < 200:
        return  # too few matches or features to judge; the mapper and _diagnose will say
    motion = float(np.percentile(flows, 90)) / diag
    if motion < pc.min_image_motion:
        raise PosesError(
            f"the camera does not move: verified matches move only {100 * motion:.2f}% of the image "
            f"diagonal between frames (90th percentile over {len(flows)} frame pairs), so there is "
            "no parallax to triangulate from",
            "use a clip where the camera moves sideways or around the subject; a fixed or panning "
            "camera cannot give 3D structure",
        )


def run(ws: Workspace, cfg: Config, reporter: Reporter = NULL_REPORTER) -> dict[str, Any]:
    """Estimate camera poses of the frames in ``ws.images`` with pycolmap.

    Args:
        ws: The workspace (reads ``images/``, ``masks/``; writes ``colmap/``,
            ``sparse/0``, ``poses.json``).
        cfg: Configuration; uses ``cfg.poses`` and ``cfg.device``.
        reporter: Progress and messages.

    Returns:
        The metrics (JSON-serialisable): ``registered``, ``total``,
        ``registered_fraction``, ``mean_reprojection_error``, ``mean_track_length``,
        ``points``, ``focal_px``, ``focal_xy_px``, ``camera_model``, ``camera_params``,
        ``width``, ``height``, ``unregistered``, ``timings``, ``attempts``,
        ``best_attempt``, ``other_models``, ``calibration``, ``pairs``, ``verdict``
        (:func:`vid3d.verdict.judge_poses`).

    Raises:
        MissingStageError: ``ws.images`` is missing or empty.
        PosesError: even the best attempt registered fewer than
            ``cfg.poses.min_registered_fraction`` of the frames.
    """
    pc = cfg.poses
    _check(pc)
    names = list_images(ws)
    if not names:
        raise MissingStageError(f"no frames in {ws.images}", "run `vid3d frames` first")
    t_start = time.perf_counter()
    ws.colmap.mkdir(parents=True, exist_ok=True)
    work = ws.colmap / ".attempts"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    state = _Run(ws, cfg, names, work, _colmap_masks(ws, names, reporter), reporter)
    rungs = ladder(len(names), pc)
    try:
        with colmap.colmap_log(ws.colmap / "colmap.log"):
            attempts = _climb(state, rungs)
            win = _winner(state, attempts)
            t0 = time.perf_counter()
            cameras = _write_model(ws, win)
            state.timings["write"] = time.perf_counter() - t0
    except (RuntimeError, ValueError) as e:  # pycolmap's checks; ours are Vid3dErrors
        raise PosesError(
            f"COLMAP failed: {str(e).strip().splitlines()[-1][:300]}",
            storage_hint(ws.root) or f"see {ws.colmap / 'colmap.log'}",
        ) from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    state.timings["total"] = time.perf_counter() - t_start
    metrics = _metrics(names, win, attempts, state.timings)
    metrics["verdict"] = verdict.judge_poses(metrics, reporter)
    _write_poses_json(ws, names, win.best, cameras, metrics)
    reporter.log(
        f"poses: {win.best.size}/{len(names)} frames registered, {win.best.points} points, "
        f"reprojection error {metrics['mean_reprojection_error']} px, focal {metrics['focal_px']} px"
    )
    return metrics


# ---- the ladder: which rungs to run, and which attempt wins


def _climb(state: _Run, rungs: list[Rung]) -> list[Attempt]:
    """Run the rungs in order until one registers ``poses.retry_below_fraction`` of the frames.

    Returns:
        The attempts made, in order.
    """
    attempts: list[Attempt] = []
    for k, rung in enumerate(rungs):
        attempt = _run_attempt(state, k, rung, label=f"[{k + 1}/{len(rungs)}]")
        attempts.append(attempt)
        if attempt.registered / state.n >= state.cfg.poses.retry_below_fraction:
            break
        if k + 1 < len(rungs):
            state.reporter.warn(
                f"poses: {attempt.record['registered']}/{state.n} frames registered; "
                f"retrying with {rungs[k + 1].reason}"
            )
    return attempts


def _winner(state: _Run, attempts: list[Attempt]) -> Attempt:
    """The attempt whose largest model scores best (:meth:`colmap.Model.score`).

    Raises:
        PosesError: no attempt registered ``poses.min_registered_fraction`` of the
            frames; the message gives the likely cause (:func:`_diagnose`).
    """
    found = [a for a in attempts if a.best is not None]
    if not found or max(a.registered for a in found) / state.n < state.cfg.poses.min_registered_fraction:
        raise _failure(state, attempts)
    return max(found, key=lambda a: a.best.score())


def _failure(state: _Run, attempts: list[Attempt]) -> PosesError:
    """The error for a run that registered too few frames, diagnosed from the matches
    with the most features."""
    names, matched = state.names, state.matches
    mk = max(matched, key=lambda key: key[0]) if matched else None
    pstats = colmap.pair_stats(matched[mk], list(zip(names[:-1], names[1:]))) if mk else []
    kps = state.keypoints[mk[0]] if mk else {}
    cam = colmap.camera_info(matched[mk]) if mk else {"width": 0, "height": 0}
    cause, hint = _diagnose(pstats, kps, cam.get("width", 0), cam.get("height", 0))
    got = max((a.registered for a in attempts), default=0)
    return PosesError(
        f"structure from motion registered only {got} of {state.n} frames "
        f"after {len(attempts)} attempts; likely cause: {cause}",
        hint,
    )


# ---- one attempt: features, matches, camera, mapping


def _run_attempt(state: _Run, k: int, rung: Rung, label: str) -> Attempt:
    """Run one rung of the retry ladder.

    Features and matches are shared with earlier attempts of the same settings; the
    attempt's own database (``<work>/attempt_<k>.db``) gets the focal length
    (:func:`_set_camera`) and is mapped (:func:`_map`).

    Args:
        state: The run's shared state.
        k: Index of the rung in the ladder.
        rung: Its settings.
        label: Prefix of the progress tasks, e.g. ``"[1/4]"``.
    """
    t_att = time.perf_counter()
    _extract(state, rung, label)
    matches = _match(state, rung, label)
    db = state.work / f"attempt_{k}.db"
    shutil.copyfile(matches, db)
    camera = _set_camera(state, db)
    models = _map(state, k, rung, label, db, camera)
    record = _record(k, rung, camera, models, state.n, time.perf_counter() - t_att)
    state.reporter.debug(
        f"poses attempt {k + 1} ({rung.reason}): {record['registered']}/{state.n} frames registered"
    )
    pairs = colmap.pair_stats(matches, list(zip(state.names[:-1], state.names[1:]))) if models else []
    return Attempt(
        index=k, record=record, models=models, database=db, calibration=camera.calibration, pairs=pairs
    )


def _extract(state: _Run, rung: Rung, label: str) -> None:
    """Extract SIFT features with ``rung.max_num_features`` unless an earlier attempt did."""
    if rung.max_num_features in state.features:
        return
    t0 = time.perf_counter()
    db = state.work / f"features_{rung.max_num_features}.db"
    colmap.create_database(db)
    with state.reporter.task(f"{label} Extracting features", total=state.n) as task:
        colmap.extract_features(
            db,
            state.ws.images,
            state.names,
            camera_model=_final_model_name(state.cfg.poses),
            mask_dir=state.mask_dir,
            max_num_features=rung.max_num_features,
            device_name=state.cfg.device,
            progress=task.advance,
        )
    state.features[rung.max_num_features] = db
    state.keypoints[rung.max_num_features] = colmap.keypoint_counts(db)
    state.timings["extract"] += time.perf_counter() - t0


def _match(state: _Run, rung: Rung, label: str) -> Path:
    """The database with ``rung``'s matches, matched now unless an earlier attempt did.

    The run's first matching also checks that the camera moves (:func:`_check_motion`).
    """
    key = (rung.max_num_features, rung.matcher, rung.overlap)
    if key in state.matches:
        return state.matches[key]
    t0 = time.perf_counter()
    db = state.work / f"matches_{rung.max_num_features}_{rung.matcher}_{rung.overlap}.db"
    shutil.copyfile(state.features[rung.max_num_features], db)
    pairs = (
        colmap.exhaustive_pairs(state.n)
        if rung.matcher == "exhaustive"
        else colmap.sequential_pairs(state.n, rung.overlap)
    )
    with state.reporter.task(f"{label} Matching ({rung.matcher})", total=len(pairs)) as task:
        colmap.match_pairs(
            db,
            state.names,
            pairs,
            state.work,
            device_name=state.cfg.device,
            progress=task.advance,
            seed=state.cfg.poses.seed,
        )
    state.matches[key] = db
    state.timings["match"] += time.perf_counter() - t0
    if len(state.matches) == 1:
        _check_motion(db, state.names, pairs, state.keypoints[rung.max_num_features], state.cfg.poses)
    return db


def _set_camera(state: _Run, db: Path) -> _Camera:
    """Self-calibrate the focal length (``poses.calibrate``) and set the database's camera."""
    pc = state.cfg.poses
    t0 = time.perf_counter()
    calib = calibrate(db) if pc.calibrate else None
    cam = colmap.camera_info(db)
    side = max(cam["width"], cam["height"])
    focal = 1.2 * side  # COLMAP's guess
    if calib:  # a focal at the search's edge means the pairs did not determine it
        focal = float(np.clip(calib["focal"], FOCAL_RANGE[0] * side, FOCAL_RANGE[1] * side))
        calib["initial_focal"] = focal
    camera = _Camera(
        model=_final_model_name(pc),
        focal=focal,
        side=side,
        refine=pc.refine_intrinsics or calib is None,
        calibration=calib,
    )
    if calib is None and pc.calibrate:
        state.reporter.warn(
            "poses: too few frame pairs to self-calibrate the focal length; bundle adjustment estimates it"
        )
    colmap.set_camera(db, camera.model, focal, focal)
    state.timings["calibrate"] += time.perf_counter() - t0
    return camera


def _map(state: _Run, k: int, rung: Rung, label: str, db: Path, camera: _Camera) -> list[colmap.Model]:
    """Map the attempt's database with the rung's mapper settings.

    With ``camera_model = "auto"``, while the focal lengths found are implausible
    (:func:`_plausible`) it maps again with one focal length, then with a fixed one,
    and records that in ``camera``.

    Returns:
        The models found, largest first (possibly none).
    """
    pc = state.cfg.poses
    t0 = time.perf_counter()
    s = colmap.MapperSettings(
        mapper=rung.mapper,
        init_min_num_inliers=rung.init_min_num_inliers,
        init_min_tri_angle=rung.init_min_tri_angle,
        abs_pose_min_num_inliers=rung.abs_pose_min_num_inliers,
        min_num_matches=rung.min_num_matches,
        refine_intrinsics=camera.refine,
        seed=pc.seed,
    )
    models = _register(state, k, db, s, f"{label} Registering frames ({rung.mapper})")
    for fixed in (False, True):
        if not models or pc.camera_model != "auto" or _plausible(models[0].camera, camera.side):
            break
        # the self-calibration in bundle adjustment degenerated (fx and fy far apart, or
        # an absurd focal length): one focal length instead, then a fixed one
        state.reporter.warn(
            f"poses: focal lengths {_focal_xy(models[0].camera)} px are implausible; "
            f"mapping again with {'a fixed' if fixed else 'one'} focal length"
        )
        camera.model, camera.fallback = "SIMPLE_PINHOLE", ("fixed focal" if fixed else "one focal")
        colmap.set_camera(db, camera.model, camera.focal, camera.focal)
        s = replace(s, refine_intrinsics=not fixed)
        camera.refine = not fixed
        models = _register(state, k, db, s, f"{label} Registering frames again ({rung.mapper})")
    state.timings["map"] += time.perf_counter() - t0
    return models


def _register(
    state: _Run, k: int, db: Path, s: colmap.MapperSettings, description: str
) -> list[colmap.Model]:
    """One mapper run, with a progress task of the registered frames."""
    with state.reporter.task(description, total=state.n) as task:
        models = colmap.run_mapper(db, state.ws.images, state.work / f"sparse_{k}", s, progress=task.advance)
        task.update(completed=models[0].size if models else 0)
    return models


def _record(
    k: int, rung: Rung, camera: _Camera, models: list[colmap.Model], n: int, seconds: float
) -> dict[str, Any]:
    """An attempt's entry in the metrics' ``attempts``."""
    best = models[0] if models else None
    frac = best.size / n if best else 0.0
    calib = camera.calibration
    settings = asdict(rung) | {
        "camera_model": camera.model,
        "refine_intrinsics": camera.refine,
        "intrinsics_fallback": camera.fallback,
    }
    return {
        "index": k,
        "reason": rung.reason,
        "settings": settings,
        "registered": best.size if best else 0,
        "registered_fraction": round(frac, 4),
        "mean_reprojection_error": _r(best.mean_reprojection_error) if best else None,
        "points": best.points if best else 0,
        "focal_px": _focal(best.camera) if best else None,
        "models": [m.size for m in models],
        "calibration": {kk: _r(v) for kk, v in calib.items()} if calib else None,
        "seconds": round(seconds, 2),
    }


# ---- outputs


def _write_model(ws: Workspace, win: Attempt) -> dict[str, Any]:
    """Write the winner's database to ``colmap/database.db`` and its largest model to
    ``sparse/0``, both atomically.

    Returns:
        The model's cameras (:func:`vid3d.sfm.colmap.model_cameras`).
    """
    with atomic_path(ws.database) as tmp:
        shutil.copyfile(win.database, tmp)
    with atomic_dir(ws.sparse0) as tmp:
        colmap.write_model(win.best, tmp)
    return colmap.model_cameras(win.best.rec)


def _metrics(
    names: list[str], win: Attempt, attempts: list[Attempt], timings: dict[str, float]
) -> dict[str, Any]:
    """The stage's metrics (see :func:`run`)."""
    best = win.best
    cam = best.camera
    reg = set(best.registered)
    n = len(names)
    return {
        "registered": best.size,
        "total": n,
        "registered_fraction": round(best.size / n, 4),
        "mean_reprojection_error": _r(best.mean_reprojection_error),
        "mean_track_length": _r(best.mean_track_length),
        "points": best.points,
        "focal_px": _focal(cam),
        "focal_xy_px": _focal_xy(cam),
        "fov_deg": _fov(cam),
        "camera_model": cam.get("model"),
        "camera_params": [_r(p) for p in cam.get("params", [])],
        "width": cam.get("width"),
        "height": cam.get("height"),
        "unregistered": [nm for nm in names if nm not in reg],
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "attempts": [a.record for a in attempts],
        "best_attempt": win.index,
        "other_models": [m.size for m in win.models[1:]],
        "calibration": win.calibration or None,
        "pairs": [p.to_dict() for p in win.pairs],
    }


def _write_poses_json(
    ws: Workspace, names: list[str], best: colmap.Model, data: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """Write ``poses.json``: the camera, every frame's ``camtoworld`` (None when not
    registered) and the metrics."""
    cam = best.camera
    K = data["cameras"][int(data["camera_ids"][0])]["K"] if len(data["names"]) else np.eye(3)
    c2w = dict(zip(data["names"], data["camtoworlds"]))
    frames = [
        {"name": nm, "registered": nm in c2w, "camtoworld": c2w[nm].round(8).tolist() if nm in c2w else None}
        for nm in names
    ]
    write_json(
        ws.poses_json,
        {
            "camera": {
                "model": cam.get("model"),
                "width": cam.get("width"),
                "height": cam.get("height"),
                "params": cam.get("params"),
                "K": K.tolist(),
            },
            "frames": frames,
            "metrics": metrics,
        },
    )


# ---- focal lengths


def _plausible(cam: dict, side: int) -> bool:
    """Whether a camera's focal lengths are within :data:`MAX_PIXEL_ASPECT` of each other
    and within :data:`PLAUSIBLE_FOCAL` times the longer image side."""
    xy = _focal_xy(cam)
    if not xy or min(xy) <= 0:
        return False
    lo, hi = PLAUSIBLE_FOCAL
    return max(xy) / min(xy) <= MAX_PIXEL_ASPECT and lo * side <= min(xy) and max(xy) <= hi * side


def _r(x: float | None, nd: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def _focal_xy(cam: dict) -> list[float] | None:
    p = cam.get("params")
    if not p:
        return None
    if cam["model"] in ("PINHOLE", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE"):
        return [_r(p[0], 2), _r(p[1], 2)]
    return [_r(p[0], 2), _r(p[0], 2)]


def _fov(cam: dict) -> float | None:
    """The horizontal field of view in degrees."""
    xy, w = _focal_xy(cam), cam.get("width")
    return _r(math.degrees(2 * math.atan(w / 2 / xy[0])), 2) if xy and w and xy[0] else None


def _focal(cam: dict) -> float | None:
    xy = _focal_xy(cam)
    return _r(math.sqrt(xy[0] * xy[1]), 2) if xy else None
