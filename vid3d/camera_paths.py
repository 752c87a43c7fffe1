"""Camera paths for the rendered video, derived from the reconstructed cameras.

Every path is computed from the input cameras ``camtoworlds [N, 4, 4]`` (OpenCV
axes: x right, y down, z forward) and, when known, the SfM points:

- ``orbit``: an ellipse around the scene centre, in the plane perpendicular to the
  cameras' up direction, at the cameras' own distance and height (times
  ``radius_factor`` and ``height_factor``), looking at the centre; when the cameras
  covered less than 300 degrees, a there-and-back sweep of the arc they covered (the
  "arc" path). Closed loop.
- ``turntable``: a full circle at constant angular speed around the centre. Closed loop.
- ``spiral``: the forward-facing spiral of LLFF / nerfstudio, for clips whose camera
  only moves a little, sideways. Closed loop.
- ``input``: the input camera path, smoothed, resampled and levelled. Not a loop.
- ``push-in``: a gentle dolly forward along the clip's mean view direction with a slight
  spiral, for walk-throughs and drone flights. Not a loop.
- ``sway``: a small side-to-side (and slightly up-down) motion around the median input
  camera, for clips whose camera barely moves. Closed loop.
- ``auto``: the kind :func:`classify_cameras` picks for the input cameras.

Every path is roll-free (the camera's x axis stays perpendicular to
:func:`up_direction`: a level horizon) and smooth: loops join with no kink (the step
from the last frame to the first is like the others, velocity included), the other
paths start and stop at rest (:func:`ease`). :func:`path_motion` measures this. Each
kind takes an ``amount`` in (0, 1] that shrinks it towards the median input camera
(:func:`median_camera`): as ``amount`` goes to 0 the path stays at that camera's
position (looking at the centre); "input" stays the input track.

A :class:`CameraPath` (per frame: camtoworld, pinhole intrinsics, image size) can be
saved to and loaded from a JSON file so that users can edit it::

    {"version": 1, "fps": 30, "loop": true, "name": "orbit",
     "frames": [{"camtoworld": [[...4x4...]], "fx": .., "fy": .., "cx": .., "cy": ..,
                 "width": 1280, "height": 720}, ...]}

Output intrinsics keep the input cameras' field of view, cropped to the output aspect
(:func:`output_intrinsics`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vid3d.config import PATH_TYPES
from vid3d.errors import ConfigError, InputError
from vid3d.workspace import write_text

LOOPING = {"orbit": True, "turntable": True, "spiral": True, "input": False, "push-in": False, "sway": True}
"""Whether a path type's last frame joins its first."""


@dataclass
class CameraPath:
    """A camera per output frame, in gsplat's conventions."""

    camtoworlds: np.ndarray
    """[F, 4, 4] float64 camera-to-world, OpenCV axes."""
    Ks: np.ndarray
    """[F, 3, 3] float64 pinhole pixel intrinsics."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    fps: float = 30.0
    """Frames per second the path was made for."""
    loop: bool = False
    """Whether the last frame joins the first smoothly (play it on repeat)."""
    name: str = "path"
    """Path type or file stem; names the video (``renders/<name>.mp4``)."""
    coverage: np.ndarray | None = None
    """[F] share of each frame's pixels the clip observed well (:mod:`vid3d.coverage`),
    once measured; saved per frame."""
    about: dict | None = None
    """How the path was chosen (kind, reason, amount, coverage target), saved as is."""

    def __len__(self) -> int:
        return len(self.camtoworlds)

    def transformed(self, T: np.ndarray) -> CameraPath:
        """The path moved by a similarity ``T [4, 4]`` (rotation times scale, translation).

        Rotations stay orthonormal; intrinsics are unchanged.
        """
        T = np.asarray(T, dtype=np.float64)
        scale = np.cbrt(np.linalg.det(T[:3, :3]))
        c2w = T[None] @ self.camtoworlds
        c2w[:, :3, :3] /= scale
        return replace(self, camtoworlds=c2w)

    def to_json(self) -> dict:
        """The path as a JSON-serialisable dict (see the module docstring)."""
        frames = []
        for i, (c2w, K) in enumerate(zip(self.camtoworlds, self.Ks)):
            frame = {
                "camtoworld": [[float(v) for v in row] for row in c2w],
                "fx": float(K[0, 0]),
                "fy": float(K[1, 1]),
                "cx": float(K[0, 2]),
                "cy": float(K[1, 2]),
                "width": int(self.width),
                "height": int(self.height),
            }
            if self.coverage is not None:
                frame["coverage"] = round(float(self.coverage[i]), 4)
            frames.append(frame)
        doc = {"version": 1, "name": self.name, "fps": float(self.fps), "loop": bool(self.loop)}
        if self.about:
            doc["about"] = self.about
        return {**doc, "frames": frames}

    def save(self, path: Path) -> None:
        """Write the path as JSON, atomically."""
        write_text(Path(path), json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> CameraPath:
        """Read a path written by :meth:`save` (or edited by hand).

        Raises:
            InputError: The file is missing, not JSON, or a frame is malformed.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"camera path file {path} does not exist",
                "give a JSON file written by `vid3d render` (renders/<path>.json)",
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(
                f"camera path file {path} is not valid JSON: {e}", "fix the file or render a fresh one"
            ) from e
        return cls.from_json(data, source=str(path))

    @classmethod
    def from_json(cls, data: dict, source: str = "camera path") -> CameraPath:
        """Build a path from the dict of :meth:`to_json`."""
        frames = data.get("frames") if isinstance(data, dict) else None
        if not isinstance(frames, list) or not frames:
            raise InputError(f"{source} has no frames", 'it needs a non-empty "frames" list')
        c2ws, Ks, sizes = [], [], set()
        for i, fr in enumerate(frames):
            try:
                c2w = np.asarray(fr["camtoworld"], dtype=np.float64)
                K = np.array(
                    [
                        [float(fr["fx"]), 0.0, float(fr["cx"])],
                        [0.0, float(fr["fy"]), float(fr["cy"])],
                        [0.0, 0.0, 1.0],
                    ]
                )
                size = (int(fr["width"]), int(fr["height"]))
            except (KeyError, TypeError, ValueError) as e:
                raise InputError(
                    f"frame {i} of {source} is malformed ({e!r})",
                    "each frame needs camtoworld (4x4), fx, fy, cx, cy, width, height",
                ) from e
            if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)) or not np.all(np.isfinite(K)):
                raise InputError(
                    f"frame {i} of {source} has a bad camtoworld", "camtoworld must be a finite 4x4 matrix"
                )
            R = c2w[:3, :3]
            if abs(np.linalg.det(R) - 1) > 1e-3 or not np.allclose(R.T @ R, np.eye(3), atol=1e-3):
                raise InputError(
                    f"frame {i} of {source} has a camtoworld whose rotation is not orthonormal",
                    "keep the 3x3 block a rotation matrix when editing the path",
                )
            c2ws.append(c2w)
            Ks.append(K)
            sizes.add(size)
        if len(sizes) != 1:
            raise InputError(
                f"frames of {source} have different image sizes {sorted(sizes)}",
                "a video needs one width and height for all frames",
            )
        ((width, height),) = sizes
        if width <= 0 or height <= 0:
            raise InputError(f"{source} has an image size of {width}x{height}", "use a positive size")
        cov = [fr.get("coverage") for fr in frames]
        coverage = np.array(cov, dtype=np.float64) if all(isinstance(c, (int, float)) for c in cov) else None
        about = data.get("about")
        return cls(
            camtoworlds=np.stack(c2ws),
            Ks=np.stack(Ks),
            width=width,
            height=height,
            fps=float(data.get("fps", 30.0)),
            loop=bool(data.get("loop", False)),
            name=str(data.get("name", "path")),
            coverage=coverage,
            about=about if isinstance(about, dict) else None,
        )


