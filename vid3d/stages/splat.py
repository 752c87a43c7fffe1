"""The splat stage: train Gaussians on the registered frames.

Reads ``sparse/0`` and the training images through :func:`vid3d.sfm.load_scene`;
writes ``splats/ckpt.pt`` (resumable training state), ``splats/point_cloud.ply``
(standard 3DGS PLY) and ``splats/scene.splat`` (the compact ``.splat`` format), both
in the SfM frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import InputError
from ..progress import NULL_REPORTER, Reporter
from ..splats.model import export, load_checkpoint, to_world
from ..device import resolve_device
from ..splats.trainer import train
from ..workspace import Workspace, fingerprint_paths


def run(ws: Workspace, cfg: Config, reporter: Reporter = NULL_REPORTER) -> dict[str, Any]:
    """Train splats for the workspace and export them.

    Returns:
        Metrics for ``report.json`` (steps, Gaussians, held-out PSNR/SSIM, timings).
    """
    from ..sfm import load_scene

    scene = load_scene(ws)
    device = resolve_device(cfg.device)
    # A checkpoint resumes only a run of the same options on the same cameras.
    run_id = f"{cfg.section_hash('splat')}-{fingerprint_paths([ws.sparse0])}"
    trainer, metrics = train(scene, cfg.splat, ws.ckpt, device=device, config_hash=run_id,
                             reporter=reporter)
    world = to_world(dict(trainer.splats), trainer.data.normalization)
    export(world, ws.ply, "ply")
    export(world, ws.splat_file, "splat")
    metrics["outputs"] = [str(p.relative_to(ws.root)) for p in (ws.ply, ws.splat_file)]
    return metrics


FORMATS = {"ply": ".ply", "splat": ".splat"}


def export_workspace(ws: Workspace, format: str = "ply", out: Path | None = None,
                     frame: str = "sfm") -> Path:
    """Write the workspace's trained splats again from ``splats/ckpt.pt``.

    Args:
        ws: A workspace whose splat stage has run.
        format: "ply" (standard 3DGS PLY) or "splat" (compact .splat).
        out: Output file. Default: ``splats/point_cloud.ply`` or ``splats/scene.splat``.
        frame: "sfm" (COLMAP's frame, as ``sparse/0``) or "normalized" (the training frame).

    Returns:
        The path written.
    """
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}", "use ply or splat")
    if frame not in ("sfm", "normalized"):
        raise InputError(f"unknown frame {frame!r}", "use sfm or normalized")
    ckpt = load_checkpoint(ws.ckpt)
    splats = to_world(ckpt.splats, ckpt.normalization) if frame == "sfm" else ckpt.splats
    out = Path(out) if out is not None else (ws.ply if format == "ply" else ws.splat_file)
    export(splats, out, format)
    return out
