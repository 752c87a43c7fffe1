"""H.264 video output through the ffmpeg bundled with imageio-ffmpeg, and probing.

:class:`VideoWriter` streams RGB frames to ffmpeg as they are rendered (memory flat
in the number of frames) and writes an mp4 that plays everywhere and uploads to
YouTube as it is: H.264 (libx264, High profile) in yuv420p, BT.709 colour (matrix,
primaries, transfer, limited range) converted and tagged, closed GOPs of half a
second with 2 B-frames, and the ``moov`` atom first (``+faststart``). The file is
written to a temporary name and renamed into place only when ffmpeg succeeded.

Also: output sizes from presets (:func:`output_size`), an animated WebP/GIF
preview made from a finished video (:func:`write_preview`), a PNG thumbnail
(:func:`write_png`), :func:`inspect_mp4`, which reads codec, pixel format, size, frame
count, rate, colour tags and atom order back from a written file, and
:func:`encoder_status` for ``vid3d doctor``.
"""

from __future__ import annotations

import math
import os
import re
import struct
import subprocess
import tempfile
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vid3d.errors import ConfigError, InputError, RenderError, storage_hint
from vid3d.workspace import atomic_path

RESOLUTIONS = {"360p": 360, "480p": 480, "720p": 720, "1080p": 1080, "1440p": 1440, "2160p": 2160}
"""Preset name -> length of the short side in pixels."""
ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4", "input")
"""Named aspect ratios (any "W:H" works); "input" keeps the input frames' aspect."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # missing package or binary
        raise RenderError(f"the bundled ffmpeg is unavailable: {e}", "pip install imageio-ffmpeg") from e


def _even(x: float) -> int:
    """The nearest even integer (halves round up), at least 2."""
    return max(2, 2 * int(math.floor(x / 2.0 + 0.5)))


def parse_aspect(aspect: str, input_size: tuple[int, int] | None = None) -> float:
    """Width / height of an aspect string: "16:9", "9:16", "1:1", "W:H" or "input".

    Args:
        aspect: The aspect ratio.
        input_size: (width, height) of the input frames, needed for "input".
    """
    if aspect == "input":
        if input_size is None:
            raise ConfigError(
                'render.aspect="input" needs the input frames\' size', 'use an aspect such as "16:9"'
            )
        return input_size[0] / input_size[1]
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[:/x]\s*(\d+(?:\.\d+)?)\s*", aspect)
    if not m or float(m.group(1)) <= 0 or float(m.group(2)) <= 0:
        raise ConfigError(f"unknown aspect ratio {aspect!r}", f"use one of {', '.join(ASPECTS)} or W:H")
    return float(m.group(1)) / float(m.group(2))


def output_size(
    resolution: str, aspect: str = "16:9", input_size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Width and height of the video, both even.

    A preset ("720p"...) gives the length of the short side, so "1080p" is
    1920x1080 at 16:9 and 1080x1920 at 9:16 (Shorts); "WIDTHxHEIGHT" is taken as
    it is (rounded to even numbers) and ignores ``aspect``.

    Args:
        resolution: "360p", "480p", "720p", "1080p", "1440p", "2160p" or "WIDTHxHEIGHT".
        aspect: See :func:`parse_aspect`. Default: "16:9".
        input_size: (width, height) of the input frames, for ``aspect="input"``.

    Returns:
        (width, height) in pixels.
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", resolution)
    if m:
        w, h = int(m.group(1)), int(m.group(2))
        if w < 2 or h < 2 or w > 8192 or h > 8192:
            raise ConfigError(f"video size {resolution} is out of range", "use 2 to 8192 pixels a side")
        return _even(w), _even(h)
    if resolution not in RESOLUTIONS:
        raise ConfigError(
            f"unknown resolution {resolution!r}", f"use one of {', '.join(RESOLUTIONS)} or WIDTHxHEIGHT"
        )
    short = RESOLUTIONS[resolution]
    ratio = parse_aspect(aspect, input_size)
    if ratio >= 1:
        return _even(short * ratio), short
    return short, _even(short / ratio)


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale an image to fit inside ``width x height``, centred on black.

    Args:
        image: [h, w, 3] uint8.

    Returns:
        [height, width, 3] uint8.
    """
    import cv2

    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    small = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small[: height - y0, : width - x0]
    return out


