"""Gaussian splat training: one step, evaluation, checkpoints; densification via gsplat.

The trainer works in the normalised frame of :func:`vid3d.scene.normalization_transform`
(cameras centred in the unit ball) and renders through
:func:`vid3d.splats.rasterize.rasterize`, so it runs with gsplat on CUDA and with the
CPU kernel elsewhere. Every ``test_every``-th frame is held out for evaluation (see
:func:`held_out_ids`). The first ``coarse_steps`` steps train at half resolution.

:func:`train` writes the state of an unfinished run to a resume file (the workspace's
``.vid3d/resume/splat.pt``) every ``checkpoint_every`` steps, and the finished splats to
``splats/ckpt.pt`` only at the end. A resumed run continues bit-identically on the CPU:
the checkpoint holds the global torch (and CUDA, numpy) RNG states that gsplat's
strategies draw from (split, relocation, position noise), the image order generator,
the strategy state, the optimizers, scheduler, colour corrections and the loss window.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vid3d.config import SplatConfig
from vid3d.device import cuda_fallback_reason
from vid3d.errors import InputError, TrainingError
from vid3d.progress import NULL_REPORTER, Reporter
from vid3d.scene import Scene, normalization_transform
from vid3d.splats._malloc import keep_freed_memory
from vid3d.splats.losses import photometric_loss, psnr, robust_mask, ssim
from vid3d.splats.model import (
    PARAM_NAMES,
    Checkpoint,
    init_splats,
    load_checkpoint,
    nonfinite,
    save_checkpoint,
)
from vid3d.splats.rasterize import rasterize, require_cuda_backend, resolve_backend
from vid3d.splats.strategies import DefaultStrategy, MCMCStrategy
from vid3d.workspace import json_safe

FINITE_CHECK_EVERY = 50
"""Steps between checks that every parameter is finite (also at evaluations, checkpoints
and the end); the loss is checked every step."""
LOSS_WINDOW = 50
"""The history's ``loss`` is the mean of this many last training losses."""
CLEANUP_BUDGET_DB = 0.1
"""Most held-out PSNR the cleanup may cost (:meth:`Trainer.remove_outliers`)."""
CLEANUP_TRAIN_BUDGET_DB = 0.15
"""The same, on training views, when no frame is held out. Floaters fit the training views
better than new ones, so removing them costs the training views more than held-out
frames: on the CogVideoX and re10k clips 1.5 times as much."""
CLEANUP_CHECK_VIEWS = 16
"""Training views, evenly spread, that the cleanup is checked on."""


