"""Typed configuration of every stage, presets and overrides.

A configuration is a :class:`Config` of one dataclass per stage. It is built
from the dataclass defaults, then a preset (``pipelines/<name>.toml`` or a TOML
file path), then ``--set section.field=value`` overrides, and saved resolved in
``<ws>/vid3d.toml``. A preset only lists the fields it changes.

Every builder (:func:`load_config`, :func:`load_config_file`, :func:`apply_data`,
:func:`apply_overrides`) ends with :func:`validate`, so a bad value stops the run
before any stage starts. The accepted values are part of each field's type:
``Literal[...]`` for a choice, ``Annotated[int, Range(gt=0)]`` for a bound,
``Annotated[str, Format(...)]`` for a string format; every float must be finite.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from vid3d.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Bounds of a number field (``Annotated[int, Range(gt=0)]``), checked by :func:`validate`."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def contains(self, x: float) -> bool:
        return (
            (self.gt is None or x > self.gt)
            and (self.ge is None or x >= self.ge)
            and (self.lt is None or x < self.lt)
            and (self.le is None or x <= self.le)
        )

    def describe(self) -> str:
        """The bounds in words: ``"> 0"``, ``"in [0, 1]"``..."""
        lo = (self.ge, "[") if self.ge is not None else (self.gt, "(")
        hi = (self.le, "]") if self.le is not None else (self.lt, ")")
        if lo[0] is not None and hi[0] is not None:
            return f"in {lo[1]}{lo[0]:g}, {hi[0]:g}{hi[1]}"
        if lo[0] is not None:
            return f"{'>=' if self.ge is not None else '>'} {lo[0]:g}"
        return f"{'<=' if self.le is not None else '<'} {hi[0]:g}"


@dataclass(frozen=True)
class Format:
    """A string format (``Annotated[str, Format(...)]``), checked by :func:`validate`.

    Args:
        accepts: The accepted strings in words, read after "must be".
        test: True for an accepted string.
    """

    accepts: str
    test: Callable[[str], bool]


def _quoted(values: typing.Iterable[str]) -> str:
    return ", ".join(json.dumps(v) for v in values)


RESOLUTIONS = ("360p", "480p", "720p", "1080p", "1440p", "2160p")
"""Named video sizes (the short side); their pixels are in :data:`vid3d.video.encode.RESOLUTIONS`."""
PATH_TYPES = ("orbit", "turntable", "spiral", "input", "push-in", "sway", "auto")
"""Named camera paths, as :data:`vid3d.camera_paths.PATH_TYPES`."""
_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")  # as vid3d.video.encode.output_size
_ASPECT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*[:/x]\s*(\d+(?:\.\d+)?)\s*")  # as parse_aspect


def _is_size(s: str) -> bool:
    m = _SIZE.fullmatch(s)
    return bool(m) and all(2 <= int(g) <= 8192 for g in m.groups())


def _is_aspect(s: str) -> bool:
    m = _ASPECT.fullmatch(s)
    return s == "input" or (bool(m) and all(float(g) > 0 for g in m.groups()))


def is_path_file(path: str) -> bool:
    """Whether ``render.path`` names a camera path file rather than a path type."""
    return path.lower().endswith(".json")


DEVICE = Format(
    '"auto", "cpu", "cuda" or "cuda:N"', lambda s: re.fullmatch(r"auto|cpu|cuda(:\d+)?", s) is not None
)
RESOLUTION = Format(
    f'one of {_quoted(RESOLUTIONS)} or "WIDTHxHEIGHT" (2 to 8192 pixels a side)',
    lambda s: s in RESOLUTIONS or _is_size(s),
)
ASPECT = Format('"W:H" (such as "16:9", "9:16", "1:1", "4:3") or "input"', _is_aspect)
COLORS = Format(
    '"clip", "canonical" or "frame:N" (N a registered frame\'s number, 0 first)',
    lambda s: s in ("clip", "canonical") or re.fullmatch(r"frame:\d+", s) is not None,
)
CAMERA_PATH = Format(
    f'one of {_quoted(PATH_TYPES)} or a camera path file ending in ".json"',
    lambda s: s in PATH_TYPES or is_path_file(s),
)

CameraModel = Literal[
    "auto",
    "SIMPLE_PINHOLE",
    "PINHOLE",
    "SIMPLE_RADIAL",
    "RADIAL",
    "OPENCV",
    "FULL_OPENCV",
    "SIMPLE_RADIAL_FISHEYE",
    "RADIAL_FISHEYE",
    "OPENCV_FISHEYE",
]
"""The camera models the poses stage takes (:data:`vid3d.stages.poses.CAMERA_MODELS`)."""
Matcher = Literal["auto", "sequential", "exhaustive"]
Mapper = Literal["global", "incremental"]
Strategy = Literal["default", "mcmc"]
Backend = Literal["auto", "gsplat", "cpu", "torch"]
"""As :data:`vid3d.splats.rasterize.Backend`."""
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]
Preview = Literal["webp", "gif", "none"]

PositiveInt = Annotated[int, Range(gt=0)]
"""A count or size where 0 is meaningless."""
NonNegativeInt = Annotated[int, Range(ge=0)]
"""A count, step or interval where 0 has a meaning ("none", "off": see the field)."""
PositiveFloat = Annotated[float, Range(gt=0)]
"""A rate, factor or length."""
NonNegativeFloat = Annotated[float, Range(ge=0)]
"""A weight, threshold or rate where 0 has a meaning (see the field)."""
UnitFloat = Annotated[float, Range(ge=0, le=1)]
"""A fraction, or a colour component."""


@dataclass
class FramesConfig:
    """Which frames of the video become training images."""

    target_frames: PositiveInt = 100
    """How many frames to keep, sampled evenly over the clip (the shot)."""
    max_frames: PositiveInt = 300
    """Hard maximum of kept frames, whatever else asks for more."""
    max_size: PositiveInt = 960
    """Longest side of the saved frames in pixels (frames are never upscaled)."""
    jpeg_quality: Annotated[int, Range(ge=1, le=100)] = 95
    """JPEG quality of the saved frames (1-100)."""
    min_motion: UnitFloat = 0.004
    """Least camera travel over the shot (the largest median feature displacement
    of a sampled frame from the first one, dominant motion only), as a fraction
    of the image diagonal; below it the camera counts as static and the stage
    stops with NotEnoughMotionError."""
    target_fps: NonNegativeFloat = 0.0
    """Frames per second of the shot to keep instead of target_frames (0: use
    target_frames). max_frames still applies."""
    dup_motion: UnitFloat = 0.001
    """A sampled frame that moved less than this fraction of the image diagonal
    from the previous kept frame is dropped as a near-duplicate ("no_motion").
    The threshold is lowered for clips whose camera moves slowly throughout."""
    cut_detection: bool = True
    """Split the video at hard scene cuts and use one shot (see ``shot``)."""
    overlay_masks: bool = True
    """Detect static overlays (logos, captions, UI) and write masks for them."""
    motion_masks: bool = False
    """Find what moves on its own in the kept frames (a car the camera follows, a person)
    and mask it (:mod:`vid3d.video.motion`), so that COLMAP and training ignore it; also
    stops a clip whose picture mostly moves. About 0.1 s a frame; on in the ``ai-video``
    preset."""
    max_moving_fraction: UnitFloat = 0.5
    """With motion_masks: a clip whose kept frames move on their own over more than this
    share of the picture, on average, stops; over half of it, it goes on with a warning."""
    parallax_check: bool = True
    """Stop a clip without parallax (the camera only turns, or the picture slides past)
    before the poses stage: a homography explains most of a dozen frame pairs
    (:func:`vid3d.video.motion.clip_parallax`, about 0.5 s)."""
    crop_bars: bool = True
    """Detect letterbox / pillarbox bars and crop them away."""
    analysis_size: PositiveInt = 320
    """Long side, in pixels, of the grey frames used for cuts, overlays and motion."""


@dataclass
class PosesConfig:
    """Structure from motion with pycolmap."""

    camera_model: CameraModel = "auto"
    """COLMAP camera model shared by all frames (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, OPENCV...),
    or "auto": PINHOLE (fx and fy, no distortion): fx != fy fits videos resized to another
    aspect ratio, and a radial term trades off against the focal length on short clips
    (figures in benchmarks/README.md)."""
    matcher: Matcher = "auto"
    """"sequential", "exhaustive", or "auto" (exhaustive for small sets, sequential otherwise)."""
    exhaustive_below: NonNegativeInt = 40
    """With matcher="auto", frame counts below this are matched exhaustively (0: never)."""
    max_num_features: PositiveInt = 8192
    """SIFT features per image."""
    mapper: Mapper = "global"
    """"global" (GLOMAP, pycolmap.global_mapping) or "incremental" (COLMAP). Global is the
    default: it is the more reliable of the two on short clips (benchmarks/README.md)."""
    min_registered_fraction: UnitFloat = 0.5
    """Fewer registered frames than this fraction is a failure."""
    retry_below_fraction: UnitFloat = 1.0
    """An attempt registering fewer frames than this fraction starts the next rung of
    the retry ladder (more features, exhaustive matching, relaxed initialisation,
    the other mapper); the best attempt wins."""
    max_attempts: PositiveInt = 4
    """Most attempts of the retry ladder (1: no retries)."""
    sequential_overlap: NonNegativeInt = 0
    """Sequential matching: frames matched with each frame's next ones (0: fitted
    to the frame count, 10 to 20); pairs 2, 4, 8... apart are matched too."""
    calibrate: bool = True
    """Before mapping, estimate the focal length from the verified pairs' fundamental
    matrices (self-calibration: the focal that makes K^T F K closest to an essential
    matrix). False: start from COLMAP's guess, 1.2 x the longer image side."""
    init_min_num_inliers: PositiveInt = 100
    """Incremental mapper: verified matches the initial pair needs (first attempt)."""
    init_min_tri_angle: Annotated[float, Range(ge=0, lt=180)] = 16.0
    """Incremental mapper: triangulation angle of the initial pair in degrees (first attempt)."""
    refine_intrinsics: bool = True
    """Refine focal length(s) and distortion in bundle adjustment, starting from the
    self-calibrated focal (False keeps that focal fixed)."""
    min_image_motion: UnitFloat = 0.01
    """The stage fails early (a static camera) when verified matches move less than this
    fraction of the image diagonal (90th percentile over all matched frame pairs)."""
    seed: int = 0
    """Random seed of COLMAP's RANSAC and mapper, for repeatable runs."""


