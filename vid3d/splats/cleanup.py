"""Floater and outlier cleanup of trained splats, before rendering and export.

Training fits the training views only, and leaves Gaussians that those views do not
constrain: haze between the cameras and the scene (floaters), huge or nearly
transparent blobs, and Gaussians far outside every camera's view. An orbit video
shows them all. :func:`find_outliers` marks them, in this order (a Gaussian removed
for an earlier reason is counted only under that one):

- ``transparent``: opacity below ``min_opacity``;
- ``huge``: largest scale (one standard deviation) above ``max_scale`` times the
  scene extent (:func:`scene_extent`);
- ``far``: farther from the cameras' centre than ``far_factor`` times the scene
  extent, and inside no training camera's frustum;
- ``few_views``: it is inside fewer than ``min_views`` training frusta: in front of the
  camera, its centre projecting into the image grown on each side by ``margin`` and by
  ``footprint`` times its own projected size (a big background blob whose centre lies
  just above the frame still paints the frame's top rows);
- ``floater``: in most training views that see it, small, in front of a rendered
  surface, its depth is below ``floater_ratio`` times the rendered expected depth
  around its pixel (the views rendered once at low resolution, without the Gaussians
  marked above), so it never dominates a pixel of any of them: a floater in front of
  the scene. A view where the Gaussian covers more than a few pixels does not vote;
- ``haze``: the same, with the votes of every view however large the Gaussian is there:
  large faint Gaussians in front of the surfaces, which novel views show as haze but
  which may carry colour the training views need (the trainer removes them only when
  the training views do not suffer: :meth:`vid3d.splats.trainer.Trainer.remove_outliers`);
- ``border``: its centre lies in fewer than ``min_views`` training images (no margin, no
  footprint), though its footprint reaches into enough of them: opaque blobs just
  outside the frames that paint their borders, with a depth nothing pins down; new
  views show them in front of the scene.

:func:`clean_splats` applies it (or, disabled, keeps everything) and gives the
figures for the log line and ``report.json``. :func:`floater_share` measures
floaters independently of these criteria, on novel views against the surfaces the
training views show (:func:`surface_points`).

Reads and writes no files: splats and cameras come in the training frame (the one
``<ws>/splats/ckpt.pt`` holds), the kept splats go back to the caller.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vid3d.coverage import low_res_size, rasterize_views, scale_intrinsics
from vid3d.errors import RenderError

REASONS = ("transparent", "huge", "far", "few_views", "floater", "haze", "border")
"""Removal reasons, in the order they are tested."""

MIN_VIEWS = 2
"""Fewest training frusta a Gaussian must be in: one view cannot place it in depth."""
MARGIN = 0.1
"""Frustum margin, as a fraction of the image width and height on each side."""
FOOTPRINT = 1.0
"""Further frustum margin, in the Gaussian's own projected standard deviations."""
MIN_OPACITY = 0.01
"""Opacity below which a Gaussian counts as transparent (training prunes at 0.005)."""
MAX_SCALE = 2.0
"""Largest scale, as a fraction of the scene extent, before a Gaussian counts as huge."""
FAR_FACTOR = 10.0
"""Distance from the cameras' centre, in scene extents, beyond which an unseen Gaussian is far."""
FLOATER_RATIO = 0.5
"""A Gaussian is in front of a view's surface when its depth is below this times the surface's."""
DEPTH_SIZE = 160
"""Longest side, in pixels, of the training views rendered for the depth test."""
FLOATER_RADIUS = 6
"""Largest visible radius (gsplat's ``radii``), in pixels of the depth render, of a Gaussian
the depth test judges in a view: one pixel's depth says little about a bigger one's effect."""
SURFACE_ALPHA = 0.5
"""Rendered opacity a pixel needs to count as a surface in the depth test."""
REFERENCE_RADIUS = 3
"""Pixels around a Gaussian's centre, in :func:`floater_share`'s views, whose nearest
reference depth it is compared with."""
BATCH_ELEMENTS = 4_000_000
"""Cameras are projected and rendered in batches of about this many (camera, Gaussian) pairs."""
NEAR_PLANE = 0.01
"""Depth below which a point is not in front of a camera (the rasterizer's near plane)."""


