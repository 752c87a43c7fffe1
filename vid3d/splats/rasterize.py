"""One rasterizer entry point for every backend: ``gsplat`` (CUDA), ``cpu``, ``torch``.

:func:`rasterize` takes the arguments of ``gsplat.rasterization`` (1.5.3) that
vid3d uses and returns the same ``(render_colors, render_alphas, info)``, with
the ``info`` keys gsplat's ``DefaultStrategy`` and ``MCMCStrategy`` read
(``packed=False``), so the strategies work with every backend.

- ``gsplat``: ``gsplat.rasterization`` itself; CUDA tensors only.
- ``cpu``: vectorised PyTorch projection and SH (autograd), then the native
  numba tile kernel of :mod:`vid3d.splats._cpu_kernel` for compositing and
  its backward.
- ``torch``: the same projection, then the pure-PyTorch tile compositor of
  :mod:`vid3d.splats._torch_rasterizer`; slow, kept as the test oracle.
"""

from __future__ import annotations

import math
from typing import Dict, Literal, Optional, Tuple

import torch
from torch import Tensor

from vid3d.errors import TrainingError
from vid3d.splats import _cpu_kernel
from vid3d.splats._projection import isect_tiles, project_gaussians, spherical_harmonics
from vid3d.splats._torch_rasterizer import rasterize_to_pixels_torch

Backend = Literal["auto", "gsplat", "cpu", "torch"]
BACKENDS = ("auto", "gsplat", "cpu", "torch")
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def kernel_status(compile: bool = False) -> Dict[str, object]:
    """State of the native CPU kernel, for ``vid3d doctor``.

    Args:
        compile: Compile the kernels (or load them from numba's cache) first,
            so that the compile time is known. Default: False.

    Returns:
        A dict with ``available`` (numba imports), ``compiled`` (compiled or
        loaded in this process), ``from_cache`` (loaded from the on-disk
        cache), ``compile_seconds`` (time to compile or load, None before),
        ``cache_dir`` and ``cache_writable`` (where compiled code is cached,
        None when it cannot be), and ``error`` (None, or why the kernel is
        unavailable, failed to compile or is not cached).
    """
    return _cpu_kernel.kernel_status(compile=compile)


