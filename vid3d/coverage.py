"""Coverage of a camera by the clip: the share of its pixels the training cameras saw well.

A splat scene is only trustworthy where the clip looked at it. Rendered from elsewhere
(the far side of the subject, a view that turns away from it) Gaussians that no camera
constrained fall apart. This module measures, for any camera, how much of its picture
the training cameras observed, cheaply (at about 160 pixels on the long side), so that
a camera path can be checked, or shrunk, frame by frame.

Definition. A pixel of a camera is *covered* when the splats' rendered alpha there is at
least ``alpha_min`` and the surface point it shows (the pixel's ray times the rendered
expected depth) was *seen* by at least ``min_views`` training cameras. A training camera
sees the point when

- the point projects inside its image, in front of it;
- it is not occluded there: its depth in that camera is at most the camera's own
  rendered expected depth at that pixel times ``1 + depth_tol``;
- that camera's alpha there is at least ``alpha_min`` (it saw a surface, not empty
  space);
- the angle at the point between that camera's ray and the query camera's ray is at
  most ``max_angle_deg``: splats are fitted to the directions they were seen from
  (view-dependent colour, flat anisotropic Gaussians), so a surface seen only from the
  opposite side, or at a steep angle to the clip, is not observed for this camera even
  when nothing hides it.

The coverage of a frame is its covered pixels over all its pixels. Nothing here reads
or writes files: the training cameras are rendered once into :class:`ObservedViews`,
and every query camera is rendered and checked against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vid3d.camera_paths import CameraPath
from vid3d.errors import ConfigError, RenderError, Vid3dError

MAX_SIDE = 160
"""Default long side, in pixels, of the images coverage is computed on."""
ALPHA_MIN = 0.5
"""Default smallest alpha of a surface: below it a pixel shows mostly background."""
MIN_VIEWS = 2
"""Default number of training cameras that must see a point: one view leaves its depth
unconstrained (no parallax), and a wrong depth shows as soon as the camera moves."""
DEPTH_TOL = 0.2
"""Default relative margin of the occlusion test. The expected depth of semi-transparent
splats is a blend that changes with the view: on the garden Gaussians, the surface a
camera turned 10 degrees around the scene showed lay 7-16% (interquartile) beyond the
first camera's own expected depth, so 0.1 called nearly half of it occluded, 0.2 one
point in twenty. 0.2 still hides points behind any occluder closer than 83% of their
depth; the far side of an object also fails the angle test."""
MAX_ANGLE_DEG = 30.0
"""Default largest angle at a point between the query camera's ray and a training
camera's. A depth error of a splat along the training rays moves it sideways by
``sin(angle)`` times that error in the new view (half of it at 30 degrees, 71% at 45),
and view-dependent colour is only fitted over the directions seen; 30 degrees lets a
path extrapolate a dense clip by about that much before its frames count as unseen."""
BATCH = 4
"""Cameras rasterized per call (see :func:`render_depths`). On 2 cores of an Intel Xeon
(shared, loaded), the 138k garden Gaussians at 160x104 took 0.19-0.23 s per camera in
batches of 2 to 9 against 0.37-0.39 s one at a time (best of 3): the projection's
per-Gaussian work (rotations, scales) is done once per batch."""
_POINTS_PER_CHUNK = 1 << 21
"""At most this many (pixel, training view) pairs are tested at once (bounds memory)."""


@dataclass
class ObservedViews:
    """The training cameras, rendered once at low resolution (see :func:`observed_views`)."""

    depths: torch.Tensor
    """[N, h, w] float32 expected depth along each camera's z axis (0 where nothing)."""
    alphas: torch.Tensor
    """[N, h, w] float32 accumulated alpha."""
    camtoworlds: torch.Tensor
    """[N, 4, 4] float32 camera-to-world, OpenCV axes, in the splats' frame."""
    Ks: torch.Tensor
    """[N, 3, 3] float32 pixel intrinsics for ``width x height`` images."""
    width: int
    """Width ``w`` of the rendered images."""
    height: int
    """Height ``h`` of the rendered images."""

    def __len__(self) -> int:
        return int(self.depths.shape[0])


@dataclass(frozen=True)
class _Thresholds:
    alpha_min: float
    min_views: int
    depth_tol: float
    max_angle_deg: float


