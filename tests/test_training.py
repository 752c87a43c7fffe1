"""Splat training on a small synthetic scene: strategies, exposure, resume, divergence,
checkpoint validation, exports."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import RESUME, Interrupt, Recorder, binomial_table, small_config, train_until_stopped
from tests.synthetic import make_scene
from vid3d.config import Config
from vid3d.errors import InputError, TrainingError
from vid3d.splats.cleanup import summary as cleanup_summary
from vid3d.splats.losses import psnr
from vid3d.splats.model import Checkpoint, export, load_checkpoint, save_checkpoint, to_world
from vid3d.splats.strategies import compute_relocation_torch
from vid3d.splats.trainer import Trainer, held_out_ids, load_train_data, train
from vid3d.stages import splat as splat_stage
from vid3d.workspace import Workspace, json_safe

CPU = torch.device("cpu")


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
    trainer = Trainer(data, small_config(coarse_steps=5), CPU)
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
    trainer = Trainer(load_train_data(scene, 8, CPU), small_config(grow_grad2d=2e-5), CPU)
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
    trainer = Trainer(load_train_data(scene, 8, CPU), small_config(grow_grad2d=1e-6, max_gaussians=600), CPU)
    for _ in range(60):
        trainer.step()
    # growth stops at the cap (one refinement may overshoot it, never keeps going)
    assert len(trainer.splats["means"]) <= 2 * 600


def test_opacity_reset_happens(scene):
    trainer = Trainer(load_train_data(scene, 8, CPU), small_config(reset_every=30), CPU)
    for _ in range(31):  # the reset runs after step index 30
        trainer.step()
    assert trainer.strategy.resets == 1
    opacities = torch.sigmoid(trainer.splats["opacities"])
    assert float(opacities.max().detach()) <= trainer.strategy.prune_opa * 2.0 + 1e-6


def test_gsplat_still_never_resets_opacities_itself(scene):
    """vid3d's DefaultStrategy adds the opacity reset that gsplat 1.5.3's never fires
    (``step % reset_every == 0 & step > 0`` is ``step % reset_every == (0 & step) > 0``).
    If this fails, gsplat has fixed its bug: remove vid3d's reset, or resets run twice."""
    from gsplat.strategy import DefaultStrategy as GsplatDefault

    trainer = Trainer(load_train_data(scene, 8, CPU), small_config(reset_every=30, refine_start=1000), CPU)
    _, info = trainer.render([0])
    info["means2d"].sum().backward()
    before = trainer.splats["opacities"].detach().clone()
    GsplatDefault.step_post_backward(
        trainer.strategy, trainer.splats, trainer.optimizers, trainer.strategy_state, 30, info, packed=False
    )
    assert torch.equal(trainer.splats["opacities"].detach(), before), (
        "gsplat's DefaultStrategy reset the opacities itself: drop vid3d's workaround"
    )


def test_mcmc_runs_on_cpu_and_fills_its_budget(scene):
    trainer = Trainer(load_train_data(scene, 8, CPU), small_config(strategy="mcmc", max_gaussians=700), CPU)
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
        denom = sum(
            binoms[i - 1, k] * (-1) ** k / np.sqrt(k + 1) * new ** (k + 1)
            for i in range(1, n + 1)
            for k in range(i)
        )
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
        trainer = Trainer(
            load_train_data(flicker, 8, CPU),
            small_config(steps=150, exposure=on, lr_exposure=3e-3, refine_stop=0),
            CPU,
        )
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
    trainer = Trainer(data, small_config(steps=200, lr_exposure=3e-3, refine_stop=0), CPU)
    for _ in range(200):
        trainer.step()
    ev = trainer.evaluate()
    assert ev["psnr"] > ev["psnr_raw"] + 1.0, ev
    E = trainer.interpolated_exposure(4)
    assert torch.allclose(E, 0.5 * (trainer.exposure[3] + trainer.exposure[5]))
    # without the correction both figures are the same, uncorrected one
    plain = Trainer(data, small_config(steps=0, exposure=False), CPU).evaluate()
    assert plain["psnr"] == plain["psnr_raw"]


