"""Nothing lost, ever: bad input, bad options, interruptions, full and read-only disks.

Every case asserts the exit code, that the user sees one ``error:`` line (and no
traceback), and that a finished workspace is byte-identical afterwards. The finished
workspace is a real (short) reconstruction of a RealEstate10K clip, copied for each test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import REPO, data_path
from vid3d.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
CLIP = "re10k/videos/0bf152ef84195293.mp4"  # 16 frames, 384x256
# A whole pipeline in well under a minute: 0.05 x the default schedule (100 steps).
OPTIONS = [
    "--preset",
    "fast",
    "--device",
    "cpu",
    "--set",
    "splat.schedule_scale=0.05",
    "--set",
    "render.seconds=1",
    "--set",
    "render.fps=8",
    "--set",
    "render.resolution=256x144",
]
STATE = (".vid3d/lock", ".vid3d/resume", ".vid3d/logs")  # process state, not results
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


# --------------------------------------------------------------------------- helpers


def snapshot(ws: Path) -> dict[str, str]:
    """Every file of a workspace (process state left out) and a hash of its bytes."""
    out = {}
    for p in sorted(ws.rglob("*")):
        rel = p.relative_to(ws).as_posix()
        if p.is_file() and not rel.startswith(STATE):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def vid3d(*args, env=None, preexec_fn=None, wrap: list[str] | None = None, **kw):
    """Run ``python -m vid3d ARGS`` in a new process; returns the CompletedProcess."""
    cmd = [sys.executable, "-m", "vid3d", *map(str, args)]
    return subprocess.run(
        (wrap or []) + cmd,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
        timeout=600,
        **kw,
    )


def assert_one_error(output: str, *words: str) -> str:
    """The output has exactly one ``error:`` line, no traceback, and the line has ``words``."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    for w in words:
        assert w in lines[0], (w, output)
    return lines[0]


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished workspace: every stage done."""
    ws = tmp_path_factory.mktemp("finished") / "good"
    result = cli("reconstruct", data_path(CLIP), "--out", ws, *OPTIONS)
    assert result.exit_code == 0, result.output
    return ws


@pytest.fixture()
def good(finished: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of the finished workspace and its snapshot."""
    ws = tmp_path / "good"
    shutil.copytree(finished, ws, symlinks=True)
    return ws, snapshot(ws)