def low_res_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The size of an image of ``width x height`` scaled down to ``max_side`` on its long side.

    Args:
        width, height: The full size in pixels.
        max_side: Long side of the result; an image already smaller keeps its size.
            Default: 160.

    Returns:
        ``(w, h)``, each at least 1.
    """
    if width < 1 or height < 1:
        raise RenderError(f"an image of {width}x{height} pixels has no pixels", "use a positive size")
    if max_side < 8:
        raise ConfigError(
            f"coverage max_side {max_side} is too small", "use at least 8 pixels (160 is usual)"
        )
    s = min(1.0, max_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def scale_intrinsics(Ks: np.ndarray, width: int, height: int, w: int, h: int) -> np.ndarray:
    """Intrinsics of images of ``width x height`` resized to ``w x h``.

    Args:
        Ks: [..., 3, 3] pixel intrinsics (pixel centres at ``i + 0.5``, as gsplat's).

    Returns:
        [..., 3, 3] float64.
    """
    Ks = np.array(Ks, dtype=np.float64)
    Ks[..., 0, :] *= w / width
    Ks[..., 1, :] *= h / height
    Ks[..., 2, :] = (0.0, 0.0, 1.0)
    return Ks


def render_depths(
    g: dict[str, torch.Tensor],
    camtoworlds: np.ndarray,
    Ks: np.ndarray,
    w: int,
    h: int,
    *,
    backend: str = "auto",
    batch: int = BATCH,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected depth and alpha of the Gaussians seen from C cameras, ``batch`` at a time.

    Args:
        g: Activated Gaussians (:func:`vid3d.stages.render.render_inputs`).
        camtoworlds: [C, 4, 4] cameras in the Gaussians' frame.
        Ks: [C, 3, 3] pixel intrinsics for ``w x h`` images.
        w, h: Image size.
        backend: Rasterizer backend. Default: "auto" (gsplat on CUDA, else the CPU kernel).
        batch: Cameras per rasterizer call. Default: :data:`BATCH`.

    Returns:
        ``depths`` [C, h, w] (0 where alpha is 0) and ``alphas`` [C, h, w], float32 on the
        Gaussians' device.

    Raises:
        RenderError: The rasterizer cannot run (an unknown backend, CUDA missing...).
    """
    means = g["means"]
    dev = means.device
    viewmats = torch.linalg.inv(torch.as_tensor(np.asarray(camtoworlds), dtype=torch.float64))
    viewmats = viewmats.to(device=dev, dtype=torch.float32)  # [C, 4, 4]
    Ks_t = torch.as_tensor(np.asarray(Ks), dtype=torch.float32, device=dev)  # [C, 3, 3]
    depths, alphas = [], []
    with torch.no_grad():
        for i in range(0, len(viewmats), max(1, batch)):
            # the features are not used by "ED", which composites depths only
            ed, alpha, _ = rasterize_views(
                g, means[:, :1], viewmats[i : i + batch], Ks_t[i : i + batch], w, h, "ED", backend
            )
            depths.append(ed[..., 0])
            alphas.append(alpha)
    return torch.cat(depths), torch.cat(alphas)


def rasterize_views(
    g: dict[str, torch.Tensor],
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    mode: str,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Rasterize plain features ``colors`` ([N, D] or [C, N, D]) of activated Gaussians
    from C cameras, the rasterizer's errors raised as :class:`RenderError`.

    Returns:
        ``(render [C, H, W, X], alpha [C, H, W], info)`` (``info`` as ``rasterize`` gives it).
    """
    from vid3d.splats.rasterize import rasterize

    try:
        out, alpha, info = rasterize(
            g["means"],
            g["quats"],
            g["scales"],
            g["opacities"],
            colors,
            viewmats,
            Ks,
            width,
            height,
            render_mode=mode,
            backend=backend,
        )
    except Vid3dError as e:  # the rasterizer's own errors speak of training
        raise RenderError(e.message, e.hint) from e
    return out, alpha[..., 0], info


def observed_views(
    g: dict[str, torch.Tensor],
    camtoworlds: np.ndarray,
    Ks: np.ndarray,
    width: int,
    height: int,
    *,
    max_side: int = MAX_SIDE,
    backend: str = "auto",
    batch: int = BATCH,
) -> ObservedViews:
    """Render the training cameras once at low resolution, for :func:`coverage_map`.

    Args:
        g: Activated Gaussians (:func:`vid3d.stages.render.render_inputs`), on the device
            to compute on.
        camtoworlds: [N, 4, 4] training cameras (OpenCV axes) in the Gaussians' frame.
        Ks: [N, 3, 3] their pixel intrinsics, for ``width x height`` images.
        width, height: Size of the training images.
        max_side: Long side of the rendered images. Default: 160.
        backend: Rasterizer backend. Default: "auto".
        batch: Cameras per rasterizer call. Default: :data:`BATCH`.

    Returns:
        The :class:`ObservedViews`.
    """
    c2w = _cameras(camtoworlds, Ks, "training cameras")
    w, h = low_res_size(width, height, max_side)
    Ks_small = scale_intrinsics(Ks, width, height, w, h)
    depths, alphas = render_depths(g, c2w, Ks_small, w, h, backend=backend, batch=batch)
    dev = depths.device
    return ObservedViews(
        depths=depths,
        alphas=alphas,
        camtoworlds=torch.as_tensor(c2w, dtype=torch.float32, device=dev),
        Ks=torch.as_tensor(Ks_small, dtype=torch.float32, device=dev),
        width=w,
        height=h,
    )


def coverage_map(
    g: dict[str, torch.Tensor],
    views: ObservedViews,
    camtoworld: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    *,
    max_side: int = MAX_SIDE,
    alpha_min: float = ALPHA_MIN,
    min_views: int = MIN_VIEWS,
    depth_tol: float = DEPTH_TOL,
    max_angle_deg: float = MAX_ANGLE_DEG,
    backend: str = "auto",
) -> np.ndarray:
    """Which pixels of one camera the training cameras observed (see the module docstring).

    Args:
        g: Activated Gaussians, the ones ``views`` was rendered from.
        views: The training cameras (:func:`observed_views`).
        camtoworld: [4, 4] the camera, in the Gaussians' frame.
        K: [3, 3] its pixel intrinsics for ``width x height`` images.
        width, height: Its image size.
        max_side: Long side of the map. Default: 160.
        alpha_min: Smallest alpha of a surface, in this camera and in a training one.
            Default: :data:`ALPHA_MIN` (0.5).
        min_views: Training cameras that must see a pixel's point. Default:
            :data:`MIN_VIEWS` (2).
        depth_tol: Relative depth margin of the occlusion test. Default:
            :data:`DEPTH_TOL` (0.2).
        max_angle_deg: Largest angle at the point between this camera's ray and a
            training camera's. Default: :data:`MAX_ANGLE_DEG` (30).

    Returns:
        [h, w] bool, ``(w, h) = low_res_size(width, height, max_side)``.
    """
    thr = _thresholds(alpha_min, min_views, depth_tol, max_angle_deg)
    c2w = _cameras(np.asarray(camtoworld)[None], np.asarray(K)[None], "camera")
    w, h = low_res_size(width, height, max_side)
    K_small = scale_intrinsics(K, width, height, w, h)[None]
    depth, alpha = render_depths(g, c2w, K_small, w, h, backend=backend, batch=1)
    return _covered(depth[0], alpha[0], c2w[0], K_small[0], views, thr).cpu().numpy()


def path_coverage(
    g: dict[str, torch.Tensor],
    views: ObservedViews,
    cameras: CameraPath,
    *,
    stride: int = 1,
    max_side: int = MAX_SIDE,
    alpha_min: float = ALPHA_MIN,
    min_views: int = MIN_VIEWS,
    depth_tol: float = DEPTH_TOL,
    max_angle_deg: float = MAX_ANGLE_DEG,
    backend: str = "auto",
    batch: int = BATCH,
) -> np.ndarray:
    """The coverage of every frame of a camera path.

    With ``stride > 1`` only frames ``0, stride, 2 stride, ...`` and the last one are
    computed; every other frame takes the value of the nearest computed frame (the
    earlier one on a tie).

    Args:
        g: Activated Gaussians, the ones ``views`` was rendered from.
        views: The training cameras (:func:`observed_views`).
        cameras: The F frames' cameras, in the Gaussians' frame.
        stride: Compute every ``stride``-th frame. Default: 1 (all).
        max_side, alpha_min, min_views, depth_tol, max_angle_deg, backend: As for
            :func:`coverage_map`.
        batch: Cameras per rasterizer call. Default: :data:`BATCH`.

    Returns:
        [F] float64 in [0, 1]: covered pixels over all pixels, per frame.
    """
    thr = _thresholds(alpha_min, min_views, depth_tol, max_angle_deg)
    if stride < 1:
        raise ConfigError(f"coverage stride {stride} is not positive", "use 1 to compute every frame")
    c2w = _cameras(cameras.camtoworlds, cameras.Ks, "camera path")
    n = len(c2w)
    done = np.unique(np.r_[np.arange(0, n, stride), n - 1])  # [D] frames computed
    w, h = low_res_size(cameras.width, cameras.height, max_side)
    Ks = scale_intrinsics(cameras.Ks, cameras.width, cameras.height, w, h)
    values = np.empty(len(done))
    step = max(1, batch)
    for s in range(0, len(done), step):
        idx = done[s : s + step]
        depths, alphas = render_depths(g, c2w[idx], Ks[idx], w, h, backend=backend, batch=batch)
        for k, i in enumerate(idx):
            values[s + k] = float(_covered(depths[k], alphas[k], c2w[i], Ks[i], views, thr).float().mean())
    # nearest computed frame: the earlier on a tie
    right = np.searchsorted(done, np.arange(n)).clip(0, len(done) - 1)
    left = (right - 1).clip(0)
    use_left = np.abs(np.arange(n) - done[left]) <= np.abs(done[right] - np.arange(n))
    return values[np.where(use_left, left, right)]


def summarize(per_frame: np.ndarray) -> dict[str, float | int]:
    """Mean and worst coverage of a path, for JSON.

    Args:
        per_frame: [F] coverage per frame (:func:`path_coverage`).

    Returns:
        ``{"mean": .., "worst": .., "worst_frame": ..}``: fractions rounded to 4 places,
        the first frame of the worst coverage.
    """
    c = np.asarray(per_frame, dtype=np.float64).reshape(-1)
    if c.size == 0:
        raise RenderError("no coverage values to summarize", "give at least one frame")
    worst = int(np.argmin(c))
    return {"mean": round(float(c.mean()), 4), "worst": round(float(c[worst]), 4), "worst_frame": worst}


def _covered(
    depth: torch.Tensor, alpha: torch.Tensor, c2w: np.ndarray, K: np.ndarray, views: ObservedViews, thr
) -> torch.Tensor:
    """[h, w] bool: the pixels of one camera (its ``depth``, ``alpha`` [h, w], ``c2w`` [4, 4],
    ``K`` [3, 3] at that size) whose points at least ``thr.min_views`` of ``views`` saw."""
    dev = depth.device
    h, w = depth.shape
    valid = (alpha >= thr.alpha_min).reshape(-1)  # [h * w]
    # Rays through the pixel centres (gsplat's pixel i spans [i, i + 1)), in camera axes.
    vs, us = torch.meshgrid(
        torch.arange(h, device=dev, dtype=torch.float64) + 0.5,
        torch.arange(w, device=dev, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    rays = torch.stack(
        [(us - K[0, 2]) / K[0, 0], (vs - K[1, 2]) / K[1, 1], torch.ones_like(us)], dim=-1
    ).reshape(-1, 3)[valid]  # [P, 3]
    R = torch.as_tensor(c2w[:3, :3], dtype=torch.float64, device=dev)
    # The points relative to this camera's centre (small numbers, whatever the scene's frame).
    pts = ((rays * depth.reshape(-1)[valid, None].double()) @ R.T).float()  # [P, 3]
    origin = torch.as_tensor(c2w[:3, 3], dtype=torch.float32, device=dev)
    count = torch.zeros(len(pts), dtype=torch.int32, device=dev)  # [P]
    chunk = max(1, _POINTS_PER_CHUNK // max(1, len(pts)))
    for j in range(0, len(views), chunk):
        count += _seen_by(pts, origin, views, slice(j, j + chunk), thr).sum(1, dtype=torch.int32)
    covered = torch.zeros(h * w, dtype=torch.bool, device=dev)
    covered[valid] = count >= thr.min_views
    return covered.reshape(h, w)


def _seen_by(pts: torch.Tensor, origin: torch.Tensor, views: ObservedViews, sel: slice, thr) -> torch.Tensor:
    """[P, n] bool: whether each of the training views ``sel`` saw each point ``pts`` [P, 3]
    (given relative to the query camera's centre ``origin`` [3]). Views with no point
    within the angle are left out of the rest of the test (their columns are False)."""
    centers = views.camtoworlds[sel, :3, 3] - origin  # [n, 3] relative to the query camera
    # Angle at the point X between the rays to the query (at 0) and to the view (at c):
    # cos = (-X).(c - X) / (|X| |c - X|), from X.c [P, n], |X|^2 [P, 1], |c|^2 [n].
    xc = pts @ centers.T  # [P, n]
    xx = (pts * pts).sum(-1, keepdim=True)  # [P, 1]
    dist = (xx - 2 * xc + (centers * centers).sum(-1)).clamp_min(0).sqrt()  # [P, n] |c - X|
    seen = xx - xc >= math.cos(math.radians(thr.max_angle_deg)) * xx.sqrt() * dist  # [P, n]
    near = seen.any(0).nonzero()[:, 0]  # [m] views within the angle of some point
    if len(near) == 0:
        return seen
    ids = torch.arange(views.depths.shape[0], device=pts.device)[sel][near]  # [m] view ids
    seen[:, near] &= _visible(pts, origin, views, ids, thr)
    return seen


def _visible(
    pts: torch.Tensor, origin: torch.Tensor, views: ObservedViews, ids: torch.Tensor, thr
) -> torch.Tensor:
    """[P, m] bool: whether the points ``pts`` [P, 3] (relative to ``origin`` [3]) project
    inside the views ``ids`` [m], in front, onto a surface (alpha) not in front of them."""
    m = len(ids)
    c2w = views.camtoworlds[ids]  # [m, 4, 4]
    Rt = c2w[:, :3, :3].transpose(1, 2)  # [m, 3, 3] world-to-camera rotations
    centers = c2w[:, :3, 3] - origin  # [m, 3]
    KR = views.Ks[ids] @ Rt  # [m, 3, 3]
    # Each view's projection [K R^T | -K R^T c] as one [4, 3m] matrix: one matmul projects all.
    A = torch.cat([KR, -(KR @ centers[:, :, None])], dim=2)  # [m, 3, 4]
    hom = (torch.nn.functional.pad(pts, (0, 1), value=1.0) @ A.reshape(3 * m, 4).T).reshape(-1, m, 3)
    z = hom[..., 2]  # [P, m] depth in each view
    front = z > 1e-6
    zs = torch.where(front, z, torch.ones_like(z))
    u, v = hom[..., 0] / zs, hom[..., 1] / zs  # [P, m] pixel coordinates
    inside = front & (u >= 0) & (u < views.width) & (v >= 0) & (v < views.height)
    pix = v.clamp(0, views.height - 1).long() * views.width + u.clamp(0, views.width - 1).long()
    flat = torch.where(inside, pix, 0) + ids * (views.width * views.height)  # [P, m]
    d_view = views.depths.reshape(-1)[flat]  # [P, m] that view's own depth there
    a_view = views.alphas.reshape(-1)[flat]
    return inside & (z <= d_view * (1.0 + thr.depth_tol)) & (a_view >= thr.alpha_min)


def _thresholds(alpha_min: float, min_views: int, depth_tol: float, max_angle_deg: float) -> _Thresholds:
    """The thresholds, checked."""
    if not 0.0 < alpha_min <= 1.0:
        raise ConfigError(f"coverage alpha_min {alpha_min} is not in (0, 1]", "use 0.5")
    if min_views < 1:
        raise ConfigError(f"coverage min_views {min_views} is below 1", "use 2 (seen from two cameras)")
    if depth_tol < 0:
        raise ConfigError(f"coverage depth_tol {depth_tol} is negative", "use 0.2 (20% of the depth)")
    if not 0.0 < max_angle_deg <= 180.0:
        raise ConfigError(f"coverage max_angle_deg {max_angle_deg} is not in (0, 180]", "use 30")
    return _Thresholds(float(alpha_min), int(min_views), float(depth_tol), float(max_angle_deg))


def _cameras(camtoworlds: np.ndarray, Ks: np.ndarray, what: str) -> np.ndarray:
    """``camtoworlds`` as [C, 4, 4] float64, checked against ``Ks`` [C, 3, 3]."""
    c2w = np.asarray(camtoworlds, dtype=np.float64)
    Ks = np.asarray(Ks)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise RenderError(f"the {what} are not a non-empty [N, 4, 4] array: {c2w.shape}")
    if Ks.shape != (len(c2w), 3, 3):
        raise RenderError(f"{len(c2w)} {what} but intrinsics of shape {Ks.shape}", "give one K per camera")
    if not np.all(np.isfinite(c2w)):
        raise RenderError(f"the {what} are not finite", "check the poses")
    return c2w