class VideoWriter:
    """Stream RGB frames into an H.264 mp4, written atomically.

    Use as a context manager; on an exception inside the ``with`` block (or an
    ffmpeg failure) nothing is left at ``path`` and an earlier file there is kept::

        with VideoWriter(path, 1280, 720, fps=30) as writer:
            for frame in frames:  # [720, 1280, 3] uint8
                writer.write(frame)

    Args:
        path: The .mp4 to write.
        width: Frame width in pixels (even).
        height: Frame height in pixels (even).
        fps: Frames per second. Default: 30.
        crf: x264 constant rate factor, 0-51 (lower is better). Default: 18.
        preset: x264 speed preset ("ultrafast" ... "veryslow"). Default: "medium".
    """

    X264_PRESETS = (
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
    )

    def __init__(
        self, path: Path, width: int, height: int, fps: float = 30, crf: int = 18, preset: str = "medium"
    ) -> None:
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise RenderError(
                f"H.264 in yuv420p needs an even frame size, got {width}x{height}",
                "use an even width and height",
            )
        if not 0 <= int(crf) <= 51:
            raise ConfigError(f"render.crf must be in 0-51, got {crf}", "17-23 is usual")
        if preset not in self.X264_PRESETS:
            raise ConfigError(f"unknown x264 preset {preset!r}", f"use one of {', '.join(self.X264_PRESETS)}")
        if not fps > 0:
            raise ConfigError(f"render.fps must be positive, got {fps}", "use 24, 30 or 60")
        self.path = Path(path)
        self.width, self.height, self.fps = int(width), int(height), fps
        self.crf, self.preset = int(crf), preset
        self.frames = 0
        self._stack: ExitStack | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    def command(self, out: Path) -> list[str]:
        """The ffmpeg command line writing to ``out``."""
        rate = Fraction(self.fps).limit_denominator(1001)
        gop = max(1, int(round(float(self.fps) / 2)))  # closed GOP of half a second (YouTube)
        return [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{self.width}x{self.height}",
            "-framerate",
            str(rate),
            "-i",
            "pipe:0",
            "-an",
            # RGB -> limited-range BT.709 YCbCr (swscale defaults to BT.601 otherwise), and
            # tag the frames: ffmpeg 7 takes the colour tags from the frames, not the options.
            "-vf",
            "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,setparams="
            "colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
            "-c:v",
            "libx264",
            "-preset",
            self.preset,
            "-crf",
            str(self.crf),
            # crf 0 is lossless, which needs the High 4:4:4 Predictive profile.
            *(["-profile:v", "high"] if self.crf > 0 else []),
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(gop),
            "-bf",
            "2",
            "-flags",
            "+cgop",
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
            "-color_range",
            "tv",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(out),
        ]

    def __enter__(self) -> VideoWriter:
        self._stack = ExitStack()
        try:
            tmp = self._stack.enter_context(atomic_path(self.path))
            self._log = self._stack.enter_context(tempfile.TemporaryFile())
            self._proc = subprocess.Popen(
                self.command(tmp), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log
            )
        except OSError as e:
            self._stack.__exit__(type(e), e, e.__traceback__)  # a failure: nothing is renamed
            raise RenderError(f"cannot start ffmpeg: {e}", "check `vid3d doctor`") from e
        except BaseException as e:  # Ctrl-C while starting: as a failure, not a finished file
            self._stack.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one frame.

        Args:
            frame: [height, width, 3] uint8 RGB (float frames in [0, 1] are converted).
        """
        if self._proc is None:
            raise RenderError("VideoWriter.write called outside its `with` block")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if frame.shape != (self.height, self.width, 3):
            raise RenderError(
                f"frame {self.frames} is {frame.shape}, the video is {self.height}x{self.width}x3"
            )
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError) as e:
            raise RenderError(
                f"ffmpeg stopped while encoding {self.path.name}: {self._stderr()}",
                "check free disk space and `vid3d doctor`",
            ) from e
        self.frames += 1

    def _stderr(self) -> str:
        if self._proc is not None and self._proc.poll() is None:
            return "(still running)"
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip()
        return text[-500:] or f"exit code {self._proc.returncode}"

    def __exit__(self, exc_type, exc, tb) -> bool:
        proc, stack = self._proc, self._stack
        self._proc = None
        try:
            if exc_type is None:
                try:
                    proc.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
                rc = proc.wait()
                if rc != 0:
                    self._proc = proc
                    msg = self._stderr()
                    raise RenderError(
                        f"ffmpeg failed to encode {self.path.name}: {msg}",
                        storage_hint(self.path.parent) or "check free disk space and `vid3d doctor`",
                    )
                if self.frames == 0:
                    raise RenderError(
                        f"no frames were written to {self.path.name}", "render at least one frame"
                    )
            else:
                _kill(proc)
        except BaseException as e:
            _kill(proc)
            stack.__exit__(type(e), e, e.__traceback__)  # removes the temporary file
            raise
        # Renames the temporary file into place on success, removes it on error.
        return bool(stack.__exit__(exc_type, exc, tb))


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    proc.kill()
    proc.wait()


def _run_ffmpeg(args: list[str], what: str) -> None:
    res = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()[-500:]
        raise RenderError(f"ffmpeg failed to write {what}: {err}", "check `vid3d doctor`")


def write_preview(
    video: Path,
    out: Path,
    width: int = 480,
    fps: float = 12,
    max_seconds: float | None = None,
    format: str | None = None,
) -> Path:
    """An animated preview of a video: WebP (``.webp``) or GIF (``.gif``), looping.

    Made from the finished video by the bundled ffmpeg (WebP: libwebp, quality 70;
    GIF: one optimised palette), written atomically.

    Args:
        video: The source video.
        out: The preview file; its suffix picks the format.
        width: Preview width in pixels; height keeps the aspect. Default: 480.
        fps: Preview frame rate. Default: 12.
        max_seconds: Only the first seconds of the video. Default: all.
        format: "webp" or "gif". Default: from the suffix of ``out``.

    Returns:
        ``out``.
    """
    out = Path(out)
    fmt = (format or out.suffix.lstrip(".")).lower()
    if fmt not in ("webp", "gif"):
        raise ConfigError(f"unknown preview format {fmt!r}", 'use "webp" or "gif"')
    scale = f"fps={fps},scale={int(width)}:-2:flags=lanczos"
    args = ["-i", str(video)]
    if max_seconds:
        args += ["-t", f"{max_seconds:.3f}"]
    if fmt == "webp":
        args += [
            "-vf",
            scale,
            "-c:v",
            "libwebp_anim",
            "-lossless",
            "0",
            "-quality",
            "70",
            "-compression_level",
            "4",
            "-loop",
            "0",
            "-an",
            "-f",
            "webp",
        ]
    else:
        args += [
            "-filter_complex",
            f"[0:v]{scale},split[a][b];[a]palettegen=stats_mode=diff[p];"
            "[b][p]paletteuse=dither=bayer:bayer_scale=4",
            "-loop",
            "0",
            "-an",
            "-f",
            "gif",
        ]
    with atomic_path(out) as tmp:
        _run_ffmpeg(args + [str(tmp)], out.name)
    return out


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB image as PNG, atomically.

    Args:
        path: The .png file.
        image: [H, W, 3] uint8 RGB.
    """
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(np.asarray(image)[..., ::-1]))
    if not ok:
        raise RenderError(f"cannot encode {Path(path).name} as PNG")
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)


