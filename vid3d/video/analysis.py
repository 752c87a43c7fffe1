"""Frame analysis for frame selection: sharpness, cuts, bars, overlays, motion.

Everything here works on grey images (usually downscaled luma planes) and numpy
arrays, so it is testable without a video. The frames stage
(:mod:`vid3d.stages.frames`) feeds it while decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def fit_long_side(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The size ``(w, h)`` with the long side at most ``long_side`` (never upscaled)."""
    s = min(1.0, long_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def resize_area(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size = (w, h)`` with area averaging; a no-op at the same size."""
    if (img.shape[1], img.shape[0]) == size:
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian, a focus / motion-blur measure (higher is sharper).

    Args:
        grey: ``[H, W]`` uint8 image.
    """
    lap = cv2.Laplacian(grey, cv2.CV_16S)  # exact for uint8 input, and 3x faster than float
    _, std = cv2.meanStdDev(lap)
    return float(std[0, 0]) ** 2


# ----------------------------------------------------------------------------- cuts


def cut_features(thumb: np.ndarray) -> np.ndarray:
    """The normalised 32-bin grey histogram of a small thumbnail, ``[32]`` float32."""
    hist = cv2.calcHist([thumb], [0], None, [32], [0, 256]).reshape(-1)
    return hist / max(float(hist.sum()), 1.0)


def cut_score(
    prev_hist: np.ndarray, prev_thumb: np.ndarray, hist: np.ndarray, thumb: np.ndarray
) -> tuple[float, float]:
    """How much a frame differs from the previous one.

    Args:
        prev_hist, hist: ``[32]`` histograms from :func:`cut_features`.
        prev_thumb, thumb: ``[h, w]`` uint8 thumbnails.

    Returns:
        The Bhattacharyya distance of the histograms and the mean absolute
        difference of the thumbnails (in [0, 1]).
    """
    bc = float(np.sqrt(prev_hist * hist).sum())
    diff = cv2.absdiff(prev_thumb, thumb)
    return float(np.sqrt(max(0.0, 1.0 - bc))), float(diff.mean()) / 255.0


CUT_MIN_HIST = 0.2  # least histogram distance of a cut
CUT_MIN_DIFF = 0.06  # least mean absolute thumbnail difference of a cut


def find_cuts(
    scores: np.ndarray,
    fps: float,
    min_hist: float = CUT_MIN_HIST,
    min_diff: float = CUT_MIN_DIFF,
    ratio: float = 4.0,
    min_shot_frames: int = 5,
) -> list[int]:
    """Hard cuts: frames whose change from the previous frame stands out.

    A frame starts a new shot when both its histogram distance and its thumbnail
    difference exceed an absolute floor and ``ratio`` times the median change of
    the surrounding second (frames identical to their predecessor, as in
    screen captures, are left out of that median).

    Args:
        scores: ``[N, 2]``, :func:`cut_score` of every frame (row 0: zeros).
        fps: Frame rate, to size the neighbourhood.
        min_hist: Least histogram distance of a cut.
        min_diff: Least mean absolute thumbnail difference of a cut.
        ratio: How many times the local median change a cut must exceed.
        min_shot_frames: Cuts closer than this to the previous one (or the start)
            are ignored (flashes, glitches).

    Returns:
        Indices of the first frame of every shot after the first, increasing.
    """
    n = len(scores)
    half = max(5, int(round(fps or 30)))
    moving = scores[:, 1] > 1e-3
    cuts: list[int] = []
    for i in range(1, n):
        h, d = scores[i]
        if h < min_hist or d < min_diff:
            continue
        lo, hi = max(1, i - half), min(n, i + half + 1)
        idx = [j for j in range(lo, hi) if j != i and moving[j]]
        if idx:
            base_h = float(np.median(scores[idx, 0]))
            base_d = float(np.median(scores[idx, 1]))
            if h < ratio * base_h or d < ratio * base_d:
                continue
        if i - (cuts[-1] if cuts else 0) < min_shot_frames or n - i < min_shot_frames:
            continue
        cuts.append(i)
    return cuts


# ----------------------------------------------------------------------------- bars


class _LineStats:
    """Per line (row or column): in how many frames it was not one colour, not
    dark, or not the colour it had in the first frame."""

    def __init__(self, length: int) -> None:
        self.not_flat = np.zeros(length, np.int32)
        self.not_dark = np.zeros(length, np.int32)
        self.changed = np.zeros(length, np.int32)
        self.first_mid: np.ndarray | None = None

    def add(self, lo: np.ndarray, hi: np.ndarray) -> None:
        lo16, hi16 = lo.astype(np.int16), hi.astype(np.int16)
        mid = (lo16 + hi16) // 2
        if self.first_mid is None:
            self.first_mid = mid
        self.not_flat += (hi16 - lo16) > 16  # one colour along the line, up to noise
        self.not_dark += hi16 > 40  # near-black
        self.changed += np.abs(mid - self.first_mid) > 10  # the colour it had at the start

    def bar(self, n: int, tolerance: float = 0.02) -> np.ndarray:
        """``[L]`` bool: lines that look like a bar in all but ``tolerance`` of ``n`` frames."""
        allowed = tolerance * n
        return (self.not_flat <= allowed) & ((self.not_dark <= allowed) | (self.changed <= allowed))


class BarDetector:
    """Finds letterbox / pillarbox bars: edge rows and columns that stay near-black
    or one constant colour over the whole clip.

    Feed it every frame's full-resolution grey image with :meth:`add`, then call
    :meth:`crop_box`.
    """

    def __init__(self) -> None:
        self.n = 0
        self._rows: _LineStats | None = None
        self._cols: _LineStats | None = None

    def add(self, grey: np.ndarray) -> None:
        """Accumulate one ``[H, W]`` uint8 frame."""
        # (numpy's uint8 min/max reductions are ~10x faster than cv2.reduce here)
        if self._rows is None:
            self._rows, self._cols = _LineStats(grey.shape[0]), _LineStats(grey.shape[1])
        self._rows.add(grey.min(1), grey.max(1))
        self._cols.add(grey.min(0), grey.max(0))
        self.n += 1

    @staticmethod
    def _span(bar: np.ndarray) -> tuple[int, int]:
        n = len(bar)
        a = 0
        while a < n and bar[a]:
            a += 1
        b = n
        while b > a and bar[b - 1]:
            b -= 1
        return a, b

    def crop_box(self) -> tuple[int, int, int, int]:
        """The picture inside the bars as ``(x0, y0, x1, y1)`` (x1, y1 exclusive).

        The full frame when no bar is found, or when the "picture" would be less
        than a third of the frame in either direction (a dark or frozen clip).
        """
        if self._rows is None or self._cols is None:
            return (0, 0, 0, 0)
        h, w = len(self._rows.not_flat), len(self._cols.not_flat)
        y0, y1 = self._span(self._rows.bar(self.n))
        x0, x1 = self._span(self._cols.bar(self.n))
        if y1 - y0 < h / 3 or x1 - x0 < w / 3:
            return (0, 0, w, h)
        # a "bar" thinner than 2 px is an encoder's edge artefact, not worth a crop
        if y0 < 2:
            y0 = 0
        if h - y1 < 2:
            y1 = h
        if x0 < 2:
            x0 = 0
        if w - x1 < 2:
            x1 = w
        return (x0, y0, x1, y1)


# ----------------------------------------------------------------------------- overlays


_TRANSLUCENT_PURITY = 0.6
"""Share of a translucent region's strong edges (in its box) that must be steady."""


class OverlayDetector:
    """Finds static overlays (logos, watermarks, captions, UI) over a moving scene.

    An overlay's edges stay where they are while the scene moves: in the
    temporal mean image they remain as sharp as in a single frame. Scene edges
    move, so they blur out of the mean image. Two kinds of edges count:

    - opaque ones (text, UI panels): the pixels there barely change over time;
    - those of a semi-transparent mark (a watermark, a logo box's thin frame):
      the scene shows through, so the pixels change, but the edge's gradient
      (a vector) is the same in every frame: its temporal spread is small next to
      its mean, as in the median-gradient watermark estimate of Dekel et al.,
      "On the Effectiveness of Visible Watermarks" (CVPR 2017).

    Static edges are closed into regions and their holes filled, so that a logo's
    frame masks the whole logo. Feed it downscaled grey frames with :meth:`add`.
    """

    def __init__(self) -> None:
        self.n = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None
        self._grad: np.ndarray | None = None
        self._grad_sq: np.ndarray | None = None
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self._prev: np.ndarray | None = None

    @staticmethod
    def _gradient(img: np.ndarray) -> np.ndarray:
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
        return cv2.magnitude(gx, gy)

    def add(self, small: np.ndarray) -> None:
        """Accumulate one ``[h, w]`` uint8 frame (repeated identical frames are skipped)."""
        if self._prev is not None and np.array_equal(small, self._prev):
            return
        self._prev = small
        f = small.astype(np.float32)
        if self._sum is None:
            self._sum = np.zeros(f.shape, np.float64)
            self._sumsq = np.zeros(f.shape, np.float64)
            self._grad = np.zeros(f.shape, np.float64)
            self._grad_sq = np.zeros(f.shape, np.float64)
            self._min = small.copy()
            self._max = small.copy()
        self._sum += f
        self._sumsq += f * f
        gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
        self._grad += cv2.magnitude(gx, gy)
        self._grad_sq += gx * gx + gy * gy
        np.minimum(self._min, small, out=self._min)
        np.maximum(self._max, small, out=self._max)
        self.n += 1

    @staticmethod
    def _regions(edge: np.ndarray, k: int, strong: np.ndarray | None = None) -> np.ndarray:
        """``edge`` closed over ``k`` pixels into regions, without specks (few edge
        pixels); with ``strong``, only regions whose box holds mostly ``edge`` pixels
        among the ``strong`` ones."""
        closed = cv2.morphologyEx(
            edge.astype(np.uint8), cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
        )
        n_lab, lab, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
        keep = np.zeros(n_lab, bool)
        for i in range(1, n_lab):
            if (edge & (lab == i)).sum() < 6 or stats[i, cv2.CC_STAT_AREA] < 12:
                continue
            if strong is not None:
                x, y, w, h = stats[i, :4]
                box = (slice(y, y + h), slice(x, x + w))
                if edge[box].sum() < _TRANSLUCENT_PURITY * max(int(strong[box].sum()), 1):
                    continue
            keep[i] = True
        return keep[lab]

    def mask(
        self, box: tuple[int, int, int, int] | None = None, min_frames: int = 8, max_coverage: float = 0.25
    ) -> np.ndarray | None:
        """The overlay as a ``[h, w]`` bool mask (True = overlay), or None.

        Args:
            box: Only look inside this ``(x0, y0, x1, y1)`` box of the small frames
                (the picture inside bars); the mask keeps the full small size.
            min_frames: Fewer distinct frames than this give no mask.
            max_coverage: A "static" area larger than this fraction of the picture
                is taken for a static camera, not an overlay, and gives no mask.

        Returns:
            The mask, or None when no overlay was found.
        """
        if self.n < min_frames or self._sum is None:
            return None
        mean = self._sum / self.n
        var = np.maximum(self._sumsq / self.n - mean * mean, 0.0)
        std = np.sqrt(var).astype(np.float32)
        mean_grad = (self._grad / self.n).astype(np.float32)
        grad_of_mean = self._gradient(mean.astype(np.float32))  # = |mean gradient vector|
        # spread of the gradient vector over time: sqrt(E|g|^2 - |E g|^2)
        grad_spread = np.sqrt(np.maximum(self._grad_sq / self.n - grad_of_mean.astype(np.float64) ** 2, 0.0))
        h, w = mean.shape
        inside = np.zeros((h, w), bool)
        x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
        inside[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = True
        # Static edges: strong in the mean image, nearly as strong as on average
        # in single frames, with little temporal change.
        # (a scene edge that moves by even a fraction of a pixel changes by a good
        # part of its contrast; an overlay edge only by compression noise)
        spread = self._max.astype(np.int16) - self._min
        steady = (grad_of_mean > 30.0) & (grad_of_mean > 0.85 * mean_grad) & inside
        opaque = (std < 6.0) & (std < 0.05 * grad_of_mean) & (spread < 12)
        # semi-transparent: a stronger edge whose gradient hardly varies (measured on a
        # 60%-opaque logo over a followed car: spread/mean 0.07-0.35 on the logo, 0.6-1.1
        # on the scene's steadiest edges, the clouds of a sky at infinity). The fixation
        # point of an orbit has a few such edges among many that move: a translucent
        # region must be made mostly of them (measured: 0.88 of the strong edges in the
        # logo's box, 0.13-0.47 in the boxes of an orbit's pivot)
        translucent = (grad_of_mean > 40.0) & (grad_spread < 0.4 * grad_of_mean) & ~opaque
        k = max(3, int(round(0.03 * max(h, w))) | 1)
        region = self._regions(steady & opaque, k)
        region |= self._regions(steady & translucent, k, strong=mean_grad > 40.0)
        if not region.any():
            return None
        # fill holes (the inside of a logo or panel)
        filled = region.astype(np.uint8)
        contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
        d = max(3, int(round(0.012 * max(h, w))) * 2 + 1)
        mask = cv2.dilate(filled, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))) > 0
        area = max((x1 - x0) * (y1 - y0), 1)
        if (mask & inside).sum() / area > max_coverage:
            return None
        return mask


# ----------------------------------------------------------------------------- motion


@dataclass
class Tracks:
    """Good features to track of one small grey frame, reused for every pair."""

    image: np.ndarray  # [h, w] uint8
    points: np.ndarray | None  # [P, 1, 2] float32


def features(image: np.ndarray, mask: np.ndarray | None = None, max_points: int = 200) -> Tracks:
    """Corners of ``image`` to track (outside ``mask``'s True pixels).

    Args:
        image: ``[h, w]`` uint8 grey frame.
        mask: ``[h, w]`` bool, True where features must not be taken (overlays, bars).
        max_points: Most corners kept.
    """
    allowed = None if mask is None else (~mask).astype(np.uint8) * 255
    md = max(4, int(0.02 * max(image.shape)))
    pts = cv2.goodFeaturesToTrack(image, max_points, 0.01, md, mask=allowed, blockSize=5)
    return Tracks(image, pts)


def displacement(a: Tracks, b: np.ndarray) -> float:
    """The camera's image motion from frame ``a`` to frame ``b``, in pixels.

    Features of ``a`` are tracked into ``b`` (pyramidal Lucas-Kanade); the
    dominant motion is a RANSAC similarity fit, so independently moving things
    (leaves, cars, people) do not count, and the result is the median
    displacement of its inliers.

    Args:
        a: Tracks of the first frame.
        b: ``[h, w]`` uint8 second frame.

    Returns:
        The median displacement in pixels, or ``inf`` when too few features
        could be tracked (the view changed a lot).
    """
    if a.points is None or len(a.points) < 8:
        return float("inf")
    p0 = a.points
    p1, st, _ = cv2.calcOpticalFlowPyrLK(
        a.image,
        b,
        p0,
        None,
        winSize=(15, 15),
        maxLevel=3,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
    )
    if p1 is None:
        return float("inf")
    ok = st[:, 0] == 1
    if ok.sum() < max(8, 0.2 * len(p0)):
        return float("inf")
    q0, q1 = p0[ok, 0], p1[ok, 0]
    d = np.linalg.norm(q1 - q0, axis=1)
    model, inl = cv2.estimateAffinePartial2D(q0, q1, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if model is None or inl is None or inl.sum() < max(6, 0.25 * len(q0)):
        return float(np.median(d))
    return float(np.median(d[inl[:, 0] == 1]))


# ----------------------------------------------------------------------------- sampling


def sharpest_in_windows(
    times: np.ndarray, sharp: np.ndarray, n: int, span: tuple[float, float] | None = None
) -> list[int]:
    """Split a time span into ``n`` equal windows and keep the sharpest frame of each.

    Args:
        times: ``[N]`` increasing presentation times of the candidate frames.
        sharp: ``[N]`` sharpness of each frame.
        n: Number of windows. With ``n >= N`` every frame is kept.
        span: ``(first, last)`` time the windows cover. Default: those of ``times``.

    Returns:
        Positions (into ``times``) of the kept frames, increasing.
    """
    m = len(times)
    if n >= m:
        return list(range(m))
    if n <= 0:
        return []
    t0, t1 = (float(times[0]), float(times[-1])) if span is None else span
    span = max(t1 - t0, 1e-9)
    # window of each frame; the last frame belongs to the last window
    win = np.clip(((times - t0) / span * n).astype(int), 0, n - 1)
    keep = []
    for k in range(n):
        idx = np.flatnonzero(win == k)
        if len(idx):
            keep.append(int(idx[np.argmax(sharp[idx])]))
    return keep
