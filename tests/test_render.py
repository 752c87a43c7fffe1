"""Video output and the render stage: real encodes, probed from the files, and real splats;
and, at the end, how the device and rasterizer are chosen on a machine whose GPU cannot be
used (tested here with a pretend GPU; the real one is tests/test_cuda.py's)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import GARDEN
from vid3d.camera_paths import CameraPath, letterbox_intrinsics, make_path
from vid3d.config import Config
from vid3d.errors import ConfigError, MissingStageError, RenderError
from vid3d.splats.model import Checkpoint, init_splats, save_checkpoint
from vid3d.stages import render
from vid3d.video.encode import (
    VideoWriter,
    encoder_status,
    ffmpeg_exe,
    inspect_mp4,
    letterbox,
    output_size,
    write_png,
    write_preview,
)
from vid3d.workspace import Workspace

needs_data = pytest.mark.skipif(not GARDEN.is_file(), reason="shared test data not found")


def auto_device() -> str:
    """What device "auto" resolves to here: CUDA where PyTorch sees a GPU and gsplat's
    CUDA kernels load, else the CPU."""
    from vid3d.splats.rasterize import prepare_cuda_backend

    cuda = torch.cuda.is_available() and prepare_cuda_backend()["state"] == "loaded"
    return "cuda" if cuda else "cpu"


def decode(path: Path) -> np.ndarray:
    """All frames of a video as [F, H, W, 3] uint8 RGB (PyAV, honouring the colour tags)."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def moving_bar(i: int, w: int = 64, h: int = 36) -> np.ndarray:
    f = np.zeros((h, w, 3), np.uint8)
    f[:, (2 * i) % w : (2 * i) % w + 6] = (255, 200, 40)
    f[..., 2] = (8 * i) % 256
    return f


@pytest.mark.parametrize(
    "resolution,aspect,size",
    [
        ("720p", "16:9", (1280, 720)),
        ("1080p", "16:9", (1920, 1080)),
        ("1440p", "16:9", (2560, 1440)),
        ("2160p", "16:9", (3840, 2160)),
        ("480p", "16:9", (854, 480)),
        ("360p", "16:9", (640, 360)),
        ("1080p", "9:16", (1080, 1920)),
        ("720p", "1:1", (720, 720)),
        ("360p", "input", (540, 360)),
        ("641x361", "16:9", (642, 362)),
    ],
)
def test_output_size(resolution: str, aspect: str, size: tuple[int, int]) -> None:
    assert output_size(resolution, aspect, input_size=(384, 256)) == size


def test_output_size_errors() -> None:
    with pytest.raises(ConfigError):
        output_size("4k")
    with pytest.raises(ConfigError):
        output_size("720p", "wide")


@pytest.mark.parametrize("fps", [24, 30, 60])
def test_writer_makes_youtube_ready_h264(tmp_path: Path, fps: int) -> None:
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 36, fps=fps, crf=23, preset="veryfast") as w:
        for i in range(fps // 2 + 3):
            w.write(moving_bar(i))
    info = inspect_mp4(out)
    assert info["codec"] == "h264" and info["profile"] == "High"
    assert info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (64, 36)
    assert info["frames"] == fps // 2 + 3
    assert info["fps"] == pytest.approx(fps)
    assert (info["color_space"], info["color_primaries"], info["color_trc"], info["color_range"]) == (
        "bt709",
        "bt709",
        "bt709",
        "tv",
    )
    assert info["faststart"] and info["atoms"].index("moov") < info["atoms"].index("mdat")
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_writer_converts_colour_as_bt709(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (200, 150, 50)]
    out = tmp_path / "c.mp4"
    with VideoWriter(out, 32, 32, fps=5, crf=0) as w:
        for c in colours:
            w.write(np.full((32, 32, 3), c, np.uint8))
    frames = decode(out)
    np.testing.assert_allclose(frames[:, 16, 16].astype(int), colours, atol=3)
    # The ffmpeg command line reads the tags the same way.
    raw = subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    frames2 = np.frombuffer(raw, np.uint8).reshape(-1, 32, 32, 3)
    np.testing.assert_allclose(frames2[:, 16, 16].astype(int), colours, atol=3)


def test_writer_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 36, fps=24) as w:
        for i in range(5):
            w.write(moving_bar(i))
    before = out.read_bytes()
    with pytest.raises(KeyError):
        with VideoWriter(out, 64, 36, fps=24) as w:
            w.write(moving_bar(0))
            raise KeyError("interrupted")
    with pytest.raises(RenderError):  # a frame of the wrong size
        with VideoWriter(out, 64, 36, fps=24) as w:
            w.write(np.zeros((36, 60, 3), np.uint8))
    with pytest.raises(RenderError):  # no frames at all
        with VideoWriter(tmp_path / "empty.mp4", 64, 36):
            pass
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    with pytest.raises(RenderError):
        VideoWriter(out, 63, 36)


