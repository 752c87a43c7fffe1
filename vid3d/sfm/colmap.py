"""The pycolmap adapter: features, matches, mapping and models as plain Python data.

This module (with :mod:`vid3d.sfm.views`) is the only place in vid3d that touches
pycolmap objects; differences between pycolmap releases are handled here once
(e.g. ``Image.cam_from_world`` is a method in 4.x and a property in 0.6).

Reads and writes (paths are given by the caller):

- ``<database>``: COLMAP's SQLite database of images, keypoints and matches.
- ``<log>``: COLMAP's (glog) log, while :func:`colmap_log` is active.
- model folders: ``cameras.bin images.bin points3D.bin`` (+ ``rigs.bin frames.bin``).
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

Progress = Callable[[int], None]
"""A callback advancing a progress bar by ``n`` units."""


def _noop(n: int = 1) -> None:
    pass


# ----------------------------------------------------------------------------
# logging


@contextmanager
def colmap_log(path: Path) -> Iterator[None]:
    """Send COLMAP's log (glog) to ``path`` instead of the terminal while active.

    glog names its files ``<base><timestamp>.<pid>``; the file is closed and moved
    to ``path`` on exit (a previous log at ``path`` is replaced).

    Args:
        path: The log file to write, e.g. ``<ws>/colmap/colmap.log``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent / f".{path.name}.glog-{os.getpid()}-{time.time_ns()}."
    lg = pycolmap.logging
    saved = (lg.alsologtostderr, lg.logtostderr, lg.stderrthreshold)
    lg.logtostderr = False
    lg.alsologtostderr = False
    lg.stderrthreshold = 3  # FATAL only: errors surface as exceptions and in the log
    lg.set_log_destination(lg.INFO, str(base))
    try:
        yield
    finally:
        lg.set_log_destination(lg.INFO, "")  # closes (and flushes) the file
        lg.alsologtostderr, lg.logtostderr, lg.stderrthreshold = saved
        files = sorted(glob.glob(str(base) + "*"))
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as out:
            for f in files:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, out)
                os.unlink(f)
        os.replace(tmp, path)


# ----------------------------------------------------------------------------
# features


def device(name: str) -> tuple[Any, bool]:
    """pycolmap's device and ``use_gpu`` for a vid3d device name.

    Args:
        name: ``"auto"``, ``"cpu"`` or ``"cuda"`` (:attr:`vid3d.config.Config.device`).

    Returns:
        ``(pycolmap.Device, use_gpu)``; CUDA only where pycolmap was built with it.
    """
    gpu = bool(pycolmap.has_cuda) and name in ("auto", "cuda")
    return (pycolmap.Device.cuda if gpu else pycolmap.Device.cpu), gpu


