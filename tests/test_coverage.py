"""Coverage of a camera by the clip, on real Gaussians: the 138k points of gsplat's garden
scene made into splats, seen by a clip through its 3 real cameras; and the synthetic blob
on a black background, for pixels with nothing in them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from tests.conftest import data_path
from vid3d import coverage
from vid3d.camera_paths import CameraPath, look_at, scene_center, up_direction
from vid3d.errors import ConfigError, RenderError
from vid3d.splats.model import init_splats
from vid3d.stages.render import render_inputs


def clip_through(c2w: np.ndarray, per_gap: int) -> np.ndarray:
    """[(N - 1) per_gap + 1, 4, 4] cameras moving smoothly through the N cameras ``c2w``,
    as the frames of a clip between its keyframes."""
    t = np.arange(len(c2w))
    tt = np.linspace(0, len(c2w) - 1, (len(c2w) - 1) * per_gap + 1)
    out = np.tile(np.eye(4), (len(tt), 1, 1))
    out[:, :3, :3] = Slerp(t, Rotation.from_matrix(c2w[:, :3, :3]))(tt).as_matrix()
    out[:, :3, 3] = np.stack([np.interp(tt, t, c2w[:, k, 3]) for k in range(3)], axis=1)
    return out


@pytest.fixture(scope="module")
def garden():
    """All garden points as Gaussians, a 9-frame clip through the 3 real cameras, and the
    clip's :class:`ObservedViews`."""
    d = np.load(data_path("gsplat/test_garden.npz"))
    points = d["means3d"].astype(np.float64)
    splats = init_splats(points, d["colors"], 0, 0.8, 1.0)
    g = render_inputs({k: v.detach() for k, v in splats.items()})
    real = np.linalg.inv(d["viewmats"].astype(np.float64))
    width, height = int(d["width"]), int(d["height"])
    K = d["Ks"][0].astype(np.float64)
    clip = clip_through(real, 4)  # frames 0, 4, 8 are the real cameras
    Ks = np.repeat(K[None], len(clip), axis=0)
    views = coverage.observed_views(g, clip, Ks, width, height)
    center = scene_center(real, points, d["Ks"], width, height)
    return dict(g=g, clip=clip, K=K, w=width, h=height, views=views, center=center, up=up_direction(real))


def orbit(c2w: np.ndarray, center: np.ndarray, up: np.ndarray, degrees: float) -> np.ndarray:
    """The camera ``c2w`` [4, 4] turned by ``degrees`` around the vertical through ``center``."""
    R = Rotation.from_rotvec(up * np.radians(degrees)).as_matrix()
    out = np.eye(4)
    out[:3, :3] = R @ c2w[:3, :3]
    out[:3, 3] = center + R @ (c2w[:3, 3] - center)
    return out


def cover(gd, c2w: np.ndarray, **kw) -> float:
    return float(coverage.coverage_map(gd["g"], gd["views"], c2w, gd["K"], gd["w"], gd["h"], **kw).mean())


def alpha_of(gd, c2w: np.ndarray) -> np.ndarray:
    """[h, w] alpha of the Gaussians from ``c2w`` at the size coverage works at."""
    seen = coverage.observed_views(gd["g"], c2w[None], gd["K"][None], gd["w"], gd["h"])
    return seen.alphas[0].numpy()


def test_low_res_size_and_intrinsics() -> None:
    assert coverage.low_res_size(648, 420) == (160, 104)
    assert coverage.low_res_size(1280, 720, 160) == (160, 90)
    assert coverage.low_res_size(96, 64) == (96, 64)  # never enlarged
    K = np.array([[480.0, 0, 324], [0, 481, 210], [0, 0, 1]])
    np.testing.assert_allclose(
        coverage.scale_intrinsics(K, 648, 420, 160, 104),
        [[480 * 160 / 648, 0, 80], [0, 481 * 104 / 420, 210 * 104 / 420], [0, 0, 1]],
    )
    with pytest.raises(ConfigError):
        coverage.low_res_size(648, 420, 4)


def test_the_clips_own_views_are_covered(garden) -> None:
    """Frames inside the clip (a real camera among them) show what neighbours saw too."""
    views = garden["views"]
    assert (views.width, views.height, len(views)) == (160, 104, 9)
    assert views.alphas.mean() > 0.99  # the garden fills every picture
    for i in (2, 4, 6):  # frame 4 is a real camera
        assert cover(garden, garden["clip"][i]) >= 0.9, i


def test_a_camera_looking_away_from_the_scene_is_not_covered(garden) -> None:
    away = garden["clip"][4].copy()
    away[:3, 0] *= -1  # turned around on the spot (x and z flipped: still a rotation)
    away[:3, 2] *= -1
    assert alpha_of(garden, away).mean() > 0.5  # there are splats behind the cameras ...
    assert cover(garden, away) < 0.02  # ... that no camera of the clip looked at


