"""Camera paths for the rendered video, derived from the reconstructed cameras.

Every path is computed from the input cameras ``camtoworlds [N, 4, 4]`` (OpenCV
axes: x right, y down, z forward) and, when known, the SfM points:

- ``orbit``: an ellipse around the scene centre, in the plane perpendicular to the
  cameras' up direction, at the cameras' own distance and height (times
  ``radius_factor`` and ``height_factor``), looking at the centre. Closed loop.
- ``turntable``: a full circle at constant angular speed around the centre. Closed loop.
- ``spiral``: the forward-facing spiral of LLFF / nerfstudio, for clips whose camera
  only moves a little. Closed loop.
- ``input``: the input camera path, smoothed and resampled. Not a loop.

A :class:`CameraPath` (per frame: camtoworld, pinhole intrinsics, image size) can be
saved to and loaded from a JSON file so that users can edit it::

    {"version": 1, "fps": 30, "loop": true, "name": "orbit",
     "frames": [{"camtoworld": [[...4x4...]], "fx": .., "fy": .., "cx": .., "cy": ..,
                 "width": 1280, "height": 720}, ...]}

Output intrinsics keep the input cameras' vertical field of view, adapted to the
output aspect (:func:`output_intrinsics`).
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

"""Names of the generated camera paths."""
LOOPING = {"orbit": True, "turntable": True, "spiral": True, "input": False}
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
        for c2w, K in zip(self.camtoworlds, self.Ks):
            frames.append(
                {
                    "camtoworld": [[float(v) for v in row] for row in c2w],
                    "fx": float(K[0, 0]),
                    "fy": float(K[1, 1]),
                    "cx": float(K[0, 2]),
                    "cy": float(K[1, 2]),
                    "width": int(self.width),
                    "height": int(self.height),
                }
            )
        return {
            "version": 1,
            "name": self.name,
            "fps": float(self.fps),
            "loop": bool(self.loop),
            "frames": frames,
        }

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
        return cls(
            camtoworlds=np.stack(c2ws),
            Ks=np.stack(Ks),
            width=width,
            height=height,
            fps=float(data.get("fps", 30.0)),
            loop=bool(data.get("loop", False)),
            name=str(data.get("name", "path")),
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
    ``height`` along ``up`` around ``center``, looking at the centre: [F, 4, 4]."""
    pos = center + np.outer(a * np.cos(t), e1) + np.outer(b * np.sin(t), e2) + height * up
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