# ---------------------------------------------------------------------------
# Scene geometry from the cameras


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def up_direction(camtoworlds: np.ndarray, planar_ratio: float = 0.2) -> np.ndarray:
    """The cameras' up direction.

    When the camera centres spread over a plane (an orbit or an arc, as most clips
    that circle a subject do), the normal of that plane, turned to agree with the
    cameras' -y axes: cameras that look down at a subject tilt their -y axes towards
    it, so the mean -y axis alone would tilt the whole path. Otherwise (a straight
    track, a single position) the mean of the -y axes.

    Args:
        camtoworlds: [N, 4, 4] cameras.
        planar_ratio: The centres count as planar when their second-largest spread is
            at least this fraction of the largest and the smallest at most this
            fraction of the second. Default: 0.2.

    Returns:
        [3] unit vector.
    """
    mean_up = -camtoworlds[:, :3, 1].mean(axis=0)
    if np.linalg.norm(mean_up) < 1e-6:  # cameras upside down in equal parts: use the first
        mean_up = -camtoworlds[0, :3, 1]
    mean_up = _normalize(mean_up)
    centers = camtoworlds[:, :3, 3]
    if len(centers) >= 3:
        _, sv, Vt = np.linalg.svd(centers - centers.mean(axis=0), full_matrices=False)
        if sv[0] > 1e-9 and sv[1] >= planar_ratio * sv[0] and sv[2] <= planar_ratio * sv[1]:
            normal = Vt[2]
            normal = normal if normal @ mean_up >= 0 else -normal
            if normal @ mean_up > 0.5:  # within 60 degrees of the cameras' own up
                return _normalize(normal)
    return mean_up


def scene_center(
    camtoworlds: np.ndarray,
    points: np.ndarray | None = None,
    Ks: np.ndarray | None = None,
    width: int | None = None,
    height: int | None = None,
    min_spread: float = 0.03,
) -> np.ndarray:
    """The point the cameras look at.

    The least-squares point closest to all optical axes, in the directions those
    axes pin down; in the directions they leave open (nearly parallel axes, as in
    forward-facing or walk-through clips), the mean of the cameras' "focus points"
    (each axis at the median depth of the SfM points the camera sees, or at the
    size of the camera path when there are no points).

    Args:
        camtoworlds: [N, 4, 4] cameras.
        points: [P, 3] SfM points, optional.
        Ks: [N, 3, 3] intrinsics with ``width``, ``height``, optional; limit the
            points a camera sees to its image (else a 60 degree cone).
        min_spread: Smallest eigenvalue of the mean projector ``I - d d^T`` for
            the axes to decide a direction (0.03: about 10 degrees of spread).

    Returns:
        [3] float64 centre.
    """
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    centers = c2w[:, :3, 3]  # [N, 3]
    dirs = _normalize(c2w[:, :3, 2])  # [N, 3]
    n = len(c2w)
    extent = float(np.linalg.norm(centers - centers.mean(0), axis=1).max()) if n > 1 else 0.0
    depths = _visible_depths(c2w, points, Ks, width, height)  # [N] or None
    if depths is None:
        fallback = extent if extent > 1e-9 else 1.0
        depths = np.full(n, fallback)
    focus = centers + dirs * depths[:, None]  # [N, 3]

    P = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # [N, 3, 3] projectors off each axis
    A = P.mean(0)  # [3, 3] normal matrix of the least-squares problem
    b = np.einsum("nij,nj->i", P, centers) / n
    # Along the eigen-directions the axes constrain (their spread is over ~10 degrees),
    # take the least-squares solution; along the others (nearly parallel axes), the
    # mean focus point.
    w, V = np.linalg.eigh(A)
    strong = w > min_spread
    coef = V.T @ focus.mean(0)
    coef[strong] = (V.T @ b)[strong] / w[strong]
    x = V @ coef
    # Must lie in front of most cameras; otherwise trust the focus points.
    if np.median(np.einsum("ni,ni->n", x[None] - centers, dirs)) <= 0:
        x = np.median(focus, axis=0)
    return x


def _visible_depths(
    c2w: np.ndarray,
    points: np.ndarray | None,
    Ks: np.ndarray | None,
    width: int | None,
    height: int | None,
    min_points: int = 10,
) -> np.ndarray | None:
    """Median depth of the points each camera sees; None without enough points."""
    if points is None or len(points) < min_points:
        return None
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) > 20000:  # a fixed subsample is plenty for a median
        pts = pts[np.random.default_rng(0).choice(len(pts), 20000, replace=False)]
    w2c = np.linalg.inv(c2w)
    if Ks is not None:
        Ks = np.asarray(Ks, dtype=np.float64).reshape(-1, 3, 3)
        Ks = np.broadcast_to(Ks, (len(c2w), 3, 3)) if len(Ks) == 1 else Ks
    out = np.full(len(c2w), np.nan)
    for i in range(len(c2w)):
        p = pts @ w2c[i, :3, :3].T + w2c[i, :3, 3]  # [P, 3] camera frame
        z = p[:, 2]
        front = z > 1e-6
        if Ks is not None and width and height:
            u = Ks[i, 0, 0] * p[:, 0] / np.where(front, z, 1) + Ks[i, 0, 2]
            v = Ks[i, 1, 1] * p[:, 1] / np.where(front, z, 1) + Ks[i, 1, 2]
            seen = front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        else:
            seen = front & (np.hypot(p[:, 0], p[:, 1]) < z * math.tan(math.radians(30)))
        if seen.sum() >= min_points:
            out[i] = np.median(z[seen])
    if np.all(np.isnan(out)):
        return None
    return np.where(np.isnan(out), np.nanmedian(out), out)


