"""What this machine can do: versions and capabilities of every dependency."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_h264() -> Check:
    """Encode two frames with the bundled ffmpeg's libx264."""
    try:
        import imageio_ffmpeg
        import numpy as np

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "t.mp4"
            w = imageio_ffmpeg.write_frames(str(out), (64, 64), fps=2, codec="libx264",
                                            pix_fmt_out="yuv420p", quality=None,
                                            output_params=["-crf", "23"])
            w.send(None)
            for _ in range(2):
                w.send(np.zeros((64, 64, 3), np.uint8))
            w.close()
            ok = out.stat().st_size > 0
        return Check("ffmpeg / H.264", ok, f"{exe} (libx264 encode {'works' if ok else 'failed'})")
    except Exception as e:  # the doctor reports, it does not raise
        return Check("ffmpeg / H.264", False, f"{type(e).__name__}: {e}")


def run_checks() -> list[Check]:
    """Every check, in the order the doctor prints them."""
    import torch

    checks = [Check("python", True, f"{platform.python_version()} on {platform.machine()}, "
                                    f"{os.cpu_count()} CPUs")]
    checks.append(Check("torch", True, f"{torch.__version__}, {torch.get_num_threads()} threads"))
    cuda = torch.cuda.is_available()
    checks.append(Check("CUDA", cuda, torch.cuda.get_device_name(0) if cuda
                        else "not available: training and rendering run on the CPU", required=False))
    gs = _version("gsplat")
    checks.append(Check("gsplat", gs is not None,
                        f"{gs}, " + ("CUDA rasterizer in use" if cuda else
                                     "installed; its CUDA rasterizer is not used without CUDA")
                        if gs else "missing: pip install gsplat"))
    try:
        import pycolmap

        checks.append(Check("pycolmap", True, f"{pycolmap.__version__}, CUDA "
                            f"{'yes' if getattr(pycolmap, 'has_cuda', False) else 'no'}"))
    except ImportError as e:
        checks.append(Check("pycolmap", False, f"missing: {e}"))
    try:
        import cv2

        checks.append(Check("opencv", True, cv2.__version__))
    except ImportError as e:
        checks.append(Check("opencv", False, f"missing: {e}"))
    checks.append(check_h264())
    checks.append(_kernel_check())
    return checks


def _kernel_check() -> Check:
    """Load (or compile, the first time) the numba CPU kernel and say how it went."""
    from .splats.rasterize import kernel_status

    try:
        st = kernel_status(compile=True)
    except Exception as e:  # the doctor reports, it does not raise
        return Check("CPU rasterizer", False, f"{type(e).__name__}: {e}")
    if not st["available"]:
        return Check("CPU rasterizer", False,
                     f"numba kernel unavailable ({st['error']}); the slow PyTorch reference is used")
    how = "loaded from cache" if st["from_cache"] else "compiled"
    secs = st["compile_seconds"]
    cache = (f"cache {st['cache_dir']}" if st["cache_writable"]
             else "no writable cache: compiled again in every process")
    return Check("CPU rasterizer", True, f"numba kernel {how} in {secs:.1f} s; {cache}")