def orbit_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    center: np.ndarray | None = None,
    radius_factor: float = 1.0,
    height_factor: float = 1.0,
    min_axis_ratio: float = 0.5,
    max_arc_degrees: float = 240.0,
) -> np.ndarray:
    """An ellipse around the scene centre, looking at it (a closed loop).

    When the input cameras cover less than ``max_arc_degrees`` around the centre,
    the orbit sweeps the arc they covered, there and back (a closed loop too), at
    their median distance, so it shows only what the clip saw.

    The ellipse lies in the plane perpendicular to the cameras' up direction; its
    axes follow the cameras' spread around the centre (90th percentile of their
    offsets along the two principal directions), its height is the cameras' mean
    height above the centre. It starts next to the first input camera and turns the
    way the input cameras turn, at constant speed.

    Args:
        camtoworlds: [N, 4, 4] input cameras.
        n_frames: Number of poses; pose ``n_frames`` would equal pose 0.
        center: [3] point to orbit. Default: :func:`scene_center` of the cameras.
        radius_factor: Factor on the cameras' distance to the centre. Default: 1.
        height_factor: Factor on the cameras' height above the centre. Default: 1.
        min_axis_ratio: Smallest ratio of the short to the long axis, so that a
            straight camera track still gives a round orbit. Default: 0.5.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    center = scene_center(c2w) if center is None else np.asarray(center, dtype=np.float64)
    up = up_direction(c2w)
    e1, e2, local = _horizontal_frame(c2w, center, up)
    mid, span = _covered_arc(local[:, :2])
    if span < np.radians(max_arc_degrees):
        # The clip saw the subject from one side only: sweep that side back and forth
        # (eased at the turns) instead of going round to what nobody filmed.
        r = float(np.median(np.linalg.norm(local[:, :2], axis=1))) * radius_factor
        height = float(local[:, 2].mean()) * height_factor
        t = mid + 0.5 * span * np.sin(2 * np.pi * np.arange(n_frames) / n_frames)
        return _ring_poses(center, e1, e2, up, r, r, height, t)
    a = float(np.percentile(np.abs(local[:, 0]), 90))
    b = float(np.percentile(np.abs(local[:, 1]), 90))
    if a < 1e-9:  # the cameras are straight above or below the centre
        a = b = float(np.median(np.linalg.norm(local, axis=1))) or 1.0
    b = max(b, min_axis_ratio * a)
    a, b = a * radius_factor, b * radius_factor
    height = float(local[:, 2].mean()) * height_factor
    t0, direction = _angles(local[:, :2] / np.array([a, b]))
    t = _ellipse_params(n_frames, a, b, t0, direction)
    return _ring_poses(center, e1, e2, up, a, b, height, t)


def turntable_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    center: np.ndarray | None = None,
    radius_factor: float = 1.0,
    height_factor: float = 1.0,
) -> np.ndarray:
    """A full circle at constant angular speed around the centre, looking at it.

    Radius: the cameras' median horizontal distance to the centre; height: their
    mean height above it. Starts next to the first input camera.

    Args:
        camtoworlds: [N, 4, 4] input cameras.
        n_frames: Number of poses; pose ``n_frames`` would equal pose 0.
        center: [3] point to turn around. Default: :func:`scene_center`.
        radius_factor: Factor on the radius. Default: 1.
        height_factor: Factor on the height. Default: 1.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    center = scene_center(c2w) if center is None else np.asarray(center, dtype=np.float64)
    up = up_direction(c2w)
    e1, e2, local = _horizontal_frame(c2w, center, up)
    r = float(np.median(np.linalg.norm(local[:, :2], axis=1)))
    if r < 1e-9:
        r = float(np.median(np.linalg.norm(local, axis=1))) or 1.0
    r *= radius_factor
    height = float(local[:, 2].mean()) * height_factor
    t0, direction = _angles(local[:, :2])
    t = t0 + direction * np.linspace(0, 2 * np.pi, n_frames, endpoint=False)
    return _ring_poses(center, e1, e2, up, r, r, height, t)