def look_at(positions: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Cameras at ``positions`` looking at ``target`` with ``up`` pointing up in the image.

    Args:
        positions: [F, 3] camera centres.
        target: [3] or [F, 3] points to look at.
        up: [3] world up direction.

    Returns:
        [F, 4, 4] camera-to-world matrices, OpenCV axes (x right, y down, z forward).
    """
    z = _normalize(np.broadcast_to(target, positions.shape) - positions)  # [F, 3]
    down = -_normalize(np.asarray(up, dtype=np.float64))
    x = np.cross(down[None], z)  # [F, 3]
    bad = np.linalg.norm(x, axis=1) < 1e-6  # looking straight along up: pick any side
    if np.any(bad):
        alt = np.array([1.0, 0.0, 0.0]) if abs(down[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        x[bad] = np.cross(alt[None], z[bad])
    x = _normalize(x)
    y = np.cross(z, x)
    c2w = np.tile(np.eye(4), (len(positions), 1, 1))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = x, y, z, positions
    return c2w


def _horizontal_frame(camtoworlds: np.ndarray, center: np.ndarray, up: np.ndarray):
    """Axes ``e1, e2`` of the plane perpendicular to ``up`` (``e1`` along the cameras'
    widest spread around the centre) and the cameras' offsets in that frame."""
    off = camtoworlds[:, :3, 3] - center  # [N, 3]
    h = off - np.outer(off @ up, up)  # [N, 3] horizontal offsets
    # Any unit vector perpendicular to up as a seed basis.
    seed = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b1 = _normalize(seed - up * (seed @ up))
    b2 = np.cross(up, b1)
    xy = np.stack([h @ b1, h @ b2], axis=1)  # [N, 2]
    # Principal direction of the spread around the centre (second moment, not covariance).
    w, V = np.linalg.eigh(xy.T @ xy)
    d1 = V[:, 1]
    e1 = _normalize(d1[0] * b1 + d1[1] * b2)
    e2 = np.cross(up, e1)
    return e1, e2, np.stack([off @ e1, off @ e2, off @ up], axis=1)  # [N, 3]


def _ring_poses(
    center: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    up: np.ndarray,
    a: float,
    b: float,
    height: float,
    t: np.ndarray,
) -> np.ndarray:
    """Cameras at parameters ``t [F]`` on the ellipse ``a cos t e1 + b sin t e2`` lifted by
    ``height`` along ``up`` around ``center``, looking at the centre: [F, 4, 4]. ``a``,
    ``b`` and ``height`` are numbers or [F] arrays."""
    lift = np.asarray(height, dtype=np.float64)[..., None] * up  # [3] or [F, 3]
    pos = center + np.outer(a * np.cos(t), e1) + np.outer(b * np.sin(t), e2) + lift
    return look_at(pos, center, up)


def _covered_arc(xy: np.ndarray) -> tuple[float, float]:
    """Middle angle and angular span of the arc the points cover around the origin.

    Args:
        xy: [N, 2] offsets from the centre in the orbit plane.

    Returns:
        ``(mid, span)`` in radians; ``span`` is 2 pi less the largest empty gap.
    """
    if len(xy) < 2:
        return float(np.arctan2(xy[0, 1], xy[0, 0])) if len(xy) else 0.0, 0.0
    t = np.sort(np.arctan2(xy[:, 1], xy[:, 0]))
    gaps = np.diff(np.concatenate([t, [t[0] + 2 * np.pi]]))
    i = int(np.argmax(gaps))
    start = t[(i + 1) % len(t)]
    span = 2 * np.pi - float(gaps[i])
    return float(start + span / 2), span


def _angles(xy: np.ndarray) -> tuple[float, float]:
    """Start angle (the first camera's) and direction (+1 or -1) of the cameras' motion."""
    t = np.arctan2(xy[:, 1], xy[:, 0])
    dt = np.angle(np.exp(1j * np.diff(t))) if len(t) > 1 else np.zeros(1)
    direction = 1.0 if dt.sum() >= 0 else -1.0
    return float(t[0]), direction


def _ellipse_params(n: int, a: float, b: float, t0: float, direction: float) -> np.ndarray:
    """``n`` parameters on an ellipse with semi-axes ``a, b``, spaced at equal arc
    length, starting at parameter ``t0``; the last one joins the first (not repeated)."""
    dense = np.linspace(0, 2 * np.pi, 4097)
    pts = np.stack([a * np.cos(t0 + direction * dense), b * np.sin(t0 + direction * dense)], 1)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-12:
        return t0 + direction * np.linspace(0, 2 * np.pi, n, endpoint=False)
    target = np.linspace(0, s[-1], n, endpoint=False)
    return t0 + direction * np.interp(target, s, dense)


# ---------------------------------------------------------------------------
# Paths

FULL_CIRCLE_DEGREES = 300.0
"""Covered arc (degrees) from which a clip counts as going all the way round: the orbit
goes round too, and :func:`classify_cameras` picks "turntable". The gap it bridges is at
most 60 degrees, a second of a 6 s turntable; a wider one would show what nobody filmed."""
PUSH_MIN_DEPTH = 0.1
"""Shortest push-in as a fraction of the distance to the scene centre."""
PUSH_MAX_REACH = 0.5
"""A push-in stops at this fraction of the distance to the centre (unless the input went
farther), so that the subject stays a subject and the view turns slowly."""
SWAY_WIDTH = 0.05
"""Half-width of the sway as a fraction of the distance to the centre: the sway spans
as much as a clip that :func:`classify_cameras` still calls still (``STILL_TRAVEL``)."""


def median_camera(camtoworlds: np.ndarray) -> int:
    """Index of the median input camera: the medoid of the camera centres (the smallest
    summed distance to the others, or to 512 of them evenly spread in time; the middle
    of a track).

    Args:
        camtoworlds: [N, 4, 4] cameras.

    Returns:
        Index into ``camtoworlds``.
    """
    from scipy.spatial.distance import cdist

    p = np.asarray(camtoworlds, dtype=np.float64)[:, :3, 3]  # [N, 3]
    return int(np.argmin(cdist(p, p[_spaced(len(p))]).sum(axis=1)))


def _spaced(n: int, k: int = 512) -> np.ndarray:
    """At most ``k`` indices evenly spread over ``range(n)``."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


def ease(n: int, ramp: float = 0.25) -> np.ndarray:
    """Progress from 0 to 1 over ``n`` frames that starts and stops at rest.

    The speed rises along a smootherstep (``6x^5 - 15x^4 + 10x^3``) over the first
    ``ramp`` of the frames, stays constant, and falls over the last ``ramp``: velocity
    and acceleration are zero at both ends and the jerk stays bounded (``ramp=0.5`` is
    a bell close to minimum-jerk timing, at most 2x the mean speed; 0 is constant speed).

    Args:
        n: Number of frames.
        ramp: Fraction of the frames spent speeding up (and as many slowing down), 0-0.5.

    Returns:
        [n] float64 progress, 0 at the first frame and 1 at the last.
    """
    x = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(n)
    r = float(np.clip(ramp, 0.0, 0.5))
    if r <= 0:
        return x

    def rise(y: np.ndarray) -> np.ndarray:  # integral of the smootherstep from 0 to y
        return y**4 * (y * y - 3 * y + 2.5)

    u = r * rise(np.clip(x / r, 0, 1)) + np.clip(x - r, 0, 1 - 2 * r)
    u += r * (0.5 - rise(np.clip((1 - x) / r, 0, 1)))
    return u / (1 - r)


def _towards(start, end, amount: float):
    """``start`` moved ``amount`` of the way to ``end`` (exactly ``end`` at 1)."""
    return (1 - amount) * np.asarray(start) + amount * np.asarray(end)


def _ring_setup(camtoworlds: np.ndarray, center: np.ndarray | None):
    """Cameras as float64, the centre, up, the horizontal axes ``e1, e2`` and the
    cameras' offsets ``[N, 3]`` in that frame, and the median camera's azimuth,
    horizontal radius and height."""
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    center = scene_center(c2w) if center is None else np.asarray(center, dtype=np.float64)
    up = up_direction(c2w)
    e1, e2, local = _horizontal_frame(c2w, center, up)
    x, y, h = local[median_camera(c2w)]
    return c2w, center, up, e1, e2, local, (float(np.arctan2(y, x)), float(np.hypot(x, y)), float(h))


def _sweep(n: int, start: float, mid: float, span: float, amount: float, direction: float) -> np.ndarray:
    """Azimuths ``[n]`` of a there-and-back sweep (sinusoidal: at rest at the turns, a
    closed loop) over ``amount * span`` radians, centred ``amount`` of the way from the
    angle ``start`` to ``mid``; with ``start`` inside the arc ``mid +- span / 2`` it
    stays inside it."""
    centre = start + amount * float(np.angle(np.exp(1j * (mid - start))))
    return centre + direction * 0.5 * amount * span * np.sin(2 * np.pi * np.arange(n) / n)


def _ellipse_axes(local: np.ndarray, min_axis_ratio: float) -> tuple[float, float]:
    """Semi-axes along ``e1, e2``: the 90th percentile of the offsets along each."""
    a = float(np.percentile(np.abs(local[:, 0]), 90))
    b = float(np.percentile(np.abs(local[:, 1]), 90))
    if a < 1e-9:  # the cameras are straight above or below the centre
        a = b = float(np.median(np.linalg.norm(local, axis=1))) or 1.0
    return a, max(b, min_axis_ratio * a)


def orbit_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    center: np.ndarray | None = None,
    radius_factor: float = 1.0,
    height_factor: float = 1.0,
    min_axis_ratio: float = 0.5,
    max_arc_degrees: float = FULL_CIRCLE_DEGREES,
    amount: float = 1.0,
) -> np.ndarray:
    """An ellipse around the scene centre, looking at it (a closed loop, roll-free).

    When the input cameras cover less than ``max_arc_degrees`` around the centre, the
    orbit sweeps the arc they covered, there and back (at rest at the turns), at their
    median distance, so it shows only what the clip saw. This is the "arc" path; no
    separate kind is needed.

    The ellipse lies in the plane perpendicular to the cameras' up direction; its axes
    follow the cameras' spread around the centre (90th percentile of their offsets along
    the two principal directions), its height is the cameras' mean height above the
    centre. It starts next to the first input camera and turns the way they turn, at
    constant speed.

    ``amount`` shrinks the path towards the median input camera (:func:`median_camera`):
    the sweep covers ``amount`` of the arc, centred ``amount`` of the way from the median
    camera to the middle of the arc; radius and height move ``amount`` of the way from
    the median camera's to the orbit's. Below 1 a full orbit becomes a sweep of
    ``amount * 360`` degrees around the median camera.

    Args:
        camtoworlds: [N, 4, 4] input cameras.
        n_frames: Number of poses; pose ``n_frames`` would equal pose 0.
        center: [3] point to orbit. Default: :func:`scene_center` of the cameras.
        radius_factor: Factor on the cameras' distance to the centre. Default: 1.
        height_factor: Factor on the cameras' height above the centre. Default: 1.
        min_axis_ratio: Smallest ratio of the short to the long axis, so that a
            straight camera track still gives a round orbit. Default: 0.5.
        max_arc_degrees: Covered arc from which the orbit goes all the way round.
            Default: :data:`FULL_CIRCLE_DEGREES` (300).
        amount: Size of the path, in [0, 1]. Default: 1.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    c2w, center, up, e1, e2, local, (az_m, r_m, h_m) = _ring_setup(camtoworlds, center)
    height = _towards(h_m, float(local[:, 2].mean()) * height_factor, amount)
    mid, span = _covered_arc(local[:, :2])
    _, direction = _angles(local[:, :2])
    if span < np.radians(max_arc_degrees):
        # The clip saw the subject from one side only: sweep that side back and forth
        # instead of going round to what nobody filmed.
        r = _towards(r_m, float(np.median(np.linalg.norm(local[:, :2], axis=1))) * radius_factor, amount)
        t = _sweep(n_frames, az_m, mid, span, amount, direction)
        return _ring_poses(center, e1, e2, up, r, r, height, t)
    a, b = (radius_factor * v for v in _ellipse_axes(local, min_axis_ratio))
    if amount >= 1:
        t0, direction = _angles(local[:, :2] / np.array([a, b]))
        t = _ellipse_params(n_frames, a, b, t0, direction)
        return _ring_poses(center, e1, e2, up, a, b, height, t)
    t = _sweep(n_frames, az_m, az_m, 2 * np.pi, amount, direction)
    r = _towards(r_m, a * b / np.hypot(b * np.cos(t), a * np.sin(t)), amount)  # [F] on the ellipse
    return _ring_poses(center, e1, e2, up, r, r, height, t)


