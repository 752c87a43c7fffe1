"""The posed training views of a workspace: load them, undistorting when needed.

:func:`load_scene` builds a :class:`vid3d.scene.Scene` (cameras, images, masks, SfM
points) from the workspace's COLMAP model.

Reads ``<ws>/sparse/0`` (cameras.bin images.bin points3D.bin), ``<ws>/images/`` and
``<ws>/masks/`` (if any; :meth:`Workspace.find_mask`). When the camera model has
distortion (e.g. SIMPLE_RADIAL), writes pinhole versions of the registered images and
masks to the cache folder ``<ws>/undistorted/`` (:attr:`Workspace.undistorted`:
``images/<image name>``, ``masks/`` under the names of ``<ws>/masks/``, ``stamp.json``),
atomically, and re-makes it when ``sparse/0``, ``images/`` or ``masks/`` change.
``images/`` + ``sparse/0`` stay the raw COLMAP dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pycolmap

from vid3d.errors import MissingStageError
from vid3d.scene import Scene
from vid3d.sfm import colmap
from vid3d.workspace import Workspace, atomic_dir, fingerprint_paths

PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
CACHE_VERSION = 1


@dataclass
class _Pinhole:
    """The one pinhole camera of the undistorted cache."""

    K: np.ndarray  # [3, 3]
    width: int
    height: int


def load_scene(ws: Workspace) -> Scene:
    """The registered cameras and SfM points of a workspace, ready for training.

    Frames are in file-name (time) order. Poses are converted from COLMAP's
    world-to-camera to ``camtoworlds`` (OpenCV axes, COLMAP's world frame).

    Args:
        ws: A workspace where the poses stage has run.

    Returns:
        A :class:`Scene` with pinhole ``Ks [N, 3, 3]`` matching ``image_paths``
        (the original frames for a pinhole model, undistorted copies otherwise).
    """
    if not (ws.sparse0 / "images.bin").is_file() and not (ws.sparse0 / "images.txt").is_file():
        raise MissingStageError(f"no COLMAP model in {ws.sparse0}", "run `vid3d poses` first")
    rec = colmap.read_model(ws.sparse0)
    data = colmap.model_cameras(rec)
    names = data["names"]
    if not names:
        raise MissingStageError(
            f"the model in {ws.sparse0} has no registered images", "run `vid3d poses` again"
        )
    cam_ids = data["camera_ids"]
    cams = data["cameras"]
    first = cams[int(cam_ids[0])]
    if all(cams[int(c)]["model"] in PINHOLE_MODELS for c in cam_ids):
        Ks = np.stack([cams[int(c)]["K"] for c in cam_ids])
        width, height = first["width"], first["height"]
        image_paths = [ws.images / n for n in names]
        mask_paths = [ws.find_mask(n) for n in names]
    else:
        pin = _undistort(ws, rec, names)
        Ks = np.stack([pin.K] * len(names))
        width, height = pin.width, pin.height
        image_paths = [ws.undistorted / "images" / n for n in names]
        mask_paths = [
            (ws.undistorted / "masks" / ws.mask_for(n).name) if ws.find_mask(n) else None for n in names
        ]
    return Scene(
        names=names,
        camtoworlds=data["camtoworlds"],
        Ks=Ks,
        width=int(width),
        height=int(height),
        image_paths=image_paths,
        mask_paths=mask_paths,
        points=data["points"],
        colors=data["colors"],
    )


def _undistort(ws: Workspace, rec: Any, names: list[str]) -> _Pinhole:
    """Undistort the registered images (bilinear) and masks (nearest) to one pinhole camera,
    in ``ws.undistorted`` (kept while its stamp matches)."""
    cache = ws.undistorted
    cams = {rec.find_image_with_name(n).camera_id for n in names}
    cam = rec.cameras[next(iter(cams))]
    if len(cams) > 1:  # vid3d writes one shared camera; other models would need one K each
        raise MissingStageError(
            "the model has several cameras; vid3d expects one shared camera", "run `vid3d poses` again"
        )
    pin = pycolmap.undistort_camera(pycolmap.UndistortCameraOptions(), cam)
    K = np.asarray(pin.calibration_matrix(), dtype=np.float64)
    stamp = {
        "version": CACHE_VERSION,
        "sparse": fingerprint_paths([ws.sparse0]),
        "images": fingerprint_paths([ws.images]),
        "masks": fingerprint_paths([ws.masks]) if ws.masks.is_dir() else None,
        "names": names,
    }
    result = _Pinhole(K=K, width=int(pin.width), height=int(pin.height))
    try:
        if json.loads((cache / "stamp.json").read_text()) == stamp:
            return result
    except (OSError, json.JSONDecodeError):
        pass
    # map: undistorted pixel centre -> distorted pixel (COLMAP: pixel centres at +0.5)
    W, H = int(pin.width), int(pin.height)
    u, v = np.meshgrid(np.arange(W, dtype=np.float64) + 0.5, np.arange(H, dtype=np.float64) + 0.5)
    xy = pin.cam_from_img(np.stack([u.ravel(), v.ravel()], axis=1))  # [H*W, 2]
    uv = cam.img_from_cam(np.concatenate([xy, np.ones((len(xy), 1))], axis=1), False)
    map_x = (uv[:, 0] - 0.5).reshape(H, W).astype(np.float32)
    map_y = (uv[:, 1] - 0.5).reshape(H, W).astype(np.float32)
    with atomic_dir(cache) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for n in names:
            img = cv2.imread(str(ws.images / n), cv2.IMREAD_COLOR)
            out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            cv2.imwrite(str(tmp / "images" / n), out, [cv2.IMWRITE_JPEG_QUALITY, 95])
            mp = ws.find_mask(n)
            if mp is not None:
                m = cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE)
                mo = cv2.remap(
                    m, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
                )
                cv2.imwrite(str(tmp / "masks" / ws.mask_for(n).name), mo)
        (tmp / "stamp.json").write_text(json.dumps(stamp))
    return result