def test_the_far_side_of_the_scene_is_not_covered(garden) -> None:
    center, up = garden["center"], garden["up"]
    mid = garden["clip"][4][:3, 3]
    far = look_at((2 * center - mid)[None], center, up)[0]  # opposite the clip, facing it
    assert alpha_of(garden, far).mean() > 0.9  # the scene fills the picture
    assert cover(garden, far) < 0.05
    # Either test alone rules those points out: the clip's cameras see them from over 90
    # degrees away, and what they see there is the near side, in front of them.
    assert cover(garden, far, depth_tol=10.0) < 0.05
    assert cover(garden, far, max_angle_deg=180.0) < 0.1
    assert cover(garden, far, max_angle_deg=180.0, depth_tol=10.0) > 0.5  # each camera's image


def test_coverage_falls_as_the_camera_moves_away_from_the_clip(garden) -> None:
    """Turning the first frame of the clip away from the others, 5 degrees at a time."""
    first = garden["clip"][0]
    values = [cover(garden, orbit(first, garden["center"], garden["up"], -a)) for a in (0.0, 5.0, 10.0, 15.0)]
    assert values[0] >= 0.85
    assert all(b < a - 0.03 for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.5 * values[0], values


def test_path_coverage_takes_the_nearest_computed_frame(garden) -> None:
    center, up, clip = garden["center"], garden["up"], garden["clip"]
    c2w = np.stack(
        [clip[3], clip[0], orbit(clip[0], center, up, -6), orbit(clip[0], center, up, -12), clip[6]]
    )
    path = CameraPath(c2w, np.repeat(garden["K"][None], 5, 0), garden["w"], garden["h"])
    every = coverage.path_coverage(garden["g"], garden["views"], path, batch=3)
    assert every.shape == (5,)
    assert every[0] > 0.9 and every[4] > 0.9 and every[3] < every[2] < every[1]
    # frames 0, 3, 4 only, batched otherwise than above (3 with 0 and 4, not with 4 alone)
    strided = coverage.path_coverage(garden["g"], garden["views"], path, stride=3)
    np.testing.assert_allclose(strided, every[[0, 0, 3, 3, 4]], atol=1e-3)
    summary = coverage.summarize(every)
    assert summary == {
        "mean": round(float(every.mean()), 4),
        "worst": round(float(every.min()), 4),
        "worst_frame": 3,
    }
    json.dumps(summary)


@pytest.fixture(scope="module")
def blob(scene):
    """The synthetic scene's blob as Gaussians (the centres, sizes and opacity that
    tests/synthetic.py draws), on a black background, and its 10 cameras' views."""
    rng = np.random.default_rng(0)
    n = 1500
    means = rng.uniform(-1, 1, (n, 3)) * np.array([1.0, 1.0, 0.5])
    g = {
        "means": torch.tensor(means, dtype=torch.float32),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "scales": torch.full((n, 3), 0.08),
        "opacities": torch.full((n,), 0.9),
        "colors": torch.rand(n, 1, 3),
    }
    views = coverage.observed_views(g, scene.camtoworlds, scene.Ks, scene.width, scene.height)
    return g, views


def test_pixels_without_a_surface_are_never_covered(scene, blob) -> None:
    g, views = blob
    i = 5
    alpha = views.alphas[i].numpy()  # the camera's own view: same size, same render
    for alpha_min in (0.5, 0.95):
        m = coverage.coverage_map(
            g, views, scene.camtoworlds[i], scene.Ks[i], scene.width, scene.height, alpha_min=alpha_min
        )
        assert m.shape == alpha.shape == (48, 64)
        opaque = alpha >= alpha_min
        assert 0.1 < (~opaque).mean() < 0.9  # the blob leaves part of the picture empty
        assert not (m & ~opaque).any()
        assert m[opaque].mean() >= 0.9  # and where it is, its own view is covered
    # where even the training cameras saw too little of a surface, nothing is covered
    faint = dict(g, opacities=torch.full_like(g["opacities"], 0.01))
    faint_views = coverage.observed_views(faint, scene.camtoworlds, scene.Ks, scene.width, scene.height)
    assert 0 < faint_views.alphas.max() < 0.5
    m = coverage.coverage_map(faint, faint_views, scene.camtoworlds[i], scene.Ks[i], 64, 48)
    assert not m.any()


@pytest.mark.parametrize(
    "kw", [{"alpha_min": 0.0}, {"min_views": 0}, {"depth_tol": -0.1}, {"max_angle_deg": 0.0}, {"stride": 0}]
)
def test_bad_settings_fail_before_any_rendering(kw) -> None:
    path = CameraPath(np.eye(4)[None], np.eye(3)[None], 64, 48)
    with pytest.raises(ConfigError):
        coverage.path_coverage({}, None, path, **kw)


def test_summarize_needs_frames() -> None:
    assert coverage.summarize(np.array([0.5, 0.123456, 0.9])) == {
        "mean": 0.5078,
        "worst": 0.1235,
        "worst_frame": 1,
    }
    with pytest.raises(RenderError):
        coverage.summarize(np.array([]))
