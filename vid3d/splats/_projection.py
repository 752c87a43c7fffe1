"""Projection, spherical harmonics and tile intersection for the CPU rasterizers.

Vectorised PyTorch versions of what gsplat 1.5.3 does in CUDA before
``rasterize_to_pixels``: EWA projection of 3D Gaussians to 2D (with the same
culling as ``ProjectionEWA3DGSFused.cu``), view-dependent colour from SH
coefficients, and the depth-sorted per-tile intersection lists
(``IntersectTile.cu``). Both CPU backends (``torch`` and ``cpu``) share them,
so they differ only in the compositing step. Everything here is O(N) or
O(number of tile intersections) and differentiable by plain autograd where a
gradient is needed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
"""Smallest alpha a Gaussian contributes with (gsplat's ``ALPHA_THRESHOLD``)."""


class Projection(NamedTuple):
    """Gaussians projected to the image planes (all shapes ``[C, N, ...]``)."""

    radii: Tensor  # [C, N, 2] int32, 0 where culled
    means2d: Tensor  # [C, N, 2]
    depths: Tensor  # [C, N]
    conics: Tensor  # [C, N, 3] upper triangle of the inverse 2D covariance
    compensations: Tensor | None  # [C, N], only for antialiased mode


class TileIntersections(NamedTuple):
    """Depth-sorted Gaussian lists of every tile of every image."""

    tiles_per_gauss: Tensor  # [C, N] int32
    isect_ids: Tensor  # [n_isects] int64: (image, tile) << 32 | depth bits
    flatten_ids: Tensor  # [n_isects] int32 index into the flattened [C * N]
    tile_offsets: Tensor  # [C * tile_height * tile_width + 1] int32 list starts


def quat_scale_to_matrix(
    quats: Tensor,  # [N, 4] wxyz, not necessarily normalised
    scales: Tensor,  # [N, 3]
) -> Tensor:
    """The matrix ``M = R S`` with ``covariance = M M^T``.

    Args:
        quats: Quaternions (w, x, y, z); they are normalised here. [N, 4]
        scales: Standard deviations along the local axes (not log). [N, 3]

    Returns:
        ``R diag(scales)``. [N, 3, 3]
    """
    w, x, y, z = F.normalize(quats, p=2, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))  # [N, 3, 3]
    return R * scales[..., None, :]


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    opacities: Tensor | None = None,  # [N]
    calc_compensations: bool = False,
) -> Projection:
    """EWA pinhole projection with gsplat's culling (``fully_fused_projection``).

    A Gaussian is culled (radii 0) when its depth is outside
    ``[near_plane, far_plane]``, its dilated 2D covariance is not positive
    definite, both radii are ``<= radius_clip``, its box lies off screen, or
    (when ``opacities`` is given) its opacity is below 1/255. The radius is
    ``ceil(extend * sigma)`` per axis of the dilated 2D covariance with
    ``extend = 3.33``, tightened to where alpha reaches 1/255 when
    ``opacities`` is given, exactly as gsplat's CUDA kernel. Culled
    Gaussians get finite placeholder values, so no NaN reaches the gradients.

    Args:
        means: Gaussian centres, world frame. [N, 3]
        quats: Rotations (w, x, y, z). [N, 4]
        scales: Scales (not log). [N, 3]
        viewmats: World-to-camera transforms. [C, 4, 4]
        Ks: Pixel intrinsics. [C, 3, 3]
        width: Image width in pixels.
        height: Image height in pixels.
        eps2d: Added to the diagonal of the 2D covariance. Default: 0.3.
        near_plane: Near clipping depth. Default: 0.01.
        far_plane: Far clipping depth. Default: 1e10.
        radius_clip: Gaussians whose radii are both at most this are culled.
            Default: 0.0.
        opacities: Opacities in [0, 1] for the tighter radius. [N] Default: None.
        calc_compensations: Also return the antialiasing opacity factor
            ``sqrt(det(cov2d) / det(cov2d + eps2d I))``. Default: False.

    Returns:
        A :class:`Projection` with radii [C, N, 2] int32, means2d [C, N, 2],
        depths [C, N], conics [C, N, 3] and compensations [C, N] or None.
    """
    R = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C, N, 3]
    # covariance in camera frame = M_c M_c^T, M_c = R M
    M_c = torch.einsum("cij,njk->cnik", R, quat_scale_to_matrix(quats, scales))  # [C, N, 3, 3]

    depths = means_c[..., 2]  # [C, N]
    in_depth = (depths >= near_plane) & (depths <= far_plane)  # [C, N]
    tz = torch.where(in_depth, depths, torch.ones_like(depths))  # [C, N]
    x, y = means_c[..., 0], means_c[..., 1]  # [C, N]

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]  # [C, 1]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy  # [C, 1]
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    tx = tz * torch.clamp(x / tz, min=-lim_x_neg, max=lim_x_pos)  # [C, N]
    ty = tz * torch.clamp(y / tz, min=-lim_y_neg, max=lim_y_pos)  # [C, N]

    # 2D covariance = (J M_c)(J M_c)^T with the EWA Jacobian
    # J = [[fx / z, 0, -fx tx / z^2], [0, fy / z, -fy ty / z^2]]
    rz = 1.0 / tz  # [C, N]
    M_z = M_c[..., 2, :]  # [C, N, 3]
    JM0 = (fx * rz)[..., None] * (M_c[..., 0, :] - (tx * rz)[..., None] * M_z)  # [C, N, 3]
    JM1 = (fy * rz)[..., None] * (M_c[..., 1, :] - (ty * rz)[..., None] * M_z)  # [C, N, 3]
    cov_xx = (JM0 * JM0).sum(-1)  # [C, N]
    cov_xy = (JM0 * JM1).sum(-1)  # [C, N]
    cov_yy = (JM1 * JM1).sum(-1)  # [C, N]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # [C, N, 2]

    a = cov_xx + eps2d  # [C, N]
    b = cov_xy  # [C, N]
    c = cov_yy + eps2d  # [C, N]
    det = a * c - b * b  # [C, N]
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)

    compensations = None
    if calc_compensations:
        det_orig = cov_xx * cov_yy - b * b  # [C, N]
        compensations = torch.sqrt(torch.clamp(det_orig / det_safe, min=0.0))

    with torch.no_grad():
        valid = in_depth & det_ok  # [C, N]
        extend = torch.full_like(depths, 3.33)  # [C, N]
        if opacities is not None:
            opac = opacities.detach()[None, :].expand_as(depths)  # [C, N]
            if compensations is not None:
                opac = opac * compensations
            valid &= opac >= ALPHA_THRESHOLD
            bound = torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
            extend = torch.minimum(extend, bound)
        radius = torch.stack(
            [
                torch.ceil(extend * torch.sqrt(a.clamp_min(0))),
                torch.ceil(extend * torch.sqrt(c.clamp_min(0))),
            ],
            dim=-1,
        )  # [C, N, 2]
        valid &= (radius > radius_clip).any(dim=-1)
        m2d = means2d.detach()
        valid &= (m2d[..., 0] + radius[..., 0] > 0) & (m2d[..., 0] - radius[..., 0] < width)
        valid &= (m2d[..., 1] + radius[..., 1] > 0) & (m2d[..., 1] - radius[..., 1] < height)
        radii = (radius * valid[..., None]).int()  # [C, N, 2]
    return Projection(radii, means2d, depths, conics, compensations)