def top_level_atoms(path: Path) -> list[str]:
    """Types of the top-level boxes (atoms) of an MP4/MOV file, in file order."""
    atoms = []
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            size, kind = struct.unpack(">I4s", f.read(8))
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            elif size == 0:
                size = size_total - pos
            if size < 8:
                break
            atoms.append(kind.decode("latin-1"))
            pos += size
    return atoms


def inspect_mp4(path: Path) -> dict[str, Any]:
    """What an encoded video file holds, read with PyAV (for checking vid3d's own output).

    Args:
        path: A video file.

    Returns:
        A dict: ``codec`` ("h264"), ``profile`` ("High"), ``pix_fmt`` ("yuv420p"),
        ``width``, ``height``, ``frames`` (counted packets of the first video
        stream), ``fps`` (float), ``duration`` (seconds), ``color_space``,
        ``color_primaries``, ``color_trc``, ``color_range`` (ffmpeg names, e.g.
        "bt709" and "tv"; None when untagged), ``atoms`` (top-level atom order)
        and ``faststart`` (True when ``moov`` comes before ``mdat``).

    Raises:
        InputError: The file is missing or has no video stream.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no video at {path}", "check the path")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path.name} has no video stream", "give a video file")
            stream = container.streams.video[0]
            cc = stream.codec_context
            info = {
                "codec": cc.name,
                "profile": stream.profile,
                "pix_fmt": cc.pix_fmt,
                "width": cc.width,
                "height": cc.height,
                "fps": float(stream.average_rate) if stream.average_rate else None,
                "color_space": _color_name("space", cc.colorspace),
                "color_primaries": _color_name("primaries", cc.color_primaries),
                "color_trc": _color_name("trc", cc.color_trc),
                "color_range": _color_name("range", cc.color_range),
            }
            frames = 0
            for packet in container.demux(stream):
                if packet.size:
                    frames += 1
            info["frames"] = frames
            info["duration"] = (
                float(stream.duration * stream.time_base) if stream.duration is not None else None
            )
    except av.error.FFmpegError as e:
        raise InputError(f"{path.name} cannot be read as a video: {e}", "re-render it") from e
    atoms = top_level_atoms(path)
    info["atoms"] = atoms
    info["faststart"] = "moov" in atoms and "mdat" in atoms and atoms.index("moov") < atoms.index("mdat")
    return info


# libavutil pixfmt.h enum values -> ffmpeg's names (PyAV returns plain ints).
_COLOR_NAMES = {
    "space": {
        0: "gbr",
        1: "bt709",
        4: "fcc",
        5: "bt470bg",
        6: "smpte170m",
        7: "smpte240m",
        9: "bt2020nc",
        10: "bt2020c",
    },
    "primaries": {
        1: "bt709",
        4: "bt470m",
        5: "bt470bg",
        6: "smpte170m",
        7: "smpte240m",
        9: "bt2020",
        11: "smpte431",
        12: "smpte432",
    },
    "trc": {
        1: "bt709",
        4: "gamma22",
        5: "gamma28",
        6: "smpte170m",
        7: "smpte240m",
        8: "linear",
        13: "iec61966-2-1",
        14: "bt2020-10",
        15: "bt2020-12",
        16: "smpte2084",
        18: "arib-std-b67",
    },
    "range": {1: "tv", 2: "pc"},
}


def _color_name(kind: str, value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "name", None)  # an enum in some PyAV versions
    if name is not None:
        value = getattr(value, "value", value)
    try:
        v = int(value)
    except (TypeError, ValueError):
        return str(value).lower()
    if v == 2 or (kind == "range" and v == 0):  # AVCOL_*_UNSPECIFIED
        return None
    return _COLOR_NAMES[kind].get(v, str(v))


def encoder_status() -> dict[str, Any]:
    """Whether H.264 output works here, for ``vid3d doctor``.

    Encodes 3 tiny frames to a temporary file and inspects it (:func:`inspect_mp4`).

    Returns:
        A dict: ``ffmpeg`` (path or None), ``version`` (first line of ``ffmpeg
        -version`` or None), ``ok`` (an mp4 with H.264 yuv420p, BT.709 tags and
        faststart came out), ``error`` (why not, or None).
    """
    status: dict[str, Any] = {"ffmpeg": None, "version": None, "ok": False, "error": None}
    try:
        exe = ffmpeg_exe()
        status["ffmpeg"] = exe
        res = subprocess.run([exe, "-version"], capture_output=True, timeout=30)
        status["version"] = res.stdout.decode(errors="replace").splitlines()[0] if res.stdout else None
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "check.mp4"
            with VideoWriter(out, 16, 16, fps=30, crf=23, preset="ultrafast") as writer:
                for i in range(3):
                    writer.write(np.full((16, 16, 3), 80 * i, np.uint8))
            info = inspect_mp4(out)
        good = (
            info["codec"] == "h264"
            and info["pix_fmt"] == "yuv420p"
            and info["frames"] == 3
            and info["faststart"]
            and info["color_primaries"] == "bt709"
        )
        status["ok"] = bool(good)
        if not good:
            status["error"] = f"unexpected output: {info}"
    except Exception as e:  # doctor reports whatever went wrong
        status["error"] = getattr(e, "message", None) or str(e)
    return status
