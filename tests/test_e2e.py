"""End to end through the CLI: a real 16-frame clip in, splats and an orbit video out."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from plyfile import PlyData
from typer.testing import CliRunner

from tests.conftest import data_path
from vid3d.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
CLIP = "re10k/videos/0bf152ef84195293.mp4"  # 16 frames, 384x256, a walk through a room
# Small but real: every stage runs as it would for a user, only shorter.
OPTIONS = [
    "--preset",
    "fast",
    "--device",
    "cpu",  # fast: 600 training steps
    "--set",
    "render.seconds=2",
    "--set",
    "render.fps=12",
    "--set",
    "render.resolution=256x144",
]


def _cli(*args: str):
    result = runner.invoke(app, list(args))
    return result


def _finished(ws: Path) -> dict[str, str]:
    return {
        s: json.loads((ws / ".vid3d" / f"{s}.json").read_text())["finished"]
        + str((ws / ".vid3d" / f"{s}.json").stat().st_mtime_ns)
        for s in ("frames", "poses", "splat", "render")
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("e2e") / "clip"
    result = _cli("reconstruct", str(data_path(CLIP)), "--out", str(ws), *OPTIONS)
    assert result.exit_code == 0, result.output
    return ws


def test_reconstruct_writes_every_output(workspace: Path):
    ws = workspace
    report = json.loads((ws / "report.json").read_text())
    stages = report["stages"]
    assert set(stages) == {"frames", "poses", "splat", "render"}
    for s in stages.values():
        assert s["seconds"] > 0

    # frames: the clip's 16 frames, kept or with a reason
    frames = json.loads((ws / "frames.json").read_text())
    assert len(list((ws / "images").glob("*.jpg"))) == stages["frames"]["metrics"]["kept"] >= 14
    assert frames

    # poses: all or nearly all frames registered, a COLMAP model on disk
    poses = stages["poses"]["metrics"]
    assert poses["registered"] >= 14 and poses["registered"] == poses["total"]
    assert poses["mean_reprojection_error"] < 2.0
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (ws / "sparse" / "0" / name).is_file()

    # splats: the standard 3DGS PLY layout, and learning that generalises to held-out frames
    ply = PlyData.read(str(ws / "splats" / "point_cloud.ply"))["vertex"]
    names = [p.name for p in ply.properties]
    assert names[:3] == ["x", "y", "z"]
    for field in [
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        "f_rest_0",
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]:
        assert field in names
    assert len(ply) > 1000
    xyz = np.stack([ply["x"], ply["y"], ply["z"]], 1)
    assert np.isfinite(xyz).all()
    splat = stages["splat"]["metrics"]
    assert splat["test_images"] >= 2 and splat["steps"] == 600
    assert splat["psnr"] > splat["psnr_initial"] + 3.0, splat
    assert len(ply) == splat["gaussians"]

    # render: H.264 that decodes to the requested frames and size
    with av.open(str(ws / "renders" / "orbit.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = [f for f in container.decode(stream)]
    assert len(decoded) == 24
    assert (decoded[0].width, decoded[0].height) == (256, 144)
    assert (ws / "vid3d.toml").is_file()
    page = (ws / "report.html").read_text()
    assert "<svg" in page and "held-out PSNR" in page  # the training curve
    # the orbit's contact sheet, inlined: the page is one file
    sheet = (ws / "renders" / "orbit.sheet.png").read_bytes()
    assert f"data:image/png;base64,{base64.b64encode(sheet).decode()}" in page
    assert "Verdict: " in page
    # the default path: chosen for the clip (a walk-through: a push-in), and measured
    render = stages["render"]["metrics"]
    assert render["path"] == "auto" and render["choice"]["kind"] == "push-in"
    assert 0.0 < render["coverage"]["worst"] <= render["coverage"]["mean"] <= 1.0
    assert "Camera path: push-in" in page and "coverage" in page
    # the splats saved are the cleaned ones, and the metrics say what went
    assert splat["cleanup"]["after"] == splat["gaussians"] <= splat["cleanup"]["before"]


def test_rerun_skips_every_stage(workspace: Path):
    before = _finished(workspace)
    result = _cli("reconstruct", str(data_path(CLIP)), "--out", str(workspace), *OPTIONS)
    assert result.exit_code == 0, result.output
    assert result.output.count("up to date, skipped") == 4
    assert _finished(workspace) == before


def test_moved_video_is_the_same_video(workspace: Path, tmp_path: Path):
    moved = tmp_path / "elsewhere" / "renamed.mp4"
    moved.parent.mkdir()
    shutil.copyfile(data_path(CLIP), moved)
    before = _finished(workspace)
    result = _cli("reconstruct", str(moved), "--out", str(workspace), *OPTIONS)
    assert result.exit_code == 0, result.output
    assert result.output.count("up to date, skipped") == 4
    assert _finished(workspace) == before


def test_changed_training_option_reruns_only_training_and_render(workspace: Path):
    before = _finished(workspace)
    result = _cli(
        "reconstruct",
        str(data_path(CLIP)),
        "--out",
        str(workspace),
        *OPTIONS,
        "--set",
        "splat.ssim_lambda=0.3",
        "--set",
        "splat.schedule_scale=0.05",
    )
    assert result.exit_code == 0, result.output
    after = _finished(workspace)
    assert after["frames"] == before["frames"] and after["poses"] == before["poses"]
    assert after["splat"] != before["splat"] and after["render"] != before["render"]


@pytest.mark.parametrize(
    "make_input, words",
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", "video"),
        (lambda d: data_path("edge/static_camera_tree.avi"), "motion"),
    ],
)
def test_bad_input_fails_cleanly(tmp_path: Path, make_input, words):
    video = make_input(tmp_path)
    ws = tmp_path / "ws"
    result = _cli("reconstruct", str(video), "--out", str(ws), *OPTIONS)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and words in result.output.lower(), result.output
    # nothing half-written: no frames, no manifests, no temporary files
    leftovers = [p for p in ws.rglob("*") if p.name != "vid3d.toml"] if ws.exists() else []
    assert leftovers == []


def test_single_stage_commands_share_the_workspace(workspace: Path):
    # `vid3d poses` on a finished workspace: skipped, and it prints the consistency table
    result = _cli("poses", str(workspace))
    assert result.exit_code == 0, result.output
    assert "up to date, skipped" in result.output
    assert "geometric consistency" in result.output and "inlier ratio" in result.output
    # `vid3d export` writes the compact .splat format again from the checkpoint
    out = workspace / "again.splat"
    result = _cli("export", str(workspace), "--format", "splat", "--out", str(out))
    assert result.exit_code == 0, result.output
    n = json.loads((workspace / "report.json").read_text())["stages"]["splat"]["metrics"]["gaussians"]
    assert out.stat().st_size == 32 * n  # 32 bytes a splat
    # a stage whose input is missing says which command to run first
    empty = workspace.parent / "empty"
    (empty / ".vid3d").mkdir(parents=True)
    (empty / ".vid3d" / "workspace.json").write_text("{}")  # a workspace, with no poses yet
    result = _cli("train", str(empty))
    assert result.exit_code != 0 and "vid3d poses" in result.output
    # a folder that is not a workspace at all says so
    other = workspace.parent / "other"
    other.mkdir()
    result = _cli("train", str(other))
    assert result.exit_code == 2 and "not a vid3d workspace" in result.output


def test_train_steps_option_sets_the_length_of_the_whole_schedule(workspace: Path):
    result = _cli("train", str(workspace), "--steps", "40")
    assert result.exit_code == 0, result.output
    splat = json.loads((workspace / "report.json").read_text())["stages"]["splat"]["metrics"]
    assert splat["steps"] == 40  # not 40 x the preset's schedule_scale
    # the schedule shrank with it: an evaluation every 500 x 40/2000 steps
    assert [h["step"] for h in splat["history"]] == [0, 10, 20, 30, 40]
    assert {"psnr", "psnr_raw", "seconds", "gaussians"} <= set(splat["history"][-1])
