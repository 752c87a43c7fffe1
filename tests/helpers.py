"""Helpers that several test files share: a reporter that records what the stages report
(and can interrupt a training run), and the training tests' short runs, CPU and CUDA."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch

from vid3d.config import SplatConfig
from vid3d.scene import Scene


class Interrupt(Exception):
    """Stands for a kill or Ctrl-C in the middle of training."""


class Recorder:
    """A reporter that records its tasks (description, total, units advanced) and warnings.

    Args:
        stop_after: Raise :class:`Interrupt` once this many units have advanced, over all
            tasks (a training run advances one per step). Default: never.
    """

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after, self.steps = stop_after, 0
        self.tasks: list[dict] = []
        self.warnings: list[str] = []

    @contextmanager
    def task(self, description, total=None):
        rec = {"description": description, "total": total, "done": 0.0}
        self.tasks.append(rec)
        reporter = self

        class _Task:
            def advance(self, n=1):
                rec["done"] += n
                reporter.steps += n
                if reporter.stop_after is not None and reporter.steps >= reporter.stop_after:
                    raise Interrupt

            def update(self, *, completed=None, total=None, info=None):
                if completed is not None:
                    rec["done"] = completed

        yield _Task()

    def log(self, message):
        pass

    def debug(self, message):
        pass

    def warn(self, message):
        self.warnings.append(message)


def small_config(**kw) -> SplatConfig:
    """A short training run on the synthetic scene; ``kw`` overrides any field.

    60 steps, half resolution for the first 20, SH degree 1 from step 20, densification
    every 10 steps from step 10, no opacity reset, evaluation or periodic checkpoint.
    """
    base = dict(
        steps=60,
        sh_degree=1,
        sh_degree_interval=20,
        eval_every=0,
        refine_start=10,
        refine_every=10,
        refine_stop=1000,
        reset_every=1000,
        checkpoint_every=0,
        coarse_steps=20,
    )
    base.update(kw)
    return SplatConfig(**base)


RESUME = dict(steps=60, eval_every=20, checkpoint_every=10, grow_grad2d=2e-5, max_gaussians=20_000)
"""Overrides for a run to interrupt at step 33: refinement (splits, MCMC relocation and
noise) both before and after the interruption, a resume file every 10 steps."""


def train_until_stopped(
    scene: Scene,
    cfg: SplatConfig,
    ckpt: Path,
    resume: Path,
    stop_after: int,
    *,
    device: torch.device = torch.device("cpu"),
    config_hash: str = "t",
) -> None:
    """Train with a resume file and a reporter that raises :class:`Interrupt` after
    ``stop_after`` steps, as a kill or Ctrl-C would."""
    from vid3d.splats.trainer import train

    train(
        scene,
        cfg,
        ckpt,
        device=device,
        config_hash=config_hash,
        resume_path=resume,
        reporter=Recorder(stop_after=stop_after),
    )


def binomial_table(n_max: int) -> torch.Tensor:
    """[n_max, n_max] binomial coefficients, as gsplat's MCMCStrategy builds them."""
    t = torch.zeros(n_max, n_max)
    for n in range(n_max):
        for k in range(n + 1):
            t[n, k] = math.comb(n, k)
    return t