def held_out_ids(n: int, test_every: int) -> list[int]:
    """The frames held out for evaluation: every ``test_every``-th, starting half a period
    in, and never the first or last frame.

    A clip's first and last frames are the only views of its two ends; holding them out
    would take those parts of the scene away from the splats and score the splats on
    extrapolation into space no training frame saw (figures in benchmarks/README.md).
    """
    if test_every <= 0 or n <= 2:
        return []
    return [i for i in range(1, n - 1) if i % test_every == test_every // 2]


def interpolated_exposure(exposure: torch.Tensor, train_ids: list[int], i: int) -> torch.Tensor:
    """Frame ``i``'s colour correction: its own when it was trained on, else interpolated
    in time from the training frames before and after it (the nearest one at the clip's ends).

    Frames are in time order, and a camera's auto exposure and white balance drift
    slowly, so a held-out frame's colour is predicted from its neighbours alone; the
    frame itself is never looked at.

    Args:
        exposure: [N, 3, 4] per-frame deltas from the identity colour transform.
        train_ids: The frames trained on, ascending.
        i: The frame.

    Returns:
        [3, 4] delta from identity (zeros without training frames).
    """
    if i in train_ids:
        return exposure[i]
    before = [j for j in train_ids if j < i]
    after = [j for j in train_ids if j > i]
    if not before and not after:
        return torch.zeros_like(exposure[0])
    if not before or not after:
        return exposure[(before or after)[-1 if before else 0]]
    j0, j1 = before[-1], after[0]
    w = (i - j0) / (j1 - j0)
    return (1 - w) * exposure[j0] + w * exposure[j1]


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
            imgs = np.stack(
                [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in self.images.cpu().numpy()]
            )
            masks = None
            if self.masks is not None:
                masks = np.stack(
                    [
                        cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.5
                        for m in self.masks.cpu().numpy()
                    ]
                )
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
        torch.manual_seed(cfg.seed)  # gsplat's strategies draw from the global RNGs
        np.random.seed(cfg.seed % 2**32)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        scene = data.scene
        if len(scene.points) < 4:
            raise TrainingError(
                f"structure from motion found only {len(scene.points)} points",
                "the splats need a sparse point cloud; re-run `vid3d poses` with more frames",
            )
        self.scene_scale = float(np.linalg.norm(scene.camtoworlds[:, :3, 3], axis=1).max()) * 1.1
        self.splats = init_splats(
            scene.points, scene.colors, cfg.sh_degree, cfg.init_opacity, cfg.init_scale, device
        )
        self.optimizers = self._make_optimizers()
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizers["means"], gamma=0.01 ** (1.0 / max(cfg.steps, 1))
        )
        self.strategy = make_strategy(cfg)
        self.strategy.check_sanity(self.splats, self.optimizers)
        self.strategy_state = (
            self.strategy.initialize_state(scene_scale=self.scene_scale)
            if cfg.strategy == "default"
            else self.strategy.initialize_state()
        )
        # Per-image affine colour correction (delta from identity), learned with the
        # scene for the training images only; novel views render without it.
        self.exposure = torch.nn.Parameter(torch.zeros(len(data.images), 3, 4, device=device))
        self.exposure_opt = torch.optim.Adam([self.exposure], lr=cfg.lr_exposure)
        self.step_count = 0
        self.train_seconds = 0.0  # time spent in training steps, over resumes
        self.order: list[int] = []
        self.history: list[dict[str, Any]] = []
        self.losses: list[float] = []  # the last LOSS_WINDOW training losses
        self.background = torch.tensor(cfg.background, dtype=torch.float32, device=device)

    def correct_exposure(self, render: torch.Tensor, i: int) -> torch.Tensor:
        """Apply training image ``i``'s colour correction to ``render [1, H, W, 3]``."""
        return self._apply_exposure(render, self.exposure[i])

    @staticmethod
    def _apply_exposure(render: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        A = E[:, :3] + torch.eye(3, device=render.device)  # [3, 3]
        return render @ A.T + E[:, 3]

    def interpolated_exposure(self, i: int) -> torch.Tensor:
        """The colour correction of a held-out frame (:func:`interpolated_exposure`)."""
        return interpolated_exposure(self.exposure.detach(), self.data.train_ids, i)

    def frame_exposure(self, i: int) -> torch.Tensor:
        """Frame ``i``'s colour correction: its own for a training frame, else
        :meth:`interpolated_exposure`."""
        return self.exposure[i] if i in self.data.train_ids else self.interpolated_exposure(i)

    def remove_outliers(self, polish_steps: int = 0, **options: Any) -> dict[str, Any]:
        """Remove floaters and outliers (:func:`vid3d.splats.cleanup.outlier_reasons`,
        against the training cameras) from the splats, their optimizer moments and the
        strategy state, in place.

        A check keeps it from doing harm: while the removal costs the held-out frames
        more than :data:`CLEANUP_BUDGET_DB` of PSNR (with none held out, up to
        :data:`CLEANUP_CHECK_VIEWS` training views more than
        :data:`CLEANUP_TRAIN_BUDGET_DB`), the last reason left in the order of
        :data:`vid3d.splats.cleanup.REASONS` (the riskiest: ``border``, ``haze``, ``floater``...)
        is given up; what it marked stays and is reported as ``kept_back``. (An
        undertrained scene paints its sky with a few huge Gaussians, which are then no
        outliers.) Before giving anything up, with ``polish_steps`` > 0, everything
        marked is removed and training goes on for that many steps, so that the rest take
        over the colour the removed ones carried (large faint "haze" in front of the
        scene often does); when that brings the cost within budget it stays (the report's
        ``polish_steps``), else the trainer goes back to its state before the cleanup.

        Args:
            polish_steps: Training steps after a removal that costs too much. Default: 0.
            **options: Thresholds for :func:`vid3d.splats.cleanup.outlier_reasons`.

        Returns:
            The cleanup's report (:func:`vid3d.splats.cleanup.clean_splats`).
        """
        from vid3d.splats.cleanup import REASONS, outlier_reasons, reason_counts, report_of

        t0 = time.perf_counter()
        ids = self.data.train_ids or list(range(len(self.data.images)))
        c2w = torch.linalg.inv(self.data.viewmats[ids].double()).cpu().numpy()
        Ks = self.data.Ks[ids].double().cpu().numpy()
        splats = {k: v.detach() for k, v in self.splats.items()}
        before = len(splats["means"])
        options.setdefault("backend", self.backend)
        codes = outlier_reasons(splats, c2w, Ks, self.data.width, self.data.height, **options)
        marked = reason_counts(codes)
        drop = codes >= 0
        polished = 0
        if bool(drop.any()):
            check, budget = list(self.data.test_ids), CLEANUP_BUDGET_DB
            if not check:
                n = min(CLEANUP_CHECK_VIEWS, len(ids))
                check = [ids[int(i)] for i in np.linspace(0, len(ids) - 1, n)]
                budget = CLEANUP_TRAIN_BUDGET_DB
            base = self._psnr_without(None, check)
            too_much = base - self._psnr_without(drop, check) > budget
            if too_much and polish_steps > 0 and not bool(drop.all()):
                # remove all, let the rest take over their colour, keep it if that is enough
                snapshot = copy.deepcopy(self.checkpoint(""))
                self._remove(drop, before)
                try:
                    for _ in range(polish_steps):
                        self.step()
                    too_much = base - self._psnr_without(None, check) > budget
                except TrainingError:  # e.g. what was left pruned away
                    too_much = True
                if too_much:
                    self.restore(snapshot)
                else:
                    polished = polish_steps
            allowed = [code for code, reason in enumerate(REASONS) if marked[reason]]
            while too_much and allowed:
                allowed.pop()  # give up the last (the riskiest) reason left
                drop = torch.isin(codes, torch.tensor(allowed, dtype=codes.dtype, device=codes.device))
                too_much = bool(drop.any()) and base - self._psnr_without(drop, check) > budget
            if not polished:
                self._remove(drop, before)
        removed = reason_counts(torch.where(drop, codes, torch.full_like(codes, -1)))
        kept_back = {r: marked[r] - removed[r] for r in REASONS}
        report = report_of(before, len(self.splats["means"]), removed, t0, kept_back=kept_back)
        report["polish_steps"] = polished
        return report

    def _remove(self, drop: torch.Tensor, n: int) -> None:
        """Remove the Gaussians ``drop`` marks (of ``n``) with their optimizer moments and
        strategy state."""
        from gsplat.strategy.ops import remove

        if bool(drop.any()):
            state = {k: v for k, v in self.strategy_state.items() if torch.is_tensor(v) and len(v) == n}
            remove(self.splats, self.optimizers, state, drop.to(self.device))
            self.strategy_state.update(state)

    @torch.no_grad()
    def _psnr_without(self, drop: torch.Tensor | None, ids: list[int]) -> float:
        """Mean PSNR of frames ``ids`` (colour-corrected as :meth:`evaluate` does)
        rendered without the Gaussians ``drop`` marks (None: with all)."""
        full = self.splats
        if drop is not None:
            keep = ~drop.to(self.device)
            self.splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v[keep]) for k, v in full.items()})
        try:
            values = []
            for i in ids:
                render, _ = self.render([i], sh_degree=self.sh_degree_now())
                if self.cfg.exposure:
                    render = self._apply_exposure(render, self.frame_exposure(i))
                mask = self.data.masks[i : i + 1] if self.data.masks is not None else None
                values.append(psnr(render, self.data.images[i : i + 1].float() / 255.0, mask))
            return float(np.mean(values))
        finally:
            self.splats = full

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            name: torch.optim.Adam([{"params": self.splats[name], "lr": lr, "name": name}], eps=1e-15)
            for name, lr in learning_rates(self.cfg, self.scene_scale).items()
        }

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
        # A slice for a run of ids: indexing a CUDA tensor with a list copies the list to
        # the GPU, and that copy waits for the GPU.
        rows = slice(ids[0], ids[0] + C) if list(ids) == list(range(ids[0], ids[0] + C)) else ids
        out, _, info = rasterize(
            s["means"],
            s["quats"],
            torch.exp(s["scales"]),
            torch.sigmoid(s["opacities"]),
            colors,
            self.data.viewmats[rows],
            Ks[rows],
            int(images.shape[2]),
            int(images.shape[1]),
            sh_degree=self.sh_degree_now() if sh_degree is None else sh_degree,
            backgrounds=self.background.expand(C, 3),
            packed=False,
            backend=self.backend,
        )
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
        if cfg.robust and self.step_count >= cfg.coarse_steps:
            mask = robust_mask(render.detach(), target, mask, factor=cfg.robust_factor)
        loss = photometric_loss(render, target, mask, cfg.ssim_lambda)
        if cfg.exposure:
            loss = loss + cfg.exposure_reg * self.exposure[i].pow(2).mean()
        if cfg.strategy == "mcmc":
            loss = (
                loss
                + cfg.opacity_reg * torch.sigmoid(self.splats["opacities"]).mean()
                + cfg.scale_reg * torch.exp(self.splats["scales"]).mean()
            )
        value = float(loss.detach())  # the step's one host sync
        if not math.isfinite(value):
            raise self._diverged(f"the loss is {value}", [*PARAM_NAMES, "exposure"])
        self.strategy.step_pre_backward(
            self.splats, self.optimizers, self.strategy_state, self.step_count, info
        )
        loss.backward()
        for opt in [*self.optimizers.values(), self.exposure_opt]:
            opt.step()
            opt.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.strategy.step_post_backward(
            self.splats, self.optimizers, self.strategy_state, self.step_count, info, packed=False, lr=lr
        )
        self.step_count += 1
        self.losses.append(value)
        del self.losses[:-LOSS_WINDOW]
        if len(self.splats["means"]) == 0:
            raise TrainingError(
                f"training pruned every Gaussian by step {self.step_count} (all became transparent)",
                "try a higher --set splat.init_opacity or a lower learning rate, e.g. "
                f"--set splat.lr_opacities={cfg.lr_opacities / 10:.3g}",
            )
        return value

    def mean_loss(self) -> float | None:
        """Mean of the last :data:`LOSS_WINDOW` training losses (None before the first step)."""
        return float(np.mean(self.losses)) if self.losses else None

    def check_finite(self) -> None:
        """Raise :class:`TrainingError` when a parameter holds a NaN or an infinity
        (one host sync; call it every few steps, not every step)."""
        bad = nonfinite({**self.splats, "exposure": self.exposure.detach()})
        if bad:
            what = f"parameter {bad[0]} is" if len(bad) == 1 else f"parameters {', '.join(bad)} are"
            raise self._diverged(f"{what} not finite", bad)

    def _diverged(self, what: str, suspects: list[str]) -> TrainingError:
        """The error for a run that diverged at this step; its hint names the learning
        rate of the suspect raised most above its default (the first one if none is)."""
        default = SplatConfig()

        def raised(name: str) -> float:
            return getattr(self.cfg, f"lr_{name}") / getattr(default, f"lr_{name}")

        name = f"lr_{max(suspects, key=raised)}"  # max keeps the first of equals
        lr = getattr(self.cfg, name)
        return TrainingError(
            f"training diverged at step {self.step_count}: {what}",
            f"try a lower learning rate, e.g. --set splat.{name}={lr / 10:.3g}",
        )

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
                render = self._apply_exposure(render, self.frame_exposure(i))
                p.append(psnr(render, target, mask))
                s.append(ssim(render, target, mask))
        p, s = (p, s) if self.cfg.exposure else (p_raw, s_raw)
        return {
            "psnr": float(np.mean(p)),
            "ssim": float(np.mean(s)),
            "psnr_raw": float(np.mean(p_raw)),
            "ssim_raw": float(np.mean(s_raw)),
            "frames": {int(i): round(float(v), 3) for i, v in zip(ids, p)},
        }

    # -- checkpoints ---------------------------------------------------------------

    def checkpoint(self, config_hash: str, finished: bool = False) -> Checkpoint:
        """Everything :meth:`restore` needs to continue bit-identically (on the CPU).

        Args:
            config_hash: Identifies the run; :func:`train` resumes only a matching one.
            finished: Whether training is done. Default: False (a periodic checkpoint).

        Raises:
            TrainingError: A parameter is not finite.
        """
        self.check_finite()
        state = {
            "config_hash": config_hash,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scheduler": self.scheduler.state_dict(),
            "strategy": {k: _cpu(v) for k, v in self.strategy_state.items()},  # None kept
            "strategy_resets": self.strategy.resets,
            "exposure": self.exposure.detach().cpu(),
            "exposure_opt": self.exposure_opt.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "numpy_rng": _numpy_rng_state(),
            "order": list(self.order),
            "history": self.history,
            "losses": list(self.losses),
            "train_seconds": self.train_seconds,
        }
        return Checkpoint(
            splats=dict(self.splats),
            step=self.step_count,
            sh_degree=self.cfg.sh_degree,
            normalization=self.data.normalization,
            state=state,
            finished=finished,
            steps=self.cfg.steps,
        )

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint written by :meth:`checkpoint` for the same data and
        config.

        ``ckpt`` is expected as :func:`load_checkpoint` returns it, loaded on the CPU:
        the RNG states must be CPU byte tensors; parameters, optimizer moments and the
        strategy state move to the trainer's device (Adam's ``step`` counters stay on
        the CPU, as torch keeps them without ``capturable``).

        Raises:
            KeyError, TypeError, ValueError, RuntimeError: The checkpoint does not fit
                (missing entries, other shapes); the trainer is then unusable.
        """
        st = ckpt.state
        self.splats = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(ckpt.splats[k].detach().to(self.device)) for k in PARAM_NAMES}
        )
        self.optimizers = self._make_optimizers()
        for k, o in self.optimizers.items():
            o.load_state_dict(st["optimizers"][k])  # moments follow the parameter's device
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizers["means"], gamma=1.0)
        self.scheduler.load_state_dict(st["scheduler"])
        self.strategy_state.update(
            {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in st["strategy"].items()}
        )
        self.strategy.resets = int(st["strategy_resets"])
        self.exposure.data.copy_(st["exposure"].to(self.device))
        self.exposure_opt.load_state_dict(st["exposure_opt"])
        self.generator.set_state(st["generator"].cpu())
        torch.set_rng_state(st["torch_rng"].cpu())
        if self.device.type == "cuda":
            for i, rng in enumerate(st["cuda_rng"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(rng.cpu(), i)
        _set_numpy_rng_state(st["numpy_rng"])
        self.order = [int(i) for i in st["order"]]
        self.history = list(st["history"])
        self.losses = [float(v) for v in st["losses"]][-LOSS_WINDOW:]
        self.train_seconds = float(st["train_seconds"])
        self.step_count = int(ckpt.step)


def _cpu(v: Any) -> Any:
    return v.detach().cpu() if torch.is_tensor(v) else v


def _numpy_rng_state() -> dict[str, Any]:
    """numpy's global RNG state as a tensor and numbers (``weights_only`` loads them)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_rng_state(st: dict[str, Any]) -> None:
    np.random.set_state(
        (
            "MT19937",
            st["keys"].numpy().astype(np.uint32),
            int(st["pos"]),
            int(st["has_gauss"]),
            float(st["cached"]),
        )
    )