def turntable_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    center: np.ndarray | None = None,
    radius_factor: float = 1.0,
    height_factor: float = 1.0,
    amount: float = 1.0,
) -> np.ndarray:
    """A full circle at constant angular speed around the centre, looking at it.

    Radius: the cameras' median horizontal distance to the centre; height: their mean
    height above it. Starts next to the first input camera. Below ``amount`` 1 it is a
    there-and-back sweep of ``amount * 360`` degrees around the median input camera,
    radius and height ``amount`` of the way from the median camera's to the circle's.

    Args:
        camtoworlds: [N, 4, 4] input cameras.
        n_frames: Number of poses; pose ``n_frames`` would equal pose 0.
        center: [3] point to turn around. Default: :func:`scene_center`.
        radius_factor: Factor on the radius. Default: 1.
        height_factor: Factor on the height. Default: 1.
        amount: Size of the path, in [0, 1]. Default: 1.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    c2w, center, up, e1, e2, local, (az_m, r_m, h_m) = _ring_setup(camtoworlds, center)
    r = float(np.median(np.linalg.norm(local[:, :2], axis=1)))
    if r < 1e-9:
        r = float(np.median(np.linalg.norm(local, axis=1))) or 1.0
    r = _towards(r_m, r * radius_factor, amount)
    height = _towards(h_m, float(local[:, 2].mean()) * height_factor, amount)
    t0, direction = _angles(local[:, :2])
    if amount >= 1:
        t = t0 + direction * np.linspace(0, 2 * np.pi, n_frames, endpoint=False)
    else:
        t = _sweep(n_frames, az_m, az_m, 2 * np.pi, amount, direction)
    return _ring_poses(center, e1, e2, up, r, r, height, t)


def spiral_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    center: np.ndarray | None = None,
    radius_factor: float = 1.0,
    rotations: int = 2,
    zrate: float = 0.5,
    min_radius: float = 0.05,
    max_radius: float = 0.25,
    amount: float = 1.0,
) -> np.ndarray:
    """The forward-facing spiral of LLFF (``render_path_spiral``), a closed loop.

    The cameras circle ``rotations`` times around the mean input camera, with radii the
    90th percentile of the input cameras' offsets along its axes, while moving back and
    forth along its view direction, all looking at the centre (roll-free). ``amount``
    scales the spiral about the median input camera: its middle moves ``amount`` of the
    way from the median camera to the mean one, its radii scale by ``amount``.

    Args:
        camtoworlds: [N, 4, 4] input cameras.
        n_frames: Number of poses; pose ``n_frames`` would equal pose 0.
        center: [3] point to look at. Default: :func:`scene_center`.
        radius_factor: Factor on the radii. Default: 1.
        rotations: Turns of the spiral. Default: 2.
        zrate: Back-and-forth cycles per turn along the view direction; the path
            is closed when ``rotations * zrate`` is a whole number. Default: 0.5.
        min_radius: Smallest sideways radius as a fraction of the distance to the
            centre, so that a still camera still moves. Default: 0.05.
        max_radius: Largest sideways radius as a fraction of that distance, so that the
            view swings at most ~14 degrees about the centre (cameras that circled the
            centre would otherwise spiral round it). Default: 0.25.
        amount: Size of the path, in [0, 1]. Default: 1.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    center = scene_center(c2w) if center is None else np.asarray(center, dtype=np.float64)
    up = up_direction(c2w)
    mean_pos = c2w[:, :3, 3].mean(0)
    avg = look_at(mean_pos[None], mean_pos + _normalize(c2w[:, :3, 2].mean(0)), up)[0]
    R = avg[:3, :3]
    local = (c2w[:, :3, 3] - mean_pos) @ R  # [N, 3] offsets in the mean camera's axes
    rads = np.percentile(np.abs(local), 90, axis=0)  # [3]
    dist = float(np.linalg.norm(center - mean_pos))
    rads[:2] = np.clip(rads[:2], min_radius * dist, max_radius * dist)
    rads[2] = min(rads[2], 0.5 * dist)  # never reach the centre
    rads = rads * radius_factor
    t = np.linspace(0, 2 * np.pi * rotations, n_frames, endpoint=False)
    offs = np.stack([np.cos(t), -np.sin(t), -np.sin(t * zrate)], 1) * rads  # [F, 3]
    middle = _towards(c2w[median_camera(c2w), :3, 3], mean_pos, amount)
    return look_at(middle + amount * offs @ R.T, center, up)