def _without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_interrupted_training_resumes_bit_identically(scene, tmp_path, strategy):
    cfg = small_config(strategy=strategy, **RESUME)
    ckpt, resume = tmp_path / "ckpt.pt", tmp_path / "resume" / "splat.pt"
    straight, m0 = train(scene, cfg, tmp_path / "straight.pt", device=CPU, config_hash="t")
    if strategy == "default":  # Gaussians are split after the interruption too
        assert m0["history"][-1]["gaussians"] > m0["history"][-2]["gaussians"]

    with pytest.raises(Interrupt):  # killed after step 33: the resume file holds step 30
        train_until_stopped(scene, cfg, ckpt, resume, 33)
    assert not ckpt.exists()  # finished outputs are never written while training
    state = load_checkpoint(resume)
    assert (state.step, state.finished, state.steps) == (30, False, 60)

    rec = Recorder()
    resumed, m1 = train(scene, cfg, ckpt, device=CPU, config_hash="t", resume_path=resume, reporter=rec)
    assert m1["resumed_from"] == 30 and m1["steps"] == 60 and not rec.warnings
    assert len(resumed.splats["means"]) == len(straight.splats["means"]) == m0["gaussians"]
    assert abs(m1["psnr"] - m0["psnr"]) <= 1e-6
    assert m1["final_loss"] == m0["final_loss"]
    assert _without_seconds(m1["history"]) == _without_seconds(m0["history"])
    for k in straight.splats:
        assert torch.equal(resumed.splats[k], straight.splats[k]), k
    assert not resume.exists()  # removed once the finished checkpoint is written
    assert load_checkpoint(ckpt, require_finished=True).step == 60


_CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
from synthetic import make_scene
from vid3d.config import SplatConfig
from vid3d.splats.trainer import train
from pathlib import Path
scene = make_scene(Path({folder!r}))
cfg = SplatConfig(**{cfg!r})
train(scene, cfg, Path({ckpt!r}), device=torch.device("cpu"), config_hash="t",
      resume_path=Path({resume!r}))
