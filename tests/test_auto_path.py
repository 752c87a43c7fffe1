"""The `auto` camera path on real clips: the right kind for each, and frames the clip saw.

Each clip goes through frames, poses and a short training (small frames, 600 steps, so
that the module runs in minutes on a 2-core CPU), then the render stage's `auto` path
is chosen and its coverage measured (:mod:`vid3d.auto_path`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, data_path
from vid3d.camera_paths import CameraPath, path_motion, up_direction
from vid3d.config import load_config
from vid3d.pipeline import run_pipeline
from vid3d.stages import render
from vid3d.workspace import Workspace

pytestmark = pytest.mark.slow

OVERRIDES = [
    "device=cpu",
    "frames.target_frames=24",
    "frames.max_size=320",
    "splat.steps=600",
    "splat.schedule_scale=1.0",  # the fast preset would cut the 600 steps to 180
    "splat.max_gaussians=30000",
    "render.seconds=2",
    "render.fps=12",
    'render.resolution="192x108"',
    'render.preview="none"',
]
CLIPS = {
    # a walk through a room: forward travel
    "walk-through": ("re10k/videos/0c11dbe781b1c11c_svdxt.mp4", "push-in"),
    # a drone flying towards high-rises (the cut to the beach is left out: the longest shot)
    "drone": ("edge/drone_with_scene_cut.mp4", "push-in"),
    # CogVideoX: the camera follows a car along a dirt road, sideways to its view
    "generated": ("ai_video/cogvideox_suv_dirt_road.mp4", "spiral"),
    # the bundled example: a splat viewer flown along an arc around a table, looking at it
    "example": (None, "orbit"),
}


@pytest.fixture(scope="module", params=list(CLIPS))
def rendered(request, tmp_path_factory) -> tuple[str, Workspace, dict]:
    name = request.param
    relative, _ = CLIPS[name]
    video = REPO / "examples" / "garden.mp4" if relative is None else data_path(relative)
    ws = Workspace(tmp_path_factory.mktemp("auto") / name)
    cfg = load_config("fast", OVERRIDES)
    run_pipeline(ws, cfg, ("frames", "poses", "splat"), video=video)
    return name, ws, render.run(ws, cfg)


def test_auto_picks_the_kind_of_path_that_suits_the_clip(rendered):
    name, ws, metrics = rendered
    choice = metrics["choice"]
    assert choice["kind"] == CLIPS[name][1], choice
    assert metrics["path"] == "auto" and metrics["name"] == "orbit"
    assert choice["reason"] and 0 < choice["amount"] <= 1


def test_the_worst_frame_is_covered_at_least_90_percent(rendered):
    name, ws, metrics = rendered
    cov, choice = metrics["coverage"], metrics["choice"]
    assert cov["worst"] >= 0.9, (name, choice, cov)
    assert cov["mean"] >= cov["worst"]
    # every frame's figure is in the path file, and the worst one is the summary's
    doc = json.loads((ws.renders / "orbit.json").read_text())
    per_frame = [f["coverage"] for f in doc["frames"]]
    assert len(per_frame) == metrics["frames"]
    assert min(per_frame) == pytest.approx(cov["worst"], abs=1e-4)
    assert doc["about"]["kind"] == metrics["choice"]["kind"]


def test_the_auto_path_is_level_and_smooth(rendered):
    from vid3d.sfm import load_scene

    name, ws, metrics = rendered
    path = CameraPath.load(ws.renders / "orbit.json")
    motion = path_motion(path, up=up_direction(load_scene(ws).camtoworlds))  # the scene's up
    assert motion["roll_deg"] < 0.5
    assert motion["angular_speed"] <= 60.0 + 1e-6
    assert motion["end_speed"] < 0.05 or path.loop


def test_a_larger_path_than_auto_chose_is_covered_worse_or_turns_too_fast(rendered):
    """The size auto chose is the largest that meets the target: the next size up falls
    below it or turns faster than the eye follows (unless auto kept the full size)."""
    name, ws, metrics = rendered
    choice = metrics["choice"]
    if choice["amount"] == 1.0:
        pytest.skip(f"{name}: the full-size path is covered well enough")
    from vid3d.auto_path import AMOUNTS, MAX_TURN, training_views
    from vid3d.sfm import load_scene
    from vid3d.splats.model import load_checkpoint

    cfg = load_config("fast", OVERRIDES)
    scene = load_scene(ws)
    ckpt = load_checkpoint(ws.ckpt, "cpu")
    cov = training_views(render.render_inputs(ckpt.splats), scene, np.asarray(ckpt.normalization))
    bigger = AMOUNTS[AMOUNTS.index(choice["amount"]) - 1]
    path = render.build_path(cfg.render, scene, kind=choice["kind"], amount=bigger)
    if path_motion(path)["angular_speed"] <= MAX_TURN:
        assert float(cov.of(path, 12).min()) < min(0.9, choice["ceiling"] - 0.02) + 0.01


def test_a_path_file_renders_with_its_coverage(rendered, tmp_path: Path):
    """An explicit path is measured too: `--path FILE` reports its coverage."""
    name, ws, metrics = rendered
    if name != "example":
        pytest.skip("one clip is enough")
    cfg = load_config("fast", [*OVERRIDES, f'render.path="{ws.renders / "orbit.json"}"'])
    again = render.run(ws, cfg)
    assert again["coverage"]["worst"] == pytest.approx(metrics["coverage"]["worst"], abs=0.02)
    assert "choice" not in again
