"""Image losses and metrics: masked L1, SSIM, PSNR."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _gaussian_taps(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two images (Gaussian window, zero padding at the borders).

    The 2D Gaussian window is applied as two 1D passes (it is separable, and zero
    padding commutes with that), 2 x 11 instead of 121 taps per pixel; the five
    filtered maps go through the filter as one batch.

    Args:
        a, b: [B, H, W, C] images in [0, 1].

    Returns:
        [B, H, W] SSIM averaged over channels.
    """
    a = a.permute(0, 3, 1, 2)
    b = b.permute(0, 3, 1, 2)
    c = a.shape[1]
    g = _gaussian_taps(window, sigma, a.device, a.dtype)
    k = 5 * c
    wx = g.view(1, 1, 1, window).expand(k, 1, 1, window)
    wy = g.view(1, 1, window, 1).expand(k, 1, window, 1)
    pad = window // 2
    x = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    x = F.conv2d(F.conv2d(x, wx, padding=(0, pad), groups=k), wy, padding=(pad, 0), groups=k)
    mu_a, mu_b, e_aa, e_bb, e_ab = x.split(c, dim=1)
    var_a = e_aa - mu_a**2
    var_b = e_bb - mu_b**2
    cov = e_ab - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=1)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    while mask.dim() < x.dim():
        mask = mask.unsqueeze(-1)
    mask = mask.expand_as(x).to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def photometric_loss(
    render: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, ssim_lambda: float = 0.2
) -> torch.Tensor:
    """The 3DGS loss ``(1 - lambda) * L1 + lambda * (1 - SSIM)``, over unmasked pixels.

    Args:
        render, target: [B, H, W, 3] images in [0, 1].
        mask: [B, H, W] with 1 where the pixel counts, or None for all pixels.
        ssim_lambda: Weight of the D-SSIM term. Default: 0.2.
    """
    l1 = _masked_mean((render - target).abs(), mask)
    if ssim_lambda == 0:
        return l1
    dssim = 1.0 - _masked_mean(ssim_map(render, target), mask)
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * dssim


def robust_mask(
    render: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    factor: float = 3.0,
    floor: float = 0.1,
    blob: int = 5,
) -> torch.Tensor:
    """The pixels a robust loss keeps: those whose error is not far above the frame's typical
    error, as in RobustNeRF's trimmed loss (what moved between frames and was not masked:
    a passing car, a waving hand; the splats cannot explain it, so it must not pull them).

    A pixel is dropped when its error (mean absolute error over the channels, averaged
    over its 3x3 neighbourhood) exceeds both ``factor`` times the frame's median error and
    ``floor``, and most of its ``blob`` x ``blob`` neighbourhood is dropped too: outliers
    count only as regions, so fine detail the splats have not learned yet is kept.

    Args:
        render, target: [B, H, W, 3] images in [0, 1] (no gradient is taken).
        mask: [B, H, W] pixels that count at all (True = use), or None.
        factor: Multiple of the median error above which a pixel is an outlier. Default: 3.
        floor: Errors below this always count (a nearly perfect frame keeps every pixel).
        blob: Side of the neighbourhood an outlier region must fill, in pixels. Default: 5.

    Returns:
        [B, H, W] bool, True where the pixel counts.
    """
    with torch.no_grad():
        err = (render - target).abs().mean(-1, keepdim=True).permute(0, 3, 1, 2)  # [B, 1, H, W]
        err = F.avg_pool2d(err, 3, 1, 1)[:, 0]  # [B, H, W]
        use = torch.ones_like(err, dtype=torch.bool) if mask is None else mask.bool()
        typical = torch.stack(
            [e[u].median() if u.any() else e.new_zeros(()) for e, u in zip(err, use)]
        )  # [B]
        outlier = err > torch.clamp(factor * typical, min=floor)[:, None, None]
        share = F.avg_pool2d(outlier[:, None].float(), blob, 1, blob // 2)[:, 0]
        return use & ~(outlier & (share > 0.5))


def psnr(render: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (over unmasked pixels)."""
    mse = float(_masked_mean((render.clamp(0, 1) - target) ** 2, mask))
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))


def ssim(render: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean SSIM of images in [0, 1] (over unmasked pixels)."""
    return float(_masked_mean(ssim_map(render.clamp(0, 1), target), mask))
