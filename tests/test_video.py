"""Video decoding: header, pixel formats, rotation, errors."""

from __future__ import annotations

import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from tests.conftest import data_path
from vid3d.errors import VideoError
from vid3d.video.decode import VideoReader, probe_video


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def test_probe_reads_the_header():
    info = probe_video(data_path("edge/drone_with_scene_cut.mp4"))
    assert (info.width, info.height, info.fps, info.frame_count) == (1280, 720, 30.0, 300)
    assert info.duration == pytest.approx(10.0) and info.rotation == 0 and info.codec == "h264"


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p", "yuv420p10le"])
def test_pixel_formats_give_consistent_grey_and_colour(tmp_path, pix_fmt):
    path = tmp_path / f"{pix_fmt}.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=10",
        "-t",
        "1",
        "-pix_fmt",
        pix_fmt,
        "-c:v",
        "libx264",
        str(path),
    )
    with VideoReader(path) as reader:
        frames = list(reader.frames())
    assert len(frames) == 10
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(10)])
    f = frames[3]
    grey, bgr = f.grey(), f.bgr()
    assert grey.shape == (120, 160) and bgr.shape == (120, 160, 3)
    # the luma plane (video range 16-235 for 8-bit YUV) against grey from full-range BGR
    ref_grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert np.corrcoef(grey.ravel(), ref_grey.ravel())[0, 1] > 0.98
    assert np.abs(grey.astype(int) - ref_grey).mean() < 12
    small = f.picture((0, 0, 160, 120), (80, 60))
    ref = cv2.resize(bgr, (80, 60), interpolation=cv2.INTER_AREA)
    assert small.shape == (60, 80, 3) and np.abs(small.astype(int) - ref).mean() < 3


def test_audio_only_file_is_a_video_error(tmp_path):
    path = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "0.5", str(path))
    with pytest.raises(VideoError, match="no video stream"):
        probe_video(path)


def test_interrupt_while_the_encoder_starts_leaves_no_file(tmp_path, monkeypatch):
    """Ctrl-C between creating the temporary name and starting ffmpeg is a failure: the
    interrupt goes on and nothing is renamed into place (it used to end in a
    FileNotFoundError for the temporary file that ffmpeg never wrote)."""
    from vid3d.video import encode

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode.subprocess, "Popen", interrupted)
    out = tmp_path / "orbit.mp4"
    with pytest.raises(KeyboardInterrupt):
        with encode.VideoWriter(out, 64, 48, fps=8):
            pass
    assert list(tmp_path.iterdir()) == []
