"""The render stage: the trained splats along a camera path, as an H.264 video.

Reads:
    ``<ws>/splats/ckpt.pt`` (the splats, in the normalised training frame),
    ``<ws>/sparse/0`` through :func:`vid3d.sfm.load_scene` (the input cameras and
    points, and for ``side_by_side`` the training images), ``<ws>/frames.json``
    (the frames' times in the clip, if present), or a camera path JSON file given
    as ``render.path``.

Writes (each atomically, all renamed into place only after everything succeeded):
    ``<ws>/renders/<name>.mp4``   the video (H.264 yuv420p, BT.709, faststart)
    ``<ws>/renders/<name>.webp``  an animated preview (or ``.gif``)
    ``<ws>/renders/<name>.png``   a thumbnail (the first frame)
    ``<ws>/renders/<name>.json``  the camera path, in the SfM frame, for editing
                                  (not rewritten when the path came from a file)

``<name>`` is the path type ("orbit"...), ``side_by_side``, or the stem of the
path file. Frames are rendered one at a time and streamed to ffmpeg, so memory
does not grow with the length of the video.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vid3d.camera_paths import CameraPath, input_frame_indices, letterbox_intrinsics, make_path
from vid3d.config import Config, RenderConfig, is_path_file, validate
from vid3d.device import choose_device
from vid3d.errors import ConfigError, MissingStageError, RenderError, Vid3dError
from vid3d.progress import NULL_REPORTER, Reporter
from vid3d.video.encode import VideoWriter, letterbox, output_size, write_png, write_preview
from vid3d.workspace import Workspace, atomic_path

PREVIEW_FORMATS = ("webp", "gif", "none")


def render_inputs(
    splats: dict[str, torch.Tensor], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Activated Gaussian parameters, as :func:`vid3d.splats.rasterize.rasterize` takes them.

    Args:
        splats: Raw parameters (``means``, ``quats``, log ``scales``, logit
            ``opacities``, ``sh0`` [N, 1, 3], ``shN`` [N, K-1, 3]).

    Returns:
        ``means`` [N, 3], ``quats`` [N, 4], ``scales`` [N, 3], ``opacities`` [N] and
        ``colors`` [N, K, 3] (SH coefficients), detached, float32, on ``device``.
    """
    missing = [k for k in ("means", "quats", "scales", "opacities", "sh0") if k not in splats]
    if missing:
        raise RenderError(f"the splats lack {', '.join(missing)}", "re-run `vid3d train --force`")
    with torch.no_grad():
        s = {k: v.detach().to(device=device, dtype=torch.float32) for k, v in splats.items()}
        sh = [s["sh0"]] + ([s["shN"]] if "shN" in s and s["shN"].shape[1] > 0 else [])
        return {
            "means": s["means"],
            "quats": s["quats"],
            "scales": torch.exp(s["scales"]),
            "opacities": torch.sigmoid(s["opacities"]),
            "colors": torch.cat(sh, dim=1),
        }