def learning_rates(cfg: SplatConfig, scene_scale: float) -> dict[str, float]:
    """Adam's learning rate for each parameter; that of the means scales with the scene."""
    return dict(
        means=cfg.lr_means * scene_scale,
        quats=cfg.lr_quats,
        scales=cfg.lr_scales,
        opacities=cfg.lr_opacities,
        sh0=cfg.lr_sh0,
        shN=cfg.lr_shN,
    )


def make_strategy(cfg: SplatConfig) -> DefaultStrategy | MCMCStrategy:
    """The densification strategy a config asks for."""
    common = dict(  # what both strategies take: the refinement schedule, no printing
        refine_start_iter=cfg.refine_start,
        refine_stop_iter=cfg.refine_stop,
        refine_every=cfg.refine_every,
        verbose=False,
    )
    if cfg.strategy == "default":
        return DefaultStrategy(
            grow_grad2d=cfg.grow_grad2d,
            reset_every=cfg.reset_every,
            max_gaussians=cfg.max_gaussians,
            **common,
        )
    if cfg.strategy == "mcmc":
        return MCMCStrategy(cap_max=cfg.max_gaussians, **common)
    raise TrainingError(
        f"unknown densification strategy {cfg.strategy!r}", 'use --set splat.strategy="default" or "mcmc"'
    )


