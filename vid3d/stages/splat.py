"""The splat stage: train Gaussians on the registered frames.

Reads ``sparse/0`` and the training images through :func:`vid3d.sfm.load_scene`;
while training, writes only ``.vid3d/resume/splat.pt`` (the unfinished run's state, from
which an interrupted run resumes); once training has finished, ``splats/ckpt.pt`` (the
finished splats and training state), ``splats/point_cloud.ply`` (standard 3DGS PLY)
and ``splats/scene.splat`` (the compact ``.splat`` format), both in the SfM frame. A
training that diverges leaves the finished outputs of an earlier run as they were.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from vid3d.config import Config
from vid3d.device import resolve_device
from vid3d.errors import InputError
from vid3d.progress import NULL_REPORTER, Reporter
from vid3d.splats.model import export, load_checkpoint, to_world
from vid3d.splats.trainer import train
from vid3d.transaction import locked
from vid3d.workspace import Workspace, fingerprint_paths


def run(
    ws: Workspace, cfg: Config, reporter: Reporter = NULL_REPORTER, *, force: bool = False
) -> dict[str, Any]:
    """Train splats for the workspace and export them.

    Args:
        ws: The workspace (needs ``sparse/0`` and ``images/``).
        cfg: The configuration (``splat`` section, ``device``).
        reporter: Progress display. Default: none.
        force: Discard the unfinished training state (``ws.resume_ckpt``) and start
            afresh. Default: False (resume an interrupted run of the same options).

    Returns:
        JSON-safe metrics for ``report.json`` (steps, Gaussians, PSNR/SSIM on held-out
        frames or, see ``eval_on``, on training frames, timings).

    Raises:
        TrainingError: Training diverged or cannot run (no output is written).
    """
    from vid3d.sfm import load_scene

    scene = load_scene(ws)
    device = resolve_device(cfg.device)
    # A checkpoint resumes only a run of the same options on the same cameras.
    run_id = f"{cfg.section_hash('splat')}-{fingerprint_paths([ws.sparse0])}"
    trainer, metrics = train(
        scene,
        cfg.splat,
        ws.ckpt,
        device=device,
        config_hash=run_id,
        resume_path=ws.resume_ckpt,
        force=force,
        reporter=reporter,
    )
    world = to_world(dict(trainer.splats), trainer.data.normalization)
    export(world, ws.ply, "ply")
    export(world, ws.splat_file, "splat")
    metrics["outputs"] = [str(p.relative_to(ws.root)) for p in (ws.ply, ws.splat_file)]
    return metrics


FORMATS = {"ply": ".ply", "splat": ".splat"}


def export_workspace(ws: Workspace, format: str = "ply", out: Path | None = None, frame: str = "sfm") -> Path:
    """Write the workspace's trained splats again from ``splats/ckpt.pt`` (a finished one).

    Args:
        ws: A workspace whose splat stage has run.
        format: "ply" (standard 3DGS PLY) or "splat" (compact .splat).
        out: Output file, or a folder to write the default file name into. Default:
            ``splats/point_cloud.ply`` or ``splats/scene.splat`` (``point_cloud.normalized.ply``,
            ``scene.normalized.splat`` with ``frame="normalized"``). Writing into the
            workspace holds its lock.
        frame: "sfm" (COLMAP's frame, as ``sparse/0``) or "normalized" (the training frame).

    Returns:
        The path written.

    Raises:
        InputError: An unknown format or frame; no finished, valid checkpoint.
    """
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}", "use ply or splat")
    if frame not in ("sfm", "normalized"):
        raise InputError(f"unknown frame {frame!r}", "use sfm or normalized")
    default = ws.ply if format == "ply" else ws.splat_file
    if frame == "normalized":  # never in place of the stage's own (SfM-frame) outputs
        default = default.with_name(f"{default.stem}.normalized{default.suffix}")
    out = default if out is None else Path(out)
    if out.is_dir():
        out = out / default.name
    ckpt = load_checkpoint(ws.ckpt, require_finished=True)
    splats = to_world(ckpt.splats, ckpt.normalization) if frame == "sfm" else ckpt.splats
    inside = Path(os.path.realpath(out)).is_relative_to(os.path.realpath(ws.root))
    with locked(ws, "vid3d export") if inside else nullcontext():
        export(splats, out, format)
    return out
