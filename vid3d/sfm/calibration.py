"""Focal length from fundamental matrices (self-calibration), in plain numpy.

For the right intrinsics ``K`` every ``E = K^T F K`` is an essential matrix, whose
two non-zero singular values are equal (Mendonca and Cipolla, 1999). With the
principal point at the image centre and square pixels, the focal length is
the one that minimises the inlier-weighted mean of ``(s1 - s2) / (s1 + s2)``.
Short clips constrain the focal length poorly in bundle adjustment; this cost
uses every verified pair at once and is smooth, so a 1-D search finds it.
"""

from __future__ import annotations

import math

import numpy as np


def essential_cost(Fs: np.ndarray, weights: np.ndarray, K: np.ndarray) -> float:
    """Weighted mean of ``(s1 - s2) / (s1 + s2)`` over ``E = K^T F K``.

    Args:
        Fs: [M, 3, 3] fundamental matrices (pixels).
        weights: [M] pair weights (e.g. inlier counts).
        K: [3, 3] intrinsics.
    """
    E = K.T[None] @ Fs @ K[None]  # [M, 3, 3]
    s = np.linalg.svd(E, compute_uv=False)  # [M, 3], descending
    r = (s[:, 0] - s[:, 1]) / np.maximum(s[:, 0] + s[:, 1], 1e-300)
    return float(np.sum(weights * r) / np.sum(weights))


def focal_from_fundamentals(
    Fs: np.ndarray,
    weights: np.ndarray,
    width: int,
    height: int,
    lo: float = 0.25,
    hi: float = 4.0,
    steps: int = 240,
) -> dict:
    """The focal length (pixels) whose K makes the fundamental matrices most essential.

    A log-spaced search over ``[lo, hi] x max(width, height)``, refined by golden
    section around the best grid point.

    Args:
        Fs: [M, 3, 3] fundamental matrices in pixel coordinates.
        weights: [M] weights (inlier counts).
        width: Image width in pixels.
        height: Image height in pixels.
        lo: Smallest focal length tried, as a factor of the longer side.
        hi: Largest focal length tried, as a factor of the longer side.
        steps: Grid points.

    Returns:
        dict with ``focal`` (pixels), ``cost`` at it, ``fov_deg`` (across the longer
        side), ``pairs`` (M) and ``sharpness`` (median cost over the grid divided
        by the cost at the optimum: near 1 means the data does not determine the focal).
    """
    Fs = np.asarray(Fs, dtype=np.float64).reshape(-1, 3, 3)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    # normalise each F so that pairs count by their weight only
    Fs = Fs / np.linalg.norm(Fs, axis=(1, 2), keepdims=True)
    L = float(max(width, height))

    def K_of(f: float) -> np.ndarray:
        return np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1.0]])

    fs = np.exp(np.linspace(math.log(lo * L), math.log(hi * L), steps))
    costs = np.array([essential_cost(Fs, w, K_of(f)) for f in fs])
    i = int(np.argmin(costs))
    a, b = fs[max(i - 1, 0)], fs[min(i + 1, steps - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = essential_cost(Fs, w, K_of(c)), essential_cost(Fs, w, K_of(d))
    for _ in range(40):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = essential_cost(Fs, w, K_of(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = essential_cost(Fs, w, K_of(d))
    f = (a + b) / 2
    cost = essential_cost(Fs, w, K_of(f))
    return {
        "focal": float(f),
        "cost": cost,
        "fov_deg": float(math.degrees(2 * math.atan(L / 2 / f))),
        "pairs": int(len(Fs)),
        "sharpness": float(np.median(costs) / max(cost, 1e-12)),
    }