@dataclass
class SplatConfig:
    """Gaussian splat training."""

    steps: PositiveInt = 2000
    """Training steps (one image per step), before ``schedule_scale``."""
    schedule_scale: PositiveFloat = 1.0
    """One factor on every step count of the schedule (steps, SH interval, refinement
    start/stop/interval, opacity reset, coarse phase, evaluation and checkpoint intervals): presets
    lengthen or shorten training with it and keep the schedule's shape."""
    sh_degree: Annotated[int, Range(ge=0, le=4)] = 3
    """Final spherical-harmonics degree (0 to 4)."""
    sh_degree_interval: NonNegativeInt = 400
    """Steps between raising the SH degree by one (0 acts as 1)."""
    ssim_lambda: UnitFloat = 0.2
    """Weight of the D-SSIM term; the L1 term gets 1 - ssim_lambda."""
    test_every: NonNegativeInt = 8
    """Every n-th frame is held out for evaluation (0: none), starting half a period in;
    the first and last frames always train (they are the only views of the clip's ends)."""
    coarse_steps: NonNegativeInt = 600
    """Steps at the start trained at half resolution (a quarter of the pixels per step);
    the rest, and every evaluation, use the full frames."""
    eval_every: NonNegativeInt = 500
    """Evaluate held-out PSNR every n steps and at the end (0: only at the end)."""
    strategy: Strategy = "default"
    """Densification strategy: "default" (gsplat DefaultStrategy, clone/split/prune) or
    "mcmc" (gsplat MCMCStrategy, a fixed budget of max_gaussians relocated over time)."""
    max_gaussians: PositiveInt = 80_000
    """Cap on the number of Gaussians (growth stops there; MCMC's budget)."""
    opacity_reg: NonNegativeFloat = 0.01
    """MCMC only: weight of the mean-opacity regulariser."""
    scale_reg: NonNegativeFloat = 0.01
    """MCMC only: weight of the mean-scale regulariser."""
    exposure: bool = True
    """Learn a per-frame affine colour correction (for flicker and auto exposure);
    used in training only, never when rendering new views (held-out frames are scored
    under the correction interpolated from their neighbouring training frames, and
    uncorrected as ``psnr_raw``)."""
    lr_exposure: PositiveFloat = 1e-3
    """Learning rate of the colour correction."""
    exposure_reg: NonNegativeFloat = 0.01
    """Weight pulling each frame's colour correction towards identity."""
    cleanup: bool = True
    """When training has finished, remove floaters and outliers
    (:func:`vid3d.splats.cleanup.find_outliers`: nearly transparent, huge, far outside
    every view, in fewer than two training views, floaters and haze in front of the surfaces the
    training views see) from the splats that are saved, exported and rendered; the
    metrics say how many went and the held-out PSNR before and after. False keeps them."""
    cleanup_polish_steps: NonNegativeInt = 200
    """Training steps after a cleanup that costs the held-out frames more than 0.1 dB, so
    that the remaining Gaussians take over the colour of the removed ones
    (:meth:`vid3d.splats.trainer.Trainer.remove_outliers`); 0: give up reasons instead."""
    robust: bool = False
    """After the coarse phase, leave out of the loss the regions whose error stays far above
    the frame's typical error (:func:`vid3d.splats.losses.robust_mask`): what moves and the
    masks missed. Off by default; evaluation is never trimmed."""
    robust_factor: PositiveFloat = 3.0
    """With robust: a region counts as an outlier above this many times the frame's median
    error."""
    refine_start: NonNegativeInt = 300
    """First step of densification (at most ``refine_stop``)."""
    refine_stop: NonNegativeInt = 1500
    """Last step of densification."""
    refine_every: PositiveInt = 100
    """Steps between densifications."""
    reset_every: PositiveInt = 3000
    """Steps between opacity resets (> 0); a reset fires only before refine_stop, so with the
    bundled schedules it never does (a reset cost held-out PSNR on short clips:
    benchmarks/README.md)."""
    grow_grad2d: NonNegativeFloat = 0.0002
    """Screen-space gradient threshold for growing a Gaussian."""
    init_opacity: Annotated[float, Range(gt=0, lt=1)] = 0.1
    """Opacity of the initial Gaussians, in (0, 1)."""
    init_scale: PositiveFloat = 1.0
    """Initial scale as a factor of the mean distance to the 3 nearest points."""
    lr_means: PositiveFloat = 1.6e-4
    """Learning rate of positions, times the scene scale; decays 100x over training."""
    lr_scales: PositiveFloat = 5e-3
    """Learning rate of the log scales."""
    lr_quats: PositiveFloat = 1e-3
    """Learning rate of the rotations."""
    lr_opacities: PositiveFloat = 5e-2
    """Learning rate of the opacity logits."""
    lr_sh0: PositiveFloat = 2.5e-3
    """Learning rate of the base colour (SH degree 0)."""
    lr_shN: PositiveFloat = 2.5e-3 / 20
    """Learning rate of the higher SH coefficients."""
    background: tuple[UnitFloat, UnitFloat, UnitFloat] = (0.0, 0.0, 0.0)
    """Background colour (RGB in [0, 1])."""
    checkpoint_every: NonNegativeInt = 500
    """Write ``splats/ckpt.pt`` every n steps and at the end, so training can resume (0: only at
    the end)."""
    backend: Backend = "auto"
    """Rasterizer: "auto" (gsplat on CUDA, else the CPU kernel), "gsplat" (needs a CUDA device),
    "cpu" or "torch" (CPU only: ``device`` "cpu", or "auto" on a machine without CUDA)."""
    seed: int = 0
    """Random seed."""

    def scaled(self) -> SplatConfig:
        """This config with ``schedule_scale`` applied to every step count (and set to 1)."""
        k = self.schedule_scale
        fields = (
            "steps",
            "coarse_steps",
            "sh_degree_interval",
            "eval_every",
            "refine_start",
            "refine_stop",
            "refine_every",
            "reset_every",
            "checkpoint_every",
            "cleanup_polish_steps",
        )
        return dataclasses.replace(
            self,
            schedule_scale=1.0,
            **{f: max(1, round(getattr(self, f) * k)) if getattr(self, f) > 0 else 0 for f in fields},
        )


