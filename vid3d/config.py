"""Typed configuration of every stage, presets and overrides.

A configuration is a :class:`Config` of one dataclass per stage. It is built
from the dataclass defaults, then a preset (``pipelines/<name>.toml`` or a TOML
file path), then ``--set section.field=value`` overrides, and saved resolved in
``<ws>/vid3d.toml``. A preset only lists the fields it changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclass
class FramesConfig:
    """Which frames of the video become training images."""

    target_frames: int = 100
    """How many frames to keep, sampled evenly over the clip (the shot)."""
    max_frames: int = 300
    """Hard maximum of kept frames, whatever else asks for more."""
    max_size: int = 960
    """Longest side of the saved frames in pixels (frames are never upscaled)."""
    jpeg_quality: int = 95
    """JPEG quality of the saved frames (1-100)."""
    min_motion: float = 0.004
    """Least camera travel over the shot (the largest median feature displacement
    of a sampled frame from the first one, dominant motion only), as a fraction
    of the image diagonal; below it the camera counts as static and the stage
    stops with NotEnoughMotionError."""
    target_fps: float = 0.0
    """Frames per second of the shot to keep instead of target_frames (0: use
    target_frames). max_frames still applies."""
    dup_motion: float = 0.001
    """A sampled frame that moved less than this fraction of the image diagonal
    from the previous kept frame is dropped as a near-duplicate ("no_motion").
    The threshold is lowered for clips whose camera moves slowly throughout."""
    cut_detection: bool = True
    """Split the video at hard scene cuts and use one shot (see ``shot``)."""
    overlay_masks: bool = True
    """Detect static overlays (logos, captions, UI) and write masks for them."""
    crop_bars: bool = True
    """Detect letterbox / pillarbox bars and crop them away."""
    analysis_size: int = 320
    """Long side, in pixels, of the grey frames used for cuts, overlays and motion."""


@dataclass
class PosesConfig:
    """Structure from motion with pycolmap."""

    camera_model: str = "auto"
    """COLMAP camera model shared by all frames (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, OPENCV...),
    or "auto": PINHOLE (fx and fy, no distortion). fx != fy fits videos resized to another
    aspect ratio (the 384x256 re10k clips: fy/fx = 1.19); a radial term trades off against
    the focal length on short clips (SIMPLE_RADIAL drifted 7% in focal, 1.3 degrees in rotation)."""
    matcher: str = "auto"
    """"sequential", "exhaustive", or "auto" (exhaustive for small sets, sequential otherwise)."""
    exhaustive_below: int = 40
    """With matcher="auto", frame counts below this are matched exhaustively."""
    max_num_features: int = 8192
    """SIFT features per image."""
    mapper: str = "global"
    """"global" (GLOMAP, pycolmap.global_mapping) or "incremental" (COLMAP). Global is the
    default: on the re10k benchmark (benchmarks/bench_poses.py) it registered every frame
    with < 1 degree mean rotation error on all 12 clips; incremental mapping, with the same
    calibration, missed that on 3 clips (2 to 13 degrees mean, up to 30 degrees)."""
    min_registered_fraction: float = 0.5
    """Fewer registered frames than this fraction is a failure."""
    retry_below_fraction: float = 1.0
    """An attempt registering fewer frames than this fraction starts the next rung of
    the retry ladder (more features, exhaustive matching, relaxed initialisation,
    the other mapper); the best attempt wins."""
    max_attempts: int = 4
    """Most attempts of the retry ladder (1: no retries)."""
    sequential_overlap: int = 0
    """Sequential matching: frames matched with each frame's next ones (0: fitted
    to the frame count, 10 to 20); pairs 2, 4, 8... apart are matched too."""
    calibrate: bool = True
    """Before mapping, estimate the focal length from the verified pairs' fundamental
    matrices (self-calibration: the focal that makes K^T F K closest to an essential
    matrix). False: start from COLMAP's guess, 1.2 x the longer image side."""
    init_min_num_inliers: int = 100
    """Incremental mapper: verified matches the initial pair needs (first attempt)."""
    init_min_tri_angle: float = 16.0
    """Incremental mapper: triangulation angle of the initial pair in degrees (first attempt)."""
    refine_intrinsics: bool = True
    """Refine focal length(s) and distortion in bundle adjustment, starting from the
    self-calibrated focal (False keeps that focal fixed)."""
    min_image_motion: float = 0.01
    """The stage fails early (a static camera) when verified matches move less than this
    fraction of the image diagonal (90th percentile over all matched frame pairs)."""
    seed: int = 0
    """Random seed of COLMAP's RANSAC and mapper, for repeatable runs."""