def create_database(path: Path) -> None:
    """Create an empty COLMAP database at ``path`` (replacing one that exists)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    db = pycolmap.Database.open(str(path))
    db.close()


def extract_features(
    database: Path,
    image_dir: Path,
    names: Sequence[str],
    *,
    camera_model: str,
    mask_dir: Path | None = None,
    max_num_features: int = 8192,
    device_name: str = "auto",
    progress: Progress = _noop,
    chunk: int = 8,
) -> None:
    """Import images with ONE shared camera and extract SIFT features.

    Images are imported first (so that they share camera 1), then extracted in
    chunks of ``chunk`` images so that ``progress`` advances as they are done.

    Args:
        database: An existing (empty) database.
        image_dir: Folder of the images.
        names: Image file names (relative to ``image_dir``).
        camera_model: COLMAP camera model name (``PINHOLE``, ``SIMPLE_RADIAL``...).
        mask_dir: Folder of masks named ``<image name>.png`` (COLMAP's naming), or None.
        max_num_features: SIFT features per image.
        device_name: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: Called with the number of images done after each chunk.
        chunk: Images per extraction call.
    """
    dev, gpu = device(device_name)
    reader = pycolmap.ImageReaderOptions(camera_model=camera_model)
    if mask_dir is not None:
        reader.mask_path = str(mask_dir)
    opts = pycolmap.FeatureExtractionOptions()
    opts.use_gpu = gpu
    opts.sift.max_num_features = int(max_num_features)
    names = list(names)
    pycolmap.import_images(str(database), str(image_dir), pycolmap.CameraMode.SINGLE, names, reader)
    for i in range(0, len(names), chunk):
        part = names[i : i + chunk]
        pycolmap.extract_features(
            str(database), str(image_dir), part, pycolmap.CameraMode.SINGLE, reader, opts, dev
        )
        progress(len(part))


def keypoint_counts(database: Path) -> dict[str, int]:
    """Number of keypoints per image name."""
    db = pycolmap.Database.open(str(database))
    try:
        return {im.name: int(db.num_keypoints_for_image(im.image_id)) for im in db.read_all_images()}
    finally:
        db.close()


# ----------------------------------------------------------------------------
# matching


def sequential_pairs(n: int, overlap: int, quadratic: bool = True) -> list[tuple[int, int]]:
    """Pairs of frame indices COLMAP's sequential matcher would match.

    Args:
        n: Number of frames (in time order).
        overlap: Each frame is matched with the next ``overlap`` frames.
        quadratic: Also match frame ``i`` with ``i + 2**k`` for ``2**k > overlap``.
    """
    pairs = set()
    for i in range(n):
        for d in range(1, overlap + 1):
            if i + d < n:
                pairs.add((i, i + d))
        if quadratic:
            d = 1
            while i + d < n:
                if d > overlap:
                    pairs.add((i, i + d))
                d *= 2
    return sorted(pairs)


def exhaustive_pairs(n: int) -> list[tuple[int, int]]:
    """Every pair of ``n`` frames."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def match_pairs(
    database: Path,
    names: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    work_dir: Path,
    *,
    device_name: str = "auto",
    progress: Progress = _noop,
    chunk: int = 64,
    seed: int = 0,
) -> None:
    """Match SIFT features of image pairs and verify them geometrically.

    Pairs are matched in chunks (COLMAP's imported-pairs matcher) so that
    ``progress`` advances as they are done; the result is what COLMAP's
    sequential or exhaustive matcher writes for the same pairs.

    Args:
        database: Database with features.
        names: Image names; ``pairs`` index into it.
        pairs: ``(i, j)`` index pairs to match.
        work_dir: Folder for the temporary pair lists.
        device_name: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: Called with the number of pairs done after each chunk.
        chunk: Pairs per matching call.
        seed: Random seed of the verification RANSAC (-1: random), for repeatable matches.
    """
    dev, gpu = device(device_name)
    vopts = pycolmap.TwoViewGeometryOptions()
    vopts.ransac.random_seed = int(seed)
    pycolmap.set_random_seed(int(seed))
    mopts = pycolmap.FeatureMatchingOptions()
    mopts.use_gpu = gpu
    work_dir.mkdir(parents=True, exist_ok=True)
    pairs = list(pairs)
    for k in range(0, len(pairs), chunk):
        part = pairs[k : k + chunk]
        path = work_dir / f".pairs-{os.getpid()}.txt"
        path.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in part))
        popts = pycolmap.ImportedPairingOptions(match_list_path=str(path))
        try:
            pycolmap.match_image_pairs(str(database), mopts, popts, vopts, dev)
        finally:
            path.unlink(missing_ok=True)
        progress(len(part))


@dataclass
class PairStats:
    """Matches of one image pair."""

    name1: str
    name2: str
    matches: int
    """Raw (descriptor) matches."""
    verified: int
    """Geometrically verified (inlier) matches."""
    inlier_ratio: float
    """``verified / matches`` (0 when there are none)."""
    config: str
    """COLMAP's two-view configuration (CALIBRATED, UNCALIBRATED, PLANAR_OR_PANORAMIC...)."""
    flow: float
    """Median displacement of the verified matches in pixels (NaN without any)."""

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["flow"] = None if not np.isfinite(self.flow) else round(self.flow, 2)
        d["inlier_ratio"] = round(self.inlier_ratio, 4)
        return d


