"""Splat training on a small synthetic scene: strategies, exposure, resume, exports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vid3d.config import SplatConfig
from vid3d.splats.model import export, load_checkpoint, load_ply, to_world
from vid3d.splats.strategies import binomial_table, compute_relocation_torch
from vid3d.splats.losses import psnr
from vid3d.splats.trainer import Trainer, held_out_ids, load_train_data, train

from .synthetic import make_scene

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene"))


def _cfg(**kw) -> SplatConfig:
    base = dict(steps=60, sh_degree=1, sh_degree_interval=20, eval_every=0, refine_start=10,
                refine_every=10, refine_stop=1000, reset_every=1000, checkpoint_every=0,
                coarse_steps=20)
    base.update(kw)
    return SplatConfig(**base)


def test_held_out_frames_are_every_eighth_inside_the_clip():
    assert held_out_ids(25, 8) == [4, 12, 20]
    assert held_out_ids(49, 8) == [4, 12, 20, 28, 36, 44]
    for n in range(3, 60):
        ids = held_out_ids(n, 8)
        assert 0 not in ids and n - 1 not in ids  # the clip's ends always train
        assert len(ids) >= (n - 5) // 8
    assert held_out_ids(25, 0) == [] and held_out_ids(2, 8) == []


def test_coarse_phase_trains_on_half_resolution_frames_with_matching_cameras(scene):
    data = load_train_data(scene, 8, CPU)
    trainer = Trainer(data, _cfg(coarse_steps=5), CPU)
    images, _, Ks = data.level(2)
    assert images.shape[1:] == (data.height // 2, data.width // 2, 3)
    # The half-resolution cameras see what the full ones see, averaged over 2x2 pixels:
    # render the initial splats both ways and compare.
    with torch.no_grad():
        full, _ = trainer.render([3], sh_degree=0)
        half, _ = trainer.render([3], sh_degree=0, downscale=2)
    pooled = torch.nn.functional.avg_pool2d(full.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert psnr(half, pooled) > 30.0
    shifted = torch.roll(pooled, 1, dims=2)  # one pixel off scores far lower
    assert psnr(half, shifted) < psnr(half, pooled) - 6.0
    sizes = []
    for _ in range(8):
        sizes.append(trainer.downscale_now())
        trainer.step()
    assert sizes == [2] * 5 + [1] * 3


def test_default_strategy_grows_and_prunes(scene):
    trainer = Trainer(load_train_data(scene, 8, CPU), _cfg(grow_grad2d=2e-5), CPU)
    n0 = len(trainer.splats["means"])
    counts = []
    for _ in range(60):
        trainer.step()
        counts.append(len(trainer.splats["means"]))
    assert max(counts) > n0  # grew (clone / split)
    assert all(len(v) == counts[-1] for v in trainer.splats.values())
    # optimizer state follows the new Gaussians
    assert trainer.optimizers["means"].state[trainer.splats["means"]]["exp_avg"].shape[0] == counts[-1]


def test_default_strategy_caps_growth(scene):
    trainer = Trainer(load_train_data(scene, 8, CPU), _cfg(grow_grad2d=1e-6, max_gaussians=600), CPU)
    for _ in range(60):
        trainer.step()
    # growth stops at the cap (one refinement may overshoot it, never keeps going)
    assert len(trainer.splats["means"]) <= 2 * 600


def test_opacity_reset_happens(scene):
    trainer = Trainer(load_train_data(scene, 8, CPU), _cfg(reset_every=30), CPU)
    for _ in range(31):  # the reset runs after step index 30
        trainer.step()
    assert trainer.strategy.resets == 1
    opacities = torch.sigmoid(trainer.splats["opacities"])
    assert float(opacities.max().detach()) <= trainer.strategy.prune_opa * 2.0 + 1e-6


def test_mcmc_runs_on_cpu_and_fills_its_budget(scene):
    trainer = Trainer(load_train_data(scene, 8, CPU), _cfg(strategy="mcmc", max_gaussians=700), CPU)
    n0 = len(trainer.splats["means"])
    means0 = trainer.splats["means"].detach().clone()
    for _ in range(60):
        trainer.step()
    n = len(trainer.splats["means"])
    assert n0 < n <= 700  # MCMC adds Gaussians up to its cap
    assert not torch.allclose(trainer.splats["means"][:n0].detach(), means0)  # noise + steps moved them


def test_cpu_relocation_matches_the_cuda_formula():
    # Eq. 9 of the MCMC paper as gsplat's CUDA kernel computes it, loop by loop.
    def kernel(op, sc, n, binoms):
        new = 1 - (1 - op) ** (1 / n)
        denom = sum(binoms[i - 1, k] * (-1) ** k / np.sqrt(k + 1) * new ** (k + 1)
                    for i in range(1, n + 1) for k in range(i))
        return new, op / denom * sc

    rng = np.random.default_rng(0)
    op, sc, n = rng.uniform(0.05, 0.95, 30), rng.uniform(0.01, 1, (30, 3)), rng.integers(1, 12, 30)
    binoms = binomial_table(51).double()
    new_op, new_sc = compute_relocation_torch(torch.tensor(op), torch.tensor(sc), torch.tensor(n), binoms)
    for j in range(30):
        o, s = kernel(op[j], sc[j], int(n[j]), binoms.numpy())
        assert new_op[j].item() == pytest.approx(o, rel=1e-9)
        assert new_sc[j].numpy() == pytest.approx(s, rel=1e-7)


def test_exposure_correction_absorbs_flicker_and_stays_out_of_novel_views(tmp_path):
    gains = np.where(np.arange(10) % 2 == 0, 0.7, 1.3)
    flicker = make_scene(tmp_path / "flicker", brightness=gains)
    losses = {}
    for on in (False, True):
        trainer = Trainer(load_train_data(flicker, 8, CPU),
                          _cfg(steps=150, exposure=on, lr_exposure=3e-3, refine_stop=0), CPU)
        losses[on] = np.mean([trainer.step() for _ in range(150)][-40:])
    assert losses[True] < 0.9 * losses[False], losses
    # the learned correction follows the flicker: darker frames get a smaller gain
    A = trainer.exposure.detach()[:, :, :3] + torch.eye(3)
    gain = A.diagonal(dim1=1, dim2=2).mean(1).numpy()
    train = np.array(trainer.data.train_ids)
    assert gain[train][gains[train] < 1].mean() < gain[train][gains[train] > 1].mean()
    # novel-view renders do not use it
    before, render = trainer.evaluate(), trainer.render([3])[0]
    trainer.exposure.data.normal_(0, 1.0)
    assert torch.equal(trainer.render([3])[0], render)
    assert trainer.evaluate()["psnr_raw"] == before["psnr_raw"]


def test_held_out_frames_are_scored_with_the_exposure_of_their_neighbours(tmp_path):
    # auto exposure drops while the camera passes a bright window (frames 3-6): held-out
    # frame 4 is darker than the scene's canonical colours; its neighbours' learned
    # corrections predict by how much
    gains = np.array([1.0, 1.0, 1.0, 0.6, 0.6, 0.6, 0.6, 1.0, 1.0, 1.0])
    drift = make_scene(tmp_path / "drift", brightness=gains)
    data = load_train_data(drift, 8, CPU)
    assert data.test_ids == [4]
    trainer = Trainer(data, _cfg(steps=200, lr_exposure=3e-3, refine_stop=0), CPU)
    for _ in range(200):
        trainer.step()
    ev = trainer.evaluate()
    assert ev["psnr"] > ev["psnr_raw"] + 1.0, ev
    E = trainer.interpolated_exposure(4)
    assert torch.allclose(E, 0.5 * (trainer.exposure[3] + trainer.exposure[5]))
    # without the correction both figures are the same, uncorrected one
    plain = Trainer(data, _cfg(steps=0, exposure=False), CPU).evaluate()
    assert plain["psnr"] == plain["psnr_raw"]


_CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
from synthetic import make_scene
from vid3d.config import SplatConfig
from vid3d.splats.trainer import train
from pathlib import Path
scene = make_scene(Path({folder!r}))
cfg = SplatConfig(**{cfg!r})
train(scene, cfg, Path({ckpt!r}), device=torch.device("cpu"), config_hash="t")
"""


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path):
    cfg = dict(steps=160, sh_degree=1, sh_degree_interval=40, eval_every=0, refine_start=20,
               refine_every=20, refine_stop=1000, reset_every=1000, checkpoint_every=40,
               coarse_steps=60)
    ckpt = tmp_path / "ckpt.pt"
    code = _CHILD.format(tests=str(Path(__file__).parent), folder=str(tmp_path / "scene"),
                         cfg=cfg, ckpt=str(ckpt))
    child = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None and not ckpt.exists():
        time.sleep(0.05)
    child.kill()
    child.wait()
    interrupted_at = load_checkpoint(ckpt).step
    assert 40 <= interrupted_at < 160, "the run finished before it could be killed"

    scene = make_scene(tmp_path / "scene")
    resumed, m = train(scene, SplatConfig(**cfg), ckpt, device=CPU, config_hash="t")
    assert m["resumed_from"] == interrupted_at and m["steps"] == 160
    straight, m2 = train(scene, SplatConfig(**cfg), tmp_path / "other.pt", device=CPU,
                         config_hash="t")
    assert m2["resumed_from"] == 0
    assert m["psnr"] == pytest.approx(m2["psnr"], abs=0.5)
    assert abs(len(resumed.splats["means"]) - len(straight.splats["means"])) <= 0.05 * len(
        straight.splats["means"])
    assert load_checkpoint(ckpt).step == 160


def test_checkpoint_loads_weights_only_and_ply_round_trips(scene, tmp_path):
    trainer, _ = train(scene, _cfg(steps=20), tmp_path / "ckpt.pt", device=CPU, config_hash="x")
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")  # weights_only=True inside
    world = to_world(ckpt.splats, ckpt.normalization)
    export(world, tmp_path / "s.ply")
    back = load_ply(tmp_path / "s.ply")
    assert set(back) == set(world)
    for k in world:
        assert back[k].shape == world[k].shape, k
        assert torch.allclose(back[k], world[k].float()), k
    # the PLY is in the SfM frame: its centre is the scene's, not the normalised origin
    assert np.allclose(back["means"].mean(0).numpy(), scene.points.mean(0), atol=0.3)
