"""Native CPU rasterize-to-pixels kernel (forward and backward), in numba.

The structure follows gsplat's CUDA kernels (``RasterizeToPixels3DGSFwd.cu``
and ``...Bwd.cu``): one work item per (image, tile), walking the tile's
depth-sorted Gaussian list. The forward pass composites front to back,
stops a pixel before its transmittance would reach 1e-4, and keeps each
pixel's final transmittance and the list index of its last contributing
Gaussian. The backward pass walks the same list back to front from that
index, recomputes alpha, reconstructs the transmittance by division (as
gsplat does) and accumulates the gradients of ``means2d``, ``conics``,
``colors`` and ``opacities``.

Differences from the CUDA kernels, none of which changes the result:

- Work items are tiles spread over the CPU threads (``prange``); inside a
  tile the loop is Gaussian-outer, pixel-inner, and only the pixels inside
  the box where the Gaussian's alpha can reach 1/255 (plus one pixel) are
  visited.
- The backward pass writes one gradient row per tile intersection (each
  belongs to exactly one tile), which torch's ``index_add_`` reduces per
  Gaussian afterwards: no atomics, no races, deterministic results.
- Pixel arithmetic is in the dtype of the tensors (float32 as gsplat, or
  float64, which ``torch.autograd.gradcheck`` needs); only the pixel boxes
  are computed in float64. LLVM may fuse multiply-adds (``fastmath`` with
  only ``contract``), which changes results by about one rounding step.
- The tile lists themselves are built natively too (:func:`isect_tiles`):
  a counting sort by tile and a stable sort by depth per tile, identical to
  the torch version.

numba (rather than a C++ extension) keeps ``pip install vid3d`` free of a
compiler toolchain; the kernels are compiled at first use and cached on disk
(``cache=True``). :func:`kernel_status` reports availability, the cache and the
compile time.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import torch
from torch import Tensor

from vid3d.splats._projection import TileIntersections

try:
    import numba
except ImportError as exc:  # numba is a dependency; a broken install falls back to torch
    numba = None
    _IMPORT_ERROR: str | None = f"numba cannot be imported ({exc})"
else:
    _IMPORT_ERROR = None

_ALPHA_MIN = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
_T_MIN = 1e-4  # a pixel is done before its transmittance falls to this
_STATE: dict[str, object] = {"compile_seconds": None, "cache_error": None}


def _jit(fn=None, **options):
    """``numba.njit`` with an on-disk cache when one can be written.

    ``fastmath={"contract"}`` lets LLVM fuse multiply-adds (10-15% faster
    here) and keeps IEEE semantics otherwise: no NaN/inf assumptions, no
    reassociation, exact library ``exp``.
    """
    if fn is None:
        return lambda f: _jit(f, **options)
    if numba is None:
        return fn
    options = {"fastmath": {"contract"}, **options}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError as exc:  # no writable cache location
        _STATE["cache_error"] = str(exc)
        return numba.njit(cache=False, **options)(fn)


def _pixel_box(mx, my, a, b, c, s_max, x0, y0, w, h):
    """Pixels of a tile where a Gaussian's alpha can reach 1/255.

    ``alpha >= 1/255`` needs ``sigma = 0.5 d^T Q d <= s_max = log(255 op)``,
    an ellipse whose half extents are ``sqrt(2 s_max c / det Q)`` along x and
    ``sqrt(2 s_max a / det Q)`` along y; one pixel of margin absorbs rounding.
    A conic that is not positive definite gets the whole tile, a centre that
    is not finite none. Computed in float64.

    Returns:
        Inclusive local bounds (ix0, ix1, iy0, iy1); empty when ix0 > ix1.
    """
    mx, my, a, b, c, s_max = float(mx), float(my), float(a), float(b), float(c), float(s_max)
    if not (math.isfinite(mx) and math.isfinite(my)):
        return 0, -1, 0, -1
    det = a * c - b * b
    if not (a > 0.0 and c > 0.0 and det > 0.0):
        return 0, w - 1, 0, h - 1
    rx = math.sqrt(2.0 * s_max * c / det) + 1.0
    ry = math.sqrt(2.0 * s_max * a / det) + 1.0
    cx = mx - x0 - 0.5
    cy = my - y0 - 0.5
    return (
        int(max(0.0, math.floor(cx - rx))),
        int(min(w - 1.0, math.ceil(cx + rx))),
        int(max(0.0, math.floor(cy - ry))),
        int(min(h - 1.0, math.ceil(cy + ry))),
    )


_pixel_box = _jit(_pixel_box, inline="always")


def _tile_box(job, n_tiles, tile_width, tile_size, width, height):
    """Image index, top-left pixel and size (clipped at the image border) of work item
    ``job``, which is tile ``job % n_tiles`` of image ``job // n_tiles``."""
    img = job // n_tiles
    x0 = (job % n_tiles) % tile_width * tile_size
    y0 = (job % n_tiles) // tile_width * tile_size
    return img, x0, y0, min(tile_size, width - x0), min(tile_size, height - y0)


