"""Tests of the poses stage and the pycolmap adapter (vid3d.sfm), on real shared clips.

pycolmap runs for real here (no mocks); each test takes a few seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import DATA
from tests.helpers import Recorder
from vid3d.config import Config
from vid3d.errors import ConfigError, MissingStageError, PosesError
from vid3d.sfm import colmap, load_scene
from vid3d.sfm.calibration import focal_from_fundamentals
from vid3d.stages import poses
from vid3d.workspace import Workspace

CLIP = "0bf152ef84195293"  # re10k, 16 frames 384x256, reference poses
ROT_TOL_DEG = 1.0  # the benchmark's target: mean relative rotation error over all pairs

needs_data = pytest.mark.skipif(not (DATA / "re10k").is_dir(), reason="shared data not found")


def decode(video: Path, out: Path, every: int = 1, limit: int = 10_000) -> list[int]:
    """Write frames ``0, every, 2 * every...`` of ``video`` as ``out/frame_00000.jpg`` ...; their indices."""
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    kept, i = [], 0
    while len(kept) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == 0:
            cv2.imwrite(str(out / f"frame_{len(kept):05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            kept.append(i)
        i += 1
    return kept


def reference_w2c(clip: str) -> np.ndarray:
    """[N, 4, 4] reference world-to-camera matrices of a re10k clip."""
    rows = [
        list(map(float, line.split()))
        for line in (DATA / "re10k" / "poses" / f"{clip}.txt").read_text().splitlines()[1:]
        if line.strip()
    ]
    w2c = np.tile(np.eye(4), (len(rows), 1, 1))
    w2c[:, :3, :4] = np.array([r[7:19] for r in rows]).reshape(-1, 3, 4)
    return w2c


def rotation_errors(w2c_est: np.ndarray, w2c_ref: np.ndarray) -> np.ndarray:
    """Relative rotation errors (degrees) over all pairs of cameras."""
    errs = []
    for i in range(len(w2c_est)):
        for j in range(i + 1, len(w2c_est)):
            a = w2c_est[j, :3, :3] @ w2c_est[i, :3, :3].T
            b = w2c_ref[j, :3, :3] @ w2c_ref[i, :3, :3].T
            errs.append(math.degrees(math.acos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1))))
    return np.array(errs)


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """The re10k clip's frames through the poses stage with the default configuration."""
    if not (DATA / "re10k").is_dir():
        pytest.skip("shared data not found")
    ws = Workspace(tmp_path_factory.mktemp("poses") / "ws")
    decode(DATA / "re10k" / "videos" / f"{CLIP}.mp4", ws.images)
    metrics = poses.run(ws, Config())
    return ws, metrics


@needs_data
def test_rotations_match_reference(solved):
    ws, m = solved
    assert m["registered"] == m["total"] == 16
    scene = load_scene(ws)
    assert scene.names == sorted(scene.names) and len(scene) == 16
    err = rotation_errors(np.linalg.inv(scene.camtoworlds), reference_w2c(CLIP))
    assert err.mean() < ROT_TOL_DEG, f"mean rotation error {err.mean():.2f} deg"
    assert err.max() < 3 * ROT_TOL_DEG


@needs_data
def test_walkthrough_verdict_is_ok_with_the_reference_field_of_view(solved):
    _, m = solved
    line = (DATA / "re10k" / "poses" / f"{CLIP}.txt").read_text().splitlines()[1]
    fx = float(line.split()[1])  # focal length / image width
    reference = math.degrees(2 * math.atan(0.5 / fx))
    assert abs(m["fov_deg"] - reference) < 0.1 * reference, (m["fov_deg"], reference)
    v = m["verdict"]
    assert v["level"] == "ok" and v["reasons"] == []
    assert v["figures"]["registered_fraction"] == 1.0 and v["figures"]["fov_deg"] == m["fov_deg"]


