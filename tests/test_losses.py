"""The training losses against well-known implementations."""

from __future__ import annotations

import cv2
import pytest
import torch
from pytorch_msssim import ssim as reference_ssim

from tests.conftest import data_path
from vid3d.splats.losses import psnr, robust_mask, ssim_map


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A real frame and a blurred, shifted, noisy copy of it: [1, H, W, 3] in [0, 1]."""
    cap = cv2.VideoCapture(str(data_path("re10k/videos/0bf152ef84195293.mp4")))
    ok, frame = cap.read()
    assert ok
    a = torch.from_numpy(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).double() / 255.0
    b = torch.from_numpy(cv2.GaussianBlur(frame, (5, 5), 1.2)[2:, 1:]).double().flip(-1) / 255.0
    g = torch.Generator().manual_seed(0)
    b = (b + 0.03 * torch.randn(b.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    h, w = b.shape[:2]
    return a[None, :h, :w], b[None]


def test_ssim_matches_pytorch_msssim_inside_the_border():
    a, b = _pair()
    ours = ssim_map(a, b)  # [1, H, W], zero padding at the borders (as the 3DGS code)
    # pytorch-msssim filters without padding: its mean is over the pixels 5 or more away
    # from the border, where zero padding plays no part
    ref = reference_ssim(
        a.permute(0, 3, 1, 2),
        b.permute(0, 3, 1, 2),
        data_range=1.0,
        win_size=11,
        win_sigma=1.5,
        K=(0.01, 0.03),
    )
    inner = ours[:, 5:-5, 5:-5].mean()
    assert 0.3 < float(ref) < 0.95  # a real, imperfect match
    # (pytorch-msssim builds its window in float32: the two agree to its precision)
    assert float(inner) == pytest.approx(float(ref), abs=1e-5)
    # and a worse copy scores lower in both
    worse = (
        b + 0.1 * torch.randn(b.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ).clamp(0, 1)
    assert float(ssim_map(a, worse)[:, 5:-5, 5:-5].mean()) < float(inner) - 0.05
    # identical images score 1 everywhere, including the borders
    assert torch.allclose(ssim_map(a, a), torch.ones_like(ours), atol=1e-9)


def test_psnr_of_a_known_error():
    a = torch.full((1, 8, 8, 3), 0.5)
    b = a + 0.1  # MSE 0.01: 20 dB
    assert psnr(b, a) == pytest.approx(20.0, abs=1e-4)


def test_robust_mask_drops_a_transient_object_and_keeps_the_rest():
    a, _ = _pair()
    target = a.clone()
    g = torch.Generator().manual_seed(2)
    render = (a + 0.02 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    # something the splats cannot explain: a patch of another part of the frame, pasted
    target[0, 100:150, 200:260] = a[0, 10:60, 20:80].flip(0)
    keep = robust_mask(render, target)
    assert keep.shape == a.shape[:3]
    patch = torch.zeros_like(keep)
    patch[0, 100:150, 200:260] = True
    patch_err = (render - target).abs().mean(-1)[patch]
    strong = patch.clone()
    strong[patch] = patch_err > 0.1  # where the paste differs clearly from what it covers
    assert (~keep[strong]).float().mean() > 0.9
    assert (~keep[~patch]).float().mean() < 0.01
    # a frame that is close everywhere keeps every pixel
    assert robust_mask(render, a).all()
    # masked pixels stay out
    m = torch.ones_like(keep)
    m[0, :20] = False
    assert not robust_mask(render, a, m)[0, :20].any()