@dataclass
class RenderConfig:
    """The orbit video."""

    path: Annotated[str, CAMERA_PATH] = "auto"
    """Camera path: "auto" (the default: the kind below that suits the input cameras,
    shrunk until its worst frame is ``coverage_target`` covered; the video is still
    ``renders/orbit.mp4``), "orbit" (ellipse around the centre, or a sweep of the arc the
    clip covered), "turntable" (full circle), "spiral" (forward-facing, for clips that
    move a little sideways), "input" (the input camera path, smoothed and levelled),
    "push-in" (a dolly forward, for walk-throughs and drone flights), "sway" (a small
    side-to-side motion, for clips whose camera barely moves), or a .json path file
    written by a previous render (its cameras are in the SfM frame; its size overrides
    ``resolution`` and ``aspect``). A relative file name is read from the current
    directory; the file must exist when the configuration is loaded, and cannot be
    combined with ``side_by_side``."""
    coverage_target: Annotated[float, Range(ge=0.0, le=1.0)] = 0.9
    """Share of the worst frame's pixels the clip must have observed well (seen by two
    training cameras from within 30 degrees; see :mod:`vid3d.coverage`) for the "auto"
    path to keep its size, 0 to 1 (0: always full size)."""
    seconds: PositiveFloat = 6.0
    """Length of the video in seconds (> 0)."""
    fps: Annotated[int, Range(ge=1, le=240)] = 30
    """Frames per second, 1 to 240 (24, 30 or 60 are usual)."""
    resolution: Annotated[str, RESOLUTION] = "720p"
    """"360p", "480p", "720p", "1080p", "1440p", "2160p" (the short side), or "WIDTHxHEIGHT"
    (2 to 8192 pixels a side, rounded to even; ``aspect`` is then ignored)."""
    aspect: Annotated[str, ASPECT] = "16:9"
    """Aspect ratio: "16:9", "9:16" (Shorts), "1:1", "4:3", "W:H", or "input" (the input frames')."""
    crf: Annotated[int, Range(ge=0, le=51)] = 18
    """x264 constant rate factor, 0-51 (lower is better quality, 17-23 is usual)."""
    x264_preset: X264Preset = "medium"
    """x264 speed preset, "ultrafast" ... "veryslow"."""
    radius_factor: PositiveFloat = 1.0
    """Orbit radius as a factor of the input cameras' distance to the centre."""
    height_factor: float = 1.0
    """Orbit height as a factor of the input cameras' height above the centre."""
    smoothing: NonNegativeFloat = 2.0
    """Smoothing of the "input" path: Gaussian standard deviation in input frames (0: none)."""
    side_by_side: bool = False
    """Put each input frame left of the render from its camera (the input cameras
    at the input frames' times; the video is twice as wide). Not with a .json ``path``."""
    preview: Preview = "webp"
    """Animated preview next to the video: "webp", "gif" or "none"."""
    preview_width: Annotated[int, Range(ge=16)] = 480
    """Width of the animated preview in pixels (at least 16)."""
    colors: Annotated[str, COLORS] = "clip"
    """Colours of the video: "clip" (the training frames' mean exposure and white
    balance, so the video looks like the clip), "canonical" (the splats' own colours,
    as exported), or "frame:N": the colours of registered frame N (0 first)."""