def _sh_bases(num_bases: int, dirs: Tensor) -> Tensor:
    """Real SH basis functions up to degree 4 at unit directions.

    Same constants and ordering as gsplat (Sloan, JCGT 2013).

    Args:
        num_bases: (degree + 1)**2, at most 25.
        dirs: Unit directions. [..., 3]

    Returns:
        Basis values. [..., num_bases]
    """
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.2820947917738781)]
    if num_bases > 1:
        out += [-0.48860251190292 * y, 0.48860251190292 * z, -0.48860251190292 * x]
    if num_bases > 4:
        z2 = z * z
        c1, s1 = x * x - y * y, 2 * x * y
        out += [
            0.5462742152960395 * s1,
            -1.092548430592079 * z * y,
            0.9461746957575601 * z2 - 0.3153915652525201,
            -1.092548430592079 * z * x,
            0.5462742152960395 * c1,
        ]
    if num_bases > 9:
        c2, s2 = x * c1 - y * s1, x * s1 + y * c1
        tmp_c = -2.285228997322329 * z2 + 0.4570457994644658
        out += [
            -0.5900435899266435 * s2,
            1.445305721320277 * z * s1,
            tmp_c * y,
            z * (1.865881662950577 * z2 - 1.119528997770346),
            tmp_c * x,
            1.445305721320277 * z * c1,
            -0.5900435899266435 * c2,
        ]
    if num_bases > 16:
        c3, s3 = x * c2 - y * s2, x * s2 + y * c2
        tmp_d = z * (-4.683325804901025 * z2 + 2.007139630671868)
        tmp_c = 3.31161143515146 * z2 - 0.47308734787878
        out += [
            0.6258357354491763 * s3,
            -1.770130769779931 * z * s2,
            tmp_c * s1,
            tmp_d * y,
            1.984313483298443 * z2 * (1.865881662950577 * z2 - 1.119528997770346)
            - 1.006230589874905 * (0.9461746957575601 * z2 - 0.3153915652525201),
            tmp_d * x,
            tmp_c * c1,
            -1.770130769779931 * z * c2,
            0.6258357354491763 * c3,
        ]
    return torch.stack(out, dim=-1)


