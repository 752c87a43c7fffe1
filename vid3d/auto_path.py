"""The ``auto`` camera path: chosen from the input cameras, sized by coverage.

:func:`vid3d.camera_paths.classify_cameras` says which kind of path suits the clip (an
orbit around what it circles, a push-in for a walk-through or a drone flight, a sway
for a camera that barely moves); :func:`choose_path` then shrinks that path (its
``amount``: sweep, radius, depth) from full size until the worst of its frames is
covered (:mod:`vid3d.coverage`) at least ``target`` and it turns no faster than
:data:`MAX_TURN` degrees a second. :func:`measure` gives any path its per-frame
coverage, so that every render can report it.

Everything here works in the splats' (training) frame for the coverage and returns
paths in the SfM frame, as the render stage saves them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from vid3d.camera_paths import CameraPath, classify_cameras, path_motion
from vid3d.coverage import ObservedViews, observed_views, path_coverage, summarize
from vid3d.progress import NULL_REPORTER, Reporter

AMOUNTS = (1.0, 0.8, 0.64, 0.5, 0.4, 0.3, 0.2, 0.12, 0.06)
"""Sizes tried, largest first: each about 0.8 of the one before, so the chosen path is
within a fifth of the largest one that meets the target."""
SEARCH_FRAMES = 12
"""Frames of a candidate path whose coverage is measured while sizing it."""
REPORT_FRAMES = 36
"""At most this many frames of the final path are measured (the rest take the nearest
measured frame's value): the per-frame figure of the path JSON and report.json."""
MAX_VIEWS = 32
"""Training cameras compared against, spread evenly over the clip: enough for a
surface to be seen twice from similar directions, few enough for a long clip."""
CEILING_MARGIN = 0.02
"""How far below the clip's own ceiling (:func:`ceiling`) the target is lowered when the
clip cannot reach it even from its own cameras."""
AUTO_NAME = "orbit"
"""The ``auto`` path's video is ``renders/orbit.mp4`` whichever kind it chose: "the orbit
video" is the one a run makes by default, and scripts find it under one name."""
MAX_TURN = 60.0
"""Fastest turn of the view (degrees per second) the ``auto`` path allows: a full orbit
in 6 s; a wider sweep in less time is shrunk, as a viewer's eye cannot follow it."""


@dataclass
class Coverage:
    """The splats and the training views that coverage is measured against."""

    g: dict[str, torch.Tensor]
    """Activated Gaussians (:func:`vid3d.stages.render.render_inputs`), training frame."""
    views: ObservedViews
    """The training cameras rendered once, at low resolution."""
    T: np.ndarray
    """[4, 4] similarity from the SfM frame to the training frame."""
    backend: str = "auto"

    def of(self, path: CameraPath, frames: int) -> np.ndarray:
        """[F] coverage of every frame of ``path`` (SfM frame), ``frames`` of them measured."""
        stride = max(1, -(-len(path) // max(1, frames)))
        return path_coverage(
            self.g, self.views, path.transformed(self.T), stride=stride, backend=self.backend
        )


def training_views(g: dict[str, torch.Tensor], scene, T: np.ndarray, backend: str = "auto") -> Coverage:
    """:class:`Coverage` against (at most :data:`MAX_VIEWS` of) a scene's cameras.

    Args:
        g: Activated Gaussians in the training frame.
        scene: The :class:`vid3d.scene.Scene` (SfM frame).
        T: [4, 4] SfM frame -> training frame (the checkpoint's ``normalization``).
        backend: Rasterizer backend. Default: "auto".
    """
    idx = np.unique(np.linspace(0, len(scene) - 1, min(len(scene), MAX_VIEWS)).round().astype(int))
    c2w = scene.transformed(T).camtoworlds[idx]
    views = observed_views(g, c2w, scene.Ks[idx], scene.width, scene.height, backend=backend)
    return Coverage(g=g, views=views, T=np.asarray(T, dtype=np.float64), backend=backend)


def _sample(path: CameraPath, n: int) -> CameraPath:
    idx = np.unique(np.linspace(0, len(path) - 1, min(len(path), n)).round().astype(int))
    return replace(path, camtoworlds=path.camtoworlds[idx], Ks=path.Ks[idx], coverage=None)


def ceiling(path: CameraPath, scene, cov: Coverage) -> float:
    """The coverage a path of ``path``'s picture size could reach at best: the 10th
    percentile over the input cameras' own poses (at most :data:`SEARCH_FRAMES` of them),
    seen with ``path``'s intrinsics. Below 1 where the splats left holes (alpha under
    one half: sky, empty background), at the clip's far ends, and where the video's
    picture is wider than the clip's."""
    idx = np.unique(np.linspace(0, len(scene) - 1, min(len(scene), SEARCH_FRAMES)).round().astype(int))
    at_inputs = replace(
        path, camtoworlds=scene.camtoworlds[idx], Ks=np.repeat(path.Ks[:1], len(idx), axis=0), coverage=None
    )
    return float(np.percentile(cov.of(at_inputs, len(idx)), 10))


def choose_path(build, scene, cov: Coverage, target: float, reporter: Reporter = NULL_REPORTER) -> CameraPath:
    """The ``auto`` path: the kind that suits the cameras, as large as coverage allows.

    Args:
        build: ``build(kind, amount) -> CameraPath`` in the SfM frame (the render
            stage's :func:`vid3d.stages.render.build_path` with its configuration).
        scene: The :class:`vid3d.scene.Scene` (SfM frame).
        cov: What coverage is measured against (:func:`training_views`).
        target: Coverage its worst frame must reach, in [0, 1] (0: full size); lowered
            to :data:`CEILING_MARGIN` below the clip's own :func:`ceiling` when that is
            lower (said in the log line).
        reporter: Where the one-line choice is logged. Default: nowhere.

    Returns:
        The path, its ``coverage`` measured (:data:`REPORT_FRAMES` frames) and its
        ``about`` saying what was chosen and why; named :data:`AUTO_NAME`. When no size
        reaches the target, the best covered one, with a warning.
    """
    kind, reason = classify_cameras(scene.camtoworlds, scene.Ks, scene.width, scene.height, scene.points)
    top = ceiling(build(kind, AMOUNTS[0]), scene, cov) if target > 0 else 1.0
    goal = min(target, top - CEILING_MARGIN)
    tried: list[tuple[float, float, CameraPath]] = []
    for amount in AMOUNTS:
        path = build(kind, amount)
        turn = path_motion(path)["angular_speed"]
        if turn > MAX_TURN and amount != AMOUNTS[-1]:
            continue
        worst = float(cov.of(_sample(path, SEARCH_FRAMES), SEARCH_FRAMES).min())
        tried.append((worst, amount, path))
        if worst >= goal:
            break
    worst, amount, path = max(tried, key=lambda t: (t[0] >= goal, t[1] if t[0] >= goal else t[0]))
    path.name = AUTO_NAME
    path.coverage = cov.of(path, REPORT_FRAMES)
    summary = summarize(path.coverage)
    path.about = {
        "kind": kind,
        "reason": reason,
        "amount": amount,
        "target": target,
        "ceiling": round(top, 4),
        "worst": summary["worst"],
    }
    aim = (
        f"target {target:.0%}"
        if goal >= target or summary["worst"] >= target
        else f"target {goal:.0%}: the clip's own views are only {top:.0%} covered"
    )
    line = (
        f"camera path: {kind} ({reason}); {amount:.0%} of full size, "
        f"worst frame {summary['worst']:.0%} covered ({aim})"
    )
    if summary["worst"] < goal - 0.005:
        reporter.warn(
            f"{line}: no size of the {kind} path reaches the target; "
            "the video shows parts of the scene the clip saw badly (try --path input)"
        )
    else:
        reporter.log(line)
    return path


def measure(path: CameraPath, cov: Coverage) -> dict[str, Any]:
    """Per-frame coverage of ``path`` into ``path.coverage`` (:data:`REPORT_FRAMES` of
    its frames measured), and its summary (:func:`vid3d.coverage.summarize`)."""
    if path.coverage is None or len(path.coverage) != len(path):
        path.coverage = cov.of(path, REPORT_FRAMES)
    return summarize(path.coverage)
