"""Scoring trained workspaces on chosen pixels, shared by the benchmarks.

Training reports held-out PSNR on the pixels its own masks leave; comparing runs with and
without masks needs one set of pixels for all of them. These helpers rebuild a trainer
from a workspace's finished checkpoint and score its held-out frames on given masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vid3d.config import SplatConfig
from vid3d.sfm.views import load_scene
from vid3d.splats.model import load_checkpoint
from vid3d.splats.trainer import Trainer, load_train_data
from vid3d.workspace import Workspace


def finished_trainer(ws: Workspace, cfg: SplatConfig) -> Trainer:
    """A CPU trainer on the workspace's frames holding its finished splats."""
    data = load_train_data(load_scene(ws), cfg.test_every, torch.device("cpu"))
    trainer = Trainer(data, cfg, torch.device("cpu"), backend=cfg.backend)
    trainer.restore(load_checkpoint(ws.ckpt, "cpu", require_finished=True))
    return trainer


def frame_names(trainer: Trainer) -> list[str]:
    """The image file names of the trainer's frames, in its order."""
    return [Path(p).name for p in trainer.data.scene.image_paths]


def held_out_psnr(trainer: Trainer, use: dict[str, np.ndarray] | None) -> dict:
    """:meth:`Trainer.evaluate` (held-out frames, interpolated colour correction) on the
    pixels ``use[name]`` (``[H, W]`` bool, True = scored; a frame without one: all), or
    on every pixel with None. The trainer's own masks are put back afterwards."""
    data = trainer.data
    own = data.masks
    if use is None:
        data.masks = None
    else:
        full = np.ones((data.height, data.width), bool)
        data.masks = torch.from_numpy(np.stack([use.get(n, full) for n in frame_names(trainer)]))
    try:
        return trainer.evaluate()
    finally:
        data.masks = own