"""


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path):
    cfg = small_config(
        steps=100,
        sh_degree_interval=30,
        eval_every=50,
        checkpoint_every=20,
        coarse_steps=30,
        grow_grad2d=5e-5,
    )
    ckpt, resume = tmp_path / "ckpt.pt", tmp_path / "resume.pt"
    code = _CHILD.format(
        tests=str(Path(__file__).parent),
        folder=str(tmp_path / "scene"),
        cfg=dataclasses.asdict(cfg),
        ckpt=str(ckpt),
        resume=str(resume),
    )
    child = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None and not resume.exists():
        time.sleep(0.05)
    child.kill()
    child.wait()
    assert not ckpt.exists(), "the run finished before it could be killed"
    interrupted_at = load_checkpoint(resume).step
    assert 20 <= interrupted_at < 100

    scene = make_scene(tmp_path / "scene")
    resumed, m = train(scene, cfg, ckpt, device=CPU, config_hash="t", resume_path=resume)
    assert m["resumed_from"] == interrupted_at and m["steps"] == 100
    straight, m2 = train(scene, cfg, tmp_path / "other.pt", device=CPU, config_hash="t")
    assert m2["resumed_from"] == 0
    assert abs(m["psnr"] - m2["psnr"]) <= 1e-6
    assert len(resumed.splats["means"]) == len(straight.splats["means"])
    assert _without_seconds(m["history"]) == _without_seconds(m2["history"])
    assert load_checkpoint(ckpt, require_finished=True).step == 100 and not resume.exists()


def test_force_ignores_a_corrupt_resume_file_and_without_force_it_is_a_warning(scene, tmp_path):
    cfg = small_config(steps=10, checkpoint_every=5)
    ckpt, resume = tmp_path / "ckpt.pt", tmp_path / "resume.pt"
    ckpt.write_bytes(b"not a checkpoint")  # a corrupt finished checkpoint is never read
    resume.write_bytes(b"\x80\x02garbage")
    rec = Recorder()
    _, m = train(scene, cfg, ckpt, device=CPU, config_hash="t", resume_path=resume, reporter=rec)
    assert m["resumed_from"] == 0 and len(rec.warnings) == 1
    assert "cannot be read" in rec.warnings[0] and "starting afresh" in rec.warnings[0]
    assert str(resume) in rec.warnings[0] and "\n" not in rec.warnings[0]
    assert load_checkpoint(ckpt, require_finished=True).step == 10 and not resume.exists()

    torch.save({"x": 1}, resume)  # a foreign torch file
    rec = Recorder()
    _, m = train(scene, cfg, ckpt, device=CPU, config_hash="t", resume_path=resume, reporter=rec, force=True)
    assert m["resumed_from"] == 0 and rec.warnings == [] and not resume.exists()

    # a readable resume file of another run (other options) is not resumed
    with pytest.raises(Interrupt):
        train_until_stopped(scene, cfg, ckpt, resume, 7, config_hash="old")
    rec = Recorder()
    _, m = train(scene, cfg, ckpt, device=CPU, config_hash="new", resume_path=resume, reporter=rec)
    assert m["resumed_from"] == 0 and rec.warnings == []


def test_a_resume_file_with_missing_state_starts_afresh_with_a_warning(scene, tmp_path):
    cfg = small_config(steps=10, checkpoint_every=5)
    resume = tmp_path / "resume.pt"
    trainer = Trainer(load_train_data(scene, 8, CPU), cfg, CPU)
    for _ in range(5):
        trainer.step()
    ckpt = trainer.checkpoint("t")
    del ckpt.state["torch_rng"]  # e.g. written by an older vid3d
    save_checkpoint(resume, ckpt)
    rec = Recorder()
    _, m = train(
        scene, cfg, tmp_path / "ckpt.pt", device=CPU, config_hash="t", resume_path=resume, reporter=rec
    )
    assert m["resumed_from"] == 0 and len(rec.warnings) == 1
    assert "KeyError" in rec.warnings[0] and "starting afresh" in rec.warnings[0]


def _workspace(tmp_path, scene, monkeypatch) -> Workspace:
    import vid3d.sfm

    monkeypatch.setattr(vid3d.sfm, "load_scene", lambda ws: scene)
    ws = Workspace(tmp_path)
    ws.sparse0.mkdir(parents=True)
    return ws


def test_splat_stage_metrics_are_strict_json_and_diverging_training_writes_nothing(
    scene, tmp_path, monkeypatch
):
    ws = _workspace(tmp_path / "ws", scene, monkeypatch)
    cfg = Config(device="cpu")
    cfg.splat = small_config(steps=20, checkpoint_every=10)
    metrics = splat_stage.run(ws, cfg, force=False)
    json.dumps(metrics, allow_nan=False)
    assert metrics["history"][0]["step"] == 0 and metrics["history"][0]["loss"] is None
    assert metrics["eval_on"] == "held_out" and metrics["final_loss"] > 0
    assert load_checkpoint(ws.ckpt, require_finished=True).step == 20
    assert not ws.resume_ckpt.exists()
    before = {p: p.read_bytes() for p in (ws.ckpt, ws.ply, ws.splat_file)}

    # scales overflow: the loss may stay finite while parameters do not
    cfg.splat = small_config(steps=60, checkpoint_every=10, lr_scales=1e3)
    with pytest.raises(TrainingError) as err:
        splat_stage.run(ws, cfg)
    line = err.value.one_line()
    assert "diverged at step" in line and "not finite" in line and "\n" not in line
    assert "--set splat.lr_scales=" in err.value.hint
    assert {p: p.read_bytes() for p in before} == before  # the finished outputs are untouched
    if ws.resume_ckpt.exists():  # what is kept to resume from is finite
        load_checkpoint(ws.resume_ckpt)

    fresh = _workspace(tmp_path / "fresh", scene, monkeypatch)
    with pytest.raises(TrainingError):
        splat_stage.run(fresh, cfg, force=True)
    assert not fresh.ckpt.exists() and not fresh.ply.exists() and not fresh.splat_file.exists()


def test_a_nan_parameter_stops_training_within_the_check_interval(scene, tmp_path, monkeypatch):
    step = Trainer.step

    def poisoned(self):
        loss = step(self)
        if self.step_count == 5:  # shN is unused at SH degree 0: the loss stays finite
            with torch.no_grad():
                self.splats["shN"][0, 0, 0] = float("nan")
        return loss

    monkeypatch.setattr(Trainer, "step", poisoned)
    cfg = small_config(steps=60, sh_degree_interval=1000)
    with pytest.raises(TrainingError, match="at step 50: parameter shN is not finite") as err:
        train(scene, cfg, tmp_path / "ckpt.pt", device=CPU, config_hash="t")
    assert "--set splat.lr_shN=" in err.value.hint
    assert not (tmp_path / "ckpt.pt").exists()
    # a periodic checkpoint is checked too, before it is written
    cfg = small_config(steps=60, sh_degree_interval=1000, checkpoint_every=10)
    with pytest.raises(TrainingError, match="at step 10"):
        train(
            scene, cfg, tmp_path / "ckpt.pt", device=CPU, config_hash="t", resume_path=tmp_path / "resume.pt"
        )
    assert not (tmp_path / "resume.pt").exists() and not (tmp_path / "ckpt.pt").exists()


def test_a_training_that_prunes_every_gaussian_is_an_error(scene, tmp_path):
    cfg = small_config(steps=40, init_opacity=0.001)  # below the pruning threshold: all go at step 20
    with pytest.raises(TrainingError, match="pruned every Gaussian by step 21") as err:
        train(scene, cfg, tmp_path / "ckpt.pt", device=CPU, config_hash="t")
    assert "splat.init_opacity" in err.value.hint
    assert not (tmp_path / "ckpt.pt").exists()


def test_nothing_empty_or_not_finite_is_ever_saved_or_exported(scene, tmp_path):
    trainer = Trainer(load_train_data(scene, 8, CPU), small_config(), CPU)
    ckpt = trainer.checkpoint("t")
    nan = dict(ckpt.splats, opacities=torch.full_like(ckpt.splats["opacities"], float("nan")))
    empty = {k: v[:0] for k, v in ckpt.splats.items()}
    for splats in (nan, empty):
        with pytest.raises(TrainingError):
            save_checkpoint(tmp_path / "c.pt", Checkpoint(splats, 1, 1, ckpt.normalization))
        with pytest.raises(TrainingError):
            export(splats, tmp_path / "s.ply")
    assert list(tmp_path.iterdir()) == []


def test_load_checkpoint_refuses_unfinished_foreign_truncated_and_broken_files(scene, tmp_path):
    trainer = Trainer(load_train_data(scene, 8, CPU), small_config(), CPU)
    trainer.step()
    good = trainer.checkpoint("t", finished=True)
    ws = Workspace(tmp_path / "ws")
    path = ws.ckpt
    save_checkpoint(path, good)
    assert load_checkpoint(path, require_finished=True).finished
    data = path.read_bytes()

    def refused(match: str) -> InputError:
        with pytest.raises(InputError, match=match) as err:
            load_checkpoint(path, require_finished=True)
        e = err.value
        assert str(path) in e.message and "\n" not in e.one_line(), e.one_line()
        assert f"vid3d train {ws.root} --force" in e.hint
        return e

    save_checkpoint(path, trainer.checkpoint("t"))  # a periodic one
    refused("unfinished training run .step 1 of 60")
    assert not load_checkpoint(path).finished  # resuming may read it
    torch.save({"x": 1}, path)
    refused("not a vid3d checkpoint .no splats, step, sh_degree, normalization")
    path.write_bytes(data[: len(data) // 2])
    refused("not a readable vid3d checkpoint")
    for name, value in [("means", float("nan")), ("scales", float("inf"))]:
        bad = dict(good.splats, **{name: torch.full_like(good.splats[name], value)})
        torch.save(
            {
                "splats": {k: v.detach() for k, v in bad.items()},
                "step": 60,
                "sh_degree": 1,
                "normalization": torch.eye(4, dtype=torch.float64),
                "finished": True,
            },
            path,
        )
        refused(f"{name} (are|is) not finite")
    torch.save(
        {
            "splats": {
                k: v.detach()[:, None] if k == "opacities" else v.detach() for k, v in good.splats.items()
            },
            "step": 60,
            "sh_degree": 1,
            "normalization": torch.eye(4),
            "finished": True,
        },
        path,
    )
    refused("opacities has shape")
    torch.save(
        {
            "splats": {k: v.detach()[:0] for k, v in good.splats.items()},
            "step": 60,
            "sh_degree": 1,
            "normalization": torch.eye(4),
            "finished": True,
        },
        path,
    )
    refused("0 Gaussians")


def test_without_a_held_out_frame_metrics_say_they_score_training_frames(tmp_path):
    small = make_scene(tmp_path / "three", n_views=3)
    assert held_out_ids(3, 8) == []
    rec = Recorder()
    _, m = train(
        small, small_config(steps=5), tmp_path / "ckpt.pt", device=CPU, config_hash="t", reporter=rec
    )
    assert m["eval_on"] == "training" and m["test_images"] == 0
    assert rec.warnings == ["no frame held out (3 frames): PSNR is measured on training frames"]
    json.dumps(m, allow_nan=False)


def test_json_safe_turns_non_finite_numbers_into_none():
    value = {"a": float("nan"), "b": [float("inf"), 1.5, {"c": -float("inf")}], "d": (2, "x")}
    assert json_safe(value) == {"a": None, "b": [None, 1.5, {"c": None}], "d": [2, "x"]}
    json.dumps(json_safe(value), allow_nan=False)


def test_checkpoint_loads_weights_only_and_ply_round_trips(scene, tmp_path):
    trainer, _ = train(scene, small_config(steps=20), tmp_path / "ckpt.pt", device=CPU, config_hash="x")
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
        raise ValueError(f"{path} is not a readable PLY file: {e}") from e
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


def test_robust_loss_keeps_a_transient_object_out_of_the_splats(scene):
    """A patch that appears in a few training frames only (a passer-by) pulls plain training
    towards it; with ``robust`` the trimmed loss leaves most of it out, so the splats keep
    showing the scene there."""
    frames = [1, 2, 3]
    err = {}
    for robust in (False, True):
        data = load_train_data(scene, 0, CPU)
        clean = {i: data.images[i, 10:30, 20:44].float() / 255 for i in frames}
        for i in frames:
            data.images[i, 10:30, 20:44] = torch.tensor([255, 0, 255], dtype=torch.uint8)  # magenta
        cfg = small_config(steps=200, refine_start=1000, coarse_steps=10, robust=robust, exposure=False)
        trainer = Trainer(data, cfg, CPU)
        for _ in range(cfg.scaled().steps):
            trainer.step()
        with torch.no_grad():
            renders = {i: trainer.render([i], sh_degree=1)[0][0, 10:30, 20:44].clamp(0, 1) for i in frames}
        err[robust] = float(np.mean([(renders[i] - clean[i]).abs().mean() for i in frames]))
    # measured: 0.097 plain, 0.069 robust
    assert err[True] < 0.85 * err[False], err


def test_cleanup_removes_outliers_from_the_finished_splats(scene, tmp_path, monkeypatch):
    """The splat stage's cleanup: what it removes is gone from the checkpoint and the PLY,
    the metrics say how many and the PSNR before and after; training can go on after it."""
    from plyfile import PlyData

    ws = _workspace(tmp_path / "ws", scene, monkeypatch)
    cfg = Config(device="cpu")
    cfg.splat = small_config(steps=20)
    m = splat_stage.run(ws, cfg)
    c = m["cleanup"]
    assert c["enabled"] and c["before"] >= c["after"] == m["gaussians"]
    assert c["before"] - c["after"] == sum(c["removed"].values())
    assert len(load_checkpoint(ws.ckpt).splats["means"]) == m["gaussians"]
    assert len(PlyData.read(str(ws.ply))["vertex"]) == m["gaussians"]
    assert m["psnr"] == c["psnr_after"] and c["psnr_after"] >= c["psnr_before"] - 0.1

    # Made transparent, 50 Gaussians go, exactly those; optimizer and strategy state follow.
    trainer = Trainer(load_train_data(scene, 4, CPU), small_config(steps=40), CPU)
    for _ in range(10):
        trainer.step()
    n = len(trainer.splats["means"])
    with torch.no_grad():
        trainer.splats["opacities"][:50] = -12.0
    marker = trainer.splats["means"][50:].detach().clone()
    report = trainer.remove_outliers()
    assert report["removed"]["transparent"] >= 50 and report["after"] == len(trainer.splats["means"])
    assert torch.isin(marker[:, 0], trainer.splats["means"][:, 0]).float().mean() > 0.95
    assert report["after"] <= n - 50
    for _ in range(3):
        trainer.step()  # optimizer moments and strategy state match the new size

    # Thresholds that call every Gaussian huge: removing them would blank the training
    # views, so the check keeps them all back, and still removes what is transparent.
    with torch.no_grad():
        trainer.splats["opacities"][:30] = -12.0
    n = len(trainer.splats["means"])
    before = trainer.evaluate(trainer.data.train_ids)["psnr"]
    report = trainer.remove_outliers(max_scale=1e-9)
    assert report["removed"]["transparent"] >= 30 and report["removed"]["huge"] == 0
    assert report["kept_back"]["huge"] == report["after"] == n - report["removed"]["transparent"]
    assert trainer.evaluate(trainer.data.train_ids)["psnr"] >= before - 0.1
    assert "kept " in cleanup_summary(report) and "huge" in cleanup_summary(report)

    # Polishing cannot bring back a blank scene: the trainer returns to where it was
    # (every Gaussian, the same step), then gives up the reason, and trains on as before.
    with torch.no_grad():
        trainer.splats["opacities"][:10] = 8.0  # all but these ten are "transparent" below
    means, step = trainer.splats["means"].detach().clone(), trainer.step_count
    report = trainer.remove_outliers(polish_steps=5, min_opacity=0.99)
    assert report["polish_steps"] == 0 and report["kept_back"]["transparent"] == len(means) - 10
    assert torch.equal(trainer.splats["means"], means) and trainer.step_count == step
    trainer.step()

    cfg.splat = small_config(steps=20, cleanup=False)
    m = splat_stage.run(ws, cfg)
    assert m["cleanup"] == {"enabled": False}