_tile_box = _jit(_tile_box, inline="always")


@_jit(parallel=True)
def _forward_kernel(
    means2d,  # [I * N, 2]
    conics,  # [I * N, 3]
    colors,  # [I * N, D]
    opacities,  # [I * N]
    backgrounds,  # [I, D]
    tile_offsets,  # [I * n_tiles + 1]
    flatten_ids,  # [n_isects]
    tile_order,  # [I * n_tiles] a permutation, to balance threads
    tile_size,
    tile_width,
    out_colors,  # [I, H, W, D]
    out_T,  # [I, H, W]
    out_last,  # [I, H, W] int32
):
    f = opacities.dtype.type  # arithmetic in the dtype of the inputs
    half, one, alpha_max = f(0.5), f(1.0), f(0.999)
    alpha_min, t_min = f(_ALPHA_MIN), f(_T_MIN)
    n_img, height, width, D = out_colors.shape
    n_tiles = (tile_offsets.shape[0] - 1) // n_img
    for job_i in numba.prange(tile_order.shape[0]):
        job = tile_order[job_i]
        img, x0, y0, w, h = _tile_box(job, n_tiles, tile_width, tile_size, width, height)
        T = np.ones(w * h, opacities.dtype)
        done = np.zeros(w * h, np.bool_)
        acc = np.zeros((w * h, D), opacities.dtype)
        last = np.full(w * h, -1, np.int32)
        n_alive = w * h
        for k in range(tile_offsets[job], tile_offsets[job + 1]):
            if n_alive == 0:
                break
            g = flatten_ids[k]
            op = opacities[g]
            if not op >= alpha_min:
                continue
            mx, my = means2d[g, 0], means2d[g, 1]
            a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
            s_max = f(math.log(float(op) / _ALPHA_MIN))
            ix0, ix1, iy0, iy1 = _pixel_box(mx, my, a, b, c, s_max, x0, y0, w, h)
            for iy in range(iy0, iy1 + 1):
                dy = my - (f(y0 + iy) + half)
                for ix in range(ix0, ix1 + 1):
                    p = iy * w + ix
                    if done[p]:
                        continue
                    dx = mx - (f(x0 + ix) + half)
                    sigma = half * (a * (dx * dx) + c * (dy * dy)) + b * (dx * dy)
                    if sigma > s_max:  # alpha < 1/255, no need for exp
                        continue
                    alpha = min(alpha_max, op * math.exp(-sigma))
                    if sigma < 0 or alpha < alpha_min:
                        continue
                    next_T = T[p] * (one - alpha)
                    if next_T <= t_min:
                        done[p] = True
                        n_alive -= 1
                        continue
                    vis = alpha * T[p]
                    for d in range(D):
                        acc[p, d] += colors[g, d] * vis
                    last[p] = k
                    T[p] = next_T
        for iy in range(h):
            for ix in range(w):
                p = iy * w + ix
                for d in range(D):
                    out_colors[img, y0 + iy, x0 + ix, d] = acc[p, d] + T[p] * backgrounds[img, d]
                out_T[img, y0 + iy, x0 + ix] = T[p]
                out_last[img, y0 + iy, x0 + ix] = last[p]