def test_preview_and_thumbnail(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 36, fps=24) as w:
        for i in range(12):
            w.write(moving_bar(i))
    webp = write_preview(out, tmp_path / "v.webp", width=32)
    gif = write_preview(out, tmp_path / "v.gif", width=32)
    png = write_png(tmp_path / "v.png", moving_bar(3))
    data = webp.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP" and b"ANIM" in data[:64]
    assert gif.read_bytes()[:6] == b"GIF89a"
    img = cv2.imread(str(png))[..., ::-1]
    np.testing.assert_array_equal(img, moving_bar(3))


def test_encoder_status() -> None:
    status = encoder_status()
    assert status["ok"], status["error"]
    assert status["version"].startswith("ffmpeg version")


def test_letterbox() -> None:
    img = np.full((256, 384, 3), 200, np.uint8)
    out = letterbox(img, 128, 72)
    assert out.shape == (72, 128, 3)
    assert out[:, 64].min() == 200 and out[36, 0].max() == 0  # bars left and right


# --- rendering real splats ----------------------------------------------------------


@pytest.fixture(scope="module")
def garden():
    """Gaussians from a subsample of the garden point cloud, and its cameras."""
    d = np.load(GARDEN)
    rng = np.random.default_rng(0)
    keep = rng.choice(len(d["means3d"]), 20000, replace=False)
    points, colors = d["means3d"][keep].astype(np.float64), d["colors"][keep]
    splats = {k: v.detach() for k, v in init_splats(points, colors, 1, 0.8, 1.0).items()}
    c2w = np.linalg.inv(d["viewmats"].astype(np.float64))
    return dict(
        splats=splats,
        points=points,
        colors=colors,
        c2w=c2w,
        Ks=d["Ks"].astype(np.float64),
        width=int(d["width"]),
        height=int(d["height"]),
    )


