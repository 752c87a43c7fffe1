"""Gaussian parameters: initialisation from SfM points, checkpoints, exports.

Parameters follow gsplat's strategies: ``means [N, 3]``, ``quats [N, 4]`` (w, x, y, z),
``scales [N, 3]`` as log, ``opacities [N]`` as logits, ``sh0 [N, 1, 3]``,
``shN [N, K-1, 3]``. Training happens in a normalised frame (cameras centred in the
unit ball, :func:`vid3d.scene.normalization_transform`); ``normalization`` maps the
SfM frame to it, and exports map back (:func:`to_world`).

Files: ``<ws>/splats/ckpt.pt`` (loaded with ``weights_only=True``),
``<ws>/splats/point_cloud.ply`` (standard 3DGS PLY, via ``gsplat.export_splats``),
``<ws>/splats/scene.splat`` (the compact ``.splat`` format).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..workspace import atomic_path

PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")
SH_C0 = 0.28209479177387814


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0, 1] -> degree-0 SH coefficient."""
    return (rgb - 0.5) / SH_C0


def knn_mean_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance of each point to its ``k`` nearest neighbours.

    Args:
        points: [P, 3] positions.

    Returns:
        [P] distances (float64).
    """
    from scipy.spatial import cKDTree

    k = min(k, len(points) - 1)
    if k < 1:
        return np.ones(len(points))
    dist, _ = cKDTree(points).query(points, k=k + 1)
    return dist[:, 1:].mean(axis=1)


def init_splats(points: np.ndarray, colors: np.ndarray, sh_degree: int, init_opacity: float,
                init_scale: float, device: torch.device | str = "cpu") -> torch.nn.ParameterDict:
    """Gaussians at the SfM points, isotropic, sized by their neighbours' distance.

    Args:
        points: [P, 3] positions (in the training frame).
        colors: [P, 3] uint8 colours.
        sh_degree: Highest SH degree; ``shN`` gets ``(sh_degree + 1) ** 2 - 1`` bands.
        init_opacity: Opacity of every Gaussian, in (0, 1).
        init_scale: Factor on the mean distance to the 3 nearest points.
    """
    n = len(points)
    dist = np.clip(knn_mean_distance(points), 1e-7, None)
    means = torch.tensor(points, dtype=torch.float32)
    scales = torch.log(torch.tensor(dist * init_scale, dtype=torch.float32))[:, None].repeat(1, 3)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    opacities = torch.logit(torch.full((n,), float(init_opacity)))
    sh0 = rgb_to_sh(torch.tensor(colors, dtype=torch.float32) / 255.0)[:, None, :]
    shN = torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3)
    params = dict(means=means, quats=quats, scales=scales, opacities=opacities, sh0=sh0, shN=shN)
    return torch.nn.ParameterDict(
        {k: torch.nn.Parameter(v.to(device)) for k, v in params.items()}
    )


@dataclass
class Checkpoint:
    """What ``ckpt.pt`` holds."""

    splats: dict[str, torch.Tensor]
    """Parameters in the training frame (see module docstring)."""
    step: int
    """Training steps done."""
    sh_degree: int
    """Highest SH degree of ``shN``."""
    normalization: np.ndarray
    """[4, 4] similarity from the SfM frame to the training frame."""
    state: dict[str, Any] = field(default_factory=dict)
    """Optimizer, strategy and trainer state for resuming (tensors and plain values)."""


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write a checkpoint atomically."""
    data = {
        "splats": {k: v.detach().cpu() for k, v in ckpt.splats.items()},
        "step": int(ckpt.step),
        "sh_degree": int(ckpt.sh_degree),
        "normalization": torch.tensor(ckpt.normalization, dtype=torch.float64),
        "state": ckpt.state,
    }
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no splat checkpoint at {path}", "run `vid3d train` on the workspace first")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"{path} is not a readable vid3d checkpoint: {e}",
                         "re-run `vid3d train --force`") from e
    return Checkpoint(
        splats=dict(data["splats"]),
        step=int(data["step"]),
        sh_degree=int(data["sh_degree"]),
        normalization=data["normalization"].cpu().numpy(),
        state=data.get("state", {}),
    )


def to_world(splats: dict[str, torch.Tensor], normalization: np.ndarray) -> dict[str, torch.Tensor]:
    """Move splats from the training frame back to the SfM frame.

    ``normalization`` must be a translation and uniform scale (no rotation), so
    quaternions and SH coefficients stay as they are.
    """
    T = torch.tensor(np.linalg.inv(normalization), dtype=torch.float32)
    scale = float(torch.linalg.det(T[:3, :3]).abs() ** (1 / 3))
    if not torch.allclose(T[:3, :3] / scale, torch.eye(3), atol=1e-5):
        raise ValueError("to_world expects a normalisation without rotation")
    out = {k: v.detach().cpu() for k, v in splats.items()}
    out["means"] = out["means"] * scale + T[:3, 3]
    out["scales"] = out["scales"] + float(np.log(scale))
    return out


def load_ply(path: Path) -> dict[str, torch.Tensor]:
    """Read a standard 3DGS PLY into splat parameters (log scales, logit opacities).

    Returns:
        ``means [N, 3]``, ``quats [N, 4]``, ``scales [N, 3]``, ``opacities [N]``,
        ``sh0 [N, 1, 3]``, ``shN [N, K-1, 3]``.
    """
    from plyfile import PlyData

    try:
        v = PlyData.read(str(path))["vertex"]
    except Exception as e:  # plyfile raises several types for foreign files
        raise InputError(f"{path} is not a readable PLY file: {e}") from e
    names = [p.name for p in v.properties]

    def cols(prefix: str) -> np.ndarray:
        keys = sorted((n for n in names if n.startswith(prefix)), key=lambda n: int(n.rsplit("_", 1)[1]))
        return np.stack([np.asarray(v[k], dtype=np.float32) for k in keys], axis=1)

    rest = cols("f_rest_") if any(n.startswith("f_rest_") for n in names) else np.zeros((len(v), 0))
    n = len(v)
    return {
        "means": torch.from_numpy(np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32)),
        "quats": torch.from_numpy(cols("rot_")),
        "scales": torch.from_numpy(cols("scale_")),
        "opacities": torch.from_numpy(np.asarray(v["opacity"], dtype=np.float32)),
        "sh0": torch.from_numpy(cols("f_dc_"))[:, None, :],
        # PLY stores the rest channel-major: [N, 3, K-1]
        "shN": torch.from_numpy(rest.reshape(n, 3, -1)).transpose(1, 2).contiguous(),
    }


def export(splats: dict[str, torch.Tensor], path: Path, format: str = "ply") -> None:
    """Write splats as a standard 3DGS PLY (``format="ply"``) or ``.splat`` file, atomically."""
    from gsplat import export_splats

    s = {k: v.detach().cpu().float() for k, v in splats.items()}
    with atomic_path(path) as tmp:
        export_splats(means=s["means"], scales=s["scales"], quats=s["quats"],
                      opacities=s["opacities"], sh0=s["sh0"], shN=s["shN"],
                      format=format, save_to=str(tmp))