def up_to_date(ws: Path, before: dict[str, str] | None = None) -> None:
    """A plain re-run skips every stage and leaves the files as ``before`` (default: as they
    are now)."""
    before = snapshot(ws) if before is None else before
    result = cli("reconstruct", data_path(CLIP), "--out", ws, *OPTIONS)
    assert result.exit_code == 0, result.output
    assert result.output.count("up to date, skipped") == 4, result.output
    assert snapshot(ws) == before


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Awkward inputs, made from the real clip with the bundled ffmpeg."""
    d = tmp_path_factory.mktemp("clips")
    src = data_path(CLIP)
    c = {
        name: d / f"{name}.mp4"
        for name in ("one", "three", "black", "noise", "audio", "8k", "rotated", "vfr", "truncated", "empty")
    }
    ffmpeg("-i", str(src), "-frames:v", "1", str(c["one"]))
    ffmpeg("-i", str(src), "-frames:v", "3", str(c["three"]))
    ffmpeg("-f", "lavfi", "-i", "color=black:s=320x240:d=2:r=8", "-pix_fmt", "yuv420p", str(c["black"]))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=gray:s=320x240:d=2:r=8",
        "-vf",
        "noise=alls=100:allf=t+u",
        "-pix_fmt",
        "yuv420p",
        str(c["noise"]),
    )
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(c["audio"]))
    ffmpeg(
        "-i",
        str(src),
        "-vf",
        "scale=7680:4320",
        "-frames:v",
        "8",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        str(c["8k"]),
    )
    ffmpeg("-display_rotation", "90", "-i", str(src), "-c", "copy", str(c["rotated"]))
    ffmpeg(
        "-i", str(src), "-vf", "setpts='if(lt(N,8),N/(8*TB),(N+4)/(8*TB))'", "-fps_mode", "vfr", str(c["vfr"])
    )
    data = src.read_bytes()
    c["truncated"].write_bytes(data[: len(data) // 3])
    c["empty"].write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n")
    c["text"] = d / "text.mp4"
    return c


@pytest.mark.parametrize(
    "name, words",
    [
        ("empty", ["empty.mp4"]),
        ("text", ["text.mp4"]),
        ("truncated", ["truncated.mp4"]),
        ("audio", ["audio.mp4"]),
        ("one", []),
        ("black", ["nothing to track"]),
    ],
)
def test_unusable_video_is_one_line_and_leaves_nothing(clips, tmp_path, name, words):
    out = tmp_path / "ws"
    result = cli("frames", clips[name], "--out", out, "--set", 'device="cpu"')
    assert result.exit_code != 0, result.output
    assert_one_error(result.output, *words)
    assert "hint:" in result.output
    assert not out.exists()  # the run made the folder, and it failed: nothing is left


def test_noise_fails_in_poses_and_keeps_the_frames_stage(clips, tmp_path):
    # noise looks like a fast camera to the frames stage; structure from motion finds no
    # consistent geometry in it and says so, and the finished frames stage is kept
    out = tmp_path / "ws"
    result = cli("reconstruct", clips["noise"], "--out", out, *OPTIONS)
    assert result.exit_code != 0, result.output
    assert_one_error(result.output)
    assert (out / ".vid3d" / "frames.json").is_file()
    assert not (out / ".vid3d" / "poses.json").exists() and not (out / "sparse").exists()


@pytest.mark.parametrize("name, rotated", [("8k", False), ("rotated", True), ("vfr", False)])
def test_large_rotated_and_variable_frame_rate_clips_work(clips, tmp_path, name, rotated):
    out = tmp_path / "ws"
    result = cli("frames", clips[name], "--out", out, "--preset", "fast")
    assert result.exit_code == 0, result.output
    images = sorted((out / "images").glob("*.jpg"))
    assert len(images) >= 6
    import cv2

    ih, iw = cv2.imread(str(images[0])).shape[:2]
    assert max(iw, ih) <= 640  # the fast preset's frame size, even from 8K
    assert (ih > iw) == rotated  # a 90 degree display rotation is applied


def test_three_frame_clip_says_its_psnr_is_on_training_frames(clips, tmp_path):
    result = cli("reconstruct", clips["three"], "--out", tmp_path / "ws", *OPTIONS)
    assert result.exit_code == 0, result.output
    assert "no frame held out" in result.output and "PSNR on training" in result.output
    assert "held-out" not in result.output
    report = json.loads((tmp_path / "ws" / "report.json").read_text())
    assert report["stages"]["splat"]["metrics"]["eval_on"] == "training"


def test_missing_file_and_folder_as_video(tmp_path):
    result = cli("reconstruct", tmp_path / "nope.mp4", "--out", tmp_path / "ws")
    assert result.exit_code == 2
    assert_one_error(result.output, "does not exist", "nope.mp4")
    (tmp_path / "videos").mkdir()
    result = cli("reconstruct", tmp_path / "videos", "--out", tmp_path / "ws")
    assert result.exit_code == 2
    assert_one_error(result.output, "is a folder, not a video")
    assert "vid3d batch" in result.output
    assert not (tmp_path / "ws").exists()


def test_unicode_spaces_and_brackets_in_paths(clips, tmp_path):
    odd = tmp_path / "vidéos [final] (1)"
    odd.mkdir()
    video = odd / "clip [v2] ü.mp4"
    shutil.copy(data_path(CLIP), video)
    out = tmp_path / "out [x] ø"
    result = cli("frames", video, "--out", out, "--preset", "fast")
    assert result.exit_code == 0, result.output
    assert "[x]" in result.output  # the path is printed as it is, not eaten as markup
    assert len(list((out / "images").glob("*.jpg"))) >= 10
    result = cli("frames", odd / "clip[final].mp4", "--out", tmp_path / "o2")
    assert result.exit_code == 2
    assert_one_error(result.output, "clip[final].mp4")


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "option, words",
    [
        ("render.resolution=4k", ["render.resolution", "4k"]),
        ("render.path=banana", ["render.path", "banana"]),
        ("device=banana", ["device", "banana"]),
        ("splat.strategy=banana", ["splat.strategy", "banana"]),
        ("splat.steps=-5", ["splat.steps", "-5"]),
        ("splat.lr_means=nan", ["splat.lr_means", "nan"]),
    ],
)
def test_bad_options_fail_before_any_stage_and_change_nothing(good, option, words):
    ws, before = good
    key, value = option.split("=", 1)
    extra = ["--device", value] if key == "device" else ["--set", option]
    result = cli("reconstruct", data_path(CLIP), "--out", ws, *OPTIONS, *extra)
    assert result.exit_code == 2, result.output
    assert_one_error(result.output, *words)
    assert "up to date" not in result.output and "ran" not in result.output
    assert snapshot(ws) == before
    up_to_date(ws)  # nothing of the bad option stuck


def test_bad_option_on_a_new_folder_creates_nothing(tmp_path):
    result = cli(
        "reconstruct", data_path(CLIP), "--out", tmp_path / "new", *OPTIONS, "--set", "render.resolution=4k"
    )
    assert result.exit_code == 2
    assert not (tmp_path / "new").exists()


def test_failed_rerun_keeps_the_finished_workspace(good, clips):
    ws, before = good
    result = cli("reconstruct", clips["text"], "--out", ws, "--set", "splat.steps=7")
    assert result.exit_code != 0
    assert_one_error(result.output, "text.mp4")
    assert snapshot(ws) == before
    # the next plain command still sees the finished results, not the failed run's options
    result = cli("train", ws)
    assert result.exit_code == 0, result.output
    assert "up to date, skipped" in result.output
    assert snapshot(ws) == before


def test_diverging_training_stops_and_keeps_the_old_model(good):
    ws, before = good
    result = cli("train", ws, "--set", "splat.lr_opacities=1e30", "--set", "splat.lr_scales=1e30")
    assert result.exit_code != 0, result.output
    assert_one_error(result.output, "not finite")
    assert snapshot(ws) == before


# --------------------------------------------------------------------------- ownership


def test_out_folder_with_other_files_is_refused(tmp_path):
    proj = tmp_path / "proj"
    (proj / "images").mkdir(parents=True)
    (proj / "images" / "photo.jpg").write_bytes(b"my photo")
    result = cli("frames", data_path(CLIP), "--out", proj)
    assert result.exit_code == 2
    assert_one_error(result.output, "not a vid3d workspace", "images/")
    assert (proj / "images" / "photo.jpg").read_bytes() == b"my photo"
    assert sorted(p.name for p in proj.rglob("*")) == ["images", "photo.jpg"]


def test_foreign_colmap_model_is_refused(tmp_path):
    proj = tmp_path / "colmap_project"
    (proj / "sparse" / "0").mkdir(parents=True)
    (proj / "sparse" / "0" / "cameras.bin").write_bytes(b"theirs")
    result = cli("poses", proj)
    assert result.exit_code == 2
    assert_one_error(result.output, "not a vid3d workspace")
    assert (proj / "sparse" / "0" / "cameras.bin").read_bytes() == b"theirs"


def test_out_is_a_file(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    result = cli("frames", data_path(CLIP), "--out", f)
    assert result.exit_code == 2
    assert_one_error(result.output, "is a file")
    assert f.read_text() == "mine"


def test_copied_and_moved_workspaces_rerun_nothing(good, tmp_path):
    ws, before = good
    copy = tmp_path / "copy"
    shutil.copytree(ws, copy, copy_function=shutil.copy)  # new files, new times
    up_to_date(copy)
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    ws.rename(moved)
    up_to_date(moved)
    assert snapshot(moved) == before


# --------------------------------------------------------------------------- checkpoints


def test_corrupt_checkpoint_is_refused_and_force_trains_afresh(good):
    ws, _ = good
    ckpt = ws / "splats" / "ckpt.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    result = cli("render", ws, "--force")
    assert result.exit_code != 0
    line = assert_one_error(result.output, "ckpt.pt")
    assert "vid3d train" in result.output and "--force" in result.output, line
    result = cli("train", ws, "--force")
    assert result.exit_code == 0, result.output
    result = cli("render", ws)
    assert result.exit_code == 0, result.output


def test_foreign_torch_file_as_checkpoint(good):
    ws, _ = good
    torch.save({"x": 1}, ws / "splats" / "ckpt.pt")
    result = cli("render", ws, "--force")
    assert result.exit_code != 0
    assert_one_error(result.output, "ckpt.pt")
    result = cli("export", ws, "--out", ws / "x.ply")
    assert result.exit_code != 0
    assert_one_error(result.output, "ckpt.pt")
    assert not (ws / "x.ply").exists()


def test_export_to_a_folder_writes_into_it(good, tmp_path):
    ws, before = good
    out = tmp_path / "exports"
    out.mkdir()
    result = cli("export", ws, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "point_cloud.ply").stat().st_size > 1000
    assert snapshot(ws) == before


def test_reports_and_manifests_are_strict_json(good):
    ws, _ = good

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))

    report = strict((ws / "report.json").read_text())
    assert report["stages"]["splat"]["metrics"]["history"][0]["loss"] is None
    for m in (ws / ".vid3d").glob("*.json"):
        strict(m.read_text())


def test_poses_on_a_workspace_without_frames_names_the_video_argument(tmp_path):
    ws = tmp_path / "ws"
    (ws / ".vid3d").mkdir(parents=True)
    (ws / ".vid3d" / "workspace.json").write_text("{}")
    result = cli("poses", ws)
    assert result.exit_code == 2
    assert_one_error(result.output, "images")
    assert f"vid3d frames VIDEO --out {ws}" in result.output


# --------------------------------------------------------------------------- processes


def _start(args: list, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vid3d", *map(str, args)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _wait_for_stage(ws: Path, stage: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until ``proc`` is inside ``stage`` (its journal is open)."""
    journal = ws / ".vid3d" / "journal" / "journal.json"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if json.loads(journal.read_text())["stage"] == stage:
                return
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {stage}: {proc.stdout.read()}")
        time.sleep(0.01)
    pytest.fail(f"{stage} did not start")