def push_in_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    center: np.ndarray | None = None,
    amount: float = 1.0,
    spiral: float = 0.1,
    ramp: float = 0.3,
) -> np.ndarray:
    """A gentle dolly forward along the clip's mean view direction, with a slight
    spiral (not a loop; eased in and out).

    The dolly runs along the axis through the median input camera in the mean view
    direction, over the stretch of that axis the input cameras covered (at least
    :data:`PUSH_MIN_DEPTH` of the centre's distance along the axis, centred on that
    stretch), and stops at :data:`PUSH_MAX_REACH` of that distance unless the input went
    farther. On the way it circles the axis once, at a radius that rises and falls
    (``spiral`` times the dolly's length at its widest), looking at the point of the
    axis at the centre's distance, or twice the dolly's reach if that is farther (so the
    view turns only with the spiral, by a few degrees). ``amount`` scales the whole
    path about the median camera.

    Args:
        camtoworlds: [N, 4, 4] input cameras.
        n_frames: Number of poses.
        center: [3] scene centre, whose distance sizes the dolly. Default: :func:`scene_center`.
        amount: Size of the path, in [0, 1]. Default: 1.
        spiral: Largest spiral radius as a fraction of the dolly's length. Default: 0.1.
        ramp: Fraction of the video spent speeding up and again slowing down
            (:func:`ease`). Default: 0.3.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    center = scene_center(c2w) if center is None else np.asarray(center, dtype=np.float64)
    up = up_direction(c2w)
    m = c2w[median_camera(c2w), :3, 3]
    d = _normalize(c2w[:, :3, 2].mean(0))  # [3] the dolly axis
    s = (c2w[:, :3, 3] - m) @ d  # [N] input cameras along the axis
    reach = float((center - m) @ d)
    if reach <= 1e-9:  # the centre is not ahead: size by the cameras alone
        reach = max(2 * float(np.ptp(s)), float(np.linalg.norm(center - m)), 1e-9)
    length = max(float(np.ptp(s)), PUSH_MIN_DEPTH * reach)
    start = 0.5 * float(s.min() + s.max()) - 0.5 * length
    end = min(start + length, max(float(s.max()), PUSH_MAX_REACH * reach))
    start = min(start, end - PUSH_MIN_DEPTH * reach)
    u = ease(n_frames, ramp)  # [F]
    side = look_at(m[None], m + d, up)[0, :3, :2]  # [3, 2] the axis' right and down
    ring = np.sin(np.pi * u)[:, None] * np.stack([np.cos(2 * np.pi * u), np.sin(2 * np.pi * u)], 1)
    offs = np.outer(start + (end - start) * u, d) + spiral * (end - start) * ring @ side.T  # [F, 3]
    target = m + d * max(reach, 2 * amount * end)
    return look_at(m + amount * offs, target, up)


def sway_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    center: np.ndarray | None = None,
    amount: float = 1.0,
    width: float = SWAY_WIDTH,
    lift: float = 0.3,
) -> np.ndarray:
    """A small side-to-side motion around the median input camera, looking at the
    centre, rising a little at the sides like a pendulum (a closed loop).

    Args:
        camtoworlds: [N, 4, 4] input cameras.
        n_frames: Number of poses; pose ``n_frames`` would equal pose 0.
        center: [3] point to look at. Default: :func:`scene_center`.
        amount: Size of the path, in [0, 1]. Default: 1.
        width: Half-width as a fraction of the median camera's distance to the centre.
            Default: :data:`SWAY_WIDTH` (0.05).
        lift: Rise at the sides as a fraction of the half-width. Default: 0.3.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    center = scene_center(c2w) if center is None else np.asarray(center, dtype=np.float64)
    up = up_direction(c2w)
    m = c2w[median_camera(c2w), :3, 3]
    right = look_at(m[None], center, up)[0, :3, 0]  # [3] horizontal, across the view
    w = amount * width * float(np.linalg.norm(center - m))
    t = 2 * np.pi * np.arange(n_frames) / n_frames
    pos = m + np.outer(w * np.sin(t), right) - np.outer(0.5 * lift * w * np.cos(2 * t), up)
    return look_at(pos, center, up)


