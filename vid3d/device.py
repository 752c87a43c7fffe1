"""The torch device of ``Config.device``."""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """"auto" is CUDA when available, else CPU; "cuda" without CUDA is an error.

    Raises:
        ConfigError: an unknown device, or "cuda" where PyTorch sees no CUDA device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but PyTorch sees no CUDA GPU",
                          "use --device cpu, or install a CUDA build of PyTorch")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}", 'use "auto", "cpu" or "cuda"') from e