def _config_name(config: Any) -> str:
    """A two-view configuration's name (an enum in some pycolmap releases, an int in others)."""
    if hasattr(config, "name"):
        return str(config.name)
    try:
        return pycolmap.TwoViewGeometryConfiguration(int(config)).name
    except (ValueError, TypeError):
        return str(config)


def pair_stats(database: Path, pairs: Sequence[tuple[str, str]]) -> list[PairStats]:
    """Raw and verified matches of the given image pairs (by name).

    Args:
        database: Database with matches and two-view geometries.
        pairs: ``(name1, name2)`` pairs.
    """
    db = pycolmap.Database.open(str(database))
    try:
        ids = {im.name: im.image_id for im in db.read_all_images()}
        kps: dict[int, np.ndarray] = {}

        def keypoints(i: int) -> np.ndarray:
            if i not in kps:
                kps[i] = np.asarray(db.read_keypoints(i))[:, :2]
            return kps[i]

        out = []
        for a, b in pairs:
            i, j = ids[a], ids[b]
            raw = db.read_matches(i, j) if db.exists_matches(i, j) else np.zeros((0, 2))
            n_in, config, flow = 0, "NONE", float("nan")
            if db.exists_two_view_geometry(i, j):
                tvg = db.read_two_view_geometry(i, j)
                inl = np.asarray(tvg.inlier_matches).reshape(-1, 2)
                n_in, config = len(inl), _config_name(tvg.config)
                if n_in:
                    k1, k2 = keypoints(i), keypoints(j)
                    flow = float(np.median(np.linalg.norm(k1[inl[:, 0]] - k2[inl[:, 1]], axis=1)))
            n_raw = int(len(raw))
            out.append(PairStats(a, b, n_raw, int(n_in), n_in / n_raw if n_raw else 0.0, config, flow))
        return out
    finally:
        db.close()