@_jit(parallel=True)
def _backward_kernel(
    means2d,  # [I * N, 2]
    conics,  # [I * N, 3]
    colors,  # [I * N, D]
    opacities,  # [I * N]
    backgrounds,  # [I, D]
    tile_offsets,  # [I * n_tiles + 1]
    flatten_ids,  # [n_isects]
    tile_order,  # [I * n_tiles]
    tile_size,
    tile_width,
    final_T,  # [I, H, W]
    last_ids,  # [I, H, W] int32
    v_render_colors,  # [I, H, W, D]
    v_render_alphas,  # [I, H, W]
    v_means2d,  # [n_isects, 2] out
    v_means2d_abs,  # [n_isects, 2] out
    v_conics,  # [n_isects, 3] out
    v_colors,  # [n_isects, D] out
    v_opacities,  # [n_isects] out
):
    f = opacities.dtype.type
    half, one, alpha_max = f(0.5), f(1.0), f(0.999)
    alpha_min = f(_ALPHA_MIN)
    n_img, height, width, D = v_render_colors.shape
    n_tiles = (tile_offsets.shape[0] - 1) // n_img
    for job_i in numba.prange(tile_order.shape[0]):
        job = tile_order[job_i]
        img, x0, y0, w, h = _tile_box(job, n_tiles, tile_width, tile_size, width, height)
        T = np.empty(w * h, opacities.dtype)
        last = np.empty(w * h, np.int32)
        v_rc = np.empty((w * h, D), opacities.dtype)
        v_T = np.empty(w * h, opacities.dtype)  # d loss / d (T_final * alpha_i) terms
        buffer = np.zeros((w * h, D), opacities.dtype)
        v_col = np.empty(D, opacities.dtype)
        k_max = -1
        for iy in range(h):
            for ix in range(w):
                p = iy * w + ix
                T[p] = final_T[img, y0 + iy, x0 + ix]
                last[p] = last_ids[img, y0 + iy, x0 + ix]
                k_max = max(k_max, last[p])
                v_bg = f(0.0)
                for d in range(D):
                    v_rc[p, d] = v_render_colors[img, y0 + iy, x0 + ix, d]
                    v_bg += backgrounds[img, d] * v_rc[p, d]
                v_T[p] = T[p] * (v_render_alphas[img, y0 + iy, x0 + ix] - v_bg)
        for k in range(k_max, tile_offsets[job] - 1, -1):
            g = flatten_ids[k]
            op = opacities[g]
            if not op >= alpha_min:
                continue
            mx, my = means2d[g, 0], means2d[g, 1]
            a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
            s_max = f(math.log(float(op) / _ALPHA_MIN))
            ix0, ix1, iy0, iy1 = _pixel_box(mx, my, a, b, c, s_max, x0, y0, w, h)
            v_mx = v_my = v_mx_abs = v_my_abs = f(0.0)
            v_a = v_b = v_c = v_op = f(0.0)
            v_col[:] = 0
            for iy in range(iy0, iy1 + 1):
                dy = my - (f(y0 + iy) + half)
                for ix in range(ix0, ix1 + 1):
                    p = iy * w + ix
                    if k > last[p]:
                        continue
                    dx = mx - (f(x0 + ix) + half)
                    sigma = half * (a * (dx * dx) + c * (dy * dy)) + b * (dx * dy)
                    if sigma > s_max:  # alpha < 1/255, as in the forward pass
                        continue
                    vis = math.exp(-sigma)
                    alpha = min(alpha_max, op * vis)
                    if sigma < 0 or alpha < alpha_min:
                        continue
                    ra = one / (one - alpha)
                    T[p] *= ra
                    fac = alpha * T[p]
                    v_alpha = v_T[p] * ra
                    for d in range(D):
                        v_col[d] += fac * v_rc[p, d]
                        v_alpha += (colors[g, d] * T[p] - buffer[p, d] * ra) * v_rc[p, d]
                        buffer[p, d] += colors[g, d] * fac
                    if op * vis <= alpha_max:
                        v_sigma = -op * vis * v_alpha
                        v_a += half * v_sigma * dx * dx
                        v_b += v_sigma * dx * dy
                        v_c += half * v_sigma * dy * dy
                        gx = v_sigma * (a * dx + b * dy)
                        gy = v_sigma * (b * dx + c * dy)
                        v_mx += gx
                        v_my += gy
                        v_mx_abs += abs(gx)
                        v_my_abs += abs(gy)
                        v_op += vis * v_alpha
            v_means2d[k, 0] = v_mx
            v_means2d[k, 1] = v_my
            v_means2d_abs[k, 0] = v_mx_abs
            v_means2d_abs[k, 1] = v_my_abs
            v_conics[k, 0] = v_a
            v_conics[k, 1] = v_b
            v_conics[k, 2] = v_c
            v_opacities[k] = v_op
            for d in range(D):
                v_colors[k, d] = v_col[d]