def input_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    smoothing: float = 2.0,
    times: np.ndarray | None = None,
    level: bool = True,
    ramp: float = 0.15,
) -> np.ndarray:
    """The input camera path, smoothed and resampled to ``n_frames`` poses.

    Positions and rotations (quaternions, signs aligned) are Gaussian-smoothed over the
    input frames, then interpolated: positions with a cubic spline, rotations with
    :class:`scipy.spatial.transform.RotationSpline` (C2-continuous), from the first input
    frame's time to the last, eased in and out (:func:`ease`). ``level`` then turns each
    camera about its view direction so that the horizon is level (the look direction
    stays the input's; the roll goes).

    Args:
        camtoworlds: [N, 4, 4] input cameras in time order (N >= 1).
        n_frames: Number of poses.
        smoothing: Standard deviation of the Gaussian, in input frames (0: none). Default: 2.
        times: [N] strictly increasing times of the input frames in the clip, so that
            the camera moves at the clip's pace. Default: evenly spaced.
        level: Remove the roll about the cameras' :func:`up_direction`. Default: True.
        ramp: Fraction of the video spent speeding up from rest (and slowing down to
            rest at the end); 0 keeps the clip's pace throughout. Default: 0.15.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, RotationSpline

    c2w = np.asarray(camtoworlds, dtype=np.float64)
    n = len(c2w)
    if n == 1:
        out = np.repeat(c2w, n_frames, axis=0)
    else:
        pos, q = _smoothed_track(c2w, smoothing)
        rots = Rotation.from_quat(q)
        times = _valid_times(times, n)
        t = times[0] + (times[-1] - times[0]) * ease(n_frames, ramp)
        out = np.tile(np.eye(4), (n_frames, 1, 1))
        out[:, :3, 3] = CubicSpline(times, pos, axis=0)(t) if n > 2 else _lerp(pos, times, t)
        out[:, :3, :3] = (RotationSpline(times, rots)(t) if n > 2 else _slerp(rots, times, t)).as_matrix()
    if level:
        out = look_at(out[:, :3, 3], out[:, :3, 3] + out[:, :3, 2], up_direction(c2w))
    return out


def _smoothed_track(c2w: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[N, 3]`` and unit quaternions ``[N, 4]`` (x y z w, signs aligned) of
    the cameras, Gaussian-smoothed over ``smoothing`` frames with odd reflection at the
    ends (which keeps the end points and end directions)."""
    from scipy.ndimage import gaussian_filter1d
    from scipy.spatial.transform import Rotation

    n = len(c2w)
    pos = c2w[:, :3, 3].copy()
    q = Rotation.from_matrix(c2w[:, :3, :3]).as_quat()  # [N, 4] x y z w
    flips = np.cumprod(np.where(np.einsum("ni,ni->n", q[1:], q[:-1]) < 0, -1.0, 1.0))
    q[1:] *= flips[:, None]  # each in the same hemisphere as the previous one
    if smoothing > 0:
        pad = min(n - 1, int(math.ceil(3 * smoothing)))

        def smooth(x: np.ndarray) -> np.ndarray:
            left = 2 * x[:1] - x[1 : pad + 1][::-1]
            right = 2 * x[-1:] - x[-pad - 1 : -1][::-1]
            xs = np.concatenate([left, x, right])
            return gaussian_filter1d(xs, smoothing, axis=0, mode="nearest")[pad : pad + n]

        pos, q = smooth(pos), smooth(q)
    return pos, q / np.linalg.norm(q, axis=1, keepdims=True)


def _valid_times(times: np.ndarray | None, n: int) -> np.ndarray:
    """``times`` as float64 if given, of length ``n`` and strictly increasing; else 0..n-1."""
    if times is not None:
        t = np.asarray(times, dtype=np.float64)
        if t.shape == (n,) and np.all(np.isfinite(t)) and np.all(np.diff(t) > 0):
            return t
    return np.arange(n, dtype=np.float64)


def _lerp(pos: np.ndarray, times: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(t, times, pos[:, k]) for k in range(3)], 1)


def _slerp(rots, times: np.ndarray, t: np.ndarray):
    from scipy.spatial.transform import Slerp

    return Slerp(times, rots)(t)


def input_frame_indices(n_inputs: int, n_frames: int, times: np.ndarray | None = None) -> np.ndarray:
    """The input frame shown at each output frame when the input clip is stretched to
    ``n_frames``: each input frame is held until the next one's time.

    Args:
        n_inputs: Number of input frames.
        n_frames: Number of output frames.
        times: [n_inputs] increasing times of the input frames in the clip (seconds).
            Default: evenly spaced.

    Returns:
        [n_frames] int64 indices into the input frames.
    """
    if n_frames <= 1 or n_inputs <= 1:
        return np.zeros(n_frames, dtype=np.int64)
    t = np.arange(n_inputs, dtype=np.float64) if times is None else np.asarray(times, np.float64)
    span = (t[-1] - t[0]) * n_inputs / (n_inputs - 1)  # the last frame is held like the others
    out_t = t[0] + np.arange(n_frames) * span / n_frames
    idx = np.searchsorted(t, out_t + 1e-9 * span, side="right") - 1
    return idx.astype(np.int64).clip(0, n_inputs - 1)


# ---------------------------------------------------------------------------
# Intrinsics and the dispatcher


def output_intrinsics(
    Ks: np.ndarray, in_width: int, in_height: int, out_width: int, out_height: int
) -> np.ndarray:
    """Intrinsics of the output camera: the largest field of view, at the input cameras'
    (median) pixel aspect, that stays inside theirs, centred principal point, for an
    image of the output size.

    An output narrower than the input (a 16:9 video of a 2.3:1 clip, a portrait video)
    keeps the input's vertical field of view and shows less of its width; a wider one (a
    16:9 video of a 3:2 clip) keeps the horizontal field of view and shows less of its
    height. Keeping the vertical one there would show strips at the sides that no
    input camera saw from where it stood.

    Args:
        Ks: [N, 3, 3] input intrinsics for images of ``in_width x in_height``.

    Returns:
        [3, 3] float64.
    """
    Ks = np.asarray(Ks, dtype=np.float64).reshape(-1, 3, 3)
    aspect = float(np.median(Ks[:, 0, 0] / Ks[:, 1, 1]))
    fy_vertical = float(np.median(Ks[:, 1, 1] / in_height)) * out_height
    fy_horizontal = float(np.median(Ks[:, 0, 0] / in_width)) * out_width / aspect
    fy = max(fy_vertical, fy_horizontal)  # the longer focal length: the narrower view
    return np.array([[aspect * fy, 0.0, out_width / 2.0], [0.0, fy, out_height / 2.0], [0.0, 0.0, 1.0]])