@needs_data
def test_outputs_and_metrics(solved):
    ws, m = solved
    for f in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (ws.sparse0 / f).is_file()
    assert ws.database.is_file() and ws.database.stat().st_size > 0
    assert (ws.colmap / "colmap.log").read_text().strip()
    assert not list(ws.colmap.glob(".*"))  # no temporary files left behind
    for key in (
        "registered",
        "total",
        "registered_fraction",
        "mean_reprojection_error",
        "mean_track_length",
        "points",
        "focal_px",
        "camera_model",
        "timings",
        "attempts",
        "other_models",
        "pairs",
    ):
        assert key in m, key
    assert m["registered_fraction"] == 1.0 and 0 < m["mean_reprojection_error"] < 1.5
    assert m["points"] > 100 and m["mean_track_length"] > 2
    assert len(m["pairs"]) == 15 and m["pairs"][0]["name1"] == "frame_00000.jpg"
    assert all(0 <= p["inlier_ratio"] <= 1 and p["verified"] <= p["matches"] for p in m["pairs"])
    assert len(m["attempts"]) >= 1 and m["attempts"][m["best_attempt"]]["registered"] == 16
    json.dumps(m)  # serialisable
    data = json.loads(ws.poses_json.read_text())
    assert data["metrics"]["registered"] == 16 and len(data["frames"]) == 16
    assert np.allclose(np.array(data["frames"][0]["camtoworld"])[3], [0, 0, 0, 1])


@needs_data
def test_load_scene_reprojects_points(solved):
    ws, _ = solved
    scene = load_scene(ws)
    rec = colmap.read_model(ws.sparse0)
    ids = colmap.model_cameras(rec)["point_ids"]
    assert scene.points.shape == (len(ids), 3) and scene.colors.dtype == np.uint8
    for k in (0, 7, 15):
        xy, pids = observations(rec, scene.names[k], K=scene.Ks[k])  # in the pinhole image
        X = scene.points[np.searchsorted(ids, pids)]  # [M, 3]
        w2c = np.linalg.inv(scene.camtoworlds[k])
        cam = X @ w2c[:3, :3].T + w2c[:3, 3]
        assert (cam[:, 2] > 0).all()
        uv = cam @ scene.Ks[k].T
        uv = uv[:, :2] / uv[:, 2:]
        assert np.median(np.linalg.norm(uv - xy, axis=1)) < 1.0
        assert scene.image_paths[k].is_file()


@needs_data
def test_load_scene_undistorts_radial_camera(tmp_path):
    ws = Workspace(tmp_path / "ws")
    decode(DATA / "re10k" / "videos" / f"{CLIP}.mp4", ws.images, every=2)
    ws.masks.mkdir()
    for p in sorted(ws.images.iterdir()):  # the frames stage's naming: masks/<stem>.png
        cv2.imwrite(str(ws.mask_for(p.name)), np.full((256, 384), 255, np.uint8))
    cfg = Config()
    cfg.poses.camera_model = "SIMPLE_RADIAL"
    m = poses.run(ws, cfg)
    assert m["camera_model"] == "SIMPLE_RADIAL" and m["registered"] == 8
    assert sorted(p.name for p in ws.colmap_masks.iterdir())[0] == "frame_00000.jpg.png"
    scene = load_scene(ws)
    assert all(p.parent == ws.undistorted / "images" and p.is_file() for p in scene.image_paths)
    assert all(p is not None and p.is_file() for p in scene.mask_paths)
    img = cv2.imread(str(scene.image_paths[0]))
    assert img.shape[:2] == (scene.height, scene.width)
    rec = colmap.read_model(ws.sparse0)
    ids = colmap.model_cameras(rec)["point_ids"]
    xy, pids = observations(rec, scene.names[3], K=scene.Ks[3])
    w2c = np.linalg.inv(scene.camtoworlds[3])
    cam = scene.points[np.searchsorted(ids, pids)] @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam @ scene.Ks[3].T
    assert np.median(np.linalg.norm(uv[:, :2] / uv[:, 2:] - xy, axis=1)) < 1.0
    stamp = (ws.undistorted / "stamp.json").stat().st_mtime_ns
    load_scene(ws)  # cached: not re-made
    assert (ws.undistorted / "stamp.json").stat().st_mtime_ns == stamp


@needs_data
def test_retry_ladder_recovers_from_failed_first_attempt(tmp_path):
    ws = Workspace(tmp_path / "ws")
    decode(DATA / "re10k" / "videos" / f"{CLIP}.mp4", ws.images, every=2)
    cfg = Config()
    cfg.poses.max_num_features = 16  # far too few: the first attempt cannot register the frames
    reporter = Recorder()
    m = poses.run(ws, cfg, reporter)
    first, second = m["attempts"][0], m["attempts"][1]
    assert first["reason"] == "configured" and first["settings"]["max_num_features"] == 16
    assert first["registered"] < 8
    assert second["reason"].startswith("more features") and second["settings"]["matcher"] == "exhaustive"
    assert m["registered"] == 8 and m["best_attempt"] == 1 and len(m["attempts"]) == 2
    # the progress bars advanced as images were extracted, pairs matched, frames registered
    extract = [t for t in reporter.tasks if "Extracting features" in t["description"]]
    match = [t for t in reporter.tasks if "Matching" in t["description"]]
    register = [t for t in reporter.tasks if "Registering frames" in t["description"]]
    assert len(extract) == 2 and all(t["done"] == t["total"] == 8 for t in extract)
    assert match and all(t["done"] == t["total"] > 0 for t in match)
    assert register[-1]["done"] == 8
    assert any("retrying" in w for w in reporter.warnings)


