"""The torch device of ``Config.device``.

"auto" is a CUDA GPU only when gsplat can rasterize on it: PyTorch sees the GPU *and*
gsplat's CUDA kernels load (see :func:`vid3d.splats.rasterize.prepare_cuda_backend`);
otherwise it is the CPU, with the reason (:func:`choose_device`). An explicit "cuda"
whose kernels cannot load is an error whose hint says how to install them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vid3d.errors import ConfigError


@dataclass(frozen=True)
class DeviceChoice:
    """The device for a ``Config.device`` value, and why "auto" took the CPU."""

    device: torch.device
    reason: str | None = None
    """Why "auto" chose the CPU although PyTorch sees a CUDA GPU (None otherwise)."""


def choose_device(device: str) -> DeviceChoice:
    """The device for ``device`` ("auto", "cpu", "cuda", "cuda:N"), loading gsplat's CUDA
    kernels first when a GPU may be used (seconds; minutes the first time, when gsplat
    compiles them).

    Raises:
        ConfigError: An unknown device; "cuda" where PyTorch sees no CUDA device, a GPU
            index PyTorch does not see, or gsplat's CUDA kernels that cannot be loaded
            (the hint says how to install them).
    """
    from vid3d.splats.rasterize import cuda_backend_error, prepare_cuda_backend

    if device == "auto":
        if not torch.cuda.is_available():
            return DeviceChoice(torch.device("cpu"))
        st = prepare_cuda_backend()
        if st["state"] == "loaded":
            return DeviceChoice(torch.device("cuda"))
        return DeviceChoice(torch.device("cpu"), f"{st['detail']}: running on the CPU instead ({st['hint']})")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but PyTorch sees no CUDA GPU",
            "use --device cpu, or install a CUDA build of PyTorch",
        )
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}", 'use "auto", "cpu" or "cuda"') from e
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(
                f"--device {device} was asked for but PyTorch sees {count} GPU"
                f"{'s' if count != 1 else ''} (CUDA_VISIBLE_DEVICES narrows them)",
                f"use --device cuda:0 ... cuda:{count - 1}, or --device cuda",
            )
        st = prepare_cuda_backend()
        if st["state"] != "loaded":
            raise cuda_backend_error(st, ConfigError)
    return DeviceChoice(dev)


def resolve_device(device: str) -> torch.device:
    """ "auto" is CUDA when available and gsplat's CUDA kernels load, else CPU; "cuda"
    without CUDA or without those kernels is an error. See :func:`choose_device`.

    Raises:
        ConfigError: see :func:`choose_device`.
    """
    return choose_device(device).device


def cuda_fallback_reason() -> str | None:
    """Why this process runs on the CPU although PyTorch sees a CUDA GPU: gsplat's CUDA
    kernels are missing or failed to load. None when there is no GPU, or the kernels are
    loaded or not tried yet. Compiles nothing."""
    if not torch.cuda.is_available():
        return None
    from vid3d.splats.rasterize import cuda_backend_status

    st = cuda_backend_status()
    if st["usable"] is not False:
        return None
    return f"PyTorch sees a CUDA GPU, but {st['detail']}: running on the CPU ({st['hint']})"