@needs_data
def test_render_orbit_of_real_splats(tmp_path: Path, garden) -> None:
    g = garden
    path = make_path(
        "orbit", g["c2w"], g["Ks"], g["width"], g["height"], 64, 36, 8, fps=8, points=g["points"]
    )
    out = tmp_path / "renders" / "orbit.mp4"
    res = render.render_video(
        g["splats"],
        1,
        path,
        out,
        fps=8,
        crf=20,
        x264_preset="veryfast",
        preview="webp",
        preview_width=32,
        camera_path=path,
    )
    assert res["frames"] == 8 and (res["width"], res["height"]) == (64, 36)
    assert res["seconds"] == pytest.approx(1.0) and res["render_fps"] > 0
    assert set(res["outputs"]) == {"video", "preview", "thumbnail", "sheet", "path"}
    for p in res["outputs"].values():
        assert Path(p).is_file()
    info = inspect_mp4(out)
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"], info["frames"]) == (
        "h264",
        "yuv420p",
        64,
        36,
        8,
    )
    assert info["fps"] == pytest.approx(8) and info["faststart"]
    frames = decode(out).astype(np.float64)
    for f in frames:  # not blank: lit, textured
        assert f.mean() > 20 and f.std() > 5
    assert np.abs(frames[0] - frames[4]).mean() > 2  # the camera moves
    # the contact sheet: all 8 frames in a 3-column grid 1280 pixels wide, in order
    sheet = cv2.imread(res["outputs"]["sheet"])[..., ::-1].astype(np.float64)
    cw = (render.SHEET_WIDTH - 2 * 4) // 3
    ch = round(36 * cw / 64)
    assert sheet.shape == (3 * ch + 8, 3 * cw + 8, 3)
    for k in (0, 4, 7):
        r, c = divmod(k, 3)
        cell = sheet[r * (ch + 4) : r * (ch + 4) + ch, c * (cw + 4) : c * (cw + 4) + cw]
        small = cv2.resize(frames[k], (cw, ch), interpolation=cv2.INTER_AREA)
        assert np.abs(cell - small).mean() < 8  # the frame (the video went through x264)
        assert np.abs(cell - cv2.resize(frames[(k + 4) % 8], (cw, ch))).mean() > np.abs(cell - small).mean()
    assert sheet[2 * (ch + 4) :, 2 * (cw + 4) :].max() <= 24  # the ninth cell is empty
    back = CameraPath.load(Path(res["outputs"]["path"]))
    np.testing.assert_array_equal(back.camtoworlds, path.camtoworlds)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "orbit.json",
        "orbit.mp4",
        "orbit.png",
        "orbit.sheet.png",
        "orbit.webp",
    ]