def fundamental_matrices(database: Path, min_inliers: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental matrices of the verified image pairs, for self-calibration.

    Only pairs whose two-view configuration is a general one (UNCALIBRATED or
    CALIBRATED, not planar, panoramic or watermark) with enough inliers are kept.

    Args:
        database: Database with two-view geometries.
        min_inliers: Least verified matches of a pair.

    Returns:
        ``F [M, 3, 3]`` (pixel coordinates, ``x2^T F x1 = 0``) and ``inliers [M]``.
    """
    db = pycolmap.Database.open(str(database))
    try:
        _, tvgs = db.read_two_view_geometries()
    finally:
        db.close()
    Fs, ns = [], []
    for t in tvgs:
        n = len(np.asarray(t.inlier_matches).reshape(-1, 2))
        if n < min_inliers or _config_name(t.config) not in ("UNCALIBRATED", "CALIBRATED") or t.F is None:
            continue
        F = np.asarray(t.F, dtype=np.float64)
        if F.shape == (3, 3) and np.isfinite(F).all() and np.abs(F).sum() > 0:
            Fs.append(F)
            ns.append(n)
    return np.array(Fs).reshape(-1, 3, 3), np.array(ns, dtype=np.int64)


# ----------------------------------------------------------------------------
# camera


def camera_info(database: Path) -> dict[str, Any]:
    """The shared camera of the database: model, width, height, params."""
    db = pycolmap.Database.open(str(database))
    try:
        cams = db.read_all_cameras()
        if not cams:
            return {}
        cam = cams[0]
        return {
            "model": cam.model.name,
            "width": int(cam.width),
            "height": int(cam.height),
            "params": [float(p) for p in cam.params],
        }
    finally:
        db.close()


def set_camera(database: Path, model: str, fx: float, fy: float) -> None:
    """Set the database's cameras to ``model`` with focal lengths ``fx, fy``.

    The principal point goes to the image centre and distortion to zero; models
    with a single focal length get ``sqrt(fx * fy)``.

    Args:
        database: Database to update.
        model: COLMAP camera model name.
        fx: Horizontal focal length in pixels.
        fy: Vertical focal length in pixels.
    """
    db = pycolmap.Database.open(str(database))
    try:
        for cam in db.read_all_cameras():
            new = pycolmap.Camera.create_from_model_name(
                cam.camera_id, model, math.sqrt(fx * fy), cam.width, cam.height
            )
            params = np.array(new.params, dtype=np.float64)
            idx = list(new.focal_length_idxs())
            if len(idx) == 2:
                params[idx[0]], params[idx[1]] = fx, fy
            new.params = params
            new.has_prior_focal_length = True
            db.update_camera(new)
    finally:
        db.close()


# ----------------------------------------------------------------------------
# mapping


@dataclass
class Model:
    """A reconstruction and its summary numbers.

    ``rec`` is a ``pycolmap.Reconstruction``: only :mod:`vid3d.sfm` looks inside it.
    """

    rec: Any
    registered: list[str]
    """Names of the registered images, sorted."""
    points: int
    mean_reprojection_error: float
    mean_track_length: float
    camera: dict[str, Any]
    """``model``, ``width``, ``height``, ``params`` of the (first) camera."""

    @property
    def size(self) -> int:
        return len(self.registered)

    def score(self) -> tuple[float, float]:
        """Larger is better: registered images first, then low reprojection error."""
        err = self.mean_reprojection_error if np.isfinite(self.mean_reprojection_error) else 1e9
        return (self.size, -err)


def _model(rec: Any) -> Model:
    names = sorted(rec.image(i).name for i in rec.reg_image_ids())
    cams = list(rec.cameras.values())
    cam = {}
    if cams:
        c = cams[0]
        cam = {
            "model": c.model.name,
            "width": int(c.width),
            "height": int(c.height),
            "params": [float(p) for p in c.params],
        }
    n = rec.num_points3D()
    return Model(
        rec,
        names,
        int(n),
        float(rec.compute_mean_reprojection_error()) if n else float("nan"),
        float(rec.compute_mean_track_length()) if n else 0.0,
        cam,
    )


@dataclass
class MapperSettings:
    """Mapper options vid3d changes from COLMAP's defaults."""

    mapper: str = "incremental"
    """``incremental`` or ``global``."""
    init_min_num_inliers: int = 100
    """Incremental: verified matches of the initial pair."""
    init_min_tri_angle: float = 16.0
    """Incremental: triangulation angle of the initial pair in degrees."""
    abs_pose_min_num_inliers: int = 30
    """Incremental: 2D-3D inliers to register a further image."""
    min_num_matches: int = 15
    """Verified matches for a pair to be used at all."""
    refine_intrinsics: bool = True
    """Refine focal length(s) and distortion in bundle adjustment."""
    seed: int = 0
    """Random seed (COLMAP's RANSAC and initialisation), for repeatable runs."""
    num_threads: int = -1
    """Threads (-1: all cores)."""


def run_mapper(
    database: Path, image_dir: Path, out_dir: Path, s: MapperSettings, progress: Progress = _noop
) -> list[Model]:
    """Run COLMAP's incremental mapper or GLOMAP's global mapper.

    Args:
        database: Database with features and verified matches.
        image_dir: Folder of the images (for point colours).
        out_dir: Folder where pycolmap writes its models (``0/``, ``1/``...).
        s: Mapper settings.
        progress: Called with 1 for every registered image (incremental mapper);
            the global mapper has no callback and reports nothing.

    Returns:
        The models found, largest first (possibly none).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    pycolmap.set_random_seed(int(s.seed))
    if s.mapper == "global":
        o = pycolmap.GlobalPipelineOptions()
        o.min_num_matches = int(s.min_num_matches)
        o.random_seed = int(s.seed)
        o.num_threads = int(s.num_threads)
        o.mapper.random_seed = int(s.seed)
        o.mapper.bundle_adjustment.refine_focal_length = s.refine_intrinsics
        o.mapper.bundle_adjustment.refine_extra_params = s.refine_intrinsics
        recs = pycolmap.global_mapping(str(database), str(image_dir), str(out_dir), o)
    else:
        o = pycolmap.IncrementalPipelineOptions()
        o.min_num_matches = int(s.min_num_matches)
        o.random_seed = int(s.seed)
        o.num_threads = int(s.num_threads)
        o.min_model_size = 3
        o.ba_refine_focal_length = s.refine_intrinsics
        o.ba_refine_extra_params = s.refine_intrinsics
        o.mapper.init_min_num_inliers = int(s.init_min_num_inliers)
        o.mapper.init_min_tri_angle = float(s.init_min_tri_angle)
        o.mapper.abs_pose_min_num_inliers = int(s.abs_pose_min_num_inliers)
        o.mapper.random_seed = int(s.seed)
        o.triangulation.random_seed = int(s.seed)

        def first() -> None:
            progress(2)

        def nxt() -> None:
            progress(1)

        recs = pycolmap.incremental_mapping(
            str(database),
            str(image_dir),
            str(out_dir),
            o,
            initial_image_pair_callback=first,
            next_image_callback=nxt,
        )
    models = [_model(r) for r in recs.values()]
    models.sort(key=lambda m: (m.size, m.points), reverse=True)
    return models


def write_model(model: Model, out_dir: Path) -> None:
    """Write a model as COLMAP binary files into ``out_dir`` (which must exist)."""
    model.rec.write_binary(str(out_dir))


# ----------------------------------------------------------------------------
# reading models


def cam_from_world(image: Any) -> np.ndarray:
    """[3, 4] world-to-camera of a pycolmap image (method in 4.x, property before)."""
    pose = image.cam_from_world
    if callable(pose):
        pose = pose()
    return np.asarray(pose.matrix(), dtype=np.float64)


def read_model(path: Path) -> Any:
    """A ``pycolmap.Reconstruction`` read from a model folder."""
    return pycolmap.Reconstruction(str(path))


def model_cameras(rec: Any) -> dict[str, Any]:
    """Registered images of a reconstruction in file-name order, as numpy.

    Returns:
        dict with ``names`` (list), ``camtoworlds`` [N, 4, 4] (OpenCV axes),
        ``camera_ids`` [N], ``points`` [P, 3] float64, ``colors`` [P, 3] uint8,
        ``point_ids`` [P], and ``cameras`` {camera_id: {model, width, height, params, K}}.
    """
    images = sorted((rec.image(i) for i in rec.reg_image_ids()), key=lambda im: im.name)
    c2w = np.zeros((len(images), 4, 4))
    for k, im in enumerate(images):
        w2c = np.eye(4)
        w2c[:3] = cam_from_world(im)
        c2w[k] = np.linalg.inv(w2c)
    pts = rec.points3D
    ids = np.array(sorted(pts.keys()), dtype=np.int64)
    xyz = np.array([pts[i].xyz for i in ids], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([pts[i].color for i in ids], dtype=np.uint8).reshape(-1, 3)
    cams = {}
    for cid, c in rec.cameras.items():
        cams[int(cid)] = {
            "model": c.model.name,
            "width": int(c.width),
            "height": int(c.height),
            "params": [float(p) for p in c.params],
            "K": np.asarray(c.calibration_matrix(), dtype=np.float64),
        }
    return {
        "names": [im.name for im in images],
        "camtoworlds": c2w,
        "camera_ids": np.array([im.camera_id for im in images]),
        "points": xyz,
        "colors": rgb,
        "point_ids": ids,
        "cameras": cams,
    }