@_jit
def _isect_count_kernel(
    means2d,  # [I * N, 2] float32
    radii,  # [I * N, 2] int32
    N,
    tile_size,
    tile_width,
    tile_height,
    rects,  # [I * N, 4] int64 out: tile x0, x1, y0, y1 (x1, y1 exclusive)
    tile_counts,  # [I * n_tiles + 1] int64 out, zeros
):
    ts = np.float32(tile_size)
    n_tiles = tile_width * tile_height
    for i in range(means2d.shape[0]):
        if radii[i, 0] <= 0 or radii[i, 1] <= 0:
            rects[i, 0] = rects[i, 1] = rects[i, 2] = rects[i, 3] = 0
            continue
        tx, ty = means2d[i, 0] / ts, means2d[i, 1] / ts
        rx, ry = np.float32(radii[i, 0]) / ts, np.float32(radii[i, 1]) / ts
        rects[i, 0] = min(max(math.floor(tx - rx), 0), tile_width)
        rects[i, 1] = min(max(math.ceil(tx + rx), 0), tile_width)
        rects[i, 2] = min(max(math.floor(ty - ry), 0), tile_height)
        rects[i, 3] = min(max(math.ceil(ty + ry), 0), tile_height)
        base = i // N * n_tiles
        for y in range(rects[i, 2], rects[i, 3]):
            for x in range(rects[i, 0], rects[i, 1]):
                tile_counts[base + y * tile_width + x + 1] += 1


@_jit(parallel=True)
def _isect_fill_kernel(
    rects,  # [I * N, 4] int64
    depth_keys,  # [I * N] int64: float32 depth bits as unsigned
    N,
    tile_width,
    tile_height,
    tile_offsets,  # [I * n_tiles + 1] int64 list starts
    isect_ids,  # [n_isects] int64 out
    flatten_ids,  # [n_isects] int32 out
):
    n_tiles = tile_width * tile_height
    fill = tile_offsets[:-1].copy()
    for i in range(rects.shape[0]):  # Gaussian order: ties keep it, as a stable sort
        base = i // N * n_tiles
        for y in range(rects[i, 2], rects[i, 3]):
            for x in range(rects[i, 0], rects[i, 1]):
                t = base + y * tile_width + x
                isect_ids[fill[t]] = (t << 32) | depth_keys[i]
                flatten_ids[fill[t]] = i
                fill[t] += 1
    for t in numba.prange(tile_offsets.shape[0] - 1):
        start, end = tile_offsets[t], tile_offsets[t + 1]
        if end - start > 1:
            order = np.argsort(isect_ids[start:end], kind="mergesort")
            isect_ids[start:end] = isect_ids[start:end][order]
            flatten_ids[start:end] = flatten_ids[start:end][order]


def isect_tiles(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2]
    depths: Tensor,  # [C, N]
    tile_size: int,
    tile_width: int,
    tile_height: int,
):
    """Native version of :func:`vid3d.splats._projection.isect_tiles`, same results.

    A counting sort by (image, tile) in Gaussian order, then a stable sort of
    each tile's list by depth, in parallel over tiles.

    Args:
        means2d: Projected centres. [C, N, 2]
        radii: Per-axis radii, 0 where culled. [C, N, 2] int32
        depths: Camera-space depths. [C, N]
        tile_size: Tile side in pixels.
        tile_width: Number of tiles across.
        tile_height: Number of tiles down.

    Returns:
        A :class:`vid3d.splats._projection.TileIntersections`.
    """
    _ensure_compiled()
    lists = _isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height)
    return TileIntersections(*lists)