@needs_data
def test_static_camera_raises_poses_error(tmp_path):
    ws = Workspace(tmp_path / "ws")
    decode(DATA / "edge" / "static_camera_tree.avi", ws.images, every=5, limit=12)
    with pytest.raises(PosesError) as info:
        poses.run(ws, Config())
    assert "does not move" in info.value.message and info.value.hint


def test_featureless_frames_raise_poses_error(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.images.mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(ws.images / f"frame_{i:05d}.jpg"), np.full((96, 128, 3), 128, np.uint8))
    cfg = Config()
    cfg.poses.max_attempts = 2
    with pytest.raises(PosesError) as info:
        poses.run(ws, cfg)
    assert "too few features" in info.value.message
    assert len(info.value.message) < 300 and info.value.hint


def test_missing_images_raise_missing_stage_error(tmp_path):
    with pytest.raises(MissingStageError) as info:
        poses.run(Workspace(tmp_path / "ws"), Config())
    assert "vid3d frames" in info.value.hint


def test_bad_config_raises_config_error(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.images.mkdir(parents=True)
    cv2.imwrite(str(ws.images / "frame_00000.jpg"), np.zeros((8, 8, 3), np.uint8))
    cfg = Config()
    cfg.poses.mapper = "magic"
    with pytest.raises(ConfigError):
        poses.run(ws, cfg)


def test_pairs_and_ladder():
    pairs = colmap.sequential_pairs(10, 2)
    assert (0, 1) in pairs and (0, 2) in pairs and (0, 4) in pairs and (0, 8) in pairs and (0, 3) not in pairs
    assert len(colmap.exhaustive_pairs(5)) == 10
    cfg = Config().poses
    rungs = poses.ladder(100, cfg)
    assert [r.reason for r in rungs][0] == "configured" and len(rungs) == cfg.max_attempts
    assert rungs[-1].mapper != rungs[0].mapper
    cfg.max_attempts = 1
    assert len(poses.ladder(100, cfg)) == 1


def test_focal_from_fundamentals_recovers_focal():
    rng = np.random.default_rng(0)
    W, H, f = 576, 320, 280.0
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    Kinv = np.linalg.inv(K)
    Fs = []
    for _ in range(20):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        R, _ = cv2.Rodrigues(axis * math.radians(rng.uniform(2, 10)))
        t = rng.normal(size=3)
        tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
        Fs.append(Kinv.T @ tx @ R @ Kinv)
    out = focal_from_fundamentals(np.array(Fs), np.ones(len(Fs)), W, H)
    assert abs(out["focal"] / f - 1) < 0.01 and out["pairs"] == 20


def observations(rec, name: str, K: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """2D observations of SfM points in one image.

    Args:
        rec: A ``pycolmap.Reconstruction``.
        name: Image name.
        K: [3, 3] optional pinhole intrinsics: the observations are undistorted
            with the image's camera and expressed in this pinhole camera
            (e.g. ``Scene.Ks[i]`` of :func:`vid3d.sfm.load_scene`).

    Returns:
        ``xy [M, 2]`` pixel positions and ``point_ids [M]``.
    """
    im = rec.find_image_with_name(name)
    xy, ids = [], []
    for p in im.points2D:
        if p.has_point3D():
            xy.append(p.xy)
            ids.append(p.point3D_id)
    xy = np.array(xy, dtype=np.float64).reshape(-1, 2)
    if K is not None and len(xy):
        n = np.asarray(rec.cameras[im.camera_id].cam_from_img(xy), dtype=np.float64)  # [M, 2]
        uv = np.concatenate([n, np.ones((len(n), 1))], axis=1) @ np.asarray(K).T
        xy = uv[:, :2] / uv[:, 2:]
    return xy, np.array(ids, dtype=np.int64)