@needs_data
def test_render_side_by_side_doubles_width(tmp_path: Path, garden) -> None:
    g = garden
    W, H = 64, 36
    # The input view: an image of the splats from input camera 0 at the input size.
    Ks = letterbox_intrinsics(g["Ks"][[0, 0, 1]], g["width"], g["height"], W, H)
    image = np.full((g["height"], g["width"], 3), 180, np.uint8)
    out = tmp_path / "sbs.mp4"
    res = render.render_video(
        g["splats"],
        1,
        CameraPath(g["c2w"][[0, 0, 1]], Ks, W, H),
        out,
        fps=3,
        side_images=[image, image, image],
        preview="none",
        thumbnail=False,
    )
    assert res["width"] == 2 * W
    info = inspect_mp4(out)
    assert (info["width"], info["height"], info["frames"]) == (2 * W, H, 3)
    f = decode(out)[0].astype(int)
    assert abs(f[H // 2, W // 2].mean() - 180) < 6  # the input image on the left


@needs_data
def test_render_error_leaves_nothing(tmp_path: Path, garden) -> None:
    g = garden
    out = tmp_path / "orbit.mp4"
    out.write_bytes(b"an earlier video")
    path = make_path("orbit", g["c2w"], g["Ks"], g["width"], g["height"], 64, 36, 2)
    with pytest.raises(RenderError):
        render.render_video(
            g["splats"], 1, path, out, backend="gsplat", camera_path=path
        )  # CPU tensors: gsplat fails
    assert out.read_bytes() == b"an earlier video"
    assert [p.name for p in tmp_path.iterdir()] == ["orbit.mp4"]


# --- the stage through a workspace -------------------------------------------------


@needs_data
def test_run_from_a_path_file(tmp_path: Path, garden) -> None:
    """`vid3d render --path my.json` on a trained workspace (no SfM model needed)."""
    g = garden
    ws = Workspace(tmp_path / "ws")
    cfg = Config()
    with pytest.raises(MissingStageError) as err:
        render.run(ws, cfg)
    assert "vid3d train" in err.value.hint
    # Splats in a normalised frame: x_train = T @ x_sfm.
    T = np.diag([0.5, 0.5, 0.5, 1.0])
    T[:3, 3] = (0.1, -0.2, 0.3)
    splats = dict(g["splats"])
    splats["means"] = splats["means"] * 0.5 + torch.tensor([0.1, -0.2, 0.3])
    splats["scales"] = splats["scales"] + float(np.log(0.5))
    save_checkpoint(ws.ckpt, Checkpoint(splats=splats, step=1, sh_degree=1, normalization=T))
    path = make_path("turntable", g["c2w"], g["Ks"], g["width"], g["height"], 64, 36, 6, points=g["points"])
    path_file = tmp_path / "my_path.json"
    path.save(path_file)
    cfg.render.path = str(path_file)
    cfg.render.fps = 6
    cfg.render.preview = "gif"
    cfg.render.preview_width = 32
    cfg.render.x264_preset = "veryfast"
    res = render.run(ws, cfg)
    assert res["name"] == "my_path" and res["frames"] == 6 and res["fps"] == 6
    assert (res["width"], res["height"]) == (64, 36) and res["device"] == auto_device()
    assert res["video"] == "renders/my_path.mp4"
    assert res["outputs"] == [
        "renders/my_path.mp4",
        "renders/my_path.png",
        "renders/my_path.sheet.png",
        "renders/my_path.gif",
    ]
    import json

    json.dumps(res)  # JSON-serialisable
    info = inspect_mp4(ws.renders / "my_path.mp4")
    assert info["frames"] == 6 and info["faststart"]
    frames = decode(ws.renders / "my_path.mp4").astype(np.float64)
    # Same picture as rendering the un-normalised splats along the path directly.
    direct = np.stack(list(render.render_frames(g["splats"], 1, path)))
    assert np.abs(frames - direct).mean() < 4
    assert frames.mean() > 20

    cfg.render.side_by_side = True
    with pytest.raises(ConfigError):
        render.run(ws, cfg)


def synthetic_workspace(root: Path) -> Workspace:
    """A trained workspace: a synthetic COLMAP model (pycolmap), its frames, and splats
    made from its points in the normalised training frame."""
    import cv2
    import pycolmap

    from vid3d.scene import normalization_transform
    from vid3d.sfm import load_scene

    opts = pycolmap.SyntheticDatasetOptions(
        num_rigs=1,
        num_cameras_per_rig=1,
        num_frames_per_rig=6,
        num_points3D=2000,
        camera_width=96,
        camera_height=64,
        camera_model_id=pycolmap.CameraModelId.PINHOLE,
        camera_params=[80.0, 80.0, 48.0, 32.0],
    )
    rec = pycolmap.synthesize_dataset(opts)
    ws = Workspace(root)
    ws.sparse0.mkdir(parents=True)
    rec.write_binary(str(ws.sparse0))
    scene = load_scene(ws)
    ws.images.mkdir()
    for i, name in enumerate(scene.names):
        cv2.imwrite(str(ws.images / name), np.full((64, 96, 3), 40 * i + 20, np.uint8))
    T = normalization_transform(scene.camtoworlds)
    pts = scene.transformed(T).points
    colors = (
        np.clip(scene.points - scene.points.min(0), 0, None) / np.ptp(scene.points, 0) * 200 + 55
    ).astype(np.uint8)  # colour by position
    splats = {k: v.detach() for k, v in init_splats(pts, colors, 1, 0.9, 1.5).items()}
    save_checkpoint(ws.ckpt, Checkpoint(splats=splats, step=1, sh_degree=1, normalization=T))
    return ws


def test_run_orbit_on_a_workspace(tmp_path: Path, monkeypatch) -> None:
    """`vid3d render --path orbit --seconds 1 --fps 8 --resolution 64x36` end to end."""
    ws = synthetic_workspace(tmp_path / "ws")
    cfg = Config()
    cfg.render.path, cfg.render.seconds, cfg.render.fps = "orbit", 1.0, 8
    cfg.render.resolution, cfg.render.x264_preset, cfg.render.preview_width = "64x36", "veryfast", 32
    res = render.run(ws, cfg)
    assert (res["path"], res["name"], res["frames"], res["fps"]) == ("orbit", "orbit", 8, 8.0)
    assert (res["width"], res["height"], res["seconds"]) == (64, 36, 1.0)
    assert res["outputs"] == [
        "renders/orbit.mp4",
        "renders/orbit.png",
        "renders/orbit.sheet.png",
        "renders/orbit.webp",
        "renders/orbit.json",
    ]
    assert res["gaussians"] == 2000 and res["video_bytes"] > 0
    info = inspect_mp4(ws.renders / "orbit.mp4")
    assert (
        info["codec"],
        info["pix_fmt"],
        info["width"],
        info["height"],
        info["frames"],
        info["fps"],
        info["faststart"],
    ) == ("h264", "yuv420p", 64, 36, 8, 8.0, True)
    frames = decode(ws.renders / "orbit.mp4").astype(np.float64)
    assert all(f.mean() > 5 and f.std() > 5 for f in frames)

    # Render the saved path again: the same video.
    cfg.render.path = str(ws.renders / "orbit.json")
    again = render.run(ws, cfg)
    assert again["name"] == "orbit" and again["outputs"] == [
        "renders/orbit.mp4",
        "renders/orbit.png",
        "renders/orbit.sheet.png",
        "renders/orbit.webp",
    ]
    assert np.abs(decode(ws.renders / "orbit.mp4").astype(np.float64) - frames).mean() < 1.0

    # An impossible option is refused before any work
    cfg.render.path = "orbit"
    cfg.device, cfg.splat.backend = "cpu", "gsplat"  # gsplat cannot render CPU tensors
    with pytest.raises(ConfigError):
        render.run(ws, cfg)
    # and a failure half way through leaves the earlier video as it was
    cfg.splat.backend = "auto"
    written = []

    def fail_after_two(self, frame):
        written.append(frame)
        if len(written) > 2:
            raise RenderError("the encoder stopped")
        return real_write(self, frame)

    real_write = render.VideoWriter.write
    monkeypatch.setattr(render.VideoWriter, "write", fail_after_two)
    with pytest.raises(RenderError, match="the encoder stopped"):
        render.run(ws, cfg)
    assert inspect_mp4(ws.renders / "orbit.mp4")["frames"] == 8
    assert not [p for p in ws.renders.iterdir() if ".tmp" in p.name]


def test_the_video_takes_the_clips_colours(tmp_path: Path) -> None:
    """A clip that brightened as it went (its frames' learned exposure corrections grow):
    the default video is rendered under their mean, "canonical" under none, "frame:N"
    under frame N's, a held-out frame's interpolated from its neighbours."""
    from vid3d.splats.model import load_checkpoint

    ws = synthetic_workspace(tmp_path / "ws")
    ckpt = load_checkpoint(ws.ckpt, "cpu")
    gain = 0.04 * torch.arange(6, dtype=torch.float32)  # frame i is 1 + 0.04 i as bright
    exposure = torch.zeros(6, 3, 4)
    exposure[:, :3, :3] = gain[:, None, None] * torch.eye(3)
    ckpt.state = {"exposure": exposure}
    save_checkpoint(ws.ckpt, ckpt)
    cfg = Config()
    cfg.render.path, cfg.render.seconds, cfg.render.fps, cfg.render.preview = "orbit", 0.25, 8, "none"
    cfg.render.resolution, cfg.splat.test_every = "64x36", 4  # frame 2 is held out

    def frames(colors: str) -> np.ndarray:
        cfg.render.colors = colors
        res = render.run(ws, cfg)
        assert res["colors"] == colors
        return decode(ws.renders / "orbit.mp4").astype(np.float64)

    canonical = frames("canonical")
    lit = (canonical > 30) & (canonical < 200)  # neither black background nor near saturation

    def gain_of(colors: str) -> float:
        return float(frames(colors)[lit].mean() / canonical[lit].mean())

    train = [0, 1, 3, 4, 5]
    assert gain_of("clip") == pytest.approx(1 + float(gain[train].mean()), abs=0.02)
    assert gain_of("frame:5") == pytest.approx(1.20, abs=0.02)
    assert gain_of("frame:2") == pytest.approx(1.08, abs=0.02)  # between frames 1 and 3
    cfg.render.colors = "frame:6"
    with pytest.raises(ConfigError, match="no registered frame 6"):
        render.run(ws, cfg)


def test_run_side_by_side_on_a_workspace(tmp_path: Path) -> None:
    ws = synthetic_workspace(tmp_path / "ws")
    cfg = Config()
    cfg.render.side_by_side = True
    cfg.render.seconds, cfg.render.fps, cfg.render.resolution = 1.0, 12, "96x64"
    cfg.render.preview = "none"
    res = render.run(ws, cfg)
    assert (res["name"], res["path"], res["side_by_side"]) == ("side_by_side", "input", True)
    info = inspect_mp4(ws.renders / "side_by_side.mp4")
    assert (info["width"], info["height"], info["frames"]) == (192, 64, 12)
    frames = decode(ws.renders / "side_by_side.mp4").astype(np.float64)
    # Input frame i (grey level 40 i + 20) is held for 2 output frames, on the left.
    left = frames[:, 32, 48].mean(axis=1)
    np.testing.assert_allclose(left, np.repeat(40 * np.arange(6) + 20, 2), atol=4)
    assert frames[:, :, 96:].std() > 5  # the render on the right


def test_side_by_side_follows_the_frames_times(tmp_path: Path) -> None:
    """With frames.json, each input frame is held until the next one's time in the clip."""
    import json

    ws = synthetic_workspace(tmp_path / "ws")
    from vid3d.sfm import load_scene

    names = load_scene(ws).names
    times = [0.0, 0.5, 1.0, 2.5, 2.75, 3.0]  # uneven, as kept frames are
    ws.frames_json.write_text(
        json.dumps(
            {"frames": [{"index": i, "time": t, "image": n} for i, (t, n) in enumerate(zip(times, names))]}
        )
    )
    assert list(render.input_times(ws, names)) == times
    cfg = Config()
    cfg.render.side_by_side = True
    cfg.render.seconds, cfg.render.fps, cfg.render.resolution = 1.0, 7, "96x64"
    cfg.render.preview = "none"
    render.run(ws, cfg)
    left = decode(ws.renders / "side_by_side.mp4").astype(np.float64)[:, 32, 48].mean(axis=1)
    # Output frame k shows the clip at 3.6 s * k / 7 = 0, 0.51, 1.03, 1.54, 2.06, 2.57, 3.09 s.
    expected = 40 * np.array([0, 1, 2, 2, 2, 3, 5]) + 20
    np.testing.assert_allclose(left, expected, atol=4)


@pytest.mark.parametrize(
    "field,value",
    [
        ("path", "zigzag"),
        ("resolution", "4k"),
        ("aspect", "wide"),
        ("fps", 0),
        ("seconds", -1.0),
        ("crf", 60),
        ("x264_preset", "warp"),
        ("preview", "mov"),
        ("radius_factor", 0.0),
    ],
)
def test_bad_render_options_fail_before_any_work(tmp_path: Path, field: str, value) -> None:
    cfg = Config()
    setattr(cfg.render, field, value)
    with pytest.raises(ConfigError):
        render.run(Workspace(tmp_path / "no_workspace"), cfg)


# --- choosing the device and the rasterizer (a pretend GPU whose kernels are missing) -----


def test_gsplat_renders_only_where_cuda_and_its_kernels_are(tmp_path: Path) -> None:
    """The gsplat backend renders CUDA tensors where PyTorch sees a GPU and gsplat's kernels
    load, and fails with a RenderError anywhere else."""
    splats = {
        k: v.detach()
        for k, v in init_splats(
            np.random.default_rng(0).uniform(-1, 1, (200, 3)), np.full((200, 3), 128, np.uint8), 0, 0.8, 1.0
        ).items()
    }
    c2w = np.eye(4)
    c2w[2, 3] = -4.0
    K = np.array([[40.0, 0, 32], [0, 40.0, 18], [0, 0, 1]])
    cameras = CameraPath(c2w[None], K[None], 64, 36)

    def frames():
        return list(render.render_frames(splats, 0, cameras, device=auto_device(), backend="gsplat"))

    if auto_device() == "cuda":
        cpu = list(render.render_frames(splats, 0, cameras))
        assert np.abs(frames()[0].astype(float) - cpu[0]).mean() <= 1.0
    else:
        with pytest.raises(RenderError):
            frames()


@pytest.fixture
def gpu_without_kernels(monkeypatch):
    """PyTorch "sees" one GPU, and gsplat's CUDA kernels are missing (its backend module
    imported with ``_C = None``, as gsplat leaves it without a CUDA toolkit)."""
    import sys
    import types

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Pretend GPU")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    backend = types.ModuleType("gsplat.cuda._backend")
    backend._C = None
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", backend)


def test_auto_falls_back_to_the_cpu_when_gsplat_has_no_cuda_kernels(gpu_without_kernels):
    from vid3d.device import choose_device, cuda_fallback_reason, resolve_device
    from vid3d.errors import TrainingError
    from vid3d.splats.rasterize import cuda_backend_status, resolve_backend

    st = cuda_backend_status()
    assert (st["state"], st["usable"]) == ("failed", False)
    choice = choose_device("auto")
    assert choice.device == torch.device("cpu")
    assert "CUDA kernels" in choice.reason and "docs.gsplat.studio/whl" in choice.reason
    assert resolve_device("auto") == torch.device("cpu")
    assert "running on the CPU" in cuda_fallback_reason()
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"
    for device in ("cuda", "cuda:0"):  # asked for explicitly: one error line with the fix
        with pytest.raises(ConfigError) as err:
            resolve_device(device)
        line = err.value.one_line()
        assert "\n" not in line and "CUDA kernels" in line and "nvcc" in line
    for backend in ("gsplat", "auto"):  # CUDA tensors: nothing else can rasterize them
        with pytest.raises(TrainingError) as err:
            resolve_backend(backend, torch.device("cuda"))
        assert "\n" not in err.value.one_line() and "nvcc" in err.value.hint
    with pytest.raises(ConfigError, match="sees 1 GPU"):
        resolve_device("cuda:1")


def test_training_on_the_cpu_says_why_the_gpu_is_not_used(gpu_without_kernels, tmp_path):
    from tests.synthetic import make_scene
    from vid3d.config import SplatConfig
    from vid3d.progress import NULL_REPORTER, CollectingReporter
    from vid3d.splats.trainer import train

    scene = make_scene(tmp_path / "scene", n_views=4, width=32, height=24, n_gaussians=300)
    rec = CollectingReporter(NULL_REPORTER)
    _, m = train(
        scene,
        SplatConfig(steps=2, eval_every=0, checkpoint_every=0, sh_degree=0),
        tmp_path / "ckpt.pt",
        device=torch.device("cpu"),
        config_hash="t",
        reporter=rec,
    )
    assert m["backend"] == "cpu" and m["device"] == "cpu"
    assert any("PyTorch sees a CUDA GPU" in w and "running on the CPU" in w for w in rec.warnings), (
        rec.warnings
    )


def test_doctor_says_when_gsplat_has_no_cuda_kernels(gpu_without_kernels):
    from vid3d.doctor import gpu_checks

    checks = {c.name: c for c in gpu_checks()}
    assert checks["CUDA"].ok and "Pretend GPU (1 GPU)" in checks["CUDA"].detail
    kernels = checks["gsplat CUDA kernels"]
    assert not kernels.ok and not kernels.required  # vid3d still works, on the CPU
    assert "did not load" in kernels.detail and "docs.gsplat.studio/whl" in kernels.detail
    assert "CUDA rasterizer in use" not in checks["gsplat"].detail


def test_without_cuda_nothing_of_gsplats_cuda_code_is_imported() -> None:
    import sys

    from vid3d.splats.rasterize import cuda_backend_status, prepare_cuda_backend

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert prepare_cuda_backend()["state"] == cuda_backend_status()["state"] == "no-cuda"
    assert "gsplat.cuda._backend" not in sys.modules


def test_kernel_hint_names_the_prebuilt_wheel_only_where_gsplat_has_one() -> None:
    from vid3d.splats.rasterize import cuda_kernels_hint

    hint = cuda_kernels_hint("2.4.1+cu124", "12.4", (3, 10))
    assert "pip install gsplat==1.5.3 --index-url https://docs.gsplat.studio/whl/pt24cu124" in hint
    hint = cuda_kernels_hint("2.13.0", "13.0", (3, 12))
    assert "--index-url" not in hint and "none for torch 2.13.0 + CUDA 13.0 on Python 3.12" in hint
    assert "CUDA 13.0 toolkit (nvcc)" in hint and "ninja" in hint
    assert "CPU build" in cuda_kernels_hint("2.13.0+cpu", "", (3, 11))


def test_batch_workers_keep_the_parents_gpu_mask(monkeypatch) -> None:
    from vid3d.batch import gpu_for_slot, visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # SLURM or a container
    gpus = visible_gpus(count=2)
    assert [gpu_for_slot(s, gpus) for s in range(4)] == ["2", "3", "2", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert [gpu_for_slot(s, visible_gpus(count=2)) for s in range(2)] == ["0", "1"]
    uuids = "GPU-8e1d2c3a-0000-1111-2222-333344445555,MIG-4a5b6c7d-aaaa-bbbb-cccc-ddddeeeeffff"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuids)
    assert visible_gpus(count=2) == uuids.split(",")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,bogus")  # CUDA stops at what it cannot use
    assert visible_gpus(count=2) == ["1", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus(count=0) == []


def test_batch_job_count_and_ray_gpus_follow_every_jobs_device(monkeypatch) -> None:
    import vid3d.batch.gpus as batch

    monkeypatch.setattr(batch, "_torch_gpu_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cpu_jobs = batch.default_jobs("cpu")
    assert batch.default_jobs(["cpu", "auto"]) == 4  # one GPU each, whatever the first says
    assert batch.default_jobs(["cuda:1", "cuda:1"]) == 1  # both on the GPU they name
    assert batch.default_jobs(["cpu", "cpu"]) == cpu_jobs
    monkeypatch.setattr(batch, "_torch_gpu_count", lambda: 0)
    assert batch.default_jobs(["auto", "cuda"]) == cpu_jobs
    requests = {d: batch.ray_gpu_request(d, cluster_gpus=2) for d in ("cuda", "cuda:1", "auto", "cpu")}
    assert requests == {"cuda": 1, "cuda:1": 1, "auto": 1, "cpu": 0}
    assert batch.ray_gpu_request("auto", cluster_gpus=0) == 0
    assert batch.ray_gpu_request("cuda:1", cluster_gpus=0) == 1  # and _run_ray refuses to wait
    assert batch.ray_gpu_request("auto", cluster_gpus=2, requested=0.5) == 0.5


def test_batch_prepares_the_kernels_once_in_the_parent_only_for_gpu_jobs(monkeypatch) -> None:
    import vid3d.batch.gpus as batch
    import vid3d.splats.rasterize as rz
    from vid3d.config import Config

    calls = []
    monkeypatch.setattr(
        rz,
        "prepare_cuda_backend",
        lambda **kw: calls.append(kw) or {"state": "missing", "detail": "no kernels", "hint": "install them"},
    )
    jobs = []
    for device in ("cpu", "auto", "cuda"):
        cfg = Config()
        cfg.device = device
        jobs.append(
            batch.Job(video=Path("v.mp4"), rel="v.mp4", name=device, workspace=Path("ws"), config=cfg)
        )
    monitor = batch.NullMonitor()
    monkeypatch.setattr(batch, "_torch_gpu_count", lambda: 0)
    assert batch.prepare_gpu_workers(jobs, monitor) is None and not calls  # no GPU here
    monkeypatch.setattr(batch, "_torch_gpu_count", lambda: 2)
    assert batch.prepare_gpu_workers(jobs[:1], monitor) is None and not calls  # CPU jobs only
    st = batch.prepare_gpu_workers(jobs, monitor)
    assert st["state"] == "missing" and len(calls) == 1
    assert monitor.warnings == ["batch: no kernels: jobs with device auto run on the CPU (install them)"]