@dataclass
class SplatConfig:
    """Gaussian splat training."""

    steps: int = 2000
    """Training steps (one image per step), before ``schedule_scale``."""
    schedule_scale: float = 1.0
    """One factor on every step count of the schedule (steps, SH interval, refinement
    start/stop/interval, opacity reset, coarse phase, evaluation and checkpoint intervals): presets
    lengthen or shorten training with it and keep the schedule's shape."""
    sh_degree: int = 3
    """Final spherical-harmonics degree."""
    sh_degree_interval: int = 400
    """Steps between raising the SH degree by one."""
    ssim_lambda: float = 0.2
    """Weight of the D-SSIM term; the L1 term gets 1 - ssim_lambda."""
    test_every: int = 8
    """Every n-th frame is held out for evaluation (0: none), starting half a period in;
    the first and last frames always train (they are the only views of the clip's ends)."""
    coarse_steps: int = 600
    """Steps at the start trained at half resolution (a quarter of the pixels per step);
    the rest, and every evaluation, use the full frames."""
    eval_every: int = 500
    """Evaluate held-out PSNR every n steps (and at the end)."""
    strategy: str = "default"
    """Densification strategy: "default" (gsplat DefaultStrategy, clone/split/prune) or
    "mcmc" (gsplat MCMCStrategy, a fixed budget of max_gaussians relocated over time)."""
    max_gaussians: int = 80_000
    """Cap on the number of Gaussians (growth stops there; MCMC's budget)."""
    opacity_reg: float = 0.01
    """MCMC only: weight of the mean-opacity regulariser."""
    scale_reg: float = 0.01
    """MCMC only: weight of the mean-scale regulariser."""
    exposure: bool = True
    """Learn a per-frame affine colour correction (for flicker and auto exposure);
    used in training only, never when rendering new views (held-out frames are scored
    under the correction interpolated from their neighbouring training frames, and
    uncorrected as ``psnr_raw``)."""
    lr_exposure: float = 1e-3
    """Learning rate of the colour correction."""
    exposure_reg: float = 0.01
    """Weight pulling each frame's colour correction towards identity."""
    refine_start: int = 300
    """First step of densification."""
    refine_stop: int = 1500
    """Last step of densification."""
    refine_every: int = 100
    """Steps between densifications."""
    reset_every: int = 3000
    """Steps between opacity resets; a reset fires only before refine_stop, so with the
    bundled schedules it never does: on the 25-frame re10k clips a reset at step 1000
    of 3000 cost 3-4 dB of held-out PSNR that the rest of training did not win back
    (19.5 vs 23.4 dB at step 1500, benchmarks/bench_quality.py)."""
    grow_grad2d: float = 0.0002
    """Screen-space gradient threshold for growing a Gaussian."""
    init_opacity: float = 0.1
    """Opacity of the initial Gaussians."""
    init_scale: float = 1.0
    """Initial scale as a factor of the mean distance to the 3 nearest points."""
    lr_means: float = 1.6e-4
    """Learning rate of positions, times the scene scale; decays 100x over training."""
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background colour (RGB in [0, 1])."""
    checkpoint_every: int = 500
    """Write ``splats/ckpt.pt`` every n steps (and at the end) so training can resume."""
    backend: str = "auto"
    """Rasterizer: "auto" (gsplat on CUDA, else the CPU kernel), "gsplat", "cpu", "torch"."""
    seed: int = 0
    """Random seed."""


    def scaled(self) -> "SplatConfig":
        """This config with ``schedule_scale`` applied to every step count (and set to 1)."""
        k = self.schedule_scale
        fields = ("steps", "coarse_steps", "sh_degree_interval", "eval_every", "refine_start", "refine_stop",
                  "refine_every", "reset_every", "checkpoint_every")
        return dataclasses.replace(
            self, schedule_scale=1.0,
            **{f: max(1, round(getattr(self, f) * k)) if getattr(self, f) > 0 else 0 for f in fields})


@dataclass
class RenderConfig:
    """The orbit video."""

    path: str = "orbit"
    """Camera path: "orbit" (ellipse around the centre), "turntable" (full circle),
    "spiral" (forward-facing, for clips that move little), "input" (the input camera
    path, smoothed), or a .json path file written by a previous render (its cameras
    are in the SfM frame; its size overrides ``resolution`` and ``aspect``)."""
    seconds: float = 6.0
    """Length of the video in seconds."""
    fps: int = 30
    """Frames per second (24, 30 or 60 are usual)."""
    resolution: str = "720p"
    """"360p", "480p", "720p", "1080p", "1440p", "2160p" (the short side), or "WIDTHxHEIGHT"."""
    aspect: str = "16:9"
    """Aspect ratio: "16:9", "9:16" (Shorts), "1:1", "4:3", "W:H", or "input" (the input frames')."""
    crf: int = 18
    """x264 constant rate factor (lower is better quality, 17-23 is usual)."""
    x264_preset: str = "medium"
    """x264 speed preset, "ultrafast" ... "veryslow"."""
    radius_factor: float = 1.0
    """Orbit radius as a factor of the input cameras' distance to the centre."""
    height_factor: float = 1.0
    """Orbit height as a factor of the input cameras' height above the centre."""
    smoothing: float = 2.0
    """Smoothing of the "input" path: Gaussian standard deviation in input frames (0: none)."""
    side_by_side: bool = False
    """Put each input frame left of the render from its camera (the input cameras
    at the input frames' times; the video is twice as wide)."""
    preview: str = "webp"
    """Animated preview next to the video: "webp", "gif" or "none"."""
    preview_width: int = 480
    """Width of the animated preview in pixels."""


@dataclass
class Config:
    """The whole pipeline's configuration."""

    preset: str = "default"
    """Name or path of the preset this configuration was built from."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu" or "cuda"."""
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


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
    elif origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == len(value):
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    raise ConfigError(f"{where} must be {getattr(tp, '__name__', tp)}, got {value!r}",
                      "check the value's type in the preset or --set")


def _apply(cfg: Config, data: dict[str, Any], source: str) -> None:
    top_hints = typing.get_type_hints(Config)
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] in {source} must be a table")
            section = getattr(cfg, key)
            hints = typing.get_type_hints(type(section))
            for name, v in value.items():
                if name not in hints:
                    known = ", ".join(hints)
                    raise ConfigError(f"unknown option {key}.{name} in {source}", f"known: {known}")
                setattr(section, name, _coerce(v, hints[name], f"{key}.{name}"))
        elif key in top_hints and key not in SECTIONS:
            setattr(cfg, key, _coerce(value, top_hints[key], key))
        else:
            raise ConfigError(f"unknown option {key} in {source}",
                              f"sections are {', '.join(SECTIONS)}")


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
    """Build a configuration from the defaults, a preset and overrides.

    Args:
        preset: A bundled preset name (``default``, ``fast``...) or a TOML file path.
        overrides: ``SECTION.FIELD=VALUE`` strings applied last.
    """
    cfg = Config(preset=preset)
    path = find_preset(preset)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {path} is not valid TOML: {e}") from e
    _apply(cfg, data, str(path))
    apply_overrides(cfg, overrides or [])
    cfg.preset = preset
    return cfg


def apply_data(cfg: Config, data: dict[str, Any], source: str) -> Config:
    """Apply a parsed TOML table (a preset's or an override file's) to ``cfg`` in place.

    Args:
        data: ``{"device": ..., "splat": {"steps": ...}, ...}``.
        source: Where the data came from, for error messages.
    """
    _apply(cfg, data, source)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``SECTION.FIELD=VALUE`` strings to ``cfg`` in place; returns it."""
    for text in overrides:
        _apply(cfg, parse_override(text), f"--set {text}")
    return cfg


def load_config_file(path: Path) -> Config:
    """Read a resolved configuration saved by :func:`dump_config`."""
    cfg = Config()
    try:
        _apply(cfg, tomllib.loads(path.read_text()), str(path))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    return cfg


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