def train(
    scene: Scene,
    cfg: SplatConfig,
    ckpt_path: Path,
    *,
    device: torch.device,
    config_hash: str,
    resume_path: Path | None = None,
    force: bool = False,
    reporter: Reporter = NULL_REPORTER,
) -> tuple[Trainer, dict[str, Any]]:
    """Train splats on a scene and write the finished checkpoint to ``ckpt_path``.

    ``ckpt_path`` is neither read nor touched until training has finished: the state of
    the unfinished run goes to ``resume_path`` every ``cfg.checkpoint_every`` steps, and
    a later call resumes from it when it holds an unfinished run of the same
    ``config_hash``. At the end the final checkpoint (``finished`` True) is written to
    ``ckpt_path`` atomically, then ``resume_path`` is removed.

    Args:
        scene: Cameras, images and SfM points.
        cfg: Training options (``schedule_scale`` is applied here).
        ckpt_path: The finished checkpoint (``splats/ckpt.pt``).
        device: Torch device.
        config_hash: Identifies the run (options and cameras) a resume file must match.
        resume_path: The unfinished run's state (``ws.resume_ckpt``). Default: None (no
            periodic checkpoints, no resume).
        force: Delete ``resume_path`` first and start afresh. Default: False. Without
            it, a resume file that cannot be read is reported through ``reporter.warn``
            and training starts afresh.
        reporter: Progress display. Default: none.

    Returns:
        The trainer (its ``splats`` are the result) and JSON-safe metrics for the report
        (non-finite numbers become None); ``eval_on`` says whether PSNR/SSIM are measured
        on held-out frames ("held_out") or, when none is held out, on training frames
        ("training").

    Raises:
        TrainingError: Training diverged (the loss or a parameter stopped being finite),
            pruned every Gaussian, or cannot start (e.g. gsplat's CUDA kernels cannot be
            loaded for a CUDA device: the hint says how to install them); nothing is
            written to ``ckpt_path``.

    On a CUDA device gsplat's kernels are loaded first (compiled once if needed, told
    through ``reporter.log``); on the CPU of a machine whose GPU cannot be used because
    they are missing, ``reporter.warn`` says so. ``metrics["backend"]`` is the rasterizer
    used.
    """
    cfg = cfg.scaled()
    if device.type == "cpu":
        keep_freed_memory()
        fallback = cuda_fallback_reason()
        if fallback:
            reporter.warn(fallback)
    elif device.type == "cuda" and cfg.backend in ("auto", "gsplat"):
        require_cuda_backend(log=reporter.log)  # compiles once if needed; the hint says how
    backend = resolve_backend(cfg.backend, device)
    data = load_train_data(scene, cfg.test_every, device)
    eval_on = "held_out" if data.test_ids else "training"
    if not data.test_ids:
        reporter.warn(f"no frame held out ({len(data.images)} frames): PSNR is measured on training frames")
    if force and resume_path is not None:
        Path(resume_path).unlink(missing_ok=True)
    trainer = _start(data, cfg, device, config_hash, resume_path, reporter)
    resumed_from = trainer.step_count
    if resumed_from == 0:
        trainer.history.append(
            {
                "step": 0,
                "loss": None,
                "seconds": 0.0,
                "gaussians": len(trainer.splats["means"]),
                **trainer.evaluate(),
            }
        )
    label = "held-out PSNR" if eval_on == "held_out" else "PSNR on training frames"
    t0, base = time.perf_counter(), trainer.train_seconds
    with reporter.task("Training splats", total=cfg.steps) as task:
        task.update(completed=trainer.step_count)
        while trainer.step_count < cfg.steps:
            trainer.step()
            task.advance()
            n = trainer.step_count
            evaluating = bool(cfg.eval_every and n % cfg.eval_every == 0) or n == cfg.steps
            saving = bool(
                resume_path is not None
                and cfg.checkpoint_every
                and n % cfg.checkpoint_every == 0
                and n < cfg.steps
            )
            if n % FINITE_CHECK_EVERY == 0 or evaluating:  # checkpoint() checks on its own
                trainer.check_finite()
            if n % 10 == 0 or n == cfg.steps:
                task.update(
                    info=f"loss {np.mean(trainer.losses[-10:]):.4f} · "
                    f"{len(trainer.splats['means']) / 1000:.1f}k splats"
                )
            if evaluating:
                ev = trainer.evaluate()
                trainer.history.append(
                    {
                        "step": n,
                        "loss": trainer.mean_loss(),
                        "seconds": round(base + time.perf_counter() - t0, 2),
                        "gaussians": len(trainer.splats["means"]),
                        **ev,
                    }
                )
                reporter.debug(f"step {n}: {label} {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}")
            if saving:
                trainer.train_seconds = base + time.perf_counter() - t0
                save_checkpoint(resume_path, trainer.checkpoint(config_hash))
    seconds = time.perf_counter() - t0
    trainer.train_seconds = base + seconds
    steps = trainer.step_count  # the schedule's; a cleanup's polish is in its report
    cleanup = _clean(trainer, reporter) if cfg.cleanup else {"enabled": False}
    save_checkpoint(ckpt_path, trainer.checkpoint(config_hash, finished=True))  # checks finiteness
    if resume_path is not None:
        Path(resume_path).unlink(missing_ok=True)
    final = {**trainer.history[-1], **cleanup.pop("evaluation", {})}
    first = trainer.history[0]
    metrics = {
        "steps": steps,
        "resumed_from": resumed_from,
        "train_images": len(data.train_ids),
        "test_images": len(data.test_ids),
        "eval_on": eval_on,
        "width": data.width,
        "height": data.height,
        "gaussians_initial": len(scene.points),
        "gaussians": len(trainer.splats["means"]),
        "final_loss": trainer.mean_loss(),
        "psnr": final["psnr"],
        "ssim": final["ssim"],
        "psnr_raw": final["psnr_raw"],
        "ssim_raw": final["ssim_raw"],
        "psnr_per_frame": final["frames"],
        "psnr_initial": first["psnr"] if first["step"] == 0 else None,
        "opacity_resets": trainer.strategy.resets,
        "cleanup": cleanup,
        "steps_per_second": (steps - resumed_from) / seconds if seconds > 0 else None,
        "train_seconds": seconds,
        "device": str(device),
        "backend": backend,
        "history": trainer.history,
    }
    return trainer, json_safe(metrics)