@dataclass
class Config:
    """The whole pipeline's configuration."""

    preset: str = "default"
    """Name or path of the preset this configuration was built from."""
    device: Annotated[str, DEVICE] = "auto"
    """"auto" (CUDA when available), "cpu", "cuda" or "cuda:N" (GPU N)."""
    frames: FramesConfig = field(default_factory=FramesConfig)
    poses: PosesConfig = field(default_factory=PosesConfig)
    splat: SplatConfig = field(default_factory=SplatConfig)
    render: RenderConfig = field(default_factory=RenderConfig)

    def section_hash(self, section: str) -> str:
        """A stable hash of one stage's section, used to decide whether it re-runs."""
        data = dataclasses.asdict(getattr(self, section))
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


SECTIONS = ("frames", "poses", "splat", "render")
PRESET_DIRS = (
    Path(__file__).parent / "pipelines",  # installed wheel
    Path(__file__).parent.parent / "pipelines",  # source checkout / editable install
)


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    names = set()
    for d in PRESET_DIRS:
        names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def find_preset(name: str) -> Path:
    """The TOML file of a bundled preset, or ``name`` itself if it is a file path."""
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise ConfigError(f"preset file {name} does not exist", "give the path of a TOML file")
        return path
    for d in PRESET_DIRS:
        if (d / f"{name}.toml").is_file():
            return d / f"{name}.toml"
    raise ConfigError(f"unknown preset {name!r}", f"choose one of {', '.join(preset_names())}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field types of a config dataclass, ``Annotated`` metadata included."""
    return typing.get_type_hints(cls, include_extras=True)


def _unwrap(tp: Any) -> tuple[Any, tuple]:
    """``Annotated[T, m1, m2]`` -> ``(T, (m1, m2))``; any other type -> ``(tp, ())``."""
    if typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        return args[0], args[1:]
    return tp, ()


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _type_words(tp: Any) -> str:
    base, _ = _unwrap(tp)
    if typing.get_origin(base) is Literal:
        return f"one of {_quoted(typing.get_args(base))}"
    if typing.get_origin(base) is tuple:
        return f"a list of {len(typing.get_args(base))} numbers"
    return _TYPE_WORDS.get(base, str(base))


def _show(v: Any) -> str:
    """A value as it would be written in TOML (strings quoted; nan and inf as such)."""
    if isinstance(v, str):
        return json.dumps(v)
    try:
        return _toml_value(v)
    except TypeError:
        return repr(v)


def _from(source: str | None) -> str:
    return f" (from {source})" if source else ""


def _default(where: str) -> Any:
    """The dataclass default of ``"section.field"`` or of a top-level field."""
    section, _, name = where.rpartition(".")
    obj = getattr(Config(), section) if section else Config()
    return getattr(obj, name)


def _set_value(v: Any) -> str:
    """``v`` as the VALUE of ``--set KEY=VALUE``: a bare word when it reads back as a string."""
    if isinstance(v, str):
        try:
            tomllib.loads(f"v = {v}")
        except tomllib.TOMLDecodeError:
            if re.fullmatch(r"[\w.:/-]+", v):
                return v
        return json.dumps(v)
    return _toml_value(v).replace(", ", ",")  # a list in one shell word


def _hint(where: str, source: str | None) -> str:
    example = f"--set {where}={_set_value(_default(where))}"
    if source is None:
        return f"set it in the preset or with {example}"
    if source.startswith("--set"):
        return f"use e.g. {example}"
    return f"fix it in {source} or override it with {example}"


def _known(name: str, known: list[str], prefix: str = "", sections: tuple[str, ...] = ()) -> str:
    """A hint naming the closest known field and listing them all."""
    close = difflib.get_close_matches(name, known, n=1)
    guess = f"did you mean {prefix}{close[0]}? " if close else ""
    fields = ", ".join(k for k in known if k not in sections)
    tables = f" and the sections {', '.join(sections)}" if sections else ""
    return f"{guess}known: {fields}{tables}"


def _coerce(value: Any, tp: Any, where: str, source: str | None = None) -> Any:
    """``value`` as type ``tp`` (an int is a float where a float is asked for), else ConfigError.

    Only the type is checked here; :func:`validate` checks the value.
    """
    base, _ = _unwrap(tp)
    origin = typing.get_origin(base)
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base in (int, str, bool):
        if isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
    elif origin is Literal:
        if isinstance(value, str):
            return value  # whether it is one of the choices: validate()
    elif origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(base)
        if len(args) == len(value):
            try:
                return tuple(_coerce(v, a, where) for v, a in zip(value, args))
            except ConfigError:
                pass
    raise ConfigError(
        f"{where} must be {_type_words(tp)}; got {_show(value)}{_from(source)}", _hint(where, source)
    )


def _problem(value: Any, tp: Any) -> str | None:
    """What type ``tp`` accepts, in words, when ``value`` is not accepted; else None."""
    base, meta = _unwrap(tp)
    origin = typing.get_origin(base)
    if origin is Literal:
        choices = typing.get_args(base)
        return None if value in choices else f"one of {_quoted(choices)}"
    if origin is tuple:
        bad = [p for v, t in zip(value, typing.get_args(base)) if (p := _problem(v, t))]
        return f"{len(value)} numbers, each {bad[0]}" if bad else None
    ranges = [m.describe() for m in meta if isinstance(m, Range)]
    if isinstance(value, float) and not math.isfinite(value):
        return " ".join(["a finite number", *ranges])
    for m in meta:
        if isinstance(m, Range) and not m.contains(value):
            return m.describe()
        if isinstance(m, Format) and not m.test(value):
            return m.accepts
    return None


def _fields(cfg: Config) -> typing.Iterator[tuple[str, Any, Any]]:
    """``(where, value, type)`` of every field but ``preset``: ``("splat.steps", 2000, ...)``."""
    for name, tp in _hints(Config).items():
        if name not in SECTIONS and name != "preset":
            yield name, getattr(cfg, name), tp
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for name, tp in _hints(type(obj)).items():
            yield f"{section}.{name}", getattr(obj, name), tp


def _rule_error(message: str, fields: tuple[str, ...], sources: Mapping[str, str], hint: str) -> ConfigError:
    srcs = list(dict.fromkeys(sources[f] for f in fields if f in sources))
    return ConfigError(message + _from("; ".join(srcs)), hint)


def _check_rules(cfg: Config, sources: Mapping[str, str], check_files: bool) -> None:
    """The rules between fields (see :func:`validate`)."""
    s, r = cfg.splat, cfg.render
    if s.refine_start > s.refine_stop:
        d = SplatConfig()
        raise _rule_error(
            f"splat.refine_start must be at most splat.refine_stop; got {s.refine_start} > {s.refine_stop}",
            ("splat.refine_start", "splat.refine_stop"),
            sources,
            f"densification runs from refine_start to refine_stop: lower splat.refine_start or "
            f"raise splat.refine_stop; the defaults are {d.refine_start} and {d.refine_stop}",
        )
    if s.backend == "gsplat" and cfg.device == "cpu":
        raise _rule_error(
            'splat.backend "gsplat" needs a CUDA device; got device "cpu"',
            ("splat.backend", "device"),
            sources,
            "use --set splat.backend=auto, or --set device=cuda on a machine with CUDA",
        )
    if s.backend in ("cpu", "torch") and cfg.device.startswith("cuda"):
        raise _rule_error(
            f"splat.backend {_show(s.backend)} runs on the CPU; got device {_show(cfg.device)}",
            ("splat.backend", "device"),
            sources,
            "use --set splat.backend=auto, which takes gsplat on CUDA, or --set device=cpu",
        )
    if is_path_file(r.path):
        if r.side_by_side:
            raise _rule_error(
                f"render.side_by_side follows the input cameras and cannot be combined with the "
                f"path file render.path={_show(r.path)}",
                ("render.side_by_side", "render.path"),
                sources,
                "drop side_by_side, or use a named path such as --set render.path=orbit",
            )
        path = Path(r.path)
        if check_files and not path.is_file():
            where = "" if path.is_absolute() else f" in {Path.cwd()}"
            why = "is not a file" if path.exists() else f"does not exist{where}"
            raise ConfigError(
                f"render.path must be a named path or an existing .json file; got {_show(r.path)}, "
                f"which {why}{_from(sources.get('render.path'))}",
                "give a camera path file written by `vid3d render`, such as WORKSPACE/renders/orbit.json, "
                "relative to the current directory, or a named path, e.g. --set render.path=orbit",
            )


def validate(cfg: Config, *, sources: Mapping[str, str] | None = None, check_files: bool = True) -> Config:
    """Check every field of ``cfg`` and the rules between fields, before any stage runs.

    A field's type says what it accepts: a ``Literal`` lists the choices, ``Range``
    metadata bounds a number, ``Format`` metadata checks a string (``device``,
    ``render.path``, ``render.resolution``, ``render.aspect``), and every float is
    finite. Rules between fields: ``splat.refine_start <= splat.refine_stop``;
    ``splat.backend`` "gsplat" not with ``device`` "cpu", "cpu" and "torch" not with a
    "cuda" device; a ``.json`` ``render.path`` not with ``render.side_by_side``, and the
    file exists (read from the current directory when relative, as the render stage does).

    Args:
        cfg: The configuration; it is not changed.
        sources: Field (``"splat.steps"``) -> where its value came from (a preset's
            path, ``"--set splat.steps=5"``), named in the error. Default: none.
        check_files: Check that a ``.json`` ``render.path`` exists. Default: True.

    Returns:
        ``cfg``.

    Raises:
        ConfigError: The first invalid value, in one line: the field, the value, what is
            accepted and where the value came from, with a hint.
    """
    sources = sources or {}
    for where, value, tp in _fields(cfg):
        source = sources.get(where)
        _coerce(value, tp, where, source)  # the type, for configs built in code
        accepts = _problem(value, tp)
        if accepts is not None:
            raise ConfigError(
                f"{where} must be {accepts}; got {_show(value)}{_from(source)}", _hint(where, source)
            )
    _check_rules(cfg, sources, check_files)
    return cfg


def _apply(cfg: Config, data: dict[str, Any], source: str, sources: dict[str, str]) -> None:
    """Set the fields in ``data`` (types checked), recording ``source`` for each in ``sources``."""
    top_hints = _hints(Config)
    top_fields = [k for k in top_hints if k not in SECTIONS]
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"[{key}] in {source} must be a table",
                    f"write its fields as {key}.FIELD=VALUE or under [{key}]",
                )
            section = getattr(cfg, key)
            hints = _hints(type(section))
            for name, v in value.items():
                if name not in hints:
                    raise ConfigError(
                        f"unknown option {key}.{name} in {source}", _known(name, list(hints), f"{key}.")
                    )
                setattr(section, name, _coerce(v, hints[name], f"{key}.{name}", source))
                sources[f"{key}.{name}"] = source
        elif key in top_fields:
            setattr(cfg, key, _coerce(value, top_hints[key], key, source))
            sources[key] = source
        else:
            raise ConfigError(
                f"unknown option {key} in {source}",
                _known(key, top_fields + list(SECTIONS), sections=SECTIONS),
            )