def spiral_poses(
    camtoworlds: np.ndarray,
    n_frames: int,
    center: np.ndarray | None = None,
    radius_factor: float = 1.0,
    rotations: int = 2,
    zrate: float = 0.5,
    min_radius: float = 0.05,
) -> np.ndarray:
    """The forward-facing spiral of LLFF (``render_path_spiral``), a closed loop.

    The cameras circle ``rotations`` times around the mean input camera, with
    radii the 90th percentile of the input cameras' offsets along its axes, while
    moving back and forth along its view direction, all looking at the centre.

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
    rads[:2] = np.maximum(rads[:2], min_radius * dist)
    rads[2] = min(rads[2], 0.5 * dist)  # never reach the centre
    rads = rads * radius_factor
    t = np.linspace(0, 2 * np.pi * rotations, n_frames, endpoint=False)
    offs = np.stack([np.cos(t), -np.sin(t), -np.sin(t * zrate)], 1) * rads  # [F, 3]
    pos = mean_pos + offs @ R.T
    return look_at(pos, center, up)


def input_poses(
    camtoworlds: np.ndarray, n_frames: int, smoothing: float = 2.0, times: np.ndarray | None = None
) -> np.ndarray:
    """The input camera path, smoothed and resampled to ``n_frames`` poses.

    Positions and rotations (quaternions, signs aligned) are Gaussian-smoothed over
    the input frames, then interpolated: positions with a cubic spline, rotations
    with :class:`scipy.spatial.transform.RotationSpline` (C2-continuous), at
    ``n_frames`` evenly spaced times from the first input frame to the last.

    Args:
        camtoworlds: [N, 4, 4] input cameras in time order (N >= 1).
        n_frames: Number of poses.
        smoothing: Standard deviation of the Gaussian, in input frames (0: none). Default: 2.
        times: [N] strictly increasing times of the input frames in the clip, so that
            the camera moves at the clip's pace. Default: evenly spaced.

    Returns:
        [n_frames, 4, 4] camera-to-world matrices.
    """
    from scipy.interpolate import CubicSpline
    from scipy.ndimage import gaussian_filter1d
    from scipy.spatial.transform import Rotation, RotationSpline

    c2w = np.asarray(camtoworlds, dtype=np.float64)
    n = len(c2w)
    if n == 1:
        return np.repeat(c2w, n_frames, axis=0)
    pos = c2w[:, :3, 3].copy()
    q = Rotation.from_matrix(c2w[:, :3, :3]).as_quat()  # [N, 4] x y z w
    for i in range(1, n):  # same hemisphere as the previous one
        if q[i] @ q[i - 1] < 0:
            q[i] = -q[i]
    if smoothing > 0:
        pad = min(n - 1, int(math.ceil(3 * smoothing)))

        # Odd reflection at the ends keeps the path's end points and end directions.
        def smooth(x: np.ndarray) -> np.ndarray:
            left = 2 * x[:1] - x[1 : pad + 1][::-1]
            right = 2 * x[-1:] - x[-pad - 1 : -1][::-1]
            xs = np.concatenate([left, x, right])
            return gaussian_filter1d(xs, smoothing, axis=0, mode="nearest")[pad : pad + n]

        pos = smooth(pos)
        q = smooth(q)
    rots = Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True))
    times = _valid_times(times, n)
    t = np.linspace(times[0], times[-1], n_frames)
    out = np.tile(np.eye(4), (n_frames, 1, 1))
    out[:, :3, 3] = CubicSpline(times, pos, axis=0)(t) if n > 2 else _lerp(pos, times, t)
    out[:, :3, :3] = (RotationSpline(times, rots)(t) if n > 2 else _slerp(rots, times, t)).as_matrix()
    return out


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
    """Intrinsics of the output camera: the input cameras' (median) vertical field of
    view and pixel aspect, centred principal point, for an image of the output size.

    Args:
        Ks: [N, 3, 3] input intrinsics for images of ``in_width x in_height``.

    Returns:
        [3, 3] float64.
    """
    Ks = np.asarray(Ks, dtype=np.float64).reshape(-1, 3, 3)
    fy = float(np.median(Ks[:, 1, 1] / in_height)) * out_height
    fx = fy * float(np.median(Ks[:, 0, 0] / Ks[:, 1, 1]))
    return np.array([[fx, 0.0, out_width / 2.0], [0.0, fy, out_height / 2.0], [0.0, 0.0, 1.0]])


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
) -> CameraPath:
    """A camera path of type ``kind`` derived from the input cameras.

    Args:
        kind: One of :data:`PATH_TYPES`.
        camtoworlds: [N, 4, 4] input cameras, in time order.
        Ks: [N, 3, 3] input intrinsics for images of ``in_width x in_height``.
        out_width, out_height: Output image size.
        n_frames: Number of output frames (``seconds * fps``).
        fps: Frames per second, recorded in the path.
        points: [P, 3] SfM points, to find the centre. Optional.
        center: [3] centre to use instead of :func:`scene_center`. Optional.
        radius_factor, height_factor: See :func:`orbit_poses`.
        smoothing, times: See :func:`input_poses`.

    Returns:
        The :class:`CameraPath` (output intrinsics from :func:`output_intrinsics`).
    """
    if kind not in PATH_TYPES:
        raise ConfigError(
            f"unknown camera path {kind!r}",
            f"choose one of {', '.join(PATH_TYPES)} or give a .json path file",
        )
    if n_frames < 1:
        raise ConfigError(f"a video of {n_frames} frames is empty", "raise render.seconds or render.fps")
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    if kind != "input" and center is None:
        center = scene_center(c2w, points, Ks, in_width, in_height)
    if kind == "orbit":
        poses = orbit_poses(c2w, n_frames, center, radius_factor, height_factor)
    elif kind == "turntable":
        poses = turntable_poses(c2w, n_frames, center, radius_factor, height_factor)
    elif kind == "spiral":
        poses = spiral_poses(c2w, n_frames, center, radius_factor)
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