def _isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height):
    """:func:`isect_tiles` without the compile check, as a plain tuple."""
    C, N = depths.shape
    n_tiles = tile_width * tile_height
    m2d = means2d.detach().float().reshape(C * N, 2).contiguous().numpy()
    rad = radii.int().reshape(C * N, 2).contiguous().numpy()
    depth_keys = depths.detach().float().contiguous().numpy().view(np.uint32).astype(np.int64)
    rects = np.empty((C * N, 4), np.int64)
    counts = np.zeros(C * n_tiles + 1, np.int64)
    _isect_count_kernel(m2d, rad, N, tile_size, tile_width, tile_height, rects, counts)
    offsets = np.cumsum(counts)
    isect_ids = np.empty(offsets[-1], np.int64)
    flatten_ids = np.empty(offsets[-1], np.int32)
    _isect_fill_kernel(
        rects, depth_keys.reshape(-1), N, tile_width, tile_height, offsets, isect_ids, flatten_ids
    )
    tiles_per_gauss = (rects[:, 1] - rects[:, 0]) * (rects[:, 3] - rects[:, 2])
    return (
        torch.from_numpy(tiles_per_gauss.astype(np.int32).reshape(C, N)),
        torch.from_numpy(isect_ids),
        torch.from_numpy(flatten_ids),
        torch.from_numpy(offsets.astype(np.int32)),
    )


@functools.lru_cache(maxsize=8)
def _tile_order(n_jobs: int) -> np.ndarray:
    """A fixed permutation of the work items, so that the equal contiguous
    ranges numba gives each thread hold a similar mix of busy and idle tiles."""
    return np.random.default_rng(0).permutation(n_jobs).astype(np.int64)


