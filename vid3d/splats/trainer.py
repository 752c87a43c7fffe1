"""Gaussian splat training: one step, evaluation, checkpoints; densification via gsplat.

The trainer works in the normalised frame of :func:`vid3d.scene.normalization_transform`
(cameras centred in the unit ball) and renders through
:func:`vid3d.splats.rasterize.rasterize`, so it runs with gsplat on CUDA and with the
CPU kernel elsewhere. Every ``test_every``-th frame is held out for evaluation (see
:func:`held_out_ids`). The first ``coarse_steps`` steps train at half resolution.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..config import SplatConfig
from ..errors import TrainingError
from ..progress import NULL_REPORTER, Reporter
from ..scene import Scene, normalization_transform
from ._malloc import keep_freed_memory
from .losses import photometric_loss, psnr, ssim
from .model import Checkpoint, init_splats, load_checkpoint, save_checkpoint
from .rasterize import rasterize
from .strategies import DefaultStrategy, MCMCStrategy


def held_out_ids(n: int, test_every: int) -> list[int]:
    """The frames held out for evaluation: every ``test_every``-th, starting half a period
    in, and never the first or last frame.

    A clip's first and last frames are the only views of its two ends; holding them out
    would take those parts of the scene away from the splats and score the splats on
    extrapolation into space no training frame saw (on a 25-frame RealEstate10K clip the
    first frame scored 16.8 dB where the interior held-out frames scored 25.6-28.2 dB).
    """
    if test_every <= 0 or n <= 2:
        return []
    return [i for i in range(1, n - 1) if i % test_every == test_every // 2]


@dataclass
class TrainData:
    """Training images and cameras in the normalised frame."""

    images: torch.Tensor  # [N, H, W, 3] uint8
    masks: torch.Tensor | None  # [N, H, W] bool, True = use
    viewmats: torch.Tensor  # [N, 4, 4] world-to-camera
    Ks: torch.Tensor  # [N, 3, 3]
    train_ids: list[int]
    test_ids: list[int]
    normalization: np.ndarray  # [4, 4] SfM frame -> training frame
    scene: Scene  # normalised scene
    _levels: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    def level(self, factor: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Images, masks and intrinsics downsampled by an integer ``factor`` (area
        averaging; 1: the originals). Computed once per factor.

        Returns:
            ``(images [N, H', W', 3] uint8, masks [N, H', W'] bool or None, Ks [N, 3, 3])``
        """
        if factor == 1:
            return self.images, self.masks, self.Ks
        if factor not in self._levels:
            h, w = max(1, self.height // factor), max(1, self.width // factor)
            imgs = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
                             for im in self.images.cpu().numpy()])
            masks = None
            if self.masks is not None:
                masks = np.stack([cv2.resize(m.astype(np.float32), (w, h),
                                             interpolation=cv2.INTER_AREA) > 0.5
                                  for m in self.masks.cpu().numpy()])
                masks = torch.from_numpy(masks).to(self.masks.device)
            Ks = self.Ks.clone()  # pixel corners at integers: x' = x * w' / w
            Ks[:, 0, :] *= w / self.width
            Ks[:, 1, :] *= h / self.height
            self._levels[factor] = (torch.from_numpy(imgs).to(self.images.device), masks, Ks)
        return self._levels[factor]


def load_train_data(scene: Scene, test_every: int, device: torch.device) -> TrainData:
    """Read the scene's images and masks and normalise its cameras.

    Args:
        scene: Cameras and pinhole images (SfM frame).
        test_every: Hold out every n-th frame (0: none).
    """
    T = normalization_transform(scene.camtoworlds)
    scene_n = scene.transformed(T)
    images, masks = [], []
    for path in scene.image_paths:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise TrainingError(f"cannot read training image {path}", "re-run `vid3d poses --force`")
        images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if any(p is not None for p in scene.mask_paths):
        for path, img in zip(scene.mask_paths, images):
            m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path is not None else None
            masks.append(np.ones(img.shape[:2], bool) if m is None else m > 127)
    n = len(images)
    test_ids = held_out_ids(n, test_every)
    train_ids = [i for i in range(n) if i not in test_ids]
    c2w = torch.tensor(scene_n.camtoworlds, dtype=torch.float32)
    return TrainData(
        images=torch.from_numpy(np.stack(images)).to(device),
        masks=torch.from_numpy(np.stack(masks)).to(device) if masks else None,
        viewmats=torch.linalg.inv(c2w).to(device),
        Ks=torch.tensor(scene_n.Ks, dtype=torch.float32).to(device),
        train_ids=train_ids,
        test_ids=test_ids,
        normalization=T,
        scene=scene_n,
    )