def render_frames(
    splats: dict[str, torch.Tensor],
    sh_degree: int,
    cameras: CameraPath,
    *,
    device: torch.device | str = "cpu",
    backend: str = "auto",
    background: Sequence[float] = (0.0, 0.0, 0.0),
    color_correction: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Render the splats from each camera, one frame at a time.

    A camera equal to the previous one is not rendered again.

    Args:
        splats: Raw parameters (see :func:`render_inputs`), in the cameras' frame.
        sh_degree: SH degree to evaluate (at most that of ``shN``).
        cameras: The F cameras (``camtoworlds`` [F, 4, 4], OpenCV axes; ``Ks``
            [F, 3, 3] pixel intrinsics) and the image size, in the splats' frame.
        device: Torch device. Default: "cpu".
        backend: Rasterizer backend ("auto", "gsplat", "cpu", "torch"). Default: "auto".
        background: RGB in [0, 1]. Default: black.
        color_correction: [3, 4] affine colour transform applied to every frame, as a
            delta from the identity (the trainer's per-frame exposure correction; see
            :func:`clip_colors`). Default: None (the scene's canonical colours).

    Yields:
        [height, width, 3] uint8 RGB frames.
    """
    from vid3d.splats.rasterize import rasterize

    device = torch.device(device)
    g = render_inputs(splats, device)
    K_max = g["colors"].shape[1]
    sh_degree = int(min(sh_degree, int(np.sqrt(K_max)) - 1))
    bg = torch.tensor([list(background)], dtype=torch.float32, device=device)  # [1, 3]
    c2w = np.asarray(cameras.camtoworlds, dtype=np.float64)  # [F, 4, 4]
    Ks = np.asarray(cameras.Ks, dtype=np.float64)  # [F, 3, 3]
    width, height = cameras.width, cameras.height
    A = b = None
    if color_correction is not None:
        E = torch.as_tensor(np.asarray(color_correction, dtype=np.float32), device=device)  # [3, 4]
        A, b = (E[:, :3] + torch.eye(3, device=device)).T, E[:, 3]
    last_key, last = None, None
    for i in range(len(c2w)):
        key = (c2w[i].tobytes(), Ks[i].tobytes())
        if key == last_key:
            yield last
            continue
        viewmat = torch.tensor(np.linalg.inv(c2w[i])[None], dtype=torch.float32, device=device)
        K = torch.tensor(Ks[i][None], dtype=torch.float32, device=device)
        try:
            # No torch.no_grad() here: the inputs are detached, so no graph is built, and
            # the CPU kernel's first-call warm-up runs a backward pass of its own.
            colors, _, _ = rasterize(
                g["means"],
                g["quats"],
                g["scales"],
                g["opacities"],
                g["colors"],
                viewmat,
                K,
                width,
                height,
                sh_degree=sh_degree,
                backgrounds=bg,
                backend=backend,
            )
        except Vid3dError as e:  # the rasterizer's own errors speak of training
            raise RenderError(e.message, e.hint) from e
        rgb = colors[0, ..., :3] if A is None else colors[0, ..., :3] @ A + b
        img = (rgb.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
        last_key, last = key, img
        yield img


def _load_image(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise RenderError(
            f"cannot read the input frame {path}", "re-run `vid3d frames` or render without side_by_side"
        )
    return img[..., ::-1]


def render_video(
    splats: dict[str, torch.Tensor],
    sh_degree: int,
    cameras: CameraPath,
    out_path: Path,
    *,
    fps: float = 30,
    crf: int = 18,
    x264_preset: str = "medium",
    device: torch.device | str = "cpu",
    backend: str = "auto",
    background: Sequence[float] = (0.0, 0.0, 0.0),
    side_images: Sequence[Path | np.ndarray] | None = None,
    preview: str = "webp",
    preview_width: int = 480,
    thumbnail: bool = True,
    camera_path: CameraPath | None = None,
    color_correction: np.ndarray | None = None,
    reporter: Reporter = NULL_REPORTER,
) -> dict[str, Any]:
    """Render the splats along cameras and stream the frames into an H.264 mp4.

    ``out_path`` and its companions (``.webp``/``.gif`` preview, ``.png``
    thumbnail, ``.sheet.png`` contact sheet of 9 frames, ``.json`` camera path)
    appear together at the end; on any error
    none of them is written and earlier files of those names are kept.

    Args:
        splats: Raw Gaussian parameters in the cameras' frame (see :func:`render_inputs`).
        sh_degree: SH degree to evaluate.
        cameras: The F cameras to render from, in the splats' frame: ``camtoworlds``
            [F, 4, 4] (OpenCV axes), ``Ks`` [F, 3, 3] pixel intrinsics for
            ``width x height`` images, the size of the rendered frames (even). Its
            ``fps`` and ``name`` are not used.
        out_path: The .mp4 to write.
        fps: Frames per second. Default: 30.
        crf: x264 constant rate factor. Default: 18.
        x264_preset: x264 speed preset. Default: "medium".
        device: Torch device. Default: "cpu".
        backend: Rasterizer backend. Default: "auto".
        background: RGB in [0, 1]. Default: black.
        side_images: One input image (path or [h, w, 3] uint8) per frame, shown
            left of the render, letterboxed to ``width x height``; the video is
            ``2 * width`` wide. Default: None.
        preview: "webp", "gif" or "none". Default: "webp".
        preview_width: Preview width in pixels. Default: 480.
        thumbnail: Write ``<out>.png`` (the first frame). Default: True.
        camera_path: Saved as ``<out>.json`` when given: the path as a user edits it,
            in the SfM frame (``cameras`` are in the splats' frame). Default: None.
        color_correction: See :func:`render_frames`. Default: None.
        reporter: Progress display. Default: none.

    Returns:
        A dict: ``frames``, ``fps``, ``width``, ``height`` (of the video),
        ``seconds`` (its length), ``render_seconds``, ``encode_seconds`` (x264 and
        the preview), ``render_fps`` (frames rendered per second, the first frame
        left out), ``first_frame_seconds`` (includes rasterizer warm-up),
        ``outputs`` (kind -> path string: ``video``, ``thumbnail``, ``sheet``,
        ``preview``, ``path``).
    """
    out_path = Path(out_path)
    n, width, height = len(cameras), cameras.width, cameras.height
    _check_video_inputs(n, cameras.Ks, side_images, preview)
    frames = render_frames(
        splats,
        sh_degree,
        cameras,
        device=device,
        backend=backend,
        background=background,
        color_correction=color_correction,
    )
    if side_images is not None:
        frames = _beside_inputs(frames, side_images, width, height)
    video_w = width * 2 if side_images is not None else width
    with ExitStack() as stack:
        tmp_video = stack.enter_context(atomic_path(out_path))
        writer = VideoWriter(tmp_video, video_w, height, fps=fps, crf=crf, preset=x264_preset)
        sampled, (render_s, encode_s, first_s) = _encode_frames(frames, n, writer, out_path.name, reporter)
        companions, preview_s = _write_companions(
            stack,
            out_path,
            tmp_video,
            sampled,
            thumbnail=thumbnail,
            preview=preview,
            preview_width=preview_width,
            fps=fps,
            camera_path=camera_path,
            reporter=reporter,
        )
        encode_s += preview_s
    outputs = {"video": str(out_path), **companions}
    return _video_metrics(n, fps, video_w, height, render_s, encode_s, first_s, outputs)


def _check_video_inputs(
    n: int, Ks: np.ndarray, side_images: Sequence[Path | np.ndarray] | None, preview: str
) -> None:
    """Raise unless there are cameras, one intrinsics (and side image) each, and a known preview."""
    if n < 1:
        raise RenderError("the camera path has no frames", "raise render.seconds or render.fps")
    if len(Ks) != n:
        raise RenderError(f"{n} cameras but {len(Ks)} intrinsics")
    if side_images is not None and len(side_images) != n:
        raise RenderError(f"{n} cameras but {len(side_images)} side-by-side images")
    if preview not in PREVIEW_FORMATS:
        raise ConfigError(f"unknown preview format {preview!r}", f"use one of {', '.join(PREVIEW_FORMATS)}")


def _beside_inputs(
    frames: Iterator[np.ndarray], side_images: Sequence[Path | np.ndarray], width: int, height: int
) -> Iterator[np.ndarray]:
    """Put each frame's input image on its left, letterboxed to ``width x height``; a repeat is not reread."""
    last_src, last_img = None, None
    for src, frame in zip(side_images, frames):
        if isinstance(src, np.ndarray):
            img = src
        elif last_src == src:
            img = last_img
        else:
            img = _load_image(Path(src))
            last_src, last_img = src, img
        yield np.concatenate([letterbox(img, width, height), frame], axis=1)


SHEET_GRID = (3, 3)
"""Rows and columns of the contact sheet written beside every video."""
SHEET_WIDTH = 1280
"""Width of the contact sheet in pixels (its frames are scaled to fit)."""


def contact_sheet(frames: Sequence[np.ndarray], columns: int, width: int = SHEET_WIDTH) -> np.ndarray:
    """The frames in a grid of ``columns`` (RGB uint8, all one size), scaled so that the
    sheet is ``width`` pixels wide, a 4-pixel dark gap between them; empty cells dark."""
    h, w = frames[0].shape[:2]
    gap = 4
    cw = max(8, (width - gap * (columns - 1)) // columns)
    ch = max(8, round(h * cw / w))
    rows = -(-len(frames) // columns)
    sheet = np.full((rows * ch + gap * (rows - 1), columns * cw + gap * (columns - 1), 3), 24, np.uint8)
    for k, f in enumerate(frames):
        r, c = divmod(k, columns)
        y, x = r * (ch + gap), c * (cw + gap)
        sheet[y : y + ch, x : x + cw] = cv2.resize(f, (cw, ch), interpolation=cv2.INTER_AREA)
    return sheet


def sheet_indices(n: int, cells: int) -> list[int]:
    """The frames of an ``n``-frame video a contact sheet of ``cells`` shows: evenly spread,
    first and last included."""
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, cells))})


def _encode_frames(
    frames: Iterator[np.ndarray], n: int, writer: VideoWriter, name: str, reporter: Reporter
) -> tuple[list[np.ndarray], tuple[float, float, float]]:
    """Stream ``n`` frames into ``writer``; the contact sheet's frames (the first one
    first) and (render, encode, first frame) seconds."""
    render_s = encode_s = first_s = 0.0
    first = None
    wanted = set(sheet_indices(n, SHEET_GRID[0] * SHEET_GRID[1]))
    kept: list[np.ndarray] = []
    with reporter.task(f"Rendering {name}", total=n) as task, writer:
        for i in range(n):
            t0 = time.perf_counter()
            frame = next(frames)
            t1 = time.perf_counter()
            writer.write(frame)
            t2 = time.perf_counter()
            render_s += t1 - t0
            encode_s += t2 - t1
            if first is None:
                first, first_s = frame, t1 - t0
            if i in wanted:
                kept.append(frame)
            task.advance()
            task.update(info=f"{(i + 1) / max(render_s + encode_s, 1e-9):.2f} frames/s")
        t2 = time.perf_counter()
    encode_s += time.perf_counter() - t2  # ffmpeg finishing the file
    return kept, (render_s, encode_s, first_s)


def _write_companions(
    stack: ExitStack,
    out_path: Path,
    tmp_video: Path,
    sampled: list[np.ndarray],
    *,
    thumbnail: bool,
    preview: str,
    preview_width: int,
    fps: float,
    camera_path: CameraPath | None,
    reporter: Reporter,
) -> tuple[dict[str, str], float]:
    """Write the thumbnail (``sampled[0]``), the contact sheet (``sampled``), preview and
    path file beside ``out_path``; their paths and preview seconds."""
    outputs: dict[str, str] = {}
    preview_s = 0.0
    if thumbnail:
        png = out_path.with_suffix(".png")
        write_png(stack.enter_context(atomic_path(png)), sampled[0])
        outputs["thumbnail"] = str(png)
    sheet = out_path.with_suffix(".sheet.png")
    write_png(stack.enter_context(atomic_path(sheet)), contact_sheet(sampled, SHEET_GRID[1]))
    outputs["sheet"] = str(sheet)
    if preview != "none":
        prev = out_path.with_suffix(f".{preview}")
        t3 = time.perf_counter()
        with reporter.task(f"Writing {prev.name}", total=None):
            write_preview(
                tmp_video,
                stack.enter_context(atomic_path(prev)),
                width=preview_width,
                fps=min(float(fps), 15.0),
                max_seconds=10.0,
                format=preview,
            )
        preview_s = time.perf_counter() - t3
        outputs["preview"] = str(prev)
    if camera_path is not None:
        js = out_path.with_suffix(".json")
        camera_path.save(stack.enter_context(atomic_path(js)))
        outputs["path"] = str(js)
    return outputs, preview_s


def _video_metrics(
    n: int,
    fps: float,
    width: int,
    height: int,
    render_s: float,
    encode_s: float,
    first_s: float,
    outputs: dict[str, str],
) -> dict[str, Any]:
    """:func:`render_video`'s figures of a video of ``n`` frames and its outputs."""
    return {
        "frames": n,
        "fps": float(fps),
        "width": width,
        "height": height,
        "seconds": n / float(fps),
        "render_seconds": round(render_s, 3),
        "encode_seconds": round(encode_s, 3),
        # The first frame pays for kernel compilation and warm-up: leave it out.
        "render_fps": round(
            (n - 1) / max(render_s - first_s, 1e-9) if n > 1 else 1.0 / max(render_s, 1e-9), 3
        ),
        "first_frame_seconds": round(first_s, 3),
        "outputs": outputs,
    }


def input_times(ws: Workspace, names: list[str]) -> np.ndarray | None:
    """Times in the clip (seconds) of the images ``names``, from ``frames.json``.

    Returns:
        [N] float64, or None when ``frames.json`` is missing, unreadable, lacks one
        of the images or its times do not increase.
    """
    import json

    try:
        doc = json.loads(ws.frames_json.read_text())
        by_name = {f["image"]: float(f["time"]) for f in doc["frames"] if f.get("image")}
        times = np.array([by_name[n] for n in names], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        return None
    return times


def build_path(
    cfg: RenderConfig, scene, times: np.ndarray | None = None, *, kind: str | None = None, amount: float = 1.0
) -> CameraPath:
    """The camera path ``cfg`` asks for, from a :class:`vid3d.scene.Scene`.

    Args:
        cfg: The render configuration (path type, seconds, fps, size...).
        scene: The reconstructed cameras and points.
        times: [N] times of the scene's frames in the clip, for the "input" path.
            Default: evenly spaced.
        kind: The path type, instead of ``cfg.path``. Default: ``cfg.path``.
        amount: Size of the path in (0, 1] (see :mod:`vid3d.camera_paths`). Default: 1.

    Returns:
        The path in the scene's frame.
    """
    width, height = output_size(cfg.resolution, cfg.aspect, (scene.width, scene.height))
    n_frames = _n_frames(cfg)
    return make_path(
        kind or cfg.path,
        scene.camtoworlds,
        scene.Ks,
        scene.width,
        scene.height,
        width,
        height,
        n_frames,
        fps=cfg.fps,
        points=scene.points,
        radius_factor=cfg.radius_factor,
        height_factor=cfg.height_factor,
        smoothing=cfg.smoothing,
        times=times,
        amount=amount,
    )


def clip_colors(state: dict[str, Any], choice: str, test_every: int) -> np.ndarray | None:
    """The colour correction a video is rendered under, from a checkpoint's trainer state.

    The splats hold the scene's canonical colours; each training frame's own exposure
    and white balance is a learned affine correction on top (``splat.exposure``). A clip
    whose exposure drifted renders darker or brighter than it looked without one.

    Args:
        state: :attr:`vid3d.splats.model.Checkpoint.state` (its ``exposure``: [N, 3, 4]
            deltas from the identity, one per registered frame in time order).
        choice: "clip" (the mean of the training frames' corrections), "canonical"
            (none), or "frame:N", registered frame N's (0 first; a held-out frame's is
            interpolated from its neighbours).
        test_every: ``splat.test_every``, which says which frames were held out.

    Returns:
        [3, 4] float32 delta from identity, or None for the canonical colours.

    Raises:
        ConfigError: The frame number is not one of the registered frames.
    """
    from vid3d.splats.trainer import held_out_ids, interpolated_exposure

    E = state.get("exposure")
    if choice == "canonical" or not isinstance(E, torch.Tensor) or E.ndim != 3 or len(E) == 0:
        return None
    E = E.detach().float().cpu()
    held = set(held_out_ids(len(E), test_every))
    train = [i for i in range(len(E)) if i not in held]
    if choice == "clip":
        return E[train].mean(dim=0).numpy()
    i = int(choice.split(":", 1)[1])
    if not 0 <= i < len(E):
        raise ConfigError(
            f"render.colors={choice}: there is no registered frame {i} (0 to {len(E) - 1})",
            'use "clip", "canonical" or "frame:N" with N in that range',
        )
    return interpolated_exposure(E, train, i).numpy()


def _resolve_backend(backend: str, device: torch.device) -> str:
    from vid3d.splats.rasterize import resolve_backend

    try:
        return resolve_backend(backend, device)
    except Vid3dError as e:
        raise RenderError(e.message, e.hint) from e


def _n_frames(cfg: RenderConfig) -> int:
    if not cfg.fps > 0 or cfg.fps > 240:
        raise ConfigError(f"render.fps must be in 1-240, got {cfg.fps}", "use 24, 30 or 60")
    if not cfg.seconds > 0:
        raise ConfigError(f"render.seconds must be positive, got {cfg.seconds}", "use e.g. 6")
    return max(1, int(round(cfg.seconds * cfg.fps)))


def _rel(ws: Workspace, path: str) -> str:
    try:
        return str(Path(path).relative_to(ws.root))
    except ValueError:
        return str(path)


def _scene(ws: Workspace, from_file: bool, reporter: Reporter):
    """The workspace's :class:`vid3d.scene.Scene`; None for a path file on a workspace
    without a COLMAP model (rendered without its coverage)."""
    from vid3d.sfm import load_scene

    try:
        return load_scene(ws)
    except MissingStageError:
        if not from_file:
            raise
        reporter.log("no COLMAP model in the workspace: the path's coverage is not measured")
        return None


def _camera_path(
    ws: Workspace, rc: RenderConfig, scene, cov, reporter: Reporter
) -> tuple[CameraPath, list[Path] | None, CameraPath | None]:
    """The path to render (SfM frame), the side-by-side input images, and the path to save as JSON."""
    from vid3d.auto_path import choose_path

    if is_path_file(rc.path):
        path = CameraPath.load(Path(rc.path))
        path.name = Path(rc.path).stem
        path.fps = float(rc.fps)
        path.coverage = path.about = None  # measured again, for these splats; chosen by the user
        reporter.log(f"camera path from {rc.path}: {len(path)} frames at {path.width}x{path.height}")
        return path, None, None
    times = input_times(ws, scene.names)
    if not rc.side_by_side:
        if rc.path == "auto":
            path = choose_path(
                lambda kind, amount: build_path(rc, scene, times, kind=kind, amount=amount),
                scene,
                cov,
                rc.coverage_target,
                reporter,
            )
        else:
            path = build_path(rc, scene, times)
        return path, None, path
    width, height = output_size(rc.resolution, rc.aspect, (scene.width, scene.height))
    idx = input_frame_indices(len(scene), _n_frames(rc), times)
    Ks = letterbox_intrinsics(scene.Ks[idx], scene.width, scene.height, width, height)
    path = CameraPath(
        camtoworlds=scene.camtoworlds[idx],
        Ks=Ks,
        width=width,
        height=height,
        fps=float(rc.fps),
        loop=False,
        name="side_by_side",
    )
    return path, [scene.image_paths[i] for i in idx], None


def run(ws: Workspace, cfg: Config, reporter: Reporter = NULL_REPORTER) -> dict[str, Any]:
    """Render the workspace's splats along ``cfg.render.path`` into ``renders/``.

    Args:
        ws: The workspace (needs ``splats/ckpt.pt`` and ``sparse/0``).
        cfg: The configuration (``render`` section, ``device``, ``splat.backend``,
            ``splat.background``).
        reporter: Progress display. Default: none.

    Returns:
        JSON-serialisable metrics: ``path`` (type or file), ``name``, ``frames``,
        ``fps``, ``width``, ``height``, ``seconds``, ``render_seconds``,
        ``encode_seconds``, ``render_fps``, ``first_frame_seconds``, ``gaussians``,
        ``device``, ``backend``,
        ``side_by_side``, ``video_bytes``, ``video`` (the mp4, relative to the
        workspace) and ``outputs`` (every file written, relative to the workspace,
        the mp4 first).

    Raises:
        MissingStageError: No trained splats (run ``vid3d train``).
        ConfigError: An invalid render option.
        RenderError: Rendering or encoding failed.
    """
    from vid3d.auto_path import measure, training_views
    from vid3d.splats.model import load_checkpoint

    rc = cfg.render
    validate(cfg)  # the one validator; the pipeline has run it already, a direct call has not
    from_file = is_path_file(rc.path)
    if not ws.ckpt.is_file():
        raise MissingStageError(
            f"no trained splats in {ws.root} (splats/ckpt.pt is missing)",
            "run `vid3d train` on the workspace first",
        )
    choice = choose_device(cfg.device)
    if choice.reason:
        reporter.warn(choice.reason)
    device = choice.device
    backend = _resolve_backend(cfg.splat.backend, device)
    ckpt = load_checkpoint(ws.ckpt, device="cpu", require_finished=True)  # valid and finished
    T = np.asarray(ckpt.normalization, dtype=np.float64)  # SfM frame -> splats' frame

    scene = _scene(ws, from_file, reporter)
    splats = ckpt.splats
    cov = training_views(render_inputs(splats, device), scene, T, backend) if scene is not None else None
    path, side_images, save_path = _camera_path(ws, rc, scene, cov, reporter)
    coverage = measure(path, cov) if cov is not None else None
    out = ws.renders / f"{path.name}.mp4"
    result = render_video(
        splats,
        ckpt.sh_degree,
        path.transformed(T),
        out,
        fps=rc.fps,
        crf=rc.crf,
        x264_preset=rc.x264_preset,
        device=device,
        backend=cfg.splat.backend,
        background=cfg.splat.background,
        side_images=side_images,
        preview=rc.preview,
        preview_width=rc.preview_width,
        camera_path=save_path,
        color_correction=clip_colors(ckpt.state, rc.colors, cfg.splat.test_every),
        reporter=reporter,
    )
    covered = (
        f"; coverage {coverage['mean']:.0%} on average, {coverage['worst']:.0%} at worst" if coverage else ""
    )
    reporter.log(
        f"wrote {_rel(ws, str(out))}: {result['frames']} frames, "
        f"{result['width']}x{result['height']}, {result['render_fps']:.2f} frames/s{covered}"
    )
    return {
        "path": rc.path if from_file else ("input" if rc.side_by_side else rc.path),
        "name": path.name,
        **{k: v for k, v in result.items() if k != "outputs"},
        "gaussians": int(ckpt.splats["means"].shape[0]),
        "device": str(device),
        "backend": backend,
        "side_by_side": bool(rc.side_by_side),
        "colors": rc.colors,
        "coverage": coverage,
        **({"choice": path.about} if path.about else {}),
        "video_bytes": out.stat().st_size,
        "video": _rel(ws, result["outputs"]["video"]),
        "outputs": [_rel(ws, v) for v in result["outputs"].values()],
    }
