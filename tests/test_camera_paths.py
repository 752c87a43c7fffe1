"""Camera paths on real cameras: RealEstate10K walk-throughs and the garden scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, GARDEN
from vid3d.camera_paths import (
    LOOPING,
    PATH_TYPES,
    CameraPath,
    input_frame_indices,
    input_poses,
    letterbox_intrinsics,
    make_path,
    orbit_poses,
    output_intrinsics,
    scene_center,
    turntable_poses,
    up_direction,
)
from vid3d.errors import ConfigError, InputError

RE10K = DATA / "re10k" / "poses"

pytestmark = pytest.mark.skipif(not GARDEN.is_file(), reason="shared test data not found")


def load_re10k(name: str, width: int = 384, height: int = 256):
    """Cameras of a RealEstate10K pose file: camtoworlds [N, 4, 4], Ks [N, 3, 3]."""
    a = np.loadtxt(RE10K / name, skiprows=1)
    w2c = np.tile(np.eye(4), (len(a), 1, 1))
    w2c[:, :3, :4] = a[:, 7:].reshape(-1, 3, 4)
    Ks = np.tile(np.eye(3), (len(a), 1, 1))
    Ks[:, 0, 0], Ks[:, 1, 1] = a[:, 1] * width, a[:, 2] * height
    Ks[:, 0, 2], Ks[:, 1, 2] = a[:, 3] * width, a[:, 4] * height
    return np.linalg.inv(w2c), Ks, width, height, None


def load_garden():
    d = np.load(GARDEN)
    c2w = np.linalg.inv(d["viewmats"].astype(np.float64))
    return c2w, d["Ks"].astype(np.float64), int(d["width"]), int(d["height"]), d["means3d"]


SCENES = {
    "re10k_walk": lambda: load_re10k("0bf152ef84195293.txt"),
    "re10k_turn": lambda: load_re10k("0c11dbe781b1c11c_svdxt.txt"),
    "re10k_forward": lambda: load_re10k("0f47577ab3441480.txt"),
    "garden": load_garden,
}


def rotation_angles(R0: np.ndarray, R1: np.ndarray) -> np.ndarray:
    """Angles in degrees between rotations [F, 3, 3]."""
    cos = (np.einsum("nij,nij->n", R0, R1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def check_rotations(c2w: np.ndarray) -> None:
    R = c2w[:, :3, :3]
    assert np.all(np.isfinite(c2w))
    np.testing.assert_allclose(R.transpose(0, 2, 1) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
    np.testing.assert_array_equal(c2w[:, 3], np.broadcast_to([0, 0, 0, 1], (len(c2w), 4)))


def steps(c2w: np.ndarray, loop: bool) -> tuple[np.ndarray, np.ndarray]:
    """Positional and angular (degrees) steps between consecutive poses (and last -> first)."""
    if loop:
        c2w = np.concatenate([c2w, c2w[:1]])
    pos = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1)
    ang = rotation_angles(c2w[:-1, :3, :3], c2w[1:, :3, :3])
    return pos, ang


@pytest.mark.parametrize("scene", list(SCENES))
@pytest.mark.parametrize("kind", PATH_TYPES)
def test_paths_are_smooth_valid_and_see_the_centre(kind: str, scene: str) -> None:
    c2w, Ks, w, h, points = SCENES[scene]()
    n = 90
    path = make_path(kind, c2w, Ks, w, h, 160, 90, n, fps=30, points=points)
    assert len(path) == n and path.Ks.shape == (n, 3, 3)
    assert (path.width, path.height, path.loop, path.name) == (160, 90, LOOPING[kind], kind)
    check_rotations(path.camtoworlds)

    pos, ang = steps(path.camtoworlds, path.loop)
    size = np.linalg.norm(np.ptp(path.camtoworlds[:, :3, 3], axis=0))
    assert pos.max() < 0.15 * max(size, 1e-9)  # no jumps, including last -> first on loops
    assert pos.max() < 3.0 * pos.mean() + 1e-9  # close to constant speed
    assert ang.max() < 12.0
    # Second differences small: no kinks in the position curve.
    p = (
        np.concatenate(
            [path.camtoworlds[-1:, :3, 3], path.camtoworlds[:, :3, 3], path.camtoworlds[:1, :3, 3]]
        )
        if path.loop
        else path.camtoworlds[:, :3, 3]
    )
    assert np.linalg.norm(np.diff(p, 2, axis=0), axis=1).max() < 0.5 * pos.mean() + 1e-9

    if kind == "input":
        # Starts and ends at the (smoothed) input cameras, and stays near them.
        assert np.linalg.norm(path.camtoworlds[0, :3, 3] - c2w[0, :3, 3]) < 0.1 * size
        assert np.linalg.norm(path.camtoworlds[-1, :3, 3] - c2w[-1, :3, 3]) < 0.1 * size
        in_step = np.median(rotation_angles(c2w[:-1, :3, :3], c2w[1:, :3, :3]))
        end_err = rotation_angles(path.camtoworlds[[0, -1], :3, :3], c2w[[0, -1], :3, :3])
        assert end_err.max() < max(5.0, 0.25 * in_step)
        return
    center = scene_center(c2w, points, Ks, w, h)
    w2c = np.linalg.inv(path.camtoworlds)
    pc = np.einsum("nij,j->ni", w2c[:, :3, :3], center) + w2c[:, :3, 3]  # [F, 3]
    assert np.all(pc[:, 2] > 0)  # in front of every camera
    uv = np.einsum("nij,nj->ni", path.Ks, pc / pc[:, 2:])[:, :2]
    assert np.all((uv >= 0) & (uv <= [160, 90]))
    # The camera's up stays close to the input cameras' up (no rolling).
    up = up_direction(c2w)
    assert np.all(-path.camtoworlds[:, :3, 1] @ up > 0.5)


@pytest.mark.parametrize("kind", ["orbit", "turntable", "spiral"])
def test_loops_close_smoothly(kind: str) -> None:
    c2w, Ks, w, h, points = load_garden()
    path = make_path(kind, c2w, Ks, w, h, 64, 36, 120, points=points)
    pos, ang = steps(path.camtoworlds, loop=True)
    # The join (last -> first) is an ordinary step.
    assert pos[-1] <= 1.5 * np.median(pos) + 1e-9
    assert ang[-1] <= 1.5 * np.median(ang) + 1e-6


def test_input_path_is_not_a_loop_and_follows_the_cameras() -> None:
    c2w, *_ = load_re10k("0c9b371cc6225682_svdxt.txt")
    poses = input_poses(c2w, 100, smoothing=0.0)
    # Without smoothing the spline passes through every input camera.
    t = np.linspace(0, len(c2w) - 1, 100)
    for i in range(len(c2w)):
        j = int(np.argmin(np.abs(t - i)))
        if abs(t[j] - i) < 1e-9:
            np.testing.assert_allclose(poses[j], c2w[i], atol=1e-9)
    np.testing.assert_allclose(poses[0], c2w[0], atol=1e-9)
    np.testing.assert_allclose(poses[-1], c2w[-1], atol=1e-9)
    smooth = input_poses(c2w, 100, smoothing=3.0)
    jerk = lambda p: np.linalg.norm(np.diff(p[:, :3, 3], 3, axis=0), axis=1).mean()  # noqa: E731
    assert jerk(smooth) < jerk(poses)


def test_orbit_radius_and_height_factors() -> None:
    c2w, Ks, w, h, points = load_garden()
    center = scene_center(c2w, points, Ks, w, h)
    up = up_direction(c2w)
    base = orbit_poses(c2w, 60, center)[:, :3, 3] - center
    wide = orbit_poses(c2w, 60, center, radius_factor=2.0, height_factor=0.0)[:, :3, 3] - center
    horiz = lambda p: np.linalg.norm(p - np.outer(p @ up, up), axis=1)  # noqa: E731
    np.testing.assert_allclose(horiz(wide), 2 * horiz(base), rtol=1e-6)
    np.testing.assert_allclose(wide @ up, 0, atol=1e-9)
    # At the input cameras' own height and distance.
    in_off = c2w[:, :3, 3] - center
    np.testing.assert_allclose(base @ up, (in_off @ up).mean(), rtol=1e-6)
    tt = turntable_poses(c2w, 60, center)[:, :3, 3] - center
    np.testing.assert_allclose(horiz(tt), np.median(horiz(in_off)), rtol=1e-6)


def test_scene_center_of_converging_cameras() -> None:
    target = np.array([1.0, -2.0, 0.5])
    up = np.array([0.0, 0.0, 1.0])
    ang = np.linspace(0, 1.2, 8)
    pos = target + np.stack([3 * np.cos(ang), 3 * np.sin(ang), np.full_like(ang, 1.0)], 1)
    from vid3d.camera_paths import look_at

    c2w = look_at(pos, target, up)
    np.testing.assert_allclose(scene_center(c2w), target, atol=0.05)
    np.testing.assert_allclose(up_direction(c2w), up, atol=0.4)
    # The garden's centre lies among its points, in front of the cameras.
    c2w, Ks, w, h, points = load_garden()
    c = scene_center(c2w, points, Ks, w, h)
    assert np.linalg.norm(c - np.median(points, axis=0)) < 0.5


def test_intrinsics_keep_vertical_fov() -> None:
    c2w, Ks, w, h, _ = load_re10k("0bf152ef84195293.txt")
    for ow, oh in [(1280, 720), (1080, 1920), (640, 640)]:
        K = output_intrinsics(Ks, w, h, ow, oh)
        fov_in = 2 * np.arctan(h / (2 * Ks[0, 1, 1]))
        fov_out = 2 * np.arctan(oh / (2 * K[1, 1]))
        assert fov_out == pytest.approx(fov_in, rel=1e-9)
        assert K[0, 0] / K[1, 1] == pytest.approx(Ks[0, 0, 0] / Ks[0, 1, 1])
        assert (K[0, 2], K[1, 2]) == (ow / 2, oh / 2)


def test_letterbox_intrinsics_match_the_image_layout() -> None:
    K = np.array([[300.0, 0, 192], [0, 300.0, 128], [0, 0, 1]])
    Kl = letterbox_intrinsics(K, 384, 256, 640, 360)  # scale 1.40625, bars left and right
    s = 360 / 256
    assert Kl[0, 0] == pytest.approx(300 * s) and Kl[1, 2] == pytest.approx(128 * s)
    assert Kl[0, 2] == pytest.approx(192 * s + (640 - 384 * s) / 2)


def test_input_frame_indices_hold_each_frame() -> None:
    idx = input_frame_indices(16, 48)
    assert idx[0] == 0 and idx[-1] == 15 and np.all(np.diff(idx) >= 0)
    assert np.all(np.bincount(idx, minlength=16) == 3)
    assert list(input_frame_indices(5, 3)) == [0, 1, 3]


def test_path_json_round_trip(tmp_path: Path) -> None:
    c2w, Ks, w, h, points = load_garden()
    path = make_path("orbit", c2w, Ks, w, h, 64, 36, 10, fps=24, points=points)
    out = tmp_path / "orbit.json"
    path.save(out)
    back = CameraPath.load(out)
    np.testing.assert_array_equal(back.camtoworlds, path.camtoworlds)
    np.testing.assert_array_equal(back.Ks, path.Ks)
    assert (back.width, back.height, back.fps, back.loop, back.name) == (64, 36, 24.0, True, "orbit")
    assert not list(tmp_path.glob(".*tmp*"))


def test_path_json_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        CameraPath.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError):
        CameraPath.load(bad)
    bad.write_text(
        '{"frames": [{"camtoworld": [[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]], '
        '"fx": 1, "fy": 1, "cx": 1, "cy": 1, "width": 4, "height": 4}]}'
    )
    with pytest.raises(InputError, match="not orthonormal"):
        CameraPath.load(bad)
    bad.write_text('{"frames": [{"camtoworld": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}')
    with pytest.raises(InputError, match="malformed"):
        CameraPath.load(bad)


def test_unknown_path_type() -> None:
    c2w, Ks, w, h, _ = load_garden()
    with pytest.raises(ConfigError):
        make_path("zigzag", c2w, Ks, w, h, 64, 36, 10)


def test_input_path_follows_the_clip_times() -> None:
    c2w, *_ = load_re10k("0c9b371cc6225682.txt")
    c2w = c2w[:4]
    poses = input_poses(c2w, 5, smoothing=0.0, times=np.array([0.0, 1.0, 3.0, 4.0]))
    for out_i, in_i in [(0, 0), (1, 1), (3, 2), (4, 3)]:  # output times 0 1 2 3 4
        np.testing.assert_allclose(poses[out_i], c2w[in_i], atol=1e-9)


def test_orbit_of_an_arc_clip_stays_on_the_filmed_side_and_level():
    """The bundled example: a camera that looks down at a table along a 100-degree arc."""
    import json
    from pathlib import Path

    from vid3d.camera_paths import orbit_poses, up_direction

    cams = json.loads((Path(__file__).parents[1] / "examples" / "garden_cameras.json").read_text())
    c2w = np.array(cams["camtoworlds"])
    # the cameras tilt down, yet the up direction is the true vertical (+z here)
    assert np.degrees(np.arccos(up_direction(c2w) @ [0, 0, 1])) < 1.0
    assert np.degrees(np.arccos(_unit(-c2w[:, :3, 1].mean(0)) @ [0, 0, 1])) > 10  # the naive mean
    poses = orbit_poses(c2w, 96, center=np.array([0.0, 0.0, 0.05]))
    az_in = np.degrees(np.arctan2(c2w[:, 1, 3], c2w[:, 0, 3]))
    az_out = np.degrees(np.arctan2(poses[:, 1, 3], poses[:, 0, 3]))
    assert az_in.min() - 1 <= az_out.min() and az_out.max() <= az_in.max() + 1
    assert az_out.max() - az_out.min() > 0.9 * (az_in.max() - az_in.min())  # sweeps the whole arc
    # level: the rendered horizon does not roll (camera x axes stay horizontal)
    assert np.abs(poses[:, 2, 0]).max() < 1e-6
    # a closed loop: the step from the last pose back to the first is like any other
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0, append=poses[:1, :3, 3]), axis=1)
    assert steps.max() < 3 * np.median(steps) + 1e-9


def _unit(v):
    return v / np.linalg.norm(v)
