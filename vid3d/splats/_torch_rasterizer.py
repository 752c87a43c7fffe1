"""Pure-PyTorch tile rasterizer: the reference the native kernel is tested against.

Composites the depth-sorted per-tile Gaussian lists of
:func:`vid3d.splats._projection.isect_tiles` front to back with gsplat's rules
(``RasterizeToPixels3DGSFwd.cu``): ``alpha = min(0.999, opacity * exp(-sigma))``,
Gaussians with ``alpha < 1/255`` (or ``sigma < 0``) are skipped, and a pixel
stops at the first Gaussian that would bring its transmittance to 1e-4 or
below (that Gaussian is not composited). Gradients come from plain autograd.

Tiles are grouped by the power of two above their list length, so each group
is padded only to twice its own lengths. A group is composited in batches of
tiles with at most ``_BUDGET`` (pixel, list entry) pairs, each walking its
lists in chunks of ``_CHUNK`` Gaussians and carrying the transmittance from
chunk to chunk. No tensor has one entry per (pixel, Gaussian) pair of the
whole scene, and every batch is checkpointed (``torch.utils.checkpoint``):
autograd keeps only its inputs and outputs and recomputes its forward pass
during backward, so peak memory stays near one batch's intermediates (about
2^21 x 15 values) instead of growing with the number of tile intersections.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from vid3d.splats._projection import ALPHA_THRESHOLD

_CHUNK = 64  # Gaussians per chunk along a tile's list
_BUDGET = 1 << 21  # (pixel, list entry) pairs per checkpointed batch
_T_MIN = 1e-4  # a pixel is done before its transmittance falls to this


def rasterize_to_pixels_torch(
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
) -> tuple[Tensor, Tensor]:
    """Alpha-composite per-tile Gaussian lists into images, in plain PyTorch.

    Args:
        means2d: Projected centres. [C, N, 2]
        conics: Inverse 2D covariances (a, b, c). [C, N, 3]
        colors: Per-view colours or features. [C, N, D]
        opacities: Per-view opacities. [C, N]
        width: Image width.
        height: Image height.
        tile_size: Tile side in pixels.
        tile_offsets: Start of each tile's list in ``flatten_ids`` plus the
            end. [C * tile_height * tile_width + 1]
        flatten_ids: Depth-sorted indices into the flattened [C * N]. [n_isects]
        backgrounds: Background colours. [C, D] Default: None (black).

    Returns:
        A tuple:

        - **render_colors**: [C, height, width, D]
        - **render_alphas**: [C, height, width, 1]
    """
    C, N, D = colors.shape
    device, dtype = means2d.device, means2d.dtype
    tile_width = (width + tile_size - 1) // tile_size
    tile_height = (height + tile_size - 1) // tile_size
    n_tiles = tile_width * tile_height
    P = tile_size * tile_size
    Wp, Hp = tile_width * tile_size, tile_height * tile_size

    # A padding entry (index C * N) with zero opacity: alpha 0, always skipped.
    means_f, conics_f, colors_f = _pad(means2d), _pad(conics), _pad(colors)
    opac_f = _pad(opacities[..., None])[:, 0]  # [C * N + 1]

    # Pixel centres of a tile relative to its corner.
    ar = torch.arange(tile_size, device=device, dtype=dtype)
    local_y, local_x = torch.meshgrid(ar, ar, indexing="ij")
    local_x, local_y = local_x.reshape(-1) + 0.5, local_y.reshape(-1) + 0.5  # [P]

    starts = tile_offsets[:-1].long()  # [C * n_tiles]
    lengths = tile_offsets[1:].long() - starts  # [C * n_tiles]
    log_len = torch.ceil(torch.log2(lengths.clamp_min(1).to(torch.float64)))
    bucket = torch.where(lengths > 0, log_len, -1)  # [C * n_tiles] list length group

    pix_ids, pix_colors, pix_T = [], [], []
    for b in torch.unique(bucket).tolist():
        tiles = torch.nonzero(bucket == b)[:, 0]  # [B]
        if b < 0:  # empty tiles keep colour 0 and transmittance 1
            continue
        L = 1 << int(b)
        pos = starts[tiles, None] + torch.arange(L, device=device)  # [B, L]
        inside = pos < (starts + lengths)[tiles, None]
        ids = torch.where(inside, flatten_ids.long()[pos.clamp_max(len(flatten_ids) - 1)], C * N)  # [B, L]
        tile_in_img = tiles % n_tiles
        px = (tile_in_img % tile_width)[:, None] * tile_size + local_x  # [B, P]
        py = (tile_in_img // tile_width)[:, None] * tile_size + local_y  # [B, P]
        rows = max(1, _BUDGET // (P * L))  # tiles per checkpointed call
        for r in range(0, len(tiles), rows):
            acc, T = checkpoint(
                _composite_tiles,
                ids[r : r + rows],
                px[r : r + rows],
                py[r : r + rows],
                means_f,
                conics_f,
                colors_f,
                opac_f,
                use_reentrant=False,
            )
            pix_ids.append(_tile_pixel_ids(tiles[r : r + rows], n_tiles, tile_width, tile_size, Wp, Hp))
            pix_colors.append(acc.reshape(-1, D))
            pix_T.append(T.reshape(-1))

    image_colors = torch.zeros(C * Hp * Wp, D, device=device, dtype=dtype)
    image_T = torch.ones(C * Hp * Wp, device=device, dtype=dtype)
    if pix_ids:
        order = torch.cat(pix_ids)
        image_colors = image_colors.index_put((order,), torch.cat(pix_colors))
        image_T = image_T.index_put((order,), torch.cat(pix_T))
    render_colors = image_colors.reshape(C, Hp, Wp, D)[:, :height, :width]
    render_T = image_T.reshape(C, Hp, Wp, 1)[:, :height, :width]
    if backgrounds is not None:
        render_colors = render_colors + render_T * backgrounds[:, None, None, :]
    return render_colors, 1.0 - render_T


def _pad(x: Tensor) -> Tensor:
    """Flatten [C, N, F] to [C * N, F] and append one row of zeros."""
    x = x.reshape(-1, x.shape[-1])
    return torch.cat([x, x.new_zeros(1, x.shape[-1])])


def _tile_pixel_ids(tiles: Tensor, n_tiles: int, tile_width: int, tile_size: int, Wp: int, Hp: int) -> Tensor:
    """Flat indices into [C, Hp, Wp] of the pixels of the given tiles. [B * P]"""
    ar = torch.arange(tile_size, device=tiles.device)
    cam, t = tiles // n_tiles, tiles % n_tiles
    y = (t // tile_width)[:, None, None] * tile_size + ar[None, :, None]  # [B, ts, 1]
    x = (t % tile_width)[:, None, None] * tile_size + ar[None, None, :]  # [B, 1, ts]
    return (cam[:, None, None] * Hp * Wp + y * Wp + x).reshape(-1)


def _composite_tiles(
    ids: Tensor,  # [B, L]
    px: Tensor,  # [B, P]
    py: Tensor,  # [B, P]
    means: Tensor,  # [C * N + 1, 2]
    conics: Tensor,  # [C * N + 1, 3]
    colors: Tensor,  # [C * N + 1, D]
    opacities: Tensor,  # [C * N + 1]
) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing of B tiles with padded lists of length L.

    Returns:
        Accumulated colour without background [B, P, D] and final
        transmittance [B, P].
    """
    B, P = px.shape
    T = torch.ones(B, P, device=px.device, dtype=px.dtype)  # [B, P]
    done = torch.zeros(B, P, device=px.device, dtype=torch.bool)  # [B, P]
    acc = torch.zeros(B, P, colors.shape[1], device=px.device, dtype=px.dtype)
    for s in range(0, ids.shape[1], _CHUNK):
        g = ids[:, s : s + _CHUNK]  # [B, K]
        mu, con, opac, col = means[g], conics[g], opacities[g], colors[g]
        dx = mu[:, None, :, 0] - px[:, :, None]  # [B, P, K]
        dy = mu[:, None, :, 1] - py[:, :, None]  # [B, P, K]
        sigma = (
            0.5 * (con[:, None, :, 0] * dx * dx + con[:, None, :, 2] * dy * dy) + con[:, None, :, 1] * dx * dy
        )  # [B, P, K]
        alpha = torch.clamp_max(opac[:, None, :] * torch.exp(-sigma), 0.999)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, 0.0)
        with torch.no_grad():  # a pixel stops before T would reach _T_MIN
            T_next = torch.cumprod(torch.cat([T[..., None], 1.0 - alpha], -1), -1)[..., 1:]
            live = (T_next > _T_MIN) & ~done[..., None]  # [B, P, K]
            done = done | ~live[..., -1]
        alpha = alpha * live
        trans = torch.cumprod(torch.cat([T[..., None], 1.0 - alpha], -1), -1)  # [B, P, K+1]
        acc = acc + torch.einsum("bpk,bkd->bpd", alpha * trans[..., :-1], col)
        T = trans[..., -1]
    return acc, T