def resolve_backend(backend: Backend, device: torch.device) -> str:
    """The concrete backend ``rasterize`` uses for tensors on ``device``.

    Args:
        backend: "auto", "gsplat", "cpu" or "torch".
        device: Device of the Gaussians.

    Returns:
        "gsplat", "cpu" or "torch".
    """
    if backend not in BACKENDS:
        raise TrainingError(
            f"Unknown rasterizer backend {backend!r}.",
            hint=f"Use one of {', '.join(BACKENDS)}.",
        )
    if backend == "auto":
        if device.type == "cuda":
            return "gsplat"
        return "cpu" if _cpu_kernel.available() else "torch"
    if backend == "gsplat" and not (torch.cuda.is_available() and device.type == "cuda"):
        raise TrainingError(
            "The gsplat rasterizer needs CUDA tensors and a CUDA build of PyTorch.",
            hint="Use backend='cpu' (or 'auto') on a machine without an NVIDIA GPU.",
        )
    if backend in ("cpu", "torch") and device.type != "cpu":
        raise TrainingError(
            f"The {backend!r} rasterizer runs on CPU tensors, got {device.type}.",
            hint="Use backend='gsplat' (or 'auto') for CUDA tensors.",
        )
    if backend == "cpu" and not _cpu_kernel.available():
        raise TrainingError(
            f"The native CPU rasterizer is unavailable: {_cpu_kernel.kernel_status()['error']}.",
            hint="Install numba (pip install numba) or use backend='torch'.",
        )
    return backend


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D], [C, N, D], [N, K, 3] or [C, N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    render_mode: Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"] = "RGB",
    packed: bool = False,
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    tile_size: int = 16,
    backend: Backend = "auto",
) -> Tuple[Tensor, Tensor, Dict]:
    """Rasterize 3D Gaussians into C pinhole images, like ``gsplat.rasterization``.

    Args:
        means: Gaussian centres, world frame. [N, 3]
        quats: Rotations (w, x, y, z), normalised here. [N, 4]
        scales: Scales (not log). [N, 3]
        opacities: Opacities in [0, 1] (not logits). [N]
        colors: Colours or features [N, D] / [C, N, D] when ``sh_degree`` is
            None, else SH coefficients [N, K, 3] / [C, N, K, 3] with
            ``(sh_degree + 1)**2 <= K``, evaluated towards each camera centre,
            plus 0.5 and clamped at 0.
        viewmats: World-to-camera transforms (OpenCV axes). [C, 4, 4]
        Ks: Pixel intrinsics. [C, 3, 3]
        width: Image width in pixels.
        height: Image height in pixels.
        near_plane: Near clipping depth. Default: 0.01.
        far_plane: Far clipping depth. Default: 1e10.
        radius_clip: Gaussians whose 2D radii are both at most this many
            pixels are skipped. Default: 0.0.
        eps2d: Dilation added to the 2D covariance diagonal. Default: 0.3.
        sh_degree: SH degree to evaluate, or None for plain colours.
            Default: None.
        backgrounds: Background colours. [C, D] Default: None (black).
        render_mode: "RGB", "D" (accumulated depth), "ED" (expected depth),
            "RGB+D" or "RGB+ED"; depth is appended as the last channel.
            Default: "RGB".
        packed: gsplat's packed mode; only the ``gsplat`` backend supports
            True. Default: False.
        absgrad: Also compute ``info["means2d"].absgrad`` in the backward pass
            (``gsplat`` and ``cpu`` backends). Default: False.
        rasterize_mode: "classic" or "antialiased" (opacities scaled by the
            Mip-Splatting compensation factor). Default: "classic".
        tile_size: Tile side in pixels. Default: 16.
        backend: "auto", "gsplat", "cpu" or "torch". "auto" is gsplat for
            CUDA tensors, else the native CPU kernel when numba works, else
            torch. Default: "auto".

    Returns:
        A tuple:

        - **render_colors**: [C, height, width, X], X = D for "RGB", 1 for
          "D"/"ED", D + 1 for "RGB+D"/"RGB+ED".
        - **render_alphas**: [C, height, width, 1]
        - **info**: dict with gsplat's keys: "means2d" [C, N, 2] (gradient
          retained), "radii" [C, N, 2] int32, "depths" [C, N], "conics"
          [C, N, 3], "opacities" [C, N], "width", "height", "n_cameras",
          "n_batches", "tile_size", "tile_width", "tile_height",
          "tiles_per_gauss" [C, N], "isect_ids", "flatten_ids",
          "isect_offsets" [C, tile_height, tile_width], and "batch_ids",
          "camera_ids", "gaussian_ids" (None).
    """
    if render_mode not in RENDER_MODES:
        raise TrainingError(
            f"Unknown render_mode {render_mode!r}.", hint=f"Use one of {', '.join(RENDER_MODES)}."
        )
    if rasterize_mode not in ("classic", "antialiased"):
        raise TrainingError(
            f"Unknown rasterize_mode {rasterize_mode!r}.", hint="Use 'classic' or 'antialiased'."
        )
    chosen = resolve_backend(backend, means.device)
    if chosen == "gsplat":
        import gsplat

        render_colors, render_alphas, info = gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip,
            eps2d=eps2d, sh_degree=sh_degree, packed=packed, tile_size=tile_size,
            backgrounds=backgrounds, render_mode=render_mode, absgrad=absgrad,
            rasterize_mode=rasterize_mode,
        )
        if info["means2d"].requires_grad:
            info["means2d"].retain_grad()
        return render_colors, render_alphas, info
    if packed:
        raise TrainingError(
            f"The {chosen!r} rasterizer has no packed mode.", hint="Pass packed=False."
        )
    if absgrad and chosen == "torch":
        raise TrainingError(
            "The 'torch' rasterizer cannot compute absgrad.",
            hint="Use backend='cpu' or absgrad=False.",
        )

    C, N = viewmats.shape[0], means.shape[0]
    proj = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip,
        opacities=opacities, calc_compensations=rasterize_mode == "antialiased",
    )
    opacities_c = opacities[None, :].expand(C, N)  # [C, N]
    if proj.compensations is not None:
        opacities_c = opacities_c * proj.compensations

    if sh_degree is None:
        colors_c = colors if colors.dim() == 3 else colors[None].expand(C, N, -1)  # [C, N, D]
    else:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
        dirs = means[None, :, :] - campos[:, None, :]  # [C, N, 3]
        shs = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)
        colors_c = torch.clamp_min(spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)

    if render_mode in ("RGB+D", "RGB+ED"):
        colors_c = torch.cat([colors_c, proj.depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        colors_c = proj.depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)

    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    isect_fn = _cpu_kernel.isect_tiles if chosen == "cpu" else isect_tiles
    isect = isect_fn(proj.means2d, proj.radii, proj.depths, tile_size, tile_width, tile_height)

    means2d = proj.means2d  # [C, N, 2]
    if means2d.requires_grad:
        means2d.retain_grad()
    if chosen == "cpu":
        render_colors, render_alphas = _cpu_kernel.rasterize_to_pixels(
            means2d, proj.conics, colors_c, opacities_c, width, height, tile_size,
            isect.tile_offsets, isect.flatten_ids, backgrounds=backgrounds, absgrad=absgrad,
        )
    else:
        render_colors, render_alphas = rasterize_to_pixels_torch(
            means2d, proj.conics, colors_c, opacities_c, width, height, tile_size,
            isect.tile_offsets, isect.flatten_ids, backgrounds=backgrounds,
        )
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)],
            dim=-1,
        )

    info = {
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": proj.radii,
        "means2d": means2d,
        "depths": proj.depths,
        "conics": proj.conics,
        "opacities": opacities_c,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": isect.tiles_per_gauss,
        "isect_ids": isect.isect_ids,
        "flatten_ids": isect.flatten_ids,
        "isect_offsets": isect.tile_offsets[:-1].reshape(C, tile_height, tile_width),
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_batches": 1,
        "n_cameras": C,
    }
    return render_colors, render_alphas, info