def _step(n_gaussians: int) -> int:
    """Cameras per batch: about :data:`BATCH_ELEMENTS` (camera, Gaussian) pairs."""
    return max(1, BATCH_ELEMENTS // max(n_gaussians, 1))


def _t(x: Any, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)


def _cameras(camtoworlds: Any, Ks: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    """World-to-camera [C, 4, 4] and intrinsics [C, 3, 3], float32, on ``device``."""
    c2w = _t(camtoworlds, device).reshape(-1, 4, 4)
    K = _t(Ks, device).reshape(-1, 3, 3)
    if len(c2w) == 0:
        raise RenderError("no cameras to project the splats into", "give at least one camera")
    if len(K) == 1:
        K = K.expand(len(c2w), 3, 3)
    if len(K) != len(c2w):
        raise RenderError(f"{len(c2w)} cameras but {len(K)} intrinsics")
    return torch.linalg.inv(c2w), K.contiguous()


def _project(means: Tensor, viewmats: Tensor, Ks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Camera depths and pixel coordinates of the centres: three [C, N] tensors (z, u, v)."""
    p = torch.einsum("cij,nj->cni", viewmats[:, :3, :3], means) + viewmats[:, None, :3, 3]  # [C, N, 3]
    z = p[..., 2]
    zs = torch.where(z > 1e-6, z, torch.ones_like(z))
    u = Ks[:, None, 0, 0] * p[..., 0] / zs + Ks[:, None, 0, 2]
    v = Ks[:, None, 1, 1] * p[..., 1] / zs + Ks[:, None, 1, 2]
    return z, u, v


def _inside(z: Tensor, u: Tensor, v: Tensor, width: int, height: int, margin: float) -> Tensor:
    """[C, N] bool: in front of the camera and within the image grown by ``margin`` per side."""
    mx, my = margin * width, margin * height
    return (z > NEAR_PLANE) & (u >= -mx) & (u < width + mx) & (v >= -my) & (v < height + my)


def view_counts(
    g: dict[str, Tensor],
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    margin: float = MARGIN,
    footprint: float = FOOTPRINT,
) -> tuple[Tensor, Tensor, Tensor]:
    """How many frusta each Gaussian is in, and its centre's mean depth in the views.

    Args:
        g: Activated Gaussians (``means`` [N, 3], ``quats`` [N, 4], ``scales`` [N, 3],
            not log).
        viewmats: [C, 4, 4] world-to-camera.
        Ks: [C, 3, 3] intrinsics for ``width x height`` images.
        margin: Frustum margin, a fraction of the image size per side. Default: :data:`MARGIN`.
        footprint: Further margin in the Gaussian's projected standard deviations, along
            each image axis (the rasterizer's EWA projection). Default: :data:`FOOTPRINT`.

    Returns:
        ``(counts [N] int64, depth [N] float, centres [N] int64)``: ``centres`` counts the
        views whose image (no margin, no footprint) holds the centre, and ``depth``
        averages over them; NaN where none does.
    """
    from vid3d.splats._projection import project_gaussians

    means = g["means"]
    n = means.shape[0]
    counts = torch.zeros(n, dtype=torch.int64, device=means.device)
    zsum = torch.zeros(n, device=means.device)
    seen = torch.zeros(n, dtype=torch.int64, device=means.device)
    step = _step(n)
    for i in range(0, len(viewmats), step):
        proj = project_gaussians(
            means, g["quats"], g["scales"], viewmats[i : i + step], Ks[i : i + step], width, height
        )
        z, (u, v) = proj.depths, proj.means2d.unbind(-1)  # [c, N]
        # gsplat's radii reach 3.33 standard deviations (0 where culled: behind, off screen)
        sx, sy = ((footprint / 3.33) * proj.radii.float()).unbind(-1)  # [c, N] pixels
        mx, my = margin * width + sx, margin * height + sy
        inside = (z > NEAR_PLANE) & (u >= -mx) & (u < width + mx) & (v >= -my) & (v < height + my)
        counts += inside.sum(0)
        strict = _inside(z, u, v, width, height, 0.0)
        zsum += torch.where(strict, z, torch.zeros_like(z)).sum(0)
        seen += strict.sum(0)
    depth = torch.where(seen > 0, zsum / seen.clamp(min=1), torch.full_like(zsum, float("nan")))
    return counts, depth, seen


def scene_extent(camtoworlds: Any, depths: Tensor | None = None) -> float:
    """The scene's size: the larger of the cameras' spread (largest distance of a centre
    from their mean) and the median depth of the Gaussians in view.

    Args:
        camtoworlds: [C, 4, 4] training cameras.
        depths: [N] mean depth of each Gaussian in the views that see it (NaN: none).

    Returns:
        The extent (1.0 when both are zero).
    """
    centers = np.asarray(camtoworlds, dtype=np.float64).reshape(-1, 4, 4)[:, :3, 3]
    spread = float(np.linalg.norm(centers - centers.mean(0), axis=1).max())
    depth = 0.0
    if depths is not None:
        d = depths[torch.isfinite(depths)]
        depth = float(d.median()) if d.numel() else 0.0
    extent = max(spread, depth)
    return extent if extent > 1e-9 else 1.0


def _low_res(Ks: Tensor, width: int, height: int, size: int) -> tuple[Tensor, int, int]:
    """Intrinsics and image size with the longest side at most ``size`` pixels
    (:func:`vid3d.coverage.low_res_size`, :func:`vid3d.coverage.scale_intrinsics`)."""
    w, h = low_res_size(width, height, size)
    K = scale_intrinsics(Ks.detach().cpu().numpy(), width, height, w, h)
    return torch.as_tensor(K, dtype=Ks.dtype, device=Ks.device), w, h


def _surface_depth(depth: Tensor, alpha: Tensor, surface_alpha: float) -> Tensor:
    """[C, H, W] expected depth of surface pixels, min-pooled over 3x3 (+inf: no surface).

    Taking the nearest surface around a pixel keeps a thin real object, whose pixels its
    own Gaussians dominate, from being judged against the background beside it.
    """
    d = torch.where(alpha >= surface_alpha, depth, torch.full_like(depth, float("inf")))
    return -torch.nn.functional.max_pool2d(-d[:, None], 3, stride=1, padding=1)[:, 0]


def floater_votes(
    g: dict[str, Tensor],
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    ratio: float = FLOATER_RATIO,
    size: int = DEPTH_SIZE,
    max_radii: tuple[float, ...] = (FLOATER_RADIUS,),
    surface_alpha: float = SURFACE_ALPHA,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """In how many views each Gaussian lies in front of a surface, and well in front of it.

    The views are rendered at low resolution (longest side ``size``), in batches of
    cameras, as expected depth ("ED"); a view counts for a Gaussian when its centre
    projects into the image onto a pixel whose rendered opacity reaches ``surface_alpha``
    (its expected depth min-pooled over 3x3) and the Gaussian's visible radius there is
    1 to ``max_radius`` pixels, for each of ``max_radii`` (one render for all).

    Args:
        g: Activated Gaussians (``means`` [N, 3], ``quats`` [N, 4], ``scales`` [N, 3],
            ``opacities`` [N]), as :func:`vid3d.stages.render.render_inputs` gives them.
        viewmats: [C, 4, 4] world-to-camera; ``Ks`` [C, 3, 3] for ``width x height``.
        ratio: "Well in front": depth below ``ratio`` times the surface's. Default: 0.5.
        size: Longest side of the renders, pixels. Default: :data:`DEPTH_SIZE`.
        max_radii: Largest visible radius that votes, pixels of the renders, one count
            per entry. Default: (:data:`FLOATER_RADIUS`,).
        surface_alpha: Rendered opacity of a surface pixel. Default: :data:`SURFACE_ALPHA`.

    Returns:
        ``(seen [R, N] int64, in_front [R, N] int64)``, a row per entry of ``max_radii``.
    """
    means = g["means"]
    Kl, w, h = _low_res(Ks, width, height, size)
    limits = torch.tensor(max_radii, dtype=torch.float32, device=means.device)[:, None, None]  # [R, 1, 1]
    seen = torch.zeros(len(max_radii), means.shape[0], dtype=torch.int64, device=means.device)
    front = torch.zeros_like(seen)
    dummy = g["opacities"][:, None]  # "ED" renders depth only; the features are not used
    step = _step(means.shape[0])
    for i in range(0, len(viewmats), step):
        vm, K = viewmats[i : i + step], Kl[i : i + step]
        out, alpha, info = rasterize_views(g, dummy, vm, K, w, h, "ED", backend)
        surf = _surface_depth(out[..., 0], alpha, surface_alpha)  # [c, h, w]
        z, (u, v) = info["depths"], info["means2d"].detach().unbind(-1)  # [c, N]
        radius = info["radii"].amax(dim=-1)  # [c, N] pixels; 0: not drawn
        px = u.floor().long().clamp(0, w - 1)
        py = v.floor().long().clamp(0, h - 1)
        cam = torch.arange(len(vm), device=means.device)[:, None]
        d = surf[cam, py, px]  # [c, N]
        ok = _inside(z, u, v, w, h, 0.0) & (radius > 0) & torch.isfinite(d)
        ok = ok & (radius <= limits)  # [R, c, N]
        seen += ok.sum(1)
        front += (ok & (z < ratio * d)).sum(1)
    return seen, front


def outlier_reasons(
    splats: dict[str, Tensor],
    camtoworlds: Any,
    Ks: Any,
    width: int,
    height: int,
    *,
    min_views: int = MIN_VIEWS,
    margin: float = MARGIN,
    footprint: float = FOOTPRINT,
    min_opacity: float = MIN_OPACITY,
    max_scale: float = MAX_SCALE,
    far_factor: float = FAR_FACTOR,
    floater_ratio: float = FLOATER_RATIO,
    floater_radius: float = FLOATER_RADIUS,
    depth_size: int = DEPTH_SIZE,
    backend: str = "auto",
) -> Tensor:
    """Why each trained Gaussian is a floater or an outlier (see the module docstring).

    Args:
        splats: Raw parameters (``means`` [N, 3], ``quats`` [N, 4], log ``scales`` [N, 3],
            logit ``opacities`` [N]; ``sh0``, ``shN`` are not used), training frame.
        camtoworlds: [C, 4, 4] training cameras (OpenCV axes), same frame.
        Ks: [C, 3, 3] (or [3, 3]) intrinsics for ``width x height`` images.
        min_views: Fewest frusta a Gaussian must be in (0: no such test). Default: 2.
        margin: Frustum margin per side, fraction of the image size. Default: 0.1.
        footprint: Further frustum margin, in projected standard deviations. Default: 1.
        min_opacity: Opacity below which a Gaussian is transparent. Default: 0.01.
        max_scale: Largest scale allowed, in :func:`scene_extent`. Default: 2.
        far_factor: Distance from the cameras' centre, in extents, that makes a Gaussian
            in no frustum far. Default: 10.
        floater_ratio: A Gaussian is well in front of a view's surface below this depth
            ratio; a floater is so in most views that see a surface behind it (0: no
            depth test). Default: 0.5.
        floater_radius: Largest visible radius, in pixels of the depth renders, with which
            a view votes (:func:`floater_votes`). Default: :data:`FLOATER_RADIUS`.
        depth_size: Longest side of the depth renders, pixels. Default: 160.
        backend: Rasterizer backend. Default: "auto".

    Returns:
        [N] int64: the index in :data:`REASONS` of the first reason each Gaussian meets,
        -1 for one to keep.
    """
    from vid3d.stages.render import render_inputs

    g = render_inputs(splats, splats["means"].device)
    viewmats, K = _cameras(camtoworlds, Ks, g["means"].device)
    views, depth, centres = view_counts(g, viewmats, K, width, height, margin, footprint)
    extent = scene_extent(camtoworlds, depth)
    center = _t(np.asarray(camtoworlds, np.float64).reshape(-1, 4, 4)[:, :3, 3].mean(0), views.device)
    masks = {
        "transparent": g["opacities"] < min_opacity,
        "huge": g["scales"].amax(dim=1) > max_scale * extent,
        "far": ((g["means"] - center).norm(dim=1) > far_factor * extent) & (views == 0),
        "few_views": views < min_views,
    }
    codes = torch.full_like(views, -1)
    for code, bad in enumerate(masks.values()):
        codes[(codes < 0) & bad] = code
    idx = (codes < 0).nonzero()[:, 0]
    if floater_ratio > 0 and len(idx):
        rest = {k: v[idx] for k, v in g.items()}
        kw = dict(ratio=floater_ratio, size=depth_size, backend=backend)
        seen, front = floater_votes(
            rest, viewmats, K, width, height, max_radii=(floater_radius, math.inf), **kw
        )
        bad = (seen > 0) & (2 * front > seen)  # in front in most views that see a surface
        for reason, row in zip(("floater", "haze"), bad):
            codes[idx[row & (codes[idx] < 0)]] = REASONS.index(reason)
    codes[(codes < 0) & (centres < min_views)] = REASONS.index("border")
    return codes


def find_outliers(
    splats: dict[str, Tensor], camtoworlds: Any, Ks: Any, width: int, height: int, **options: Any
) -> tuple[Tensor, dict[str, int]]:
    """Mark floaters and outliers among trained Gaussians (:func:`outlier_reasons`).

    Returns:
        ``(keep [N] bool, counts)``: ``counts`` maps each of :data:`REASONS` to the
        number of Gaussians removed for it (each under the first reason it meets).
    """
    codes = outlier_reasons(splats, camtoworlds, Ks, width, height, **options)
    return codes < 0, reason_counts(codes)


def reason_counts(codes: Tensor) -> dict[str, int]:
    """Reason -> number of Gaussians, for :func:`outlier_reasons` codes."""
    return {reason: int((codes == i).sum()) for i, reason in enumerate(REASONS)}


def clean_splats(
    splats: dict[str, Tensor],
    camtoworlds: Any,
    Ks: Any,
    width: int,
    height: int,
    *,
    enabled: bool = True,
    **options: Any,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Remove floaters and outliers (:func:`find_outliers`) from trained splats, all that
    is marked, unchecked (the splat stage's cleanup checks the cost on held-out frames and
    polishes: :meth:`vid3d.splats.trainer.Trainer.remove_outliers`).

    Args:
        splats: Raw parameters (``means``, ``quats``, ``scales``, ``opacities``, ``sh0``,
            ``shN``), training frame; other entries are passed through unchanged.
        camtoworlds, Ks, width, height: The training cameras (see :func:`find_outliers`).
        enabled: False keeps every Gaussian (the report says so). Default: True.
        **options: Thresholds for :func:`find_outliers`.

    Returns:
        ``(kept, report)``: ``kept`` the per-Gaussian tensors indexed by the kept ones
        (detached); ``report`` JSON-serialisable: ``enabled``, ``before``, ``after``,
        ``removed`` (reason -> count, every reason of :data:`REASONS`), ``seconds``.
    """
    t0 = time.perf_counter()
    n = int(splats["means"].shape[0])
    removed = dict.fromkeys(REASONS, 0)
    if not enabled or n == 0:
        kept = {k: v.detach() for k, v in splats.items()}
    else:
        keep, counts = find_outliers(splats, camtoworlds, Ks, width, height, **options)
        removed.update(counts)
        kept = {
            k: v.detach()[keep] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == n else v
            for k, v in splats.items()
        }
    return kept, report_of(n, int(kept["means"].shape[0]), removed, t0, enabled)


def report_of(
    before: int,
    after: int,
    removed: dict[str, int],
    t0: float,
    enabled: bool = True,
    kept_back: dict[str, int] | None = None,
) -> dict:
    """A cleanup's JSON-serialisable report (see :func:`clean_splats`), ``t0`` its
    ``time.perf_counter()`` at the start; ``kept_back``: reason -> Gaussians marked for
    it but kept, because removing them made the training views worse (the trainer's
    check, :meth:`vid3d.splats.trainer.Trainer.remove_outliers`)."""
    return {
        "enabled": bool(enabled),
        "before": before,
        "after": after,
        "removed": {**dict.fromkeys(REASONS, 0), **removed},
        "kept_back": {r: n for r, n in (kept_back or {}).items() if n},
        "seconds": round(time.perf_counter() - t0, 3),
    }


def summary(report: dict[str, Any]) -> str:
    """One log line for a :func:`clean_splats` report."""
    if not report["enabled"]:
        return f"cleanup off: kept all {report['before']} Gaussians"
    parts = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in report["removed"].items() if n)
    back = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in report.get("kept_back", {}).items())
    back = f"; kept {back}: removing them cost too much detail" if back else ""
    polish = report.get("polish_steps", 0)
    polish = f", then {polish} more training steps" if polish else ""
    return (
        f"cleanup kept {report['after']} of {report['before']} Gaussians"
        f" (removed {parts or 'none'}{back}){polish} in {report['seconds']:.1f} s"
    )


# ---------------------------------------------------------------------------
# An independent measure of floaters, on novel views


def orbit_cameras(
    camtoworlds: Any, Ks: Any, width: int, height: int, points: Any, n_frames: int = 24, size: int = 96
):
    """The default orbit (:func:`vid3d.camera_paths.make_path`) around the training
    cameras, at low resolution, for :func:`floater_share`.

    Args:
        camtoworlds: [C, 4, 4] training cameras; ``Ks`` [C, 3, 3] for ``width x height``.
        points: [P, 3] SfM points (to find the centre), same frame.
        n_frames: Views on the orbit. Default: 24.
        size: Longest side of the views, pixels. Default: 96.

    Returns:
        A :class:`vid3d.camera_paths.CameraPath` in the cameras' frame.
    """
    from vid3d.camera_paths import make_path

    w, h = low_res_size(width, height, size)
    c2w, K = np.asarray(camtoworlds, np.float64), np.asarray(Ks, np.float64)
    return make_path("orbit", c2w, K, width, height, w, h, n_frames, points=np.asarray(points, np.float64))


def surface_points(
    g: dict[str, Tensor],
    camtoworlds: Any,
    Ks: Any,
    width: int,
    height: int,
    *,
    size: int = DEPTH_SIZE,
    surface_alpha: float = SURFACE_ALPHA,
    backend: str = "auto",
) -> Tensor:
    """The surfaces that views of the splats show, as points: the reference geometry of
    :func:`floater_share`.

    Each view is rendered at low resolution (longest side ``size``) as expected depth;
    every pixel whose rendered opacity reaches ``surface_alpha`` becomes one point, on
    its ray at that depth. With the training cameras, these are the surfaces the clip
    saw, dense where SfM points are sparse (a plain wall, a ceiling).

    Args:
        g: Raw splat parameters (with ``sh0``) or activated ones, in the cameras' frame.
        camtoworlds: [C, 4, 4] cameras (OpenCV axes); ``Ks`` [C, 3, 3] (or [3, 3]) for
            ``width x height`` images.

    Returns:
        [P, 3] float32 world points (P may be 0).
    """
    from vid3d.stages.render import render_inputs

    if "sh0" in g:
        g = render_inputs(g, g["means"].device)
    dev = g["means"].device
    viewmats, Ks_ = _cameras(camtoworlds, Ks, dev)
    Kl, w, h = _low_res(Ks_, width, height, size)
    c2w = torch.linalg.inv(viewmats)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=dev) + 0.5, torch.arange(w, device=dev) + 0.5, indexing="ij"
    )
    dummy = g["opacities"][:, None]
    out = []
    step = _step(g["means"].shape[0])
    for i in range(0, len(viewmats), step):
        vm, K = viewmats[i : i + step], Kl[i : i + step]
        depth, alpha, _ = rasterize_views(g, dummy, vm, K, w, h, "ED", backend)
        for c in range(len(vm)):
            ok = alpha[c] >= surface_alpha
            z = depth[c, ..., 0][ok]
            x = (xs[ok] - K[c, 0, 2]) / K[c, 0, 0] * z
            y = (ys[ok] - K[c, 1, 2]) / K[c, 1, 1] * z
            cam = torch.stack([x, y, z], dim=1)
            out.append(cam @ c2w[i + c, :3, :3].T + c2w[i + c, :3, 3])
    return torch.cat(out).detach() if out else torch.zeros(0, 3, device=dev)


