"""The splat stage: train Gaussians on the registered frames.

Reads ``sparse/0`` and the training images through :func:`vid3d.sfm.load_scene`;
writes ``splats/ckpt.pt`` (resumable training state) and ``splats/point_cloud.ply``
(standard 3DGS PLY, in the SfM frame).
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..progress import NULL_REPORTER, Reporter
from ..splats.model import export, to_world
from ..splats.trainer import resolve_device, train
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
                             checkpoint_every=cfg.splat.checkpoint_every, reporter=reporter)
    export(to_world(dict(trainer.splats), trainer.data.normalization), ws.ply, "ply")
    metrics["ply"] = str(ws.ply.relative_to(ws.root))
    return metrics
