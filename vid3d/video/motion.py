"""Masks of what moves on its own: a car the camera follows, a person, a pet.

Structure from motion and splat training assume a static scene; the pixels that move
independently of the camera must be masked for both. This module finds them without a
learned model, from dense optical flow and two-view geometry on small grey copies of
the kept frames. It reads and writes no file: a stage calls :func:`moving_masks` on the
frames it keeps and writes the masks.

How it works (``benchmarks/bench_motion.py`` measures it on real and synthetic clips):

1. Flow (:func:`_flows`): OpenCV's DIS flow (medium preset) between every frame and
   its neighbours 1, 2, 4, ... kept frames away (``max_offset``), both ways.
2. Votes: a pixel votes in a pair only where its flow is measured, not guessed: it
   passes the forward-backward check, it has texture in both directions (smallest
   structure-tensor eigenvalue), it is not near the border or in ``exclude``, and its
   displacement is not beyond what DIS follows (``max_flow``, from the nearest pairs).
3. Camera motion, per pair (:func:`_fit_pair`): a fundamental matrix F and a
   homography H, both by MAGSAC on a grid subsample of the votes. A pair where F
   explains hardly more matches than H is rotation-only (a pan, a crop sliding over a
   still photo, a fixed camera); its static prediction is H. Otherwise it is the plane
   + parallax model of F (the F-compatible H, the epipole e' and the scene's range of
   projective depths): the static match nearest to a pixel's match lies on its
   epipolar line, within that range. Unlike the Sampson distance, this still sees a
   subject sitting on the epipole (a car the camera follows: its image hardly moves).
4. Scale-free residual (:func:`_pair_evidence`): the distance of each match from the
   nearest static match, divided by the pair's noise level: a line ``a + b * |d|`` in
   the camera's displacement ``d``, fitted to the median residual of the inliers, plus
   ``edge_noise`` times the spread of the flow over 9x9 pixels (DIS's patches mix two
   motions at a depth edge). The evidence of a frame is the mean over its pairs.
5. Seeds (:func:`_smooth`, :func:`_hysteresis`): the evidence averaged over
   ``temporal_window`` frames each side (warped along the flow) and blurred; seeds are
   above ``threshold``, grow over connected pixels above ``low_threshold`` and are
   followed from frame to frame along the flow while the evidence stays above it, or
   for up to ``temporal_window`` frames without it (a subject that moves along its
   epipolar lines for a moment looks static in every pair).
6. Extent (:func:`_refine`): each seed gets its own motion (an affine flow fitted on
   it in every pair); around it a pixel belongs to the subject where that motion
   explains its flow better than the static scene does (by ``segment_margin`` noise
   units, mean over the pairs), or fits it well while the static scene does not fit it
   clearly better (when that motion is distinct from the static scene's). This finds
   the whole subject from a seed on one side of it and stops at its outline.
7. Time and shape (:func:`_vote`, :func:`_clean`): a temporal majority over
   ``temporal_window`` frames each side (warped along the flow; the background a
   subject uncovers gets no vote from it), so masks do not flicker; closing, opening,
   hole filling, components below ``min_area`` dropped, and a ``dilation`` margin;
   then the masks are resized to the input resolution.

Memory: the flows of the whole clip are kept (4 flows of ``[h, w, 2]`` float32 per
frame with ``max_offset=2``: about 2 MB per kept frame at the default 320 px).

Example::

    result = moving_masks(frames)  # frames: list of [H, W, 3] uint8 RGB
    result.masks[0]                # [H, W] bool, True = moves on its own
    parallax_score(result)         # about 0: no parallax (rotation only, a still photo)
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Annotated

import cv2
import numpy as np

from vid3d.config import NonNegativeFloat, PositiveFloat, PositiveInt, Range, UnitFloat
from vid3d.errors import InputError


@dataclass
class MotionConfig:
    """How independently moving subjects are found (see :func:`moving_masks`)."""

    analysis_size: Annotated[int, Range(ge=64)] = 320
    """Long side, in pixels, of the grey frames the flow and the geometry run on
    (frames are never upscaled). Pixel distances below are at this size."""
    max_offset: PositiveInt = 2
    """Largest frame offset of a pair: each frame is compared with the kept frames
    1, 2, 4, ... (powers of two up to this) before and after it. 4 finds slower
    subjects but costs 50% more and loses pairs where the camera moves fast."""
    max_pair_gap: NonNegativeFloat = 1.0
    """Pairs more than this many seconds apart are not used, except the nearest
    neighbours (0: no limit). Needs ``times``."""
    threshold: PositiveFloat = 3.5
    """Smoothed evidence (residual in units of the pair's flow noise) that seeds a mask."""
    low_threshold: PositiveFloat = 2.5
    """Smoothed evidence down to which a seed grows in space and is followed in time."""
    temporal_window: Annotated[int, Range(ge=0)] = 2
    """Frames on each side whose evidence is averaged into a frame's, and whose masks
    vote on its mask (both warped along the flow), so that masks do not flicker."""
    segment_margin: NonNegativeFloat = 0.5
    """How much better (in noise units, mean over pairs) a seed's own motion must
    explain a pixel's flow than the static scene does for the pixel to join it."""
    min_area: UnitFloat = 0.002
    """Mask components smaller than this fraction of the picture are dropped."""
    dilation: UnitFloat = 0.01
    """Margin grown around every mask, as a fraction of the picture's diagonal."""
    ransac_threshold: PositiveFloat = 1.0
    """Inlier threshold of the F and H fits, in pixels."""
    sample_step: Annotated[int, Range(ge=2)] = 8
    """Grid step, in pixels, of the flow matches the F and H fits use."""
    min_texture: NonNegativeFloat = 5e-5
    """Pixels whose structure tensor's smallest eigenvalue (``cv2.cornerMinEigenVal``,
    7x7 block, grey levels in [0, 255]) is below this do not vote: their flow is
    interpolated from the surroundings, not measured (white walls, sky, aperture)."""
    max_flow: UnitFloat = 0.08
    """Pixels expected to move more than this fraction of the long side (their
    displacement to the nearest frame times the offset) do not vote in that pair:
    DIS then often fails the same way in both directions."""
    border: UnitFloat = 0.03
    """Pixels this close to the picture's edge (fraction of the long side) do not vote."""
    edge_noise: NonNegativeFloat = 0.1
    """Share of the flow's spread over 9x9 pixels added to the noise level."""
    parallax_threshold: PositiveFloat = 0.5
    """Distance, in pixels, within which a flow match counts as explained by F (Sampson
    distance) or by H (transfer distance), for the parallax share."""
    rotation_only_share: UnitFloat = 0.2
    """A pair where F explains at most this share of the flow matches more than H does
    is rotation-only (no parallax). Measured: 0.0-0.07 for a crop sliding over a still
    photo or a fixed camera, 0.4-0.75 for cameras walking through rooms."""


@dataclass
class MotionResult:
    """What :func:`moving_masks` found, per kept frame.

    Attributes:
        masks: ``[H, W]`` bool per frame, True = moves independently of the camera,
            at the input resolution.
        fraction: Share of each frame that is masked.
        inlier_ratio: Share of a frame's flow matches (grid samples) that are inliers
            of F, median over its pairs (nan without F: a camera that does not move).
        rotation_only: Whether a homography explains the frame's motion as well as F
            for most of its pairs (``parallax_share < rotation_only_share``): a camera
            that only rotates or pans, a crop sliding over a still picture, a fixed
            camera. Structure from motion needs parallax.
        parallax: Median parallax in pixels of the input frames: the median distance
            of the frame's flow matches from the best homography's prediction, median
            over its pairs (nan without a usable pair).
        parallax_share: Share of the frame's flow matches that F explains (within
            ``parallax_threshold``) and H does not, median over its pairs.
        noise: The frame's flow noise level (the ``a`` of ``a + b * |d|``) in pixels of
            the analysis frames, median over its pairs.
        size: ``(w, h)`` of the analysis frames.
        seconds: Wall time of the whole computation.
        pair_shares: Every pair's parallax share (:func:`parallax_score` uses them).
    """

    masks: list[np.ndarray]
    fraction: list[float]
    inlier_ratio: list[float]
    rotation_only: list[bool]
    parallax: list[float]
    parallax_share: list[float]
    noise: list[float]
    size: tuple[int, int]
    seconds: float
    pair_shares: list[float] = field(default_factory=list, repr=False)

    @property
    def clip_rotation_only(self) -> bool:
        """Whether most frames are rotation-only: the clip has no usable parallax."""
        return bool(np.mean(self.rotation_only) > NO_PARALLAX_MAJORITY) if self.rotation_only else False


# ----------------------------------------------------------------------------- geometry

_DEPTH_PERCENTILE = 0.2
"""The scene's range of projective depths: these percentiles of the F inliers' ..."""
_DEPTH_MARGIN = 0.5
"""... widened by this share of the range on both sides (near subjects are rare)."""
_GROW = 1.0
""":func:`_refine` looks for a subject's extent in its seed's box grown by this share
of the box's size on every side (a seed is often one side of its subject)."""
_OWN_FIT = 1.5
"""... where a pixel also joins when the subject's own motion fits its flow within this
many noise units (mean over pairs) ..."""
_OWN_LLR = -1.0
"""... and the static scene does not fit it better by more than this many ..."""
_DISTINCT = 0.5
"""... provided that motion is distinct from the static scene's: better on the seed by
this many noise units (median), ..."""
_DISTINCT_RING = 2.0
"""... or off by this many around the seed (median); otherwise a seed on static ground
would grow over all of it."""


_Flows = dict[tuple[int, int], np.ndarray]
"""Dense flows by ordered frame pair ``(i, j)``: ``[h, w, 2]`` float32, frame i's pixels to frame j."""
_Checks = dict[tuple[int, int], np.ndarray]
"""Their forward-backward checks: ``[h, w]`` bool, False where frame i's pixel is lost in frame j."""


@dataclass
class _PairModel:
    """The camera motion of one ordered pair of analysis frames."""

    H: np.ndarray  # [3, 3] the F-compatible H, or the fitted H when rotation-only
    e2: np.ndarray | None  # [3] epipole in the second frame (unit norm); None: rotation-only
    F: np.ndarray | None  # [3, 3] the fitted F (x2^T F x1 = 0); None: the camera is still
    Hd: np.ndarray  # [3, 3] the fitted H
    gamma_range: tuple[float, float]  # allowed projective depths
    rotation_only: bool
    inlier_ratio: float  # share of the grid matches that are F inliers (nan without F)
    share: float  # share of the matches within parallax_threshold of F but not of H
    parallax: float  # median transfer distance of the matches to the fitted H, pixels
    noise: tuple[float, float]  # (a, b) of the noise level a + b * |displacement|


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _sampson(F: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Sampson distance (pixels) of ``[N, 2]`` matches to F, ``[N]``."""
    x1 = np.c_[p1, np.ones(len(p1))]
    x2 = np.c_[p2, np.ones(len(p2))]
    fx1 = x1 @ F.T
    ftx2 = x2 @ F
    num = np.abs(np.sum(x2 * fx1, axis=1))
    den = np.sqrt(fx1[:, 0] ** 2 + fx1[:, 1] ** 2 + ftx2[:, 0] ** 2 + ftx2[:, 1] ** 2)
    return num / np.maximum(den, 1e-12)


def _transfer(H: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """``[N, 2]`` points mapped by H."""
    return cv2.perspectiveTransform(p1.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2)


def _compatible_h(F: np.ndarray, e2: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """The homography ``H = [e2]x F + e2 v^T`` compatible with F that best fits the matches.

    ``x2 x (A x1 + e2 (v . x1)) = 0`` is linear in v; solved by iteratively reweighted
    least squares (close to an L1 fit: a dominant plane of the scene).
    """
    a_mat = _skew(e2) @ F
    x1 = np.c_[p1, np.ones(len(p1))]
    x2 = np.c_[p2, np.ones(len(p2))]
    a = np.cross(x2, x1 @ a_mat.T)  # [N, 3]
    b = np.cross(x2, e2[None, :])  # [N, 3]
    m = (b[:, :, None] * x1[:, None, :]).reshape(-1, 3)
    r = -a.reshape(-1)
    v = np.linalg.lstsq(m, r, rcond=None)[0]
    for _ in range(3):
        res = np.abs(m @ v - r)
        w = 1.0 / np.maximum(res, np.median(res) + 1e-12)
        v = np.linalg.lstsq(m * w[:, None], r * w, rcond=None)[0]
    return a_mat + np.outer(e2, v)


def _parallax(
    H: np.ndarray, e2: np.ndarray, grange: tuple[float, float], p1: np.ndarray, p2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plane + parallax: ``x2 = H x1 + gamma (e2 - H x1)`` for a static point.

    Args:
        p1, p2: ``[N, 2]`` matches.

    Returns:
        The projective depth ``gamma`` of each match ``[N]``, the distance of ``x2``
        from the allowed segment ``{H x1 + g u : g in grange}`` ``[N]``, and the static
        match nearest to it ``[N, 2]``. :func:`_static_residual` is the dense version.
    """
    hx = _transfer(H, p1)
    u = e2[None, :2] - e2[2] * hx  # [N, 2] towards the epipole (scaled by e2[2])
    uu = np.maximum(np.sum(u * u, axis=1), 1e-12)
    gamma = np.sum((p2 - hx) * u, axis=1) / uu
    static = hx + np.clip(gamma, grange[0], grange[1])[:, None] * u
    return gamma, np.linalg.norm(p2 - static, axis=1), static


def _noise_line(disp: np.ndarray, res: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the noise level ``a + b * |d|`` of static matches, ``d`` the camera's
    displacement: a line through the median residual of 6 bins of ``|d|`` (equal
    counts), with ``a >= 0.05`` pixels and ``0 <= b <= 0.2``.

    The displacement is the one the camera motion predicts, not the measured flow:
    with a fixed camera a subject's flow is its residual, and must not raise the noise.
    """
    order = np.argsort(disp)
    bins = [i for i in np.array_split(order, 6) if len(i)]
    xs = np.array([np.median(disp[i]) for i in bins])
    ys = np.array([np.median(res[i]) for i in bins])
    if len(xs) >= 2 and np.ptp(xs) > 1e-6:
        b, a = np.polyfit(xs, ys, 1)
    else:
        a, b = float(np.median(res)), 0.0
    return max(float(a), 0.05), float(np.clip(b, 0.0, 0.2))


def _fit_pair(
    p1: np.ndarray, p2: np.ndarray, cfg: MotionConfig, reverse: _PairModel | None = None
) -> _PairModel | None:
    """The camera motion from ``[N, 2]`` flow matches, or None with fewer than 30.

    Args:
        reverse: The model of the same pair in the other direction, if fitted already:
            its F and H are transposed / inverted instead of fitted again (RANSAC is
            the costly part), and only the scales are fitted on these matches.
    """
    if len(p1) < 30:
        return None
    if reverse is None:
        try:
            Hd, h_inl = cv2.findHomography(
                p1, p2, cv2.USAC_MAGSAC, cfg.ransac_threshold, maxIters=500, confidence=0.999
            )
        except cv2.error:  # OpenCV asserts on some degenerate samples
            Hd = None
        if Hd is None:
            return None
    else:
        Hd = np.linalg.inv(reverse.Hd)
    hx = _transfer(Hd, p1)
    h_res = np.linalg.norm(hx - p2, axis=1)
    h_disp = np.linalg.norm(hx - p1, axis=1)
    h_inl = h_inl.ravel() > 0 if reverse is None else h_res < cfg.ransac_threshold
    if h_inl.sum() < 10:
        h_inl = np.ones(len(p1), bool)
    parallax = float(np.median(h_res))
    F = None
    if reverse is not None:
        F = None if reverse.F is None else reverse.F.T
    elif np.median(np.linalg.norm(p2 - p1, axis=1)) > 0.05:  # a still camera has no epipoles
        try:
            F, _ = cv2.findFundamentalMat(p1, p2, cv2.USAC_MAGSAC, cfg.ransac_threshold, 0.999, 500)
        except cv2.error:
            F = None
        if F is not None and F.shape != (3, 3):  # several solutions stacked: none is sure
            F = None

    def homography_only(inlier_ratio: float, share: float) -> _PairModel:
        """The pair's model when H explains it (no parallax, or a still camera)."""
        noise = _noise_line(h_disp[h_inl], h_res[h_inl])
        return _PairModel(Hd, None, F, Hd, (0.0, 0.0), True, inlier_ratio, share, parallax, noise)

    if F is None:
        return homography_only(float("nan"), 0.0)
    f_res = _sampson(F, p1, p2)
    inl = f_res < cfg.ransac_threshold  # MAGSAC's own mask, and defined both ways
    share = float(np.mean(f_res < cfg.parallax_threshold)) - float(np.mean(h_res < cfg.parallax_threshold))
    if share < cfg.rotation_only_share or inl.sum() < 10:  # H explains it as well as F
        return homography_only(float(inl.mean()), share)
    e2 = np.linalg.svd(F.T)[2][-1]  # F^T e2 = 0
    e2 = e2 / np.linalg.norm(e2)
    if reverse is not None and reverse.e2 is not None:
        H = np.linalg.inv(reverse.H)  # the same plane, seen the other way
    else:
        H = _compatible_h(F, e2, p1[inl], p2[inl])
    gamma, _, _ = _parallax(H, e2, (-np.inf, np.inf), p1, p2)
    lo, hi = np.percentile(gamma[inl], [_DEPTH_PERCENTILE, 100 - _DEPTH_PERCENTILE])
    grange = (float(lo - _DEPTH_MARGIN * (hi - lo)), float(hi + _DEPTH_MARGIN * (hi - lo)))
    _, dist, static = _parallax(H, e2, grange, p1, p2)
    noise = _noise_line(np.linalg.norm(static - p1, axis=1)[inl], dist[inl])
    return _PairModel(H, e2, F, Hd, grange, False, float(inl.mean()), share, parallax, noise)


# ----------------------------------------------------------------------------- pairs


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``xs, ys`` ``[h, w]`` float32 (shared and read-only)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def _fb_valid(f12: np.ndarray, f21: np.ndarray) -> np.ndarray:
    """``[h, w]`` bool: the forward flow ``[h, w, 2]`` is confirmed by the backward one."""
    xs, ys = _grid(*f12.shape[:2])
    back = cv2.remap(
        f21,
        xs + f12[..., 0],
        ys + f12[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(1e4, 1e4),
    )
    err = cv2.magnitude(f12[..., 0] + back[..., 0], f12[..., 1] + back[..., 1])
    return err < 0.75 + 0.1 * cv2.magnitude(f12[..., 0], f12[..., 1])


def _static_residual(model: _PairModel, f12: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distance (pixels) of each pixel's match from the nearest static match, and
    the length of that static match's displacement; both ``[h, w]`` float32.

    The dense, float32 version of :func:`_parallax` (of H's transfer when rotation-only).
    """
    xs, ys = _grid(*f12.shape[:2])
    H = model.H.astype(np.float32)
    z = H[2, 0] * xs + H[2, 1] * ys + H[2, 2]
    z = np.where(np.abs(z) < 1e-6, np.float32(1e-6), z)
    hx = (H[0, 0] * xs + H[0, 1] * ys + H[0, 2]) / z
    hy = (H[1, 0] * xs + H[1, 1] * ys + H[1, 2]) / z
    x2 = xs + f12[..., 0]
    y2 = ys + f12[..., 1]
    if model.e2 is None:
        sx, sy = hx, hy
    else:
        e = model.e2.astype(np.float32)
        ux = e[0] - e[2] * hx
        uy = e[1] - e[2] * hy
        uu = np.maximum(ux * ux + uy * uy, np.float32(1e-12))
        g = np.clip(((x2 - hx) * ux + (y2 - hy) * uy) / uu, *model.gamma_range)
        g = g.astype(np.float32)
        sx = hx + g * ux
        sy = hy + g * uy
    return cv2.magnitude(x2 - sx, y2 - sy), cv2.magnitude(sx - xs, sy - ys)


def _sigma(model: _PairModel, f12: np.ndarray, disp: np.ndarray, edge_noise: float) -> np.ndarray:
    """``[h, w]`` float32 noise level: ``a + b * |disp|`` plus ``edge_noise`` times the
    spread of the flow over 9x9 pixels."""
    a, b = model.noise
    sigma = a + b * disp
    if edge_noise > 0:
        k = np.ones((9, 9), np.uint8)
        sx = cv2.dilate(f12[..., 0], k) - cv2.erode(f12[..., 0], k)
        sy = cv2.dilate(f12[..., 1], k) - cv2.erode(f12[..., 1], k)
        sigma = sigma + edge_noise * cv2.magnitude(sx, sy)
    return sigma.astype(np.float32)


def _grid_matches(f12: np.ndarray, valid: np.ndarray, cfg: MotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """The flow's matches ``(p1, p2)``, ``[N, 2]`` each, on a ``sample_step`` grid of the
    ``valid`` pixels: what the camera motion of a pair is fitted to."""
    h, w = f12.shape[:2]
    xs, ys = _grid(h, w)
    s = cfg.sample_step
    sel = np.zeros((h, w), bool)
    sel[s // 2 :: s, s // 2 :: s] = True
    sel &= valid
    p1 = np.stack([xs[sel], ys[sel]], axis=1).astype(np.float64)
    return p1, p1 + f12[sel]


def _pair_evidence(
    f12: np.ndarray, valid: np.ndarray, cfg: MotionConfig, reverse: _PairModel | None = None
) -> tuple[np.ndarray, _PairModel | None]:
    """The camera motion of a pair and the normalised residual of frame 1's pixels.

    Args:
        f12: ``[h, w, 2]`` flow from frame 1 to frame 2.
        valid: ``[h, w]`` bool, the pixels of frame 1 that vote in this pair.
        reverse: The pair's model the other way, if known (see :func:`_fit_pair`).

    Returns:
        ``[h, w]`` float32 residuals in noise units (nan: no vote), and the model
        (None when too few pixels vote).
    """
    h, w = f12.shape[:2]
    model = _fit_pair(*_grid_matches(f12, valid, cfg), cfg, reverse)
    out = np.full((h, w), np.nan, np.float32)
    if model is None:
        return out, None
    res, disp = _static_residual(model, f12)
    score = res / (1.4826 * _sigma(model, f12, disp, cfg.edge_noise))
    out[valid] = score[valid]
    return out, model


def _offsets(max_offset: int) -> list[int]:
    """1, 2, 4, ... up to ``max_offset``."""
    return [1 << k for k in range(max(0, int(math.log2(max_offset))) + 1)]


def _flows(
    grey: list[np.ndarray], times: np.ndarray | None, cfg: MotionConfig
) -> tuple[dict[tuple[int, int], np.ndarray], dict[tuple[int, int], np.ndarray]]:
    """DIS flow of every pair both ways, ``(i, j) -> [h, w, 2]`` float32 (the
    displacement from frame i's pixels to frame j), and its forward-backward check,
    ``(i, j) -> [h, w]`` bool (False where frame i's pixel is occluded in frame j or
    its flow is wrong: nothing is carried from frame j to it)."""
    n = len(grey)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flows: _Flows = {}
    need = set(_offsets(cfg.max_offset)) | set(range(1, cfg.temporal_window + 1))
    for d in sorted(need):
        for i in range(n - d):
            j = i + d
            if (
                d > 1
                and times is not None
                and cfg.max_pair_gap > 0
                and times[j] - times[i] > cfg.max_pair_gap
            ):
                continue
            flows[i, j] = dis.calc(grey[i], grey[j], None)
            flows[j, i] = dis.calc(grey[j], grey[i], None)
    fb = {(i, j): _fb_valid(f, flows[j, i]) for (i, j), f in flows.items()}
    return flows, fb


def _evidence(
    flows: _Flows, fb: _Checks, votes: list[np.ndarray], cfg: MotionConfig
) -> tuple[list[np.ndarray], dict[tuple[int, int], _PairModel]]:
    """Per frame, the mean normalised residual over its pairs ``[h, w]`` float32 (0
    where no pair votes), and every pair's camera motion.

    Args:
        flows, fb: The flows and their forward-backward checks (:func:`_flows`).
        votes: ``[h, w]`` bool per frame: the pixels that may vote (texture, border).
    """
    h, w = votes[0].shape
    limit = cfg.max_flow * max(h, w)
    evidence: list[np.ndarray] = []
    models: dict[tuple[int, int], _PairModel] = {}
    for i in range(len(votes)):
        # the displacement to the nearest frames predicts the one to farther frames
        near = None
        for j in (i - 1, i + 1):
            if (i, j) in flows:
                m = cv2.magnitude(flows[i, j][..., 0], flows[i, j][..., 1])
                near = m if near is None else np.maximum(near, m)
        total = np.zeros((h, w), np.float32)
        count = np.zeros((h, w), np.float32)
        for d in _offsets(cfg.max_offset):
            for j in (i - d, i + d):
                if (i, j) not in flows:
                    continue
                ok = votes[i] & fb[i, j]
                if d > 1 and near is not None:
                    ok &= near * d < limit
                ev, model = _pair_evidence(flows[i, j], ok, cfg, models.get((j, i)))
                if model is None:
                    continue
                models[i, j] = model
                have = ~np.isnan(ev)
                total[have] += ev[have]
                count[have] += 1
        evidence.append(np.where(count > 0, total / np.maximum(count, 1), 0).astype(np.float32))
    return evidence, models


# ----------------------------------------------------------------------------- masks


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` of frame 2 sampled at ``x + flow(x)``: frame 2's values on frame 1's pixels."""
    xs, ys = _grid(*flow.shape[:2])
    return cv2.remap(
        img, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _smooth(evidence: list[np.ndarray], flows: _Flows, fb: _Checks, window: int) -> list[np.ndarray]:
    """The evidence averaged over ``window`` frames each side, warped along the flow (a
    neighbour adds 0 where the pixel fails the forward-backward check: no ghost of a
    subject on the background it uncovers), and blurred a little in space."""
    h, w = evidence[0].shape
    sigma = max(1.0, 0.006 * max(w, h))
    out = []
    for i in range(len(evidence)):
        acc = evidence[i].copy()
        k = np.ones((h, w), np.float32)
        for d in range(1, window + 1):
            for j in (i - d, i + d):
                if (i, j) in flows:
                    ok = fb[i, j]
                    acc[ok] += _warp(evidence[j], flows[i, j])[ok]
                    k += 1
        out.append(cv2.GaussianBlur(acc / k, (0, 0), sigma))
    return out


def _components_with_seed(cand: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected components of ``cand`` that contain a pixel of ``seed``."""
    n, lab = cv2.connectedComponents(cand.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(lab[seed & cand])] = True
    keep[0] = False
    return keep[lab]


def _hysteresis(smooth: list[np.ndarray], flows: _Flows, fb: _Checks, cfg: MotionConfig) -> list[np.ndarray]:
    """Seeds ``[h, w]`` bool: pixels above ``threshold`` grown over the connected pixels
    above ``low_threshold``, and followed along the flow (forwards and backwards):
    while the evidence stays above ``low_threshold``, and for up to ``temporal_window``
    frames without it (a subject moving along its epipolar line for a moment looks
    static in every pair: :func:`_refine` then keeps it by its own motion)."""
    n = len(smooth)
    low = [e > cfg.low_threshold for e in smooth]
    base = [_components_with_seed(low[i], smooth[i] > cfg.threshold) for i in range(n)]
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def follow(order: range, step: int) -> list[np.ndarray]:
        out = [b.copy() for b in base]
        age = [np.zeros(b.shape, np.float32) for b in base]  # frames without evidence
        for i in order:
            j = i - step
            if (i, j) not in flows or not out[j].any():
                continue
            prev = (_warp(out[j].astype(np.float32), flows[i, j]) > 0.5) & fb[i, j]
            prev = (cv2.dilate(prev.astype(np.uint8), grow) > 0) & ~base[i]
            old = cv2.dilate(_warp(np.where(out[j], age[j], 0).astype(np.float32), flows[i, j]), grow) + 1
            keep = prev & (low[i] | (old <= cfg.temporal_window))
            out[i] |= keep
            age[i][keep] = np.where(low[i], 0, old)[keep]
        return out

    fwd = follow(range(1, n), 1)
    bwd = follow(range(n - 2, -1, -1), -1)
    return [f | b for f, b in zip(fwd, bwd)]


def _fit_affine(p1: np.ndarray, p2: np.ndarray) -> np.ndarray | None:
    """``[2, 3]`` affine map with ``p2 ~ A [p1, 1]`` from ``[N, 2]`` matches: least
    squares, then again without the worst third. None with fewer than 12 matches."""
    if len(p1) < 12:
        return None
    x = np.c_[p1, np.ones(len(p1))]
    a = np.linalg.lstsq(x, p2, rcond=None)[0]  # [3, 2]
    r = np.linalg.norm(x @ a - p2, axis=1)
    keep = r <= np.percentile(r, 67)
    if keep.sum() >= 6:
        a = np.linalg.lstsq(x[keep], p2[keep], rcond=None)[0]
    return a.T


def _refine(
    i: int,
    seed: np.ndarray,
    flows: _Flows,
    fb: _Checks,
    models: dict[tuple[int, int], _PairModel],
    votes: np.ndarray,
    cfg: MotionConfig,
) -> np.ndarray:
    """The extent ``[h, w]`` bool of the subjects that ``seed`` ``[h, w]`` found in frame i.

    Each seed component gets its own motion, an affine flow fitted on its voting pixels
    in every pair of frame i. In a window around it (its box grown by ``_GROW`` times
    its size), a voting pixel belongs to the subject where that motion explains its
    flow better than the static scene does: the mean over the pairs of the difference
    of the two residuals in noise units, each clipped to +-3, is above
    ``segment_margin``; or where the subject's motion fits it within ``_OWN_FIT`` units
    and the static scene is not better by more than ``-_OWN_LLR`` (in the pairs where
    the subject's motion is distinct from the static scene's: see ``_DISTINCT``). The
    pixels so found that touch the seed, closed, are the subject.
    """
    h, w = seed.shape
    n_lab, lab, stats, _ = cv2.connectedComponentsWithStats(seed.astype(np.uint8), connectivity=8)
    if n_lab <= 1:
        return seed
    xs, ys = _grid(h, w)
    pairs = []
    for (a, j), model in models.items():
        if a == i:
            f = flows[i, j]
            res, disp = _static_residual(model, f)
            pairs.append((f, fb[i, j] & votes, res, 1.4826 * _sigma(model, f, disp, cfg.edge_noise)))
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    out = np.zeros((h, w), bool)
    for c in range(1, n_lab):
        comp = lab == c
        x0, y0, bw, bh, _ = stats[c]
        gx, gy = max(4, int(_GROW * bw)), max(4, int(_GROW * bh))
        win = (slice(max(0, y0 - gy), min(h, y0 + bh + gy)), slice(max(0, x0 - gx), min(w, x0 + bw + gx)))
        px, py = xs[win], ys[win]
        near_seed = cv2.dilate(comp[win].astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        total = np.zeros(px.shape, np.float32)
        fit = np.zeros(px.shape, np.float32)
        count = np.zeros(px.shape, np.float32)
        for f, valid, res, sigma in pairs:
            on = comp & valid
            p1 = np.stack([xs[on], ys[on]], axis=1)
            A = _fit_affine(p1, p1 + f[on])
            if A is None:
                continue
            fw = f[win]
            own = cv2.magnitude(
                fw[..., 0] - (A[0, 0] * px + A[0, 1] * py + A[0, 2] - px),
                fw[..., 1] - (A[1, 0] * px + A[1, 1] * py + A[1, 2] - py),
            )
            better = np.clip((res[win] - own) / sigma[win], -3.0, 3.0)
            v = valid[win]
            total[v] += better[v]
            # a pixel its own motion fits joins even where the static scene fits it
            # too, if that motion is distinct: better than the static scene on the seed,
            # or off around it (else a seed on static ground would grow over all of it)
            ring = v & ~near_seed
            fits = np.minimum(own / sigma[win], 3.0)
            seed_px = on[win]
            distinct = (bool(seed_px.any()) and float(np.median(better[seed_px])) >= _DISTINCT) or (
                bool(ring.any()) and float(np.median(fits[ring])) >= _DISTINCT_RING
            )
            fit[v] += fits[v] if distinct else 3.0
            count[v] += 1
        if not count.any():  # too little texture on it to say: keep the seed
            out |= comp
            continue
        obj = np.zeros((h, w), np.uint8)
        obj[win] = (count > 0) & (
            (total > cfg.segment_margin * count) | ((fit < _OWN_FIT * count) & (total > _OWN_LLR * count))
        )
        obj = cv2.morphologyEx(obj, cv2.MORPH_CLOSE, close) > 0
        out |= _components_with_seed(obj, comp)
    return out


def _vote(masks: list[np.ndarray], flows: _Flows, fb: _Checks, window: int) -> list[np.ndarray]:
    """Temporal majority: a pixel stays where at least half of the masks of the frames
    within ``window`` (itself included, warped along the flow onto it) have it. Frames
    where the pixel fails the forward-backward check do not vote: the background a
    subject uncovers does not inherit the subject's mask."""
    if window <= 0:
        return masks
    out = []
    for i, m in enumerate(masks):
        acc = m.astype(np.float32)
        k = np.ones(m.shape, np.float32)
        for d in range(1, window + 1):
            for j in (i - d, i + d):
                if (i, j) in flows:
                    acc += (_warp(masks[j].astype(np.float32), flows[i, j]) > 0.5) & fb[i, j]
                    k += 1
        out.append(acc >= 0.5 * k)
    return out


def _clean(mask: np.ndarray, min_px: int, margin: int) -> np.ndarray:
    """Close, open, fill holes, drop components under ``min_px``, grow by ``margin`` px."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, k)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    out = keep[lab].astype(np.uint8)
    contours, _ = cv2.findContours(out, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    if margin > 0 and out.any():
        out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    return out > 0


# ----------------------------------------------------------------------------- API


def _to_grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    raise InputError(
        f"a frame must be [H, W, 3] RGB or [H, W] grey; got shape {frame.shape}",
        "pass uint8 RGB or grey frames",
    )


def _prepare(
    frames: list[np.ndarray], times: np.ndarray | None, exclude: np.ndarray | None, cfg: MotionConfig
) -> tuple[list[np.ndarray], np.ndarray, float]:
    """The checked inputs as small grey frames, the pixels that may vote ``[h, w]`` bool
    (border and ``exclude`` off) and the scale of the analysis frames."""
    n = len(frames)
    if n < 2:
        raise InputError(f"moving_masks needs at least 2 frames; got {n}", "pass the kept frames of a shot")
    H0, W0 = frames[0].shape[:2]
    for f in frames:
        if f.shape[:2] != (H0, W0) or f.dtype != np.uint8:
            raise InputError(
                f"frames must be uint8 and all {W0}x{H0}; got {f.dtype} {f.shape[1]}x{f.shape[0]}",
                "pass frames of one size, uint8",
            )
    if times is not None and (times.shape != (n,) or np.any(np.diff(times) < 0)):
        raise InputError(
            f"times must be {n} increasing seconds; got shape {times.shape}",
            "pass one presentation time per frame, in order",
        )
    if exclude is not None and exclude.shape != (H0, W0):
        raise InputError(
            f"exclude must be a {W0}x{H0} mask; got shape {exclude.shape}",
            "pass the overlay mask at the frames' resolution",
        )
    s = min(1.0, cfg.analysis_size / max(H0, W0))
    w, h = max(16, round(W0 * s)), max(16, round(H0 * s))
    grey = [cv2.resize(_to_grey(f), (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    usable = np.zeros((h, w), bool)
    b = int(round(cfg.border * max(h, w)))
    usable[b : h - b, b : w - b] = True
    if exclude is not None:
        small = cv2.resize(exclude.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        usable &= cv2.dilate(small, np.ones((3, 3), np.uint8)) == 0
    return grey, usable, s


def _per_frame(models: list[list[_PairModel]], get) -> list[float]:
    """The median of ``get(model)`` over each frame's pairs (nan values left out)."""
    out = []
    for ms in models:
        vals = [v for v in (get(m) for m in ms) if not math.isnan(v)]
        out.append(float(np.median(vals)) if vals else float("nan"))
    return out


def moving_masks(
    frames: list[np.ndarray],
    times: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    config: MotionConfig | None = None,
) -> MotionResult:
    """Masks of what moves independently of the camera in each kept frame.

    Args:
        frames: The kept frames in time order, each ``[H, W, 3]`` uint8 RGB or
            ``[H, W]`` uint8 grey, all of one size; at least 2.
        times: ``[N]`` presentation times in seconds (increasing), to leave out pairs
            more than ``max_pair_gap`` apart. Default: none (every pair up to
            ``max_offset`` frames apart is used).
        exclude: ``[H, W]`` bool, True = already masked (a static overlay such as a
            watermark): those pixels neither fit the camera motion nor vote, and are
            never reported as moving. Default: none.
        config: Default: ``MotionConfig()``.

    Returns:
        The masks at the input resolution and per-frame diagnostics.

    Raises:
        InputError: Fewer than 2 frames, frames of different sizes or not uint8, or
            ``times`` / ``exclude`` that do not fit the frames.
    """
    cfg = config or MotionConfig()
    t0 = time.perf_counter()
    if times is not None:
        times = np.asarray(times, np.float64)
    grey, usable, s = _prepare(frames, times, exclude, cfg)
    n = len(grey)
    h, w = usable.shape
    H0, W0 = frames[0].shape[:2]
    flows, fb = _flows(grey, times, cfg)
    votes = [usable & (cv2.cornerMinEigenVal(g, 7, 3) > cfg.min_texture) for g in grey]
    evidence, pair_models = _evidence(flows, fb, votes, cfg)
    seeds = _hysteresis(_smooth(evidence, flows, fb, cfg.temporal_window), flows, fb, cfg)
    subjects = [_refine(i, m, flows, fb, pair_models, votes[i], cfg) for i, m in enumerate(seeds)]
    subjects = _vote(subjects, flows, fb, cfg.temporal_window)
    min_px = max(1, int(cfg.min_area * w * h))
    margin = int(round(cfg.dilation * math.hypot(w, h)))
    masks, fraction = [], []
    for m in subjects:
        m = _clean(m, min_px, margin)
        big = cv2.resize(m.astype(np.uint8), (W0, H0), interpolation=cv2.INTER_LINEAR) > 0
        if exclude is not None:
            big &= ~exclude
        masks.append(big)
        fraction.append(float(big.mean()))
    models = [[m for (a, _), m in pair_models.items() if a == i] for i in range(n)]
    return MotionResult(
        masks=masks,
        fraction=fraction,
        inlier_ratio=_per_frame(models, lambda m: m.inlier_ratio),
        rotation_only=[
            bool(np.mean([m.rotation_only for m in ms]) > NO_PARALLAX_MAJORITY) if ms else False
            for ms in models
        ],
        parallax=[p / s for p in _per_frame(models, lambda m: m.parallax)],
        parallax_share=_per_frame(models, lambda m: m.share),
        noise=_per_frame(models, lambda m: m.noise[0]),
        size=(w, h),
        seconds=time.perf_counter() - t0,
        pair_shares=[m.share for ms in models for m in ms],
    )


NO_PARALLAX_MAJORITY = 0.5
"""A frame, or a clip, is rotation-only when more than this share of its pairs is."""
_PARALLAX_BASELINE = 0.03
"""Median flow, as a fraction of the long side, that a pair of :func:`clip_parallax`
should have: enough baseline for parallax, well within what DIS follows."""


@dataclass
class Parallax:
    """What :func:`clip_parallax` measured on a sample of frame pairs."""

    score: float
    """Median over the pairs of the share of flow matches that F explains and H does
    not (as :func:`parallax_score`; nan when no pair could be fitted)."""
    rotation_only: float
    """Share of the pairs that a homography explains as well as F."""
    pairs: int
    """Pairs fitted."""
    seconds: float

    @property
    def clip_rotation_only(self) -> bool:
        """Whether most pairs are rotation-only: the clip has no usable parallax."""
        return self.pairs > 0 and self.rotation_only > NO_PARALLAX_MAJORITY


def clip_parallax(
    frames: list[np.ndarray],
    exclude: np.ndarray | None = None,
    config: MotionConfig | None = None,
    max_pairs: int = 12,
) -> Parallax:
    """The clip's parallax from a few frame pairs, without masks: the cheap check that
    a clip is not a pan, a tilt or a still picture sliding past (about 0.1 s a pair at
    320 px). :func:`moving_masks` measures the same on every pair.

    Args:
        frames: Kept frames in time order (``[H, W, 3]`` RGB or ``[H, W]`` grey uint8,
            one size); at least 2.
        exclude: ``[H, W]`` bool, True = not used (overlays).
        config: Default: ``MotionConfig()``.
        max_pairs: Most pairs; their first frames are evenly spread over the clip, the
            second is the nearest of the 1st, 2nd, 4th, ... next frames whose picture
            moved by :data:`_PARALLAX_BASELINE` (median flow).
    """
    cfg = config or MotionConfig()
    t0 = time.perf_counter()
    grey, usable, _ = _prepare(frames, None, exclude, cfg)
    n = len(grey)
    target = _PARALLAX_BASELINE * max(usable.shape)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    models = []
    for i in np.unique(np.linspace(0, n - 2, min(max_pairs, n - 1)).round().astype(int)):
        # the nearest partner that the picture has moved far enough from (parallax
        # grows with the baseline; consecutive kept frames of a slow camera have little)
        d = 1
        while True:
            f12 = dis.calc(grey[i], grey[i + d], None)
            if i + 2 * d > n - 1 or np.median(cv2.magnitude(f12[..., 0], f12[..., 1])) >= target:
                break
            d *= 2
        ok = usable & _fb_valid(f12, dis.calc(grey[i + d], grey[i], None))
        ok &= cv2.cornerMinEigenVal(grey[i], 7, 3) > cfg.min_texture
        model = _fit_pair(*_grid_matches(f12, ok, cfg), cfg)
        if model is not None:
            models.append(model)
    shares = [m.share for m in models]
    return Parallax(
        score=float(np.median(shares)) if shares else float("nan"),
        rotation_only=float(np.mean([m.rotation_only for m in models])) if models else 0.0,
        pairs=len(models),
        seconds=time.perf_counter() - t0,
    )


def parallax_score(result: MotionResult) -> float:
    """How much better a fundamental matrix explains the clip's motion than a homography.

    The median, over every pair of frames, of the share of the flow matches that F
    explains (Sampson distance within ``parallax_threshold``) and the best homography
    does not. About 0 without parallax: a camera that only rotates or pans, a crop
    window sliding over one still picture, a fixed camera (structure from motion cannot
    work there); 0.4-0.75 for cameras walking through rooms.

    Args:
        result: What :func:`moving_masks` returned for the clip.

    Returns:
        The share, in [-1, 1] (nan when no pair could be fitted).
    """
    return float(np.median(result.pair_shares)) if result.pair_shares else float("nan")
