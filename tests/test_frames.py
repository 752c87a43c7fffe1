"""The frames stage on real clips: cuts, overlays, bars, sharpness, motion, errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from tests.conftest import data_path
from vid3d.config import Config
from vid3d.errors import InputError, NotEnoughMotionError, VideoError
from vid3d.progress import CollectingReporter, NullReporter
from vid3d.stages import frames
from vid3d.video import analysis
from vid3d.video.decode import VideoReader, probe_video
from vid3d.workspace import Workspace

RE10K = "re10k/videos/0bf152ef84195293.mp4"  # 16 frames, 384x256, 8 fps, moving camera
DRONE = "edge/drone_with_scene_cut.mp4"  # 1280x720, 30 fps, 10 s, hard cut at 9.17 s
VIEWER = "gsplat/viewer_garden_480p.mp4"  # 640x324, variable frame rate, static UI overlay
TREE = "edge/static_camera_tree.avi"  # fixed camera, moving leaves
COGVIDEO = "ai_video/cogvideox_suv_dirt_road.mp4"  # 720x480, 8 fps, 49 frames


def small_config(**frames_fields) -> Config:
    cfg = Config()
    for k, v in frames_fields.items():
        setattr(cfg.frames, k, v)
    return cfg


def read_frames(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return [f.bgr() for f in reader.frames()]


def write_clip(path: Path, images: list[np.ndarray], fps: float, crf: int = 8) -> Path:
    """Write BGR frames as H.264 (near-lossless by default) with the bundled ffmpeg."""
    h, w = images[0].shape[:2]
    gen = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        quality=None,
        output_params=["-crf", str(crf)],
        macro_block_size=1,
        pix_fmt_out="yuv420p",
        ffmpeg_log_level="error",
    )
    gen.send(None)
    for img in images:
        gen.send(np.ascontiguousarray(img[:, :, ::-1]).tobytes())
    gen.close()
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def drone_run(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("drone"))
    metrics = frames.run(data_path(DRONE), ws, small_config(target_frames=30, max_size=320))
    return ws, metrics


# ------------------------------------------------------------------ scene cuts


def test_scene_cut_found_and_short_shot_excluded(drone_run):
    ws, m = drone_run
    assert len(m["shots"]) == 2
    cut = m["shots"][1]["start"]
    assert abs(cut - 9.17) <= 1 / 30 + 1e-6
    assert m["shot"] == 0 and m["shots"][0]["used"] and not m["shots"][1]["used"]
    doc = json.loads(ws.frames_json.read_text())
    kept = [f for f in doc["frames"] if f["kept"]]
    assert 20 <= len(kept) <= 30
    assert all(f["time"] < cut and f["shot"] == 0 for f in kept)
    assert all(f["reason"] == "other_shot" for f in doc["frames"] if f["time"] >= cut)
    names = sorted(p.name for p in ws.images.glob("*.jpg"))
    assert names == [f["image"] for f in kept]  # name order is time order
    assert m["output_size"] == [320, 180] and m["width"] == 1280
    img = cv2.imread(str(ws.images / names[0]))
    assert img.shape == (180, 320, 3)
    assert m["dropped"]["other_shot"] == 25 and sum(m["dropped"].values()) + m["kept"] == 300
    assert m["decode_passes"] == 1  # the kept frames came from the candidate pool
    assert not m["overlay_mask"] and not ws.masks.exists()  # an orbit's pivot is not an overlay


def test_other_shot_and_out_of_range_shot(tmp_path):
    ws = Workspace(tmp_path / "ws")
    cfg = small_config(target_frames=10, max_size=160)
    # the 0.8 s beach shot, filmed from high above, is all one plane: a homography
    # explains every pair (tests/test_verdict.py), so the parallax check would stop it
    cfg.frames.parallax_check = False
    m = frames.run(data_path(DRONE), ws, cfg, shot=1)
    assert m["shot"] == 1 and m["kept"] >= 8
    assert m["decode_passes"] == 2  # the pool is too coarse for a 0.8 s shot: decoded again
    doc = json.loads(ws.frames_json.read_text())
    assert all(f["time"] >= m["shots"][1]["start"] for f in doc["frames"] if f["kept"])
    with pytest.raises(InputError, match=r"shot 2 does not exist.*0: 0\.00-9\.17 s; 1: 9\.17-10\.00 s"):
        frames.run(data_path(DRONE), Workspace(tmp_path / "other"), cfg, shot=2)
    assert not (tmp_path / "other").exists()


def test_find_cuts_ignores_repeated_frames_and_flashes():
    scores = np.zeros((60, 2), np.float32)
    scores[1::2] = (0.05, 0.01)  # ordinary motion, every other frame repeated
    scores[30] = (0.5, 0.3)  # a cut
    scores[58] = (0.5, 0.3)  # too close to the end: a flash, not a shot
    assert analysis.find_cuts(scores, fps=10) == [30]


# ------------------------------------------------------------------ overlays


def test_ui_overlay_is_masked(tmp_path):
    ws = Workspace(tmp_path / "ws")
    m = frames.run(data_path(VIEWER), ws, Config())
    assert m["overlay_mask"] and m["output_size"] == [640, 324]
    masks = sorted(ws.masks.glob("*.png"))
    images = sorted(ws.images.glob("*.jpg"))
    assert [ws.mask_for(p.name) for p in images] == masks
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (324, 640) and set(np.unique(mask)) <= {0, 255}
    ignored = mask == 0
    # The overlay, read off the video's frames: a "Connected" panel at the top
    # right, an axis gizmo at the bottom left, a one-pixel line along the bottom.
    overlay = np.zeros_like(ignored)
    overlay[0:28, 515:640] = True  # panel (x 527-635, y 4-20) with a margin
    overlay[292:324, 0:26] = True  # gizmo (x 2-16, y 303-319) with a margin
    overlay[316:324, :] = True  # bottom line
    assert ignored[6:18, 532:630].mean() > 0.95  # the panel is covered
    assert ignored[306:318, 3:15].mean() > 0.5  # most of the gizmo too
    assert (ignored & overlay).sum() / ignored.sum() > 0.9  # little of the scene is masked
    assert 0.005 < m["mask_coverage"] < 0.05


def translucent_logo(shape: tuple[int, ...], box: tuple[int, int, int, int], alpha: float) -> np.ndarray:
    """The opacity map ``[h, w]`` float32 of a white logo box: a 2-pixel frame around
    the word "vid3d", as generated clips carry it."""
    a = np.zeros(shape[:2], np.uint8)
    x0, y0, x1, y1 = box
    cv2.rectangle(a, (x0, y0), (x1, y1), 255, 2)
    cv2.putText(a, "vid3d", (x0 + 18, y1 - 18), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 255, 2, cv2.LINE_AA)
    return a.astype(np.float32) / 255 * alpha


def test_translucent_logo_is_masked_whole_frame_lines_included(tmp_path):
    # a 60%-opaque logo box composited over the CogVideoX clip (the camera follows a
    # car: the scene behind the logo changes slowly)
    box = (560, 400, 700, 460)
    clip = read_frames(data_path(COGVIDEO))
    alpha = translucent_logo(clip[0].shape, box, 0.6)[..., None]
    marked = [np.clip(f * (1 - alpha) + 255 * alpha, 0, 255).astype(np.uint8) for f in clip]
    video = write_clip(tmp_path / "logo.mp4", marked, fps=8, crf=23)  # as a service delivers it
    ws = Workspace(tmp_path / "ws")
    m = frames.run(video, ws, Config())
    assert m["overlay_mask"] and m["output_size"] == [720, 480]
    ignored = cv2.imread(str(sorted(ws.masks.glob("*.png"))[0]), cv2.IMREAD_GRAYSCALE) == 0
    x0, y0, x1, y1 = box
    logo = np.zeros_like(ignored)
    logo[y0 - 1 : y1 + 2, x0 - 1 : x1 + 2] = True
    assert ignored[alpha[..., 0] > 0].mean() > 0.99  # every stroke, the thin frame too
    assert ignored[logo].mean() > 0.95  # and the box inside it
    near = np.zeros_like(ignored)
    near[y0 - 20 : y1 + 20, x0 - 20 : x1 + 20] = True
    assert ignored[~near].mean() < 0.002  # nothing else: not the car the camera follows, nor the sky


def test_no_overlay_no_masks_and_stale_masks_removed(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.masks.mkdir(parents=True)
    ws.mask_for("frame_00003.jpg").write_bytes(b"stale")
    m = frames.run(data_path(RE10K), ws, Config())
    assert not m["overlay_mask"] and not ws.masks.exists()


# ------------------------------------------------------------------ motion


def test_static_camera_stops_before_writing(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(NotEnoughMotionError, match="camera barely moves") as e:
        frames.run(data_path(TREE), ws, Config())
    assert "moving camera" in e.value.message and "travels" in e.value.hint
    assert not ws.root.exists()
    # earlier outputs stay untouched
    ok = Workspace(tmp_path / "ok")
    frames.run(data_path(RE10K), ok, Config())
    before = snapshot(ok.root)
    with pytest.raises(NotEnoughMotionError):
        frames.run(data_path(TREE), ok, Config())
    assert snapshot(ok.root) == before


def test_re10k_keeps_its_frames_and_moving_clips_pass(tmp_path, drone_run):
    ws = Workspace(tmp_path / "ws")
    m = frames.run(data_path(RE10K), ws, Config())
    assert m["decoded"] == 16 and m["kept"] >= 15 and m["output_size"] == [384, 256]
    assert len(list(ws.images.glob("*.jpg"))) == m["kept"]
    m2 = frames.run(data_path(COGVIDEO), Workspace(tmp_path / "cog"), small_config(max_size=240))
    assert m2["kept"] >= 40 and m2["motion"]["travel"] > 5 * Config().frames.min_motion
    m3 = frames.run(
        data_path(COGVIDEO), Workspace(tmp_path / "fps"), small_config(max_size=160, target_fps=2.0)
    )
    assert m3["selected"] == 12  # 6.1 s at 2 frames per second
    assert drone_run[1]["motion"]["travel"] > 5 * Config().frames.min_motion


def test_frozen_frames_are_dropped_as_no_motion(tmp_path):
    imgs = read_frames(data_path(RE10K))
    clip = imgs[:8] + [imgs[7]] * 8 + imgs[8:]  # the camera pauses for one second
    path = write_clip(tmp_path / "pause.mp4", clip, fps=8)
    m = frames.run(path, Workspace(tmp_path / "ws"), Config())
    assert m["decoded"] == 24 and m["dropped"].get("no_motion", 0) >= 7
    assert 15 <= m["kept"] <= 17


# ------------------------------------------------------------------ sampling


def test_sharpest_frame_per_window_beats_every_nth(tmp_path):
    src = [cv2.resize(f, (360, 240), interpolation=cv2.INTER_AREA) for f in read_frames(data_path(COGVIDEO))]
    blurred = {i for i in range(len(src)) if i % 3}  # two of every three frames
    clip = [cv2.GaussianBlur(f, (0, 0), 2.5) if i in blurred else f for i, f in enumerate(src)]
    path = write_clip(tmp_path / "blurry.mp4", clip, fps=8)
    m = frames.run(path, Workspace(tmp_path / "ws"), small_config(target_frames=16))
    doc = json.loads((tmp_path / "ws" / "frames.json").read_text())
    kept = [f["index"] for f in doc["frames"] if f["kept"]]
    nth = [int(round(x)) for x in np.linspace(0, len(src) - 1, 16)]

    def sharp(idx):
        return float(np.mean([analysis.sharpness(cv2.cvtColor(clip[i], cv2.COLOR_BGR2GRAY)) for i in idx]))

    assert m["kept"] >= 14
    assert len(set(kept) & blurred) <= 1 and len(set(nth) & blurred) >= 8
    assert sharp(kept) > 1.5 * sharp(nth)
    assert sum(f["reason"] == "blurrier_in_window" for f in doc["frames"]) >= 30


def test_sharpest_in_windows_short_clip_keeps_all():
    t = np.arange(10) / 10
    assert analysis.sharpest_in_windows(t, np.ones(10), 20) == list(range(10))
    assert analysis.sharpest_in_windows(t, np.arange(10.0), 2) == [4, 9]


# ------------------------------------------------------------------ geometry, time


def test_letterbox_bars_are_cropped(tmp_path):
    imgs = read_frames(data_path(RE10K))  # 384x256
    boxed = [cv2.copyMakeBorder(f, 40, 40, 24, 24, cv2.BORDER_CONSTANT, value=(0, 0, 0)) for f in imgs]
    path = write_clip(tmp_path / "boxed.mp4", boxed, fps=8)
    ws = Workspace(tmp_path / "ws")
    m = frames.run(path, ws, Config())
    x0, y0, x1, y1 = m["crop_box"]
    assert abs(x0 - 24) <= 2 and abs(y0 - 40) <= 2 and abs(x1 - 408) <= 2 and abs(y1 - 296) <= 2
    img = cv2.imread(str(sorted(ws.images.glob("*.jpg"))[0]))
    assert abs(img.shape[1] - 384) <= 4 and abs(img.shape[0] - 256) <= 4
    for edge in (img[0], img[-1], img[:, 0], img[:, -1]):
        assert edge.mean() > 25  # picture, not bar


def test_bar_detector_ignores_dark_but_moving_rows():
    det = analysis.BarDetector()
    rng = np.random.default_rng(0)
    for _ in range(10):
        f = rng.integers(0, 255, (60, 80), dtype=np.uint8)
        f[:6] = 0
        f[54:] = 200  # a constant grey bar
        f[20] = 10  # dark, but not at the border
        det.add(f)
    assert det.crop_box() == (0, 6, 80, 54)


def test_rotation_metadata_is_applied(tmp_path):
    src = data_path(RE10K)
    rotated = tmp_path / "rot90.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-display_rotation",
            "90",
            "-i",
            str(src),
            "-c",
            "copy",
            str(rotated),
        ],
        check=True,
    )
    info = probe_video(rotated)
    assert info.rotation == 90 and (info.width, info.height) == (256, 384)
    ws = Workspace(tmp_path / "ws")
    m = frames.run(rotated, ws, Config())
    assert m["rotation"] == 90 and m["output_size"] == [256, 384]
    first = cv2.imread(str(sorted(ws.images.glob("*.jpg"))[0]))
    upright = cv2.rotate(read_frames(src)[0], cv2.ROTATE_90_COUNTERCLOCKWISE)
    assert np.abs(first.astype(int) - upright).mean() < 4


def test_frame_time_is_presentation_time(tmp_path):
    ws = Workspace(tmp_path / "ws")
    frames.run(data_path(VIEWER), ws, Config())
    doc = json.loads(ws.frames_json.read_text())
    times = [f["time"] for f in doc["frames"]]
    assert len(times) == 83
    assert times[1] == pytest.approx(0.002667, abs=1e-4)  # not 1 / 60.7 fps
    assert times[-1] == pytest.approx(1.3527, abs=1e-3)


def test_rerun_replaces_outputs_atomically(tmp_path):
    ws = Workspace(tmp_path / "ws")
    frames.run(data_path(RE10K), ws, Config())
    m = frames.run(data_path(RE10K), ws, small_config(target_frames=6))
    names = sorted(p.name for p in ws.images.iterdir())
    doc = json.loads(ws.frames_json.read_text())
    assert names == [f["image"] for f in doc["frames"] if f["kept"]] and len(names) == m["kept"] <= 6
    assert [p.name for p in ws.root.iterdir() if p.name.startswith(".")] == []  # no temporary folders


# ------------------------------------------------------------------ errors


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist") as e:
        frames.run(tmp_path / "nope.mp4", Workspace(tmp_path / "ws"), Config())
    assert not isinstance(e.value, VideoError) and e.value.hint


def test_text_file_renamed_mp4_is_a_video_error(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="cannot be read as a video") as e:
        frames.run(fake, Workspace(tmp_path / "ws"), Config())
    assert e.value.hint and not (tmp_path / "ws").exists()


def test_truncated_video(tmp_path):
    src = data_path(COGVIDEO)
    fast = tmp_path / "faststart.mp4"  # index first, so that a cut file still opens
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(src),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(fast),
        ],
        check=True,
    )
    data = fast.read_bytes()
    cfg = small_config(max_size=160)
    # most of it decodes: a warning, and the frames that decoded
    mostly = tmp_path / "mostly.mp4"
    mostly.write_bytes(data[: int(len(data) * 0.8)])
    rep = CollectingReporter(NullReporter())
    m = frames.run(mostly, Workspace(tmp_path / "a"), cfg, rep)
    assert 25 <= m["decoded"] < 49 and m["coverage"] < 0.95
    assert any("decoded only up to" in w for w in rep.warnings)
    assert any("decoded only up to" in w for w in m["warnings"])
    # a small part decodes: an error
    little = tmp_path / "little.mp4"
    little.write_bytes(data[: int(len(data) * 0.25)])
    with pytest.raises(VideoError, match="truncated or damaged"):
        frames.run(little, Workspace(tmp_path / "b"), cfg)
    # index at the end (the usual mp4 layout), cut: the file does not open at all
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[:300_000])
    with pytest.raises(VideoError):
        frames.run(cut, Workspace(tmp_path / "c"), cfg)