def letterbox_intrinsics(
    K: np.ndarray, in_width: int, in_height: int, out_width: int, out_height: int
) -> np.ndarray:
    """Intrinsics of an input image scaled to fit inside ``out_width x out_height``
    and centred (the layout :func:`vid3d.video.encode.letterbox` produces).

    Args:
        K: [..., 3, 3] intrinsics of the input image.

    Returns:
        [..., 3, 3] float64.
    """
    s = min(out_width / in_width, out_height / in_height)
    dx = (out_width - in_width * s) / 2.0
    dy = (out_height - in_height * s) / 2.0
    K = np.array(K, dtype=np.float64)
    K[..., 0, :] *= s
    K[..., 1, :] *= s
    K[..., 0, 2] += dx
    K[..., 1, 2] += dy
    K[..., 2, :] = (0.0, 0.0, 1.0)
    return K


def make_path(
    kind: str,
    camtoworlds: np.ndarray,
    Ks: np.ndarray,
    in_width: int,
    in_height: int,
    out_width: int,
    out_height: int,
    n_frames: int,
    fps: float = 30.0,
    points: np.ndarray | None = None,
    center: np.ndarray | None = None,
    radius_factor: float = 1.0,
    height_factor: float = 1.0,
    smoothing: float = 2.0,
    times: np.ndarray | None = None,
    amount: float = 1.0,
) -> CameraPath:
    """A camera path of type ``kind`` derived from the input cameras.

    Args:
        kind: One of :data:`PATH_TYPES`; "auto" takes the kind :func:`classify_cameras`
            picks, and names the path after it.
        camtoworlds: [N, 4, 4] input cameras, in time order.
        Ks: [N, 3, 3] input intrinsics for images of ``in_width x in_height``.
        out_width, out_height: Output image size.
        n_frames: Number of output frames (``seconds * fps``).
        fps: Frames per second, recorded in the path.
        points: [P, 3] SfM points, to find the centre (and for "auto"). Optional.
        center: [3] centre to use instead of :func:`scene_center`. Optional.
        radius_factor, height_factor: See :func:`orbit_poses` (orbit, turntable; the
            spiral takes ``radius_factor``).
        smoothing, times: See :func:`input_poses`.
        amount: Size of the path in (0, 1]: smaller shrinks it towards the median input
            camera (see each ``*_poses`` function); "input" ignores it. Default: 1.

    Returns:
        The :class:`CameraPath` (output intrinsics from :func:`output_intrinsics`).

    Raises:
        ConfigError: Unknown ``kind``, no frames, or ``amount`` outside (0, 1].
    """
    if kind not in PATH_TYPES:
        raise ConfigError(
            f"unknown camera path {kind!r}",
            f"choose one of {', '.join(PATH_TYPES)} or give a .json path file",
        )
    if n_frames < 1:
        raise ConfigError(f"a video of {n_frames} frames is empty", "raise render.seconds or render.fps")
    if not 0 < amount <= 1:
        raise ConfigError(f"path amount must be in (0, 1], got {amount}", "use 1 for the full path")
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    if kind != "input" and center is None:
        center = scene_center(c2w, points, Ks, in_width, in_height)
    if kind == "auto":
        kind, _ = classify_cameras(c2w, Ks, in_width, in_height, points, center=center)
    if kind in ("orbit", "turntable"):
        fn = orbit_poses if kind == "orbit" else turntable_poses
        poses = fn(c2w, n_frames, center, radius_factor, height_factor, amount=amount)
    elif kind == "spiral":
        poses = spiral_poses(c2w, n_frames, center, radius_factor, amount=amount)
    elif kind in ("push-in", "sway"):
        poses = (push_in_poses if kind == "push-in" else sway_poses)(c2w, n_frames, center, amount)
    else:
        poses = input_poses(c2w, n_frames, smoothing, times)
    K = output_intrinsics(Ks, in_width, in_height, out_width, out_height)
    return CameraPath(
        camtoworlds=poses,
        Ks=np.repeat(K[None], n_frames, axis=0),
        width=out_width,
        height=out_height,
        fps=float(fps),
        loop=LOOPING[kind],
        name=kind,
    )


# ---------------------------------------------------------------------------
# How a path moves, and which path suits a clip


def path_motion(path: CameraPath, up: np.ndarray | None = None, scale: float | None = None) -> dict:
    """How steady and smooth a path is, from finite differences at ``path.fps``.

    Differences wrap around for a looping path (the step from the last frame to the
    first counts like the others), so a kink at the seam shows in every figure.

    Args:
        path: The path.
        up: [3] world up, to measure the roll. Default: :func:`up_direction` of the path.
        scale: Length that normalises positions. Default: the path's spread (RMS
            distance of its camera centres from their mean).

    Returns:
        Floats: ``roll_deg`` (largest angle between the camera's x axis and the horizon,
        about the view direction), ``angular_speed`` (deg/s of the view direction),
        ``angular_jerk`` (deg/s^3, third derivative of the view direction), ``speed``
        (spread/s) and ``jerk`` (spread/s^3) of the camera centre, ``end_speed`` (speed at
        the first and last frame over the largest speed, linear or angular, whichever is
        larger: near 0 when the path eases in and out), ``seam`` (for a loop: the largest
        second difference of position or view direction next to the seam, over the
        largest elsewhere: 1 or less when the seam is an ordinary frame, far above 1 for
        a repeated frame or a kink; 0 when the path does not loop), ``spread`` and
        ``seconds``.
    """
    c2w = np.asarray(path.camtoworlds, dtype=np.float64)
    up = up_direction(c2w) if up is None else _normalize(np.asarray(up, dtype=np.float64))
    fps, loop = float(path.fps), bool(path.loop)
    p, z = c2w[:, :3, 3], c2w[:, :3, 2]  # [F, 3] each
    spread = float(np.sqrt(((p - p.mean(0)) ** 2).sum(1).mean())) if scale is None else float(scale)
    q = p / max(spread, 1e-12)  # [F, 3] positions in spreads
    roll = np.degrees(np.arctan2(np.abs(c2w[:, :3, 0] @ up), -(c2w[:, :3, 1] @ up)))  # [F]
    z1 = np.roll(z, -1, axis=0)
    turn = np.arctan2(np.linalg.norm(np.cross(z, z1), axis=1), (z * z1).sum(1))  # [F] radians
    speed = np.linalg.norm(_diff(q, 1, loop), axis=1) * fps  # [F] or [F - 1]
    ang = np.degrees(turn if loop else turn[:-1]) * fps
    return {
        "roll_deg": _max(roll),
        "angular_speed": _max(ang),
        "angular_jerk": _max(np.degrees(np.linalg.norm(_diff(z, 3, loop), axis=1)) * fps**3),
        "speed": _max(speed),
        "jerk": _max(np.linalg.norm(_diff(q, 3, loop), axis=1) * fps**3),
        "end_speed": max(_end_ratio(speed), _end_ratio(ang)),
        "seam": _seam(q, z) if loop else 0.0,
        "spread": spread,
        "seconds": len(c2w) / fps,
    }