def spherical_harmonics(
    degree: int,
    dirs: Tensor,  # [..., 3]
    coeffs: Tensor,  # [..., K, 3]
) -> Tensor:
    """Evaluate SH colour like gsplat's ``spherical_harmonics`` (without +0.5).

    Args:
        degree: SH degree to use, 0 to 4; ``(degree + 1)**2 <= K``.
        dirs: View directions, not necessarily normalised. [..., 3]
        coeffs: SH coefficients. [..., K, 3]

    Returns:
        Colours. [..., 3]
    """
    num_bases = (degree + 1) ** 2
    bases = _sh_bases(num_bases, F.normalize(dirs, p=2, dim=-1))  # [..., num_bases]
    # a batched matrix product: no [..., K, 3] temporary, unlike a broadcast multiply and sum
    return torch.einsum("...k,...kd->...d", bases, coeffs[..., :num_bases, :])


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2]
    depths: Tensor,  # [C, N]
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> TileIntersections:
    """Per-tile Gaussian lists sorted by depth, as gsplat's ``isect_tiles``.

    Every visible Gaussian is listed in each tile its box
    ``[floor((mean - radius) / tile_size), ceil((mean + radius) / tile_size))``
    covers. Lists are ordered by image, tile, then depth; ties keep Gaussian
    order (a stable sort on gsplat's 64-bit key).

    Args:
        means2d: Projected centres. [C, N, 2]
        radii: Per-axis radii, 0 where culled. [C, N, 2]
        depths: Camera-space depths. [C, N]
        tile_size: Tile side in pixels.
        tile_width: Number of tiles across.
        tile_height: Number of tiles down.

    Returns:
        A :class:`TileIntersections`.
    """
    C, N = depths.shape
    n_tiles = tile_width * tile_height
    device = means2d.device
    cam_ids, gauss_ids = torch.nonzero((radii > 0).all(dim=-1), as_tuple=True)  # [M]
    tile_xy = means2d[cam_ids, gauss_ids].float() / tile_size  # [M, 2]
    tile_r = radii[cam_ids, gauss_ids].float() / tile_size  # [M, 2]
    limits = torch.tensor([tile_width, tile_height], device=device)
    tile_min = torch.minimum(torch.floor(tile_xy - tile_r).clamp_min(0).long(), limits)
    tile_max = torch.minimum(torch.ceil(tile_xy + tile_r).clamp_min(0).long(), limits)
    extent = tile_max - tile_min  # [M, 2]
    counts = extent.prod(dim=-1)  # [M]

    tiles_per_gauss = torch.zeros(C, N, dtype=torch.int32, device=device)
    tiles_per_gauss[cam_ids, gauss_ids] = counts.int()

    src = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    local = torch.arange(len(src), device=device) - (torch.cumsum(counts, 0) - counts)[src]
    tx = tile_min[src, 0] + local % extent[src, 0]
    ty = tile_min[src, 1] + local // extent[src, 0]
    image_tile = cam_ids[src] * n_tiles + ty * tile_width + tx  # [n_isects]
    depth_bits = depths[cam_ids, gauss_ids].float().view(torch.int32).long() & 0xFFFFFFFF
    isect_ids = (image_tile << 32) | depth_bits[src]
    isect_ids, order = torch.sort(isect_ids, stable=True)
    flatten_ids = (cam_ids * N + gauss_ids)[src][order].int()

    starts = torch.searchsorted(
        isect_ids >> 32, torch.arange(C * n_tiles + 1, device=device)
    ).int()  # [C * n_tiles + 1]
    return TileIntersections(tiles_per_gauss, isect_ids, flatten_ids, starts)