def _reference_depth(points: Tensor, viewmat: Tensor, K: Tensor, w: int, h: int) -> Tensor:
    """[h, w] nearest depth of ``points`` projected into one view (+inf: no point)."""
    z, u, v = (t[0] for t in _project(points, viewmat[None], K[None]))
    ok = _inside(z, u, v, w, h, 0.0)
    idx = v[ok].long() * w + u[ok].long()
    ref = torch.full((h * w,), float("inf"), device=points.device)
    ref.scatter_reduce_(0, idx, z[ok], reduce="amin")
    # A surface nearer this camera than the views that sampled it is sampled sparsely
    # here, and farther points show through its gaps: the nearest depth within a few
    # pixels closes them.
    k = 2 * REFERENCE_RADIUS + 1
    return -torch.nn.functional.max_pool2d(-ref.view(1, 1, h, w), k, stride=1, padding=REFERENCE_RADIUS)[0, 0]


def floater_share(
    g: dict[str, Tensor],
    cameras,
    surface: Tensor,
    *,
    ratio: float = 0.5,
    size: int = 96,
    backend: str = "auto",
) -> float:
    """Share of the picture that floaters cover in novel views: colour from Gaussians that
    lie well in front of the surfaces the training views saw.

    ``surface`` holds those surfaces as points (:func:`surface_points` of the training
    cameras). Each view of ``cameras`` projects them into its image and keeps, per
    pixel, the nearest one's depth: the reference. A Gaussian whose centre is nearer the
    camera than ``ratio`` times the reference at its pixel floats in space the training
    views saw through; it is drawn as a 1-channel feature (1 for those, 0 for the rest),
    which gives per pixel the share of its colour that floaters paint. The result is
    that share averaged over every pixel of every view. None of :func:`find_outliers`'s
    criteria (votes, radii, frusta) is used.

    Args:
        g: Raw splat parameters (with ``sh0``) or activated ones
            (:func:`vid3d.stages.render.render_inputs`), in the cameras' frame.
        cameras: A :class:`vid3d.camera_paths.CameraPath` (e.g. :func:`orbit_cameras`),
            rendered with its longest side at most ``size``.
        surface: [P, 3] reference points, same frame (keep them fixed to compare splats
            before and after a cleanup).
        ratio: "Well in front": below this fraction of the reference depth. Default: 0.5.
        size: Longest side of the renders, pixels. Default: 96.

    Returns:
        The share in [0, 1]; NaN when no surface point lies in any view.
    """
    from vid3d.stages.render import render_inputs

    if "sh0" in g:
        g = render_inputs(g, g["means"].device)
    dev = g["means"].device
    viewmats, Ks = _cameras(cameras.camtoworlds, cameras.Ks, dev)
    Kl, w, h = _low_res(Ks, cameras.width, cameras.height, size)
    pts = torch.as_tensor(surface, dtype=torch.float32, device=dev).reshape(-1, 3)
    ref = torch.stack([_reference_depth(pts, viewmats[c], Kl[c], w, h) for c in range(len(viewmats))])
    if not bool(torch.isfinite(ref).any()):
        return float("nan")
    total = 0.0
    step = _step(g["means"].shape[0])
    for i in range(0, len(viewmats), step):
        vm, K, r = viewmats[i : i + step], Kl[i : i + step], ref[i : i + step]
        z, u, v = _project(g["means"], vm, K)  # [c, N]
        inside = _inside(z, u, v, w, h, 0.0)
        px = u.floor().long().clamp(0, w - 1)
        py = v.floor().long().clamp(0, h - 1)
        cam = torch.arange(len(vm), device=dev)[:, None]
        flag = (inside & (z < ratio * r[cam, py, px])).float()[..., None]  # [c, N, 1]
        out, _, _ = rasterize_views(g, flag, vm, K, w, h, "RGB", backend)
        total += float(out[..., 0].mean(dim=(1, 2)).sum())
    return total / len(viewmats)