def _clean(trainer: Trainer, reporter: Reporter) -> dict[str, Any]:
    """:meth:`Trainer.remove_outliers`, and held-out PSNR after it (``evaluation``, the
    final figures) beside the one before it (``psnr_before``), logged in one line."""
    from vid3d.splats.cleanup import summary

    report = trainer.remove_outliers(polish_steps=trainer.cfg.cleanup_polish_steps)
    before = trainer.history[-1]
    if report["after"] < report["before"]:
        report["evaluation"] = trainer.evaluate()
        after = report["evaluation"]
    else:
        after = before
    report["psnr_before"], report["psnr_after"] = before["psnr"], after["psnr"]
    reporter.log(f"{summary(report)}; PSNR {before['psnr']:.2f} -> {after['psnr']:.2f} dB")
    return report


def _start(
    data: TrainData,
    cfg: SplatConfig,
    device: torch.device,
    config_hash: str,
    resume_path: Path | None,
    reporter: Reporter,
) -> Trainer:
    """A new trainer, continued from ``resume_path`` when that holds an unfinished run of
    ``config_hash``; a resume file that cannot be read or restored is warned about."""
    trainer = Trainer(data, cfg, device, backend=cfg.backend)
    if resume_path is None or not Path(resume_path).is_file():
        return trainer
    try:
        ckpt = load_checkpoint(resume_path, "cpu")  # RNG states must stay CPU tensors
    except InputError as e:
        reporter.warn(
            f"the unfinished training state {resume_path} cannot be read ({e.message}); starting afresh"
        )
        return trainer
    if ckpt.state.get("config_hash") != config_hash or ckpt.finished or ckpt.step >= cfg.steps:
        reporter.debug(f"{resume_path} holds another training run; starting afresh")
        return trainer
    try:
        trainer.restore(ckpt)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        detail = (str(e).strip().splitlines() or [""])[0][:160]
        reporter.warn(
            f"the unfinished training state {resume_path} cannot be read "
            f"({type(e).__name__}: {detail}); starting afresh"
        )
        return Trainer(data, cfg, device, backend=cfg.backend)  # restore left it half-done
    reporter.log(f"resuming training from step {ckpt.step}")
    return trainer