def _diff(a: np.ndarray, k: int, loop: bool) -> np.ndarray:
    """k-th forward difference along axis 0, wrapping around when ``loop``."""
    if not loop:
        return np.diff(a, k, axis=0)
    for _ in range(k):
        a = np.roll(a, -1, axis=0) - a
    return a


def _max(a: np.ndarray) -> float:
    return float(a.max()) if a.size else 0.0


def _end_ratio(v: np.ndarray) -> float:
    """Speed at the first and last step over the largest speed (0 when still)."""
    top = _max(v)
    return float(max(v[0], v[-1]) / top) if top > 1e-9 else 0.0


def _seam(q: np.ndarray, z: np.ndarray) -> float:
    """Second differences across a loop's seam over the largest elsewhere (see path_motion)."""
    if len(q) < 6:
        return 0.0
    worst = 0.0
    for x in (q, z):
        d2 = np.linalg.norm(_diff(x, 2, True), axis=1)  # [F]; d2[i] uses frames i, i+1, i+2
        seam = d2[[-3, -2, -1, 0]]  # the triples that hold a frame next to the wrap
        worst = max(worst, (seam.max() + 1e-12) / (d2[1:-3].max() + 1e-12))
    return float(worst)


STILL_TRAVEL = 0.1
"""A clip is still when its camera centres span less than this fraction of the scene
depth: the farthest two cameras then see the centre from directions under 6 degrees
apart, too little to leave the input viewpoint by an orbit or a dolly."""
FORWARD_TRAVEL = 0.6
"""A clip walks or flies forward when its travel runs along the view direction: the
length-weighted mean |cos| between the travel and the view axis is at least this (an
average angle under 53 degrees; an orbit gives about 0, a walk-through 0.7-1)."""
INWARD_DEGREES = 30.0
"""A circling clip looks inwards: the median angle between the view axis and the
direction to the centre is under this (the centre is then well inside a 60 degree view)."""
MIN_ARC_DEGREES = 20.0
"""A circling clip covers at least this arc around the centre: below it, "looking inwards
while turning" is what any camera that tracks past something does, and an orbit sized
to the arc would barely move (the CogVideoX clip, following a car: 5 degrees)."""
TURN_RATIO = 0.5
"""A circling clip's view turns with it: the view directions span at least this part of
the arc the cameras cover (an orbit turns exactly as far, a sideways track not at all)."""


def classify_cameras(
    camtoworlds: np.ndarray,
    Ks: np.ndarray,
    width: int,
    height: int,
    points: np.ndarray | None = None,
    center: np.ndarray | None = None,
) -> tuple[str, str]:
    """Which kind of path suits the input cameras, and why.

    In this order: a camera that barely moves (:data:`STILL_TRAVEL`) gets "sway"; one
    that travels along its view (:data:`FORWARD_TRAVEL`: a walk-through, a drone flight)
    "push-in"; one that circles the centre looking inwards (:data:`INWARD_DEGREES`,
    :data:`TURN_RATIO`, :data:`MIN_ARC_DEGREES`) "turntable" when it covered at least
    :data:`FULL_CIRCLE_DEGREES`, else "orbit"; any other sideways motion (a forward-facing
    handheld clip) "spiral".

    Args:
        camtoworlds: [N, 4, 4] input cameras, in time order.
        Ks: [N, 3, 3] intrinsics for images of ``width x height``.
        points: [P, 3] SfM points: the scene depth is the median depth of the points each
            camera sees. Without them, the median camera's distance to the centre (then
            a still camera cannot be told from a moving one). Optional.
        center: [3] scene centre. Default: :func:`scene_center`.

    Returns:
        ``(kind, reason)``: one of "sway", "push-in", "turntable", "orbit", "spiral", and
        one line with the figures that decided it.
    """
    from scipy.spatial.distance import cdist

    c2w = np.asarray(camtoworlds, dtype=np.float64)
    if center is None:
        center = scene_center(c2w, points, Ks, width, height)
    pos, view = c2w[:, :3, 3], _normalize(c2w[:, :3, 2])  # [N, 3] each
    m = median_camera(c2w)
    depths = _visible_depths(c2w, points, Ks, width, height)
    depth = float(np.median(depths)) if depths is not None else float(np.linalg.norm(center - pos[m]))
    travel = float(cdist(pos, pos[_spaced(len(pos))]).max()) / max(depth, 1e-12)  # diameter / depth
    if len(c2w) < 2 or travel < STILL_TRAVEL:
        return "sway", f"the camera barely moves: it spans {travel:.3f} x the scene depth (< {STILL_TRAVEL})"
    k = max(1, len(c2w) // 8)  # steps over several frames, so that jitter does not count
    steps = pos[k:] - pos[:-k]  # [N - k, 3]
    forward = float(
        np.abs((steps * view[:-k]).sum(1)).sum() / max(np.linalg.norm(steps, axis=1).sum(), 1e-12)
    )
    if forward >= FORWARD_TRAVEL:
        return "push-in", (
            f"the camera travels along its view (|cos| {forward:.2f} >= {FORWARD_TRAVEL}) over "
            f"{travel:.2f} x the scene depth: a walk-through or flight"
        )
    up = up_direction(c2w)
    e1, e2, local = _horizontal_frame(c2w, center, up)
    arc = math.degrees(_covered_arc(local[:, :2])[1])
    turn = math.degrees(_covered_arc(np.stack([view @ e1, view @ e2], 1))[1])
    inward = float(np.median(np.degrees(np.arccos(np.clip((_normalize(center - pos) * view).sum(1), -1, 1)))))
    if inward < INWARD_DEGREES and arc >= MIN_ARC_DEGREES and turn >= TURN_RATIO * arc:
        kind = "turntable" if arc >= FULL_CIRCLE_DEGREES else "orbit"
        return kind, (
            f"the cameras circle the centre looking inwards ({inward:.0f} deg off it), covering "
            f"{arc:.0f} deg ({'>=' if kind == 'turntable' else '<'} {FULL_CIRCLE_DEGREES:.0f}), "
            f"the view turning {turn:.0f} deg"
        )
    return "spiral", (
        f"the camera moves sideways (|cos| {forward:.2f} to its view) over {arc:.0f} deg around "
        f"the centre while its view turns {turn:.0f} deg: forward-facing"
    )
