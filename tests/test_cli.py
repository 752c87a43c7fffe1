"""The command line's own behaviour: version, doctor, option errors."""

from __future__ import annotations

from typer.testing import CliRunner

from vid3d import __version__
from vid3d.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"vid3d {__version__}"


def test_doctor_reports_every_component():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for word in ("torch", "CUDA", "gsplat", "pycolmap", "H.264", "CPU rasterizer"):
        assert word in result.output
    assert "libx264 encode works" in result.output
    assert "numba kernel" in result.output


def test_bad_override_is_one_line_and_exit_2(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 10)
    result = runner.invoke(
        app, ["reconstruct", str(video), "--out", str(tmp_path / "ws"), "--set", "splat.stepz=5"]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: unknown option splat.stepz")
    assert not (tmp_path / "ws").exists()


def test_unknown_preset():
    result = runner.invoke(app, ["train", ".", "--preset", "nope"])
    assert result.exit_code == 2 and "unknown preset 'nope'" in result.output
