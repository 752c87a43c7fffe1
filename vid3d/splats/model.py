"""Gaussian parameters: initialisation from SfM points, checkpoints, exports.

Parameters follow gsplat's strategies: ``means [N, 3]``, ``quats [N, 4]`` (w, x, y, z),
``scales [N, 3]`` as log, ``opacities [N]`` as logits, ``sh0 [N, 1, 3]``,
``shN [N, K-1, 3]``. Training happens in a normalised frame (cameras centred in the
unit ball, :func:`vid3d.scene.normalization_transform`); ``normalization`` maps the
SfM frame to it, and exports map back (:func:`to_world`).

Files: ``<ws>/splats/ckpt.pt`` (the finished training; loaded with ``weights_only=True``
and validated), ``<ws>/.vid3d/resume/splat.pt`` (the same format: the state of an
unfinished training run, ``finished`` False),
``<ws>/splats/point_cloud.ply`` (standard 3DGS PLY, via ``gsplat.export_splats``),
``<ws>/splats/scene.splat`` (the compact ``.splat`` format).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vid3d.errors import FileSystemError, InputError, TrainingError, storage_hint
from vid3d.workspace import atomic_path

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


def init_splats(
    points: np.ndarray,
    colors: np.ndarray,
    sh_degree: int,
    init_opacity: float,
    init_scale: float,
    device: torch.device | str = "cpu",
) -> torch.nn.ParameterDict:
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
    return torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(device)) for k, v in params.items()})


@dataclass
class Checkpoint:
    """What ``ckpt.pt`` (and the trainer's resume file) holds."""

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
    finished: bool = True
    """False for the trainer's periodic checkpoints of a run still going on; only a
    finished checkpoint is rendered or exported (``load_checkpoint(require_finished=True)``)."""
    steps: int | None = None
    """Steps of the whole training run (None: ``step``)."""


REQUIRED_KEYS = ("splats", "step", "sh_degree", "normalization")


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that hold a NaN or an infinity (one host sync for all)."""
    names = [k for k, v in tensors.items() if v.numel() > 0]
    if not names:
        return []
    with torch.no_grad():
        ok = torch.stack([torch.isfinite(tensors[k]).all() for k in names]).tolist()
    return [k for k, good in zip(names, ok) if not good]


def check_splats(splats: dict[str, Any], sh_degree: int | None = None) -> str | None:
    """What makes splat parameters unusable, or None when they are fine.

    Checks that every parameter of :data:`PARAM_NAMES` is a floating-point tensor, that
    they agree on the number of Gaussians ``N > 0``, that their trailing shapes are
    ``means [N, 3]``, ``quats [N, 4]``, ``scales [N, 3]``, ``opacities [N]``,
    ``sh0 [N, 1, 3]``, ``shN [N, K, 3]`` (``K = (sh_degree + 1) ** 2 - 1`` when
    ``sh_degree`` is given), and that every value is finite.
    """
    if not isinstance(splats, dict):
        return "the splats are not a dictionary of tensors"
    missing = [k for k in PARAM_NAMES if not torch.is_tensor(splats.get(k))]
    if missing:
        return f"splat parameters {', '.join(missing)} are missing"
    trailing = {
        "means": (3,),
        "quats": (4,),
        "scales": (3,),
        "opacities": (),
        "sh0": (1, 3),
        "shN": (None, 3) if sh_degree is None else ((sh_degree + 1) ** 2 - 1, 3),
    }
    n = splats["means"].shape[0] if splats["means"].dim() > 0 else -1
    for k, tail in trailing.items():
        v = splats[k]
        shape = tuple(v.shape)
        if not v.is_floating_point():
            return f"splat parameter {k} is {v.dtype}, not floating point"
        if (
            len(shape) != 1 + len(tail)
            or shape[0] != n
            or any(t is not None and t != d for t, d in zip(tail, shape[1:]))
        ):
            want = ", ".join(["N", *("K" if t is None else str(t) for t in tail)])
            return f"splat parameter {k} has shape {list(shape)}, not [{want}] with N = {n}"
    if n == 0:
        return "it holds 0 Gaussians"
    bad = nonfinite({k: splats[k] for k in PARAM_NAMES})
    if bad:
        return f"splat parameters {', '.join(bad)} are not finite (NaN or infinite)"
    return None


def _retrain_hint(path: Path) -> str:
    ws = path.parent.parent if path.parent.name == "splats" else "WS"
    return f"run `vid3d train {ws} --force`"


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write a checkpoint atomically.

    Raises:
        TrainingError: The splats are empty, malformed or not finite (nothing is written).
    """
    problem = check_splats(ckpt.splats, ckpt.sh_degree)
    if problem is not None:
        raise TrainingError(
            f"refusing to write the checkpoint {path}: {problem}",
            "the training diverged; try a lower learning rate",
        )
    data = {
        "splats": {k: v.detach().cpu() for k, v in ckpt.splats.items()},
        "step": int(ckpt.step),
        "sh_degree": int(ckpt.sh_degree),
        "normalization": torch.tensor(ckpt.normalization, dtype=torch.float64),
        "finished": bool(ckpt.finished),
        "steps": int(ckpt.step if ckpt.steps is None else ckpt.steps),
        "state": ckpt.state,
    }
    with atomic_path(path) as tmp:
        try:
            torch.save(data, tmp)
        except RuntimeError as e:  # torch's zip writer reports a failed write this way
            hint = storage_hint(Path(path).parent)
            why = (
                "the disk is full or a file-size limit was reached"
                if hint
                else str(e).strip().splitlines()[0][:200]
            )
            raise FileSystemError(
                f"cannot write {path}: {why}", hint or "check free disk space and the folder's permissions"
            ) from e


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu", *, require_finished: bool = False
) -> Checkpoint:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    The file is loaded on the CPU with ``weights_only=True`` (so ``state``, e.g. RNG
    states and optimizer steps, stays on the CPU); only the splats move to ``device``.

    Args:
        path: The checkpoint file.
        device: Device of the returned splats. Default: CPU.
        require_finished: Refuse the periodic checkpoint of an unfinished training run.
            Default: False.

    Raises:
        InputError: The file is missing, unreadable, not a vid3d checkpoint, holds
            empty, malformed or non-finite splats, or (``require_finished``) an
            unfinished run. The message is one line and names the file.
    """
    path = Path(path)
    hint = _retrain_hint(path)
    if not path.is_file():
        raise InputError(f"no splat checkpoint at {path}", "run `vid3d train` on the workspace first")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises several types
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise InputError(
            f"{path} is not a readable vid3d checkpoint ({type(e).__name__}: {first})", hint
        ) from e
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a vid3d checkpoint (it holds a {type(data).__name__})", hint)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise InputError(f"{path} is not a vid3d checkpoint (no {', '.join(missing)})", hint)
    try:
        step, sh_degree = int(data["step"]), int(data["sh_degree"])
        normalization = np.asarray(data["normalization"].cpu().numpy(), dtype=np.float64)
    except (TypeError, ValueError, AttributeError) as e:
        raise InputError(
            f"{path} is not a vid3d checkpoint (bad step, sh_degree or normalization)", hint
        ) from e
    problem = check_splats(data["splats"], sh_degree)
    if problem is None and (normalization.shape != (4, 4) or not np.isfinite(normalization).all()):
        problem = "its normalization is not a finite 4x4 matrix"
    if problem is not None:
        raise InputError(f"{path} is not a usable splat checkpoint: {problem}", hint)
    finished = data.get("finished")
    steps = data.get("steps")
    if require_finished and finished is not True:
        what = (
            f"an unfinished training run (step {step} of {steps})"
            if finished is False
            else "no finished training run (written by an older vid3d or an interrupted run)"
        )
        raise InputError(f"{path} holds {what}", hint)
    return Checkpoint(
        splats={k: data["splats"][k].to(device) for k in PARAM_NAMES},
        step=step,
        sh_degree=sh_degree,
        normalization=normalization,
        state=data.get("state") or {},
        finished=bool(finished),
        steps=int(steps) if steps is not None else None,
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


def export(splats: dict[str, torch.Tensor], path: Path, format: str = "ply") -> None:
    """Write splats as a standard 3DGS PLY (``format="ply"``) or ``.splat`` file, atomically.

    Raises:
        TrainingError: The splats are empty, malformed or not finite (nothing is written).
    """
    from gsplat import export_splats

    problem = check_splats(splats)
    if problem is not None:
        raise TrainingError(
            f"refusing to write {path}: {problem}",
            "the training diverged or pruned every Gaussian; retrain with "
            "`vid3d train WS --force` and a lower learning rate",
        )
    s = {k: v.detach().cpu().float() for k, v in splats.items()}
    with atomic_path(path) as tmp:
        export_splats(
            means=s["means"],
            scales=s["scales"],
            quats=s["quats"],
            opacities=s["opacities"],
            sh0=s["sh0"],
            shN=s["shN"],
            format=format,
            save_to=str(tmp),
        )
