"""What this machine can do: versions and capabilities of every dependency."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass


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
    """Encode a few frames with vid3d's own H.264 writer and probe the file."""
    from vid3d.video.encode import encoder_status

    st = encoder_status()
    if st["ok"]:
        version = (st["version"] or "").split(" Copyright")[0]
        return Check("ffmpeg / H.264", True, f"libx264 encode works (yuv420p, BT.709, faststart); {version}")
    return Check("ffmpeg / H.264", False, f"{st['ffmpeg']}: {st['error']}")


def run_checks() -> list[Check]:
    """Every check, in the order the doctor prints them."""
    import torch

    checks = [
        Check("python", True, f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    ]
    checks.append(Check("torch", True, f"{torch.__version__}, {torch.get_num_threads()} threads"))
    checks.extend(gpu_checks())
    try:
        import pycolmap

        checks.append(
            Check(
                "pycolmap",
                True,
                f"{pycolmap.__version__}, CUDA {'yes' if getattr(pycolmap, 'has_cuda', False) else 'no'}",
            )
        )
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


def gpu_checks() -> list[Check]:
    """The CUDA GPU, gsplat, and whether gsplat's CUDA kernels load (compiled once here when
    a toolkit is there and nothing is compiled yet, as training would on first use)."""
    import torch

    from vid3d.splats.rasterize import prepare_cuda_backend

    cuda = torch.cuda.is_available()
    checks = []
    if cuda:
        try:
            n = torch.cuda.device_count()
            names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
            gpu = f"{', '.join(names)} ({n} GPU{'s' if n != 1 else ''})"
        except Exception as e:  # noqa: BLE001 - the doctor reports, it does not raise
            gpu = f"a GPU whose properties cannot be read ({type(e).__name__}: {e})"
        mask = os.environ.get("CUDA_VISIBLE_DEVICES")
        checks.append(
            Check(
                "CUDA",
                True,
                f"{gpu}; torch built with CUDA {torch.version.cuda}"
                + (f"; CUDA_VISIBLE_DEVICES={mask}" if mask is not None else ""),
                required=False,
            )
        )
    else:
        build = (
            "this torch is a CPU build"
            if not torch.version.cuda
            else f"torch built with CUDA {torch.version.cuda} sees no GPU"
        )
        checks.append(
            Check(
                "CUDA",
                False,
                f"not available ({build}): training and rendering run on the CPU",
                required=False,
            )
        )
    gs = _version("gsplat")
    if gs is None:
        checks.append(Check("gsplat", False, "missing: pip install gsplat"))
        return checks
    if not cuda:
        checks.append(Check("gsplat", True, f"{gs}, installed; its CUDA rasterizer is not used without CUDA"))
        return checks
    st = prepare_cuda_backend()
    if st["state"] == "loaded":
        checks.append(Check("gsplat", True, f"{gs}, CUDA rasterizer in use: {st['detail']}"))
    else:
        checks.append(Check("gsplat", True, f"{gs}, installed"))
        checks.append(
            Check(
                "gsplat CUDA kernels",
                False,
                f"{st['detail']}; device auto trains on the CPU. Fix: {st['hint']}",
                required=False,
            )
        )
    return checks


def _kernel_check() -> Check:
    """Load (or compile, the first time) the numba CPU kernel and say how it went."""
    from vid3d.splats.rasterize import kernel_status

    try:
        st = kernel_status(compile=True)
    except Exception as e:  # the doctor reports, it does not raise
        return Check("CPU rasterizer", False, f"{type(e).__name__}: {e}")
    if not st["available"]:
        return Check(
            "CPU rasterizer",
            False,
            f"numba kernel unavailable ({st['error']}); the slow PyTorch reference is used",
        )
    how = "loaded from cache" if st["from_cache"] else "compiled"
    secs = st["compile_seconds"]
    cache = (
        f"cache {st['cache_dir']}"
        if st["cache_writable"]
        else "no writable cache: compiled again in every process"
    )
    return Check("CPU rasterizer", True, f"numba kernel {how} in {secs:.1f} s; {cache}")