class _RasterizeToPixelsCPU(torch.autograd.Function):
    """Autograd wrapper of the forward and backward kernels."""

    @staticmethod
    def forward(
        ctx,
        means2d: Tensor,  # [C, N, 2]
        conics: Tensor,  # [C, N, 3]
        colors: Tensor,  # [C, N, D]
        opacities: Tensor,  # [C, N]
        backgrounds: Tensor | None,  # [C, D]
        width: int,
        height: int,
        tile_size: int,
        tile_offsets: Tensor,  # [C * tile_height * tile_width + 1]
        flatten_ids: Tensor,  # [n_isects]
        absgrad: bool,
    ) -> tuple[Tensor, Tensor]:
        C, N, D = colors.shape
        dtype = colors.dtype
        tile_width = (width + tile_size - 1) // tile_size
        bg = backgrounds if backgrounds is not None else colors.new_zeros(C, D)
        order = _tile_order(len(tile_offsets) - 1)
        out_colors = np.empty((C, height, width, D), dtype=_np_dtype(dtype))
        out_T = np.empty((C, height, width), dtype=_np_dtype(dtype))
        out_last = np.empty((C, height, width), dtype=np.int32)
        args = _flat_inputs(means2d, conics, colors, opacities, bg, tile_offsets, flatten_ids)
        _forward_kernel(*args, order, tile_size, tile_width, out_colors, out_T, out_last)

        final_T = torch.from_numpy(out_T)
        last_ids = torch.from_numpy(out_last)
        render_alphas = (1.0 - final_T).to(dtype)[..., None]  # [C, H, W, 1]
        ctx.save_for_backward(conics, colors, opacities, bg, tile_offsets, flatten_ids, final_T, last_ids)
        ctx.means2d = means2d  # not saved: absgrad is set on this very tensor
        ctx.has_backgrounds = backgrounds is not None
        ctx.tile_size, ctx.absgrad = tile_size, absgrad
        return torch.from_numpy(out_colors), render_alphas

    @staticmethod
    def backward(ctx, v_render_colors: Tensor, v_render_alphas: Tensor):
        conics, colors, opacities, bg, tile_offsets, flatten_ids, final_T, last_ids = ctx.saved_tensors
        means2d = ctx.means2d
        C, N, D = colors.shape
        n_isects = len(flatten_ids)
        dtype = colors.dtype
        np_dtype = _np_dtype(dtype)
        width = final_T.shape[2]
        tile_width = (width + ctx.tile_size - 1) // ctx.tile_size
        # Zeros: intersections behind every pixel's last contribution are not visited.
        v_means2d = np.zeros((n_isects, 2), np_dtype)
        v_means2d_abs = np.zeros((n_isects, 2), np_dtype)
        v_conics = np.zeros((n_isects, 3), np_dtype)
        v_colors = np.zeros((n_isects, D), np_dtype)
        v_opacities = np.zeros(n_isects, np_dtype)
        args = _flat_inputs(means2d, conics, colors, opacities, bg, tile_offsets, flatten_ids)
        _backward_kernel(
            *args,
            _tile_order(len(tile_offsets) - 1),
            ctx.tile_size,
            tile_width,
            final_T.numpy(),
            last_ids.numpy(),
            v_render_colors.detach().to(dtype).contiguous().numpy(),
            v_render_alphas.detach().to(dtype).contiguous()[..., 0].numpy(),
            v_means2d,
            v_means2d_abs,
            v_conics,
            v_colors,
            v_opacities,
        )

        ids = flatten_ids.long()

        def reduce(v: np.ndarray, shape: tuple[int, ...]) -> Tensor:
            out = torch.zeros((C * N,) + v.shape[1:], dtype=dtype)
            return out.index_add_(0, ids, torch.from_numpy(v)).reshape(shape)

        if ctx.absgrad:
            means2d.absgrad = reduce(v_means2d_abs, (C, N, 2))
        v_bg = None
        if ctx.has_backgrounds and ctx.needs_input_grad[4]:
            render_alphas = (1.0 - final_T).to(dtype)[..., None]
            v_bg = (v_render_colors * (1.0 - render_alphas)).sum(dim=(1, 2))  # [C, D]
        return (
            reduce(v_means2d, (C, N, 2)),
            reduce(v_conics, (C, N, 3)),
            reduce(v_colors, (C, N, D)),
            reduce(v_opacities, (C, N)),
            v_bg,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def _np_dtype(dtype: torch.dtype) -> type:
    if dtype == torch.float64:
        return np.float64
    if dtype == torch.float32:
        return np.float32
    raise TypeError(f"the CPU rasterizer takes float32 or float64 tensors, not {dtype}")


def _flat_inputs(means2d, conics, colors, opacities, backgrounds, tile_offsets, flatten_ids):
    """Contiguous numpy views (one dtype) of the kernel inputs, [C, N, F] -> [C * N, F]."""
    dtype = colors.dtype

    def arr(x: Tensor, cols: int) -> np.ndarray:
        x = x.detach().to(dtype).contiguous()
        return x.reshape(-1, cols).numpy() if cols else x.reshape(-1).numpy()

    return (
        arr(means2d, 2),
        arr(conics, 3),
        arr(colors, colors.shape[-1]),
        arr(opacities, 0),
        arr(backgrounds, backgrounds.shape[-1]),
        tile_offsets.detach().contiguous().numpy(),
        flatten_ids.detach().contiguous().numpy(),
    )


def _ensure_compiled() -> None:
    """Compile (or load from the cache) every kernel once, timed."""
    if _STATE["compile_seconds"] is not None:
        return
    start = time.perf_counter()
    with torch.enable_grad():  # callers may be under torch.no_grad()
        _compile_both()
    _STATE["compile_seconds"] = time.perf_counter() - start


def _compile_both() -> None:
    """Run every kernel once on a one-Gaussian scene, in float32 and float64."""
    _isect_tiles(
        torch.full((1, 1, 2), 8.0), torch.full((1, 1, 2), 3, dtype=torch.int32), torch.ones(1, 1), 16, 1, 1
    )
    for dtype in (torch.float32, torch.float64):
        means2d = torch.tensor([[[8.0, 8.0]]], dtype=dtype, requires_grad=True)
        conics = torch.tensor([[[0.5, 0.0, 0.5]]], dtype=dtype)
        colors = torch.ones(1, 1, 1, dtype=dtype)
        opacities = torch.full((1, 1), 0.5, dtype=dtype)
        offsets = torch.tensor([0, 1], dtype=torch.int32)
        ids = torch.zeros(1, dtype=torch.int32)
        out, _ = _RasterizeToPixelsCPU.apply(
            means2d, conics, colors, opacities, None, 16, 16, 16, offsets, ids, False
        )
        out.sum().backward()


def available() -> bool:
    """Whether the native kernel can run (numba imports)."""
    return numba is not None


def kernel_status(compile: bool = False) -> dict[str, object]:
    """Whether the native kernel can run, where it is cached, how long it took to build.

    Args:
        compile: Compile the kernels (or load them from the cache) first, so
            that ``compile_seconds`` is known. Default: False.

    Returns:
        A dict with ``available``, ``compiled``, ``from_cache`` (the kernels
        were loaded from numba's on-disk cache in this process),
        ``compile_seconds`` (None until first use), ``cache_dir`` (None
        without a cache), ``cache_writable``, and ``error`` (None, or why
        the kernel is unavailable, failed to compile or is uncached).
    """
    if numba is None:
        return {
            "available": False,
            "compiled": False,
            "from_cache": False,
            "compile_seconds": None,
            "cache_dir": None,
            "cache_writable": False,
            "error": _IMPORT_ERROR,
        }
    error = _STATE["cache_error"]
    if compile:
        try:
            _ensure_compiled()
        except Exception as exc:  # a report, not a failure: doctor shows it
            error = f"compiling the kernels failed: {type(exc).__name__}: {exc}"
    cache_dir = getattr(getattr(_forward_kernel, "_cache", None), "_cache_path", None)
    kernels = (_forward_kernel, _backward_kernel, _isect_count_kernel, _isect_fill_kernel)
    stats = [k.stats for k in kernels]
    return {
        "available": True,
        "compiled": _STATE["compile_seconds"] is not None,
        "from_cache": all(sum(s.cache_hits.values()) > 0 for s in stats),
        "compile_seconds": _STATE["compile_seconds"],
        "cache_dir": cache_dir,
        "cache_writable": cache_dir is not None,
        "error": error,
    }


def rasterize_to_pixels(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D]
    opacities: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int,
    tile_offsets: Tensor,  # [C * tile_height * tile_width + 1]
    flatten_ids: Tensor,  # [n_isects]
    backgrounds: Tensor | None = None,  # [C, D]
    absgrad: bool = False,
) -> tuple[Tensor, Tensor]:
    """Alpha-composite per-tile Gaussian lists with the native kernel (differentiable).

    Same arguments and results as
    :func:`vid3d.splats._torch_rasterizer.rasterize_to_pixels_torch`.

    Args:
        means2d: Projected centres. [C, N, 2]
        conics: Inverse 2D covariances (a, b, c). [C, N, 3]
        colors: Per-view colours or features. [C, N, D]
        opacities: Per-view opacities. [C, N]
        width: Image width.
        height: Image height.
        tile_size: Tile side in pixels.
        tile_offsets: Start of each tile's list plus the end.
            [C * tile_height * tile_width + 1]
        flatten_ids: Depth-sorted indices into the flattened [C * N]. [n_isects]
        backgrounds: Background colours. [C, D] Default: None (black).
        absgrad: Set ``means2d.absgrad`` (sum over pixels of the absolute
            per-pixel gradients) in the backward pass. Default: False.

    Returns:
        A tuple:

        - **render_colors**: [C, height, width, D]
        - **render_alphas**: [C, height, width, 1]
    """
    _ensure_compiled()
    return _RasterizeToPixelsCPU.apply(
        means2d,
        conics,
        colors,
        opacities,
        backgrounds,
        width,
        height,
        tile_size,
        tile_offsets,
        flatten_ids,
        absgrad,
    )