def parse_override(text: str) -> dict[str, Any]:
    """``"splat.steps=500"`` -> ``{"splat": {"steps": 500}}``; values are TOML literals or bare strings."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not KEY=VALUE", "write e.g. --set splat.steps=500")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    parts = key.split(".")
    if len(parts) == 1:
        return {parts[0]: value}
    if len(parts) == 2:
        return {parts[0]: {parts[1]: value}}
    raise ConfigError(f"--set key {key!r} has too many dots", "write SECTION.FIELD=VALUE")


def load_config(preset: str = "default", overrides: list[str] | None = None) -> Config:
    """Build a configuration from the defaults, a preset and overrides, and validate it.

    Args:
        preset: A bundled preset name (``default``, ``fast``...) or a TOML file path.
        overrides: ``SECTION.FIELD=VALUE`` strings applied last.

    Raises:
        ConfigError: An unknown preset or option, or an invalid value (see :func:`validate`).
    """
    cfg = Config(preset=preset)
    path = find_preset(preset)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {path} is not valid TOML: {e}") from e
    sources: dict[str, str] = {}
    _apply(cfg, data, str(path), sources)
    for text in overrides or []:
        _apply(cfg, parse_override(text), f"--set {text}", sources)
    cfg.preset = preset
    return validate(cfg, sources=sources)


def apply_data(cfg: Config, data: dict[str, Any], source: str) -> Config:
    """Apply a parsed TOML table (a preset's or an override file's) to ``cfg`` in place,
    then validate it; returns it.

    Args:
        data: ``{"device": ..., "splat": {"steps": ...}, ...}``.
        source: Where the data came from, for error messages.
    """
    sources: dict[str, str] = {}
    _apply(cfg, data, source, sources)
    return validate(cfg, sources=sources)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``SECTION.FIELD=VALUE`` strings to ``cfg`` in place, then validate it (also
    when there are none); returns it."""
    sources: dict[str, str] = {}
    for text in overrides:
        _apply(cfg, parse_override(text), f"--set {text}", sources)
    return validate(cfg, sources=sources)


def load_config_file(path: Path) -> Config:
    """Read a resolved configuration saved by :func:`dump_config`, and validate it.

    A missing ``render.path`` file is not an error here (the file is checked by the
    next :func:`apply_overrides`, which may replace the path): a workspace's saved
    configuration stays readable after its camera path file moved.
    """
    cfg = Config()
    sources: dict[str, str] = {}
    try:
        _apply(cfg, tomllib.loads(path.read_text()), str(path), sources)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    return validate(cfg, sources=sources, check_files=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_config(cfg: Config) -> str:
    """The configuration as TOML text, every field written out."""
    lines = ["# vid3d resolved configuration", ""]
    for f in dataclasses.fields(cfg):
        if f.name not in SECTIONS:
            lines.append(f"{f.name} = {_toml_value(getattr(cfg, f.name))}")
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for f in dataclasses.fields(getattr(cfg, section)):
            lines.append(f"{f.name} = {_toml_value(getattr(getattr(cfg, section), f.name))}")
    return "\n".join(lines) + "\n"