#: An option of each stage's own section: changing it re-runs that stage (and those after).
RERUN = {
    "frames": "frames.jpeg_quality=94",
    "poses": "poses.seed=1",
    "splat": "splat.seed=1",
    "render": "render.crf=20",
}


@pytest.mark.parametrize("stage", ["frames", "poses", "splat", "render"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_in_every_stage(good, stage, sig):
    ws, before = good
    proc = _start(["reconstruct", data_path(CLIP), "--out", ws, *OPTIONS, "--set", RERUN[stage]])
    _wait_for_stage(ws, stage, proc)
    if stage != "frames":  # (the frames stage of this clip takes a fraction of a second)
        time.sleep(0.3)  # well inside the stage
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        # 130, or killed by SIGINT after the clean-up (Python does that when an interrupt
        # lands in its own shutdown): the shell reports both as 130
        assert proc.returncode in (130, -signal.SIGINT), output
        assert "Traceback" not in output and "interrupted" in output, output
        assert snapshot(ws) == before  # undone on the spot
    else:
        assert proc.returncode == -signal.SIGKILL
    up_to_date(ws, before)  # a killed stage is undone by the next command; nothing re-runs
    assert not list(ws.rglob("*.glog*")) and not list(ws.rglob("*.tmp-*"))


def test_two_writers_at_once(good):
    ws, before = good
    proc = _start(["train", ws, "--set", "splat.seed=1"])
    try:
        _wait_for_stage(ws, "splat", proc)
        result = cli("render", ws, "--force")
        assert result.exit_code == 3, result.output
        assert_one_error(result.output, "in use by", "vid3d train", str(proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGINT)
    assert snapshot(ws) == before


def _limit_file_size(nbytes: int):
    def apply():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


@pytest.mark.parametrize(
    "args",
    [
        ["train", "{ws}", "--set", "splat.seed=1"],
        ["poses", "{ws}", "--force"],
        ["render", "{ws}", "--force", "--resolution", "640x360"],
        ["export", "{ws}", "--format", "splat", "--out", "{ws}/splats/again.splat"],
    ],
    ids=["train", "poses", "render", "export"],
)
def test_file_size_limit_is_one_line_and_changes_nothing(good, args):
    ws, before = good
    limit = 64 << 10  # smaller than a checkpoint, a COLMAP database, a video or an export
    result = vid3d(*[a.format(ws=ws) for a in args], preexec_fn=_limit_file_size(limit))
    assert result.returncode != 0
    assert_one_error(result.stderr)
    assert "hint:" in result.stderr
    assert snapshot(ws) == before


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


needs_unshare = pytest.mark.skipif(
    not _can_unshare(), reason="needs `unshare -m` to mount a tmpfs or a read-only bind"
)


@needs_unshare
def test_disk_full_during_training(good, tmp_path):
    ws, before = good
    size_kb = sum(p.stat().st_size for p in ws.rglob("*") if p.is_file()) // 1024 + 300
    script = (
        f"mount -t tmpfs -o size={size_kb}k tmpfs {tmp_path / 'disk'} && "
        f"cp -a {ws} {tmp_path / 'disk'}/ws && "
        f"{sys.executable} -m vid3d train {tmp_path / 'disk'}/ws --set splat.seed=1; "
        f'echo rc=$?; {sys.executable} -c \'import json,sys; sys.path.insert(0, "{REPO}"); '
        f"from tests.test_reliability import snapshot; from pathlib import Path; "
        f'print("SNAP" + json.dumps(snapshot(Path("{tmp_path / "disk"}/ws"))))\''
    )
    (tmp_path / "disk").mkdir()
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    text = out.stdout + out.stderr
    assert "rc=0" not in text and "rc=" in text, text
    line = assert_one_error(out.stderr)
    assert "No space left on device" in line or "disk is full" in line, line
    snap = json.loads(text.split("SNAP", 1)[1].splitlines()[0])
    assert snap == before


@needs_unshare
def test_read_only_workspace(good):
    ws, before = good
    ro = ["unshare", "-m", "sh", "-c", f'mount --bind -o ro {ws} {ws} && exec "$0" "$@"']
    result = vid3d("render", ws, wrap=ro)  # up to date: nothing to write, so it works
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr
    result = vid3d("train", ws, "--set", "splat.seed=1", wrap=ro)
    assert result.returncode != 0
    assert "read-only" in assert_one_error(result.stderr).lower()
    assert snapshot(ws) == before