class Trainer:
    """Trains splats on :class:`TrainData` with the 3DGS schedule.

    Args:
        data: Images and cameras.
        cfg: Training options.
        device: Torch device.
        backend: Rasterizer backend (see :func:`vid3d.splats.rasterize.rasterize`).
    """

    def __init__(self, data: TrainData, cfg: SplatConfig, device: torch.device, backend: str = "auto"):
        cfg = cfg.scaled()
        self.data, self.cfg, self.device, self.backend = data, cfg, device, backend
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        scene = data.scene
        if len(scene.points) < 4:
            raise TrainingError(f"structure from motion found only {len(scene.points)} points",
                                "the splats need a sparse point cloud; re-run `vid3d poses` with more frames")
        self.scene_scale = float(np.linalg.norm(scene.camtoworlds[:, :3, 3], axis=1).max()) * 1.1
        self.splats = init_splats(scene.points, scene.colors, cfg.sh_degree, cfg.init_opacity,
                                  cfg.init_scale, device)
        self.optimizers = self._make_optimizers()
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizers["means"], gamma=0.01 ** (1.0 / max(cfg.steps, 1)))
        self.strategy = make_strategy(cfg)
        self.strategy.check_sanity(self.splats, self.optimizers)
        self.strategy_state = (self.strategy.initialize_state(scene_scale=self.scene_scale)
                               if cfg.strategy == "default" else self.strategy.initialize_state())
        # Per-image affine colour correction (delta from identity), learned with the
        # scene for the training images only; novel views render without it.
        self.exposure = torch.nn.Parameter(torch.zeros(len(data.images), 3, 4, device=device))
        self.exposure_opt = torch.optim.Adam([self.exposure], lr=cfg.lr_exposure)
        self.step_count = 0
        self.train_seconds = 0.0  # time spent in training steps, over resumes
        self.order: list[int] = []
        self.history: list[dict[str, float]] = []
        self.background = torch.tensor(cfg.background, dtype=torch.float32, device=device)

    def correct_exposure(self, render: torch.Tensor, i: int) -> torch.Tensor:
        """Apply training image ``i``'s colour correction to ``render [1, H, W, 3]``."""
        return self._apply_exposure(render, self.exposure[i])

    @staticmethod
    def _apply_exposure(render: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        A = E[:, :3] + torch.eye(3, device=render.device)  # [3, 3]
        return render @ A.T + E[:, 3]

    def interpolated_exposure(self, i: int) -> torch.Tensor:
        """The colour correction of a held-out frame, interpolated in time from the
        training frames before and after it (the nearest one at the clip's ends).

        Frames are in time order, and a camera's auto exposure and white balance drift
        slowly, so a held-out frame's colour is predicted from its neighbours alone; the
        frame itself is never looked at. Returns a [3, 4] delta from identity.
        """
        train = self.data.train_ids
        before = [j for j in train if j < i]
        after = [j for j in train if j > i]
        if not before or not after:
            return self.exposure[(before or after)[-1 if before else 0]].detach()
        j0, j1 = before[-1], after[0]
        w = (i - j0) / (j1 - j0)
        return ((1 - w) * self.exposure[j0] + w * self.exposure[j1]).detach()

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        lrs = dict(means=c.lr_means * self.scene_scale, quats=c.lr_quats, scales=c.lr_scales,
                   opacities=c.lr_opacities, sh0=c.lr_sh0, shN=c.lr_shN)
        return {name: torch.optim.Adam([{"params": self.splats[name], "lr": lr, "name": name}],
                                       eps=1e-15)
                for name, lr in lrs.items()}

    def sh_degree_now(self) -> int:
        return min(self.step_count // max(self.cfg.sh_degree_interval, 1), self.cfg.sh_degree)

    def downscale_now(self) -> int:
        """Resolution factor of the current step: 2 during the coarse phase, else 1."""
        return 2 if self.step_count < self.cfg.coarse_steps else 1

    def render(self, ids: list[int], sh_degree: int | None = None, downscale: int = 1):
        """Render training cameras ``ids``: ``([C, H, W, 3] colours, info)``."""
        s = self.splats
        colors = torch.cat([s["sh0"], s["shN"]], 1)  # [N, K, 3]
        C = len(ids)
        images, _, Ks = self.data.level(downscale)
        out, _, info = rasterize(
            s["means"], s["quats"], torch.exp(s["scales"]), torch.sigmoid(s["opacities"]), colors,
            self.data.viewmats[ids], Ks[ids], int(images.shape[2]), int(images.shape[1]),
            sh_degree=self.sh_degree_now() if sh_degree is None else sh_degree,
            backgrounds=self.background.expand(C, 3), packed=False, backend=self.backend)
        return out, info

    def _next_id(self) -> int:
        if not self.order:
            perm = torch.randperm(len(self.data.train_ids), generator=self.generator)
            self.order = [self.data.train_ids[i] for i in perm.tolist()]
        return self.order.pop()

    def step(self) -> float:
        """One optimisation step on one training image; returns the loss."""
        i = self._next_id()
        factor = self.downscale_now()
        images, masks, _ = self.data.level(factor)
        target = images[i : i + 1].float() / 255.0  # [1, H, W, 3]
        mask = masks[i : i + 1] if masks is not None else None
        render, info = self.render([i], downscale=factor)
        cfg = self.cfg
        if cfg.exposure:
            render = self.correct_exposure(render, i)
        loss = photometric_loss(render, target, mask, cfg.ssim_lambda)
        if cfg.exposure:
            loss = loss + cfg.exposure_reg * self.exposure[i].pow(2).mean()
        if cfg.strategy == "mcmc":
            loss = (loss + cfg.opacity_reg * torch.sigmoid(self.splats["opacities"]).mean()
                    + cfg.scale_reg * torch.exp(self.splats["scales"]).mean())
        if not torch.isfinite(loss):
            raise TrainingError(f"training diverged at step {self.step_count} (loss {loss.item()})",
                                "try a lower learning rate, e.g. --set splat.lr_means=1e-5")
        self.strategy.step_pre_backward(self.splats, self.optimizers, self.strategy_state,
                                        self.step_count, info)
        loss.backward()
        for opt in [*self.optimizers.values(), self.exposure_opt]:
            opt.step()
            opt.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.strategy.step_post_backward(self.splats, self.optimizers, self.strategy_state,
                                         self.step_count, info, packed=False, lr=lr)
        self.step_count += 1
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self, ids: list[int] | None = None) -> dict[str, Any]:
        """Mean PSNR and SSIM on the held-out frames (on training frames if none are held
        out), at full resolution.

        With ``exposure`` on, ``psnr``/``ssim`` compare the frame with the render under
        the colour correction interpolated from the neighbouring training frames
        (:meth:`interpolated_exposure`; a training frame uses its own), and
        ``psnr_raw``/``ssim_raw`` with the render as novel views get it, uncorrected.
        ``frames`` is ``{frame index: PSNR}``.
        """
        ids = ids if ids is not None else (self.data.test_ids or self.data.train_ids)
        p, s, p_raw, s_raw = [], [], [], []
        for i in ids:
            render, _ = self.render([i], sh_degree=self.sh_degree_now())
            target = self.data.images[i : i + 1].float() / 255.0
            mask = self.data.masks[i : i + 1] if self.data.masks is not None else None
            p_raw.append(psnr(render, target, mask))
            s_raw.append(ssim(render, target, mask))
            if self.cfg.exposure:
                E = self.exposure[i] if i in self.data.train_ids else self.interpolated_exposure(i)
                render = self._apply_exposure(render, E)
                p.append(psnr(render, target, mask))
                s.append(ssim(render, target, mask))
        p, s = (p, s) if self.cfg.exposure else (p_raw, s_raw)
        return {"psnr": float(np.mean(p)), "ssim": float(np.mean(s)),
                "psnr_raw": float(np.mean(p_raw)), "ssim_raw": float(np.mean(s_raw)),
                "frames": {int(i): round(float(v), 3) for i, v in zip(ids, p)}}

    # -- checkpoints ---------------------------------------------------------------

    def checkpoint(self, config_hash: str) -> Checkpoint:
        state = {
            "config_hash": config_hash,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scheduler": self.scheduler.state_dict(),
            "strategy": {k: v for k, v in self.strategy_state.items() if v is not None},
            "strategy_resets": self.strategy.resets,
            "exposure": self.exposure.detach().cpu(),
            "exposure_opt": self.exposure_opt.state_dict(),
            "generator": self.generator.get_state(),
            "order": list(self.order),
            "history": self.history,
            "train_seconds": self.train_seconds,
        }
        return Checkpoint(splats=dict(self.splats), step=self.step_count,
                          sh_degree=self.cfg.sh_degree, normalization=self.data.normalization,
                          state=state)

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint written by :meth:`checkpoint` for the same data and config."""
        self.splats = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.to(self.device)) for k, v in ckpt.splats.items()})
        self.optimizers = self._make_optimizers()
        for k, o in self.optimizers.items():
            o.load_state_dict(ckpt.state["optimizers"][k])
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizers["means"], gamma=1.0)
        self.scheduler.load_state_dict(ckpt.state["scheduler"])
        self.strategy_state.update({k: v.to(self.device) if torch.is_tensor(v) else v
                                    for k, v in ckpt.state["strategy"].items()})
        self.strategy.resets = int(ckpt.state.get("strategy_resets", 0))
        self.exposure.data.copy_(ckpt.state["exposure"].to(self.device))
        self.exposure_opt.load_state_dict(ckpt.state["exposure_opt"])
        self.generator.set_state(ckpt.state["generator"])
        self.order = list(ckpt.state["order"])
        self.history = list(ckpt.state["history"])
        self.train_seconds = float(ckpt.state.get("train_seconds", 0.0))
        self.step_count = ckpt.step


def make_strategy(cfg: SplatConfig) -> DefaultStrategy | MCMCStrategy:
    """The densification strategy a config asks for."""
    if cfg.strategy == "default":
        return DefaultStrategy(
            grow_grad2d=cfg.grow_grad2d, refine_start_iter=cfg.refine_start,
            refine_stop_iter=cfg.refine_stop, refine_every=cfg.refine_every,
            reset_every=cfg.reset_every, max_gaussians=cfg.max_gaussians, verbose=False)
    if cfg.strategy == "mcmc":
        return MCMCStrategy(cap_max=cfg.max_gaussians, refine_start_iter=cfg.refine_start,
                            refine_stop_iter=cfg.refine_stop, refine_every=cfg.refine_every,
                            verbose=False)
    raise TrainingError(f"unknown densification strategy {cfg.strategy!r}",
                        'use --set splat.strategy="default" or "mcmc"')


def train(scene: Scene, cfg: SplatConfig, ckpt_path: Path, *, device: torch.device,
          config_hash: str, reporter: Reporter = NULL_REPORTER) -> tuple[Trainer, dict[str, Any]]:
    """Train splats on a scene, resuming from ``ckpt_path`` when it holds an unfinished
    run of the same configuration; checkpoints every ``cfg.checkpoint_every`` steps and at
    the end.

    Returns:
        The trainer (its ``splats`` are the result) and metrics for the report.
    """
    cfg = cfg.scaled()
    if device.type == "cpu":
        keep_freed_memory()
    data = load_train_data(scene, cfg.test_every, device)
    trainer = Trainer(data, cfg, device, backend=cfg.backend)
    resumed_from = 0
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, device)
        if ckpt.state.get("config_hash") == config_hash and ckpt.step < cfg.steps:
            trainer.restore(ckpt)
            resumed_from = ckpt.step
            reporter.log(f"resuming training from step {ckpt.step}")
    init_eval = trainer.evaluate() if resumed_from == 0 else None
    if init_eval is not None:
        trainer.history.append({"step": 0, "loss": float("nan"), "seconds": 0.0,
                                "gaussians": len(trainer.splats["means"]), **init_eval})
    t0, base = time.perf_counter(), trainer.train_seconds
    losses: list[float] = []
    with reporter.task("Training splats", total=cfg.steps) as task:
        task.update(completed=trainer.step_count)
        while trainer.step_count < cfg.steps:
            losses.append(trainer.step())
            task.advance()
            n = trainer.step_count
            if n % 10 == 0 or n == cfg.steps:
                task.update(info=f"loss {np.mean(losses[-10:]):.4f} · "
                                 f"{len(trainer.splats['means']) / 1000:.1f}k splats")
            if (cfg.eval_every and n % cfg.eval_every == 0) or n == cfg.steps:
                ev = trainer.evaluate()
                trainer.history.append({"step": n, "loss": float(np.mean(losses[-50:])),
                                        "seconds": round(base + time.perf_counter() - t0, 2),
                                        "gaussians": len(trainer.splats["means"]), **ev})
                reporter.debug(f"step {n}: held-out PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}")
            if cfg.checkpoint_every and n % cfg.checkpoint_every == 0 and n < cfg.steps:
                trainer.train_seconds = base + time.perf_counter() - t0
                save_checkpoint(ckpt_path, trainer.checkpoint(config_hash))
    seconds = time.perf_counter() - t0
    trainer.train_seconds = base + seconds
    save_checkpoint(ckpt_path, trainer.checkpoint(config_hash))
    final = trainer.history[-1]
    first = trainer.history[0]
    metrics = {
        "steps": trainer.step_count,
        "resumed_from": resumed_from,
        "train_images": len(data.train_ids),
        "test_images": len(data.test_ids),
        "width": data.width,
        "height": data.height,
        "gaussians_initial": len(scene.points),
        "gaussians": len(trainer.splats["means"]),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "psnr": final["psnr"],
        "ssim": final["ssim"],
        "psnr_raw": final["psnr_raw"],
        "ssim_raw": final["ssim_raw"],
        "psnr_per_frame": final["frames"],
        "psnr_initial": first["psnr"] if first["step"] == 0 else None,
        "opacity_resets": trainer.strategy.resets,
        "steps_per_second": (trainer.step_count - resumed_from) / seconds if seconds > 0 else None,
        "train_seconds": seconds,
        "device": str(device),
        "history": trainer.history,
    }
    return trainer, metrics
