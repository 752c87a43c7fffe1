import subprocess
import sys
import typing
from pathlib import Path

import pytest

from vid3d.config import (
    PATH_TYPES,
    RESOLUTIONS,
    Config,
    FramesConfig,
    PosesConfig,
    RenderConfig,
    SplatConfig,
    apply_data,
    apply_overrides,
    dump_config,
    find_preset,
    load_config,
    load_config_file,
    parse_override,
    preset_names,
    validate,
)
from vid3d.errors import ConfigError


def test_presets_load_and_differ():
    assert {"default", "fast"} <= set(preset_names())
    default, fast = load_config("default"), load_config("fast")
    assert (
        fast.splat.scaled().steps < default.splat.scaled().steps < load_config("quality").splat.scaled().steps
    )
    assert fast.splat.scaled().refine_stop < fast.splat.scaled().steps  # the schedule keeps its shape
    assert fast.frames.max_size < default.frames.max_size
    assert default.splat == Config().splat  # default.toml changes nothing


def test_overrides_are_typed():
    cfg = load_config(
        "fast",
        [
            "splat.steps=123",
            "splat.lr_means=1",
            'render.resolution="480p"',
            "render.resolution=1080p",
            "device=cpu",
        ],
    )
    assert cfg.splat.steps == 123
    assert cfg.splat.lr_means == 1.0 and isinstance(cfg.splat.lr_means, float)
    assert cfg.render.resolution == "1080p"  # a bare word is a string
    assert cfg.device == "cpu"
    assert parse_override("splat.background=[1, 1, 1]") == {"splat": {"background": [1, 1, 1]}}
    assert apply_overrides(cfg, ["splat.background=[1, 1, 1]"]).splat.background == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "bad", ["splat.nope=1", "nope.steps=1", "splat.steps=fast", "splat.steps", "a.b.c=1"]
)
def test_bad_overrides_raise(bad):
    with pytest.raises(ConfigError):
        load_config("default", [bad])


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        load_config("nope")
    assert "fast" in e.value.hint


def test_dump_round_trips(tmp_path: Path):
    cfg = load_config("fast", ["splat.steps=77", "splat.background=[0.5, 0.5, 0.5]"])
    path = tmp_path / "vid3d.toml"
    path.write_text(dump_config(cfg))
    assert load_config_file(path) == cfg


def test_section_hash_tracks_only_its_section():
    a, b = load_config("default"), load_config("default", ["splat.steps=10"])
    assert a.section_hash("splat") != b.section_hash("splat")
    assert a.section_hash("poses") == b.section_hash("poses")


# -- validation ---------------------------------------------------------------------------


def test_every_bundled_preset_validates():
    assert {"default", "fast", "quality"} <= set(preset_names())
    for name in preset_names():
        cfg = load_config(name)
        assert validate(cfg) is cfg
        assert validate(load_config_file(find_preset(name))) is not None  # a preset reads as a file too


@pytest.mark.parametrize(
    "override, field, shown",
    [
        ("render.resolution=4k", "render.resolution", '"4k"'),
        ("render.resolution=1x1", "render.resolution", '"1x1"'),
        ("render.resolution=9000x100", "render.resolution", '"9000x100"'),
        ("render.path=banana", "render.path", '"banana"'),
        ("device=banana", "device", '"banana"'),
        ("device=cuda:x", "device", '"cuda:x"'),
        ("device=cuda0", "device", '"cuda0"'),
        ("splat.strategy=banana", "splat.strategy", '"banana"'),
        ("splat.backend=banana", "splat.backend", '"banana"'),
        ("poses.camera_model=banana", "poses.camera_model", '"banana"'),
        ("poses.matcher=banana", "poses.matcher", '"banana"'),
        ("poses.mapper=banana", "poses.mapper", '"banana"'),
        ("render.x264_preset=placebo", "render.x264_preset", '"placebo"'),
        ("render.preview=png", "render.preview", '"png"'),
        ("render.aspect=wide", "render.aspect", '"wide"'),
        ("render.aspect=0:1", "render.aspect", '"0:1"'),
        ("splat.steps=-5", "splat.steps", "-5"),
        ("splat.steps=0", "splat.steps", "0"),
        ("splat.refine_every=0", "splat.refine_every", "0"),
        ("splat.reset_every=0", "splat.reset_every", "0"),
        ("splat.sh_degree=5", "splat.sh_degree", "5"),
        ("splat.eval_every=-1", "splat.eval_every", "-1"),
        ("splat.lr_means=nan", "splat.lr_means", "nan"),
        ("splat.lr_means=inf", "splat.lr_means", "inf"),
        ("splat.lr_means=0", "splat.lr_means", "0.0"),
        ("splat.lr_shN=-1e-3", "splat.lr_shN", "-0.001"),
        ("splat.schedule_scale=0", "splat.schedule_scale", "0.0"),
        ("splat.init_opacity=1", "splat.init_opacity", "1.0"),
        ("render.height_factor=-inf", "render.height_factor", "-inf"),
        ("splat.ssim_lambda=1.5", "splat.ssim_lambda", "1.5"),
        ("poses.min_registered_fraction=1.5", "poses.min_registered_fraction", "1.5"),
        ("poses.retry_below_fraction=1.5", "poses.retry_below_fraction", "1.5"),
        ("frames.min_motion=1.5", "frames.min_motion", "1.5"),
        ("frames.dup_motion=-0.5", "frames.dup_motion", "-0.5"),
        ("frames.max_frames=0", "frames.max_frames", "0"),
        ("frames.target_fps=nan", "frames.target_fps", "nan"),
        ("frames.jpeg_quality=0", "frames.jpeg_quality", "0"),
        ("frames.jpeg_quality=101", "frames.jpeg_quality", "101"),
        ("render.crf=60", "render.crf", "60"),
        ("render.fps=0", "render.fps", "0"),
        ("render.fps=500", "render.fps", "500"),
        ("render.seconds=0", "render.seconds", "0.0"),
        ("render.preview_width=8", "render.preview_width", "8"),
        ("render.smoothing=-1", "render.smoothing", "-1.0"),
        ("splat.background=[1.5, 0, 0]", "splat.background", "[1.5, 0.0, 0.0]"),
        ("splat.background=[0, -0.1, 0]", "splat.background", "[0.0, -0.1, 0.0]"),
        ("splat.background=[0, 0, nan]", "splat.background", "[0.0, 0.0, nan]"),
        ("render.path=missing.json", "render.path", '"missing.json"'),
    ],
)
def test_invalid_values_are_rejected_at_load(override, field, shown):
    with pytest.raises(ConfigError) as e:
        load_config("default", [override])
    line = e.value.one_line()
    assert "\n" not in line
    assert e.value.message.startswith(field + " ") and f"got {shown}" in e.value.message
    assert f"--set {override}" in e.value.message  # the source
    assert f"--set {field}=" in e.value.hint


def test_messages_say_what_is_accepted():
    def message(override):
        with pytest.raises(ConfigError) as e:
            load_config("default", [override])
        return e.value.message

    assert message("splat.strategy=banana").startswith(
        'splat.strategy must be one of "default", "mcmc"; got "banana"'
    )
    assert 'must be "auto", "cpu", "cuda" or "cuda:N"' in message("device=banana")
    assert '"1080p"' in message("render.resolution=4k") and "WIDTHxHEIGHT" in message("render.resolution=4k")
    assert "must be a finite number > 0; got nan" in message("splat.lr_means=nan")
    assert "in [0, 1]" in message("poses.min_registered_fraction=1.5")
    assert "in [1, 100]" in message("frames.jpeg_quality=0")
    assert "in [0, 51]" in message("render.crf=60")
    assert "does not exist" in message("render.path=missing.json")


@pytest.mark.parametrize(
    "overrides, fields",
    [
        (["splat.refine_start=2000"], ("splat.refine_start", "splat.refine_stop")),
        (["splat.refine_start=10", "splat.refine_stop=5"], ("splat.refine_start", "splat.refine_stop")),
        (["splat.backend=gsplat", "device=cpu"], ("splat.backend", "device")),
        (["splat.backend=cpu", "device=cuda"], ("splat.backend", "device")),
        (["splat.backend=torch", "device=cuda:1"], ("splat.backend", "device")),
    ],
)
def test_rules_between_fields(overrides, fields):
    with pytest.raises(ConfigError) as e:
        load_config("default", overrides)
    assert all(f in e.value.message for f in fields)
    assert f"--set {overrides[0]}" in e.value.message


def test_path_file_with_side_by_side_is_rejected(tmp_path):
    path = tmp_path / "cam.json"
    path.write_text("{}")
    with pytest.raises(ConfigError) as e:
        load_config("default", [f"render.path={path}", "render.side_by_side=true"])
    assert "render.side_by_side" in e.value.message and str(path) in e.value.message


def test_rules_hold_after_all_overrides_not_after_each():
    cfg = load_config("default", ["splat.refine_start=2000", "splat.refine_stop=3000"])
    assert (cfg.splat.refine_start, cfg.splat.refine_stop) == (2000, 3000)
    cfg = apply_overrides(Config(), ["splat.refine_stop=2500", "splat.refine_start=2400"])
    assert cfg.splat.refine_start == 2400


@pytest.mark.parametrize(
    "override",
    [
        "device=auto",
        "device=cpu",
        "device=cuda",
        "device=cuda:1",
        "device=cuda:12",
        "render.resolution=1920x1080",
        "render.resolution=2x2",
        "render.resolution=8192X8192",
        "render.resolution=' 640 x 480 '",
        "render.resolution=1081x721",
        "render.aspect=input",
        "render.aspect=4:3",
        "render.aspect=2.39:1",
        "render.aspect=16/9",
        "splat.background=[1, 1, 1]",
        "splat.background=[0.5, 0, 1.0]",
        "splat.lr_means=1",
        "splat.eval_every=0",
        "splat.checkpoint_every=0",
        "splat.test_every=0",
        "splat.coarse_steps=0",
        "splat.refine_start=0",
        "splat.sh_degree=0",
        "splat.sh_degree=4",
        "splat.sh_degree_interval=0",
        "splat.opacity_reg=0",
        "splat.grow_grad2d=0",
        "frames.target_fps=12.5",
        "frames.jpeg_quality=1",
        "frames.jpeg_quality=100",
        "poses.sequential_overlap=0",
        "poses.exhaustive_below=0",
        "poses.min_registered_fraction=1",
        "poses.max_attempts=1",
        "render.crf=0",
        "render.crf=51",
        "render.fps=240",
        "render.smoothing=0",
        "render.height_factor=-0.5",
        "render.preview_width=16",
        "splat.backend=gsplat",
        "splat.backend=cpu",
        "splat.seed=-1",
    ],
)
def test_valid_values_still_load(override):
    load_config("default", [override])


@pytest.mark.parametrize("name", PATH_TYPES)
def test_every_named_path_loads(name):
    assert load_config("default", [f"render.path={name}"]).render.path == name


def test_an_existing_path_file_loads(tmp_path, monkeypatch):
    (tmp_path / "renders").mkdir()
    (tmp_path / "renders" / "orbit.JSON").write_text("{}")
    assert load_config("default", [f"render.path={tmp_path / 'renders' / 'orbit.JSON'}"])
    monkeypatch.chdir(tmp_path)  # a relative name is read from the current directory, as render does
    assert load_config("default", ["render.path=renders/orbit.JSON"]).render.path == "renders/orbit.JSON"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("default", ["render.path=orbit.JSON"])


def _literal_fields():
    for cls in (FramesConfig, PosesConfig, SplatConfig, RenderConfig):
        section = cls.__name__.removesuffix("Config").lower()
        for name, tp in typing.get_type_hints(cls).items():
            if typing.get_origin(tp) is typing.Literal:
                yield section, name, typing.get_args(tp)


@pytest.mark.parametrize(
    "section, name, choices", list(_literal_fields()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_literal_value_loads(section, name, choices):
    assert len(choices) >= 2
    for choice in choices:
        assert (
            getattr(getattr(load_config("default", [f"{section}.{name}={choice}"]), section), name) == choice
        )
        assert (
            getattr(getattr(load_config("default", [f'{section}.{name}="{choice}"']), section), name)
            == choice
        )


def test_choices_match_what_the_stages_accept():
    from vid3d.camera_paths import PATH_TYPES as stage_paths
    from vid3d.splats.rasterize import BACKENDS
    from vid3d.stages.poses import CAMERA_MODELS
    from vid3d.stages.render import PREVIEW_FORMATS
    from vid3d.video.encode import RESOLUTIONS as sizes
    from vid3d.video.encode import VideoWriter

    hints = {cls: typing.get_type_hints(cls) for cls in (PosesConfig, SplatConfig, RenderConfig)}
    assert typing.get_args(hints[PosesConfig]["camera_model"]) == CAMERA_MODELS
    assert typing.get_args(hints[PosesConfig]["matcher"]) == ("auto", "sequential", "exhaustive")
    assert set(typing.get_args(hints[PosesConfig]["mapper"])) == {"global", "incremental"}
    assert typing.get_args(hints[SplatConfig]["backend"]) == BACKENDS
    assert typing.get_args(hints[RenderConfig]["x264_preset"]) == VideoWriter.X264_PRESETS
    assert typing.get_args(hints[RenderConfig]["preview"]) == PREVIEW_FORMATS
    assert PATH_TYPES == stage_paths
    assert RESOLUTIONS == tuple(sizes)


def test_resolution_and_aspect_agree_with_the_render_stage():
    from vid3d.video.encode import output_size

    for resolution in (*RESOLUTIONS, "1920x1080", " 640 x 480 ", "2x8192"):
        for aspect in ("16:9", "9:16", "2.39:1", "16/9", "4x3"):
            load_config("default", [f"render.resolution={resolution!r}", f"render.aspect={aspect}"])
            output_size(resolution, aspect)  # render takes what the config takes


def test_preset_file_errors_name_the_file(tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text('[splat]\nstrategy = "banana"\n')
    with pytest.raises(ConfigError) as e:
        load_config(str(preset))
    assert str(preset) in e.value.message and '"banana"' in e.value.message
    assert str(preset) in e.value.hint
    cfg = load_config(str(preset), ["splat.strategy=mcmc"])  # an override can mend a preset
    assert cfg.splat.strategy == "mcmc"


def test_apply_data_validates_and_names_its_source():
    with pytest.raises(ConfigError) as e:
        apply_data(Config(), {"render": {"crf": 99}}, "clips/vid3d.toml")
    assert "render.crf" in e.value.message and "clips/vid3d.toml" in e.value.message
    assert apply_data(Config(), {"render": {"crf": 20}}, "x").render.crf == 20


def test_validate_is_public_and_checks_configs_built_in_code():
    cfg = Config()
    assert validate(cfg) is cfg
    cfg.splat.steps = 0
    with pytest.raises(ConfigError, match="splat.steps"):
        validate(cfg)
    cfg.splat.steps = "5"
    with pytest.raises(ConfigError, match="must be an integer"):
        validate(cfg)
    cfg = Config()
    cfg.render.path = "banana"
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert e.value.hint == "set it in the preset or with --set render.path=auto"  # the default


def test_type_errors_stay_one_line_with_the_source():
    with pytest.raises(ConfigError) as e:
        load_config("default", ["splat.background=[1, 'a', 0]"])
    assert e.value.message.startswith("splat.background must be a list of 3 numbers")
    with pytest.raises(ConfigError) as e:
        load_config("default", ["splat.strategy=1"])
    assert "one of" in e.value.message and "--set splat.strategy=1" in e.value.message


def test_unknown_options_list_the_known_fields():
    with pytest.raises(ConfigError) as e:
        load_config("default", ["splat.stepz=5"])
    assert e.value.message == "unknown option splat.stepz in --set splat.stepz=5"
    assert "did you mean splat.steps?" in e.value.hint and "lr_means" in e.value.hint
    with pytest.raises(ConfigError) as e:
        load_config("default", ["devise=cpu"])
    assert "did you mean device?" in e.value.hint and "render" in e.value.hint


def test_saved_config_round_trips_and_validates(tmp_path: Path):
    cfg = load_config(
        "quality",
        [
            "device=cuda:1",
            "render.resolution=1920x1080",
            "render.aspect=input",
            "splat.strategy=mcmc",
            "poses.camera_model=OPENCV",
            "splat.background=[1, 1, 1]",
        ],
    )
    path = tmp_path / "vid3d.toml"
    path.write_text(dump_config(cfg))
    again = load_config_file(path)
    assert again == cfg and validate(again) is again
    path.write_text(dump_config(again))
    assert load_config_file(path) == cfg


def test_saved_config_with_a_bad_value_names_the_file(tmp_path: Path):
    path = tmp_path / "vid3d.toml"
    path.write_text(dump_config(Config()).replace("crf = 18", "crf = 60"))
    with pytest.raises(ConfigError) as e:
        load_config_file(path)
    assert "render.crf" in e.value.message and str(path) in e.value.message


def test_a_saved_path_file_that_is_gone_can_be_overridden(tmp_path: Path):
    path_file = tmp_path / "cam.json"
    path_file.write_text("{}")
    saved = tmp_path / "vid3d.toml"
    saved.write_text(dump_config(load_config("default", [f"render.path={path_file}"])))
    path_file.unlink()
    cfg = load_config_file(saved)  # the workspace's configuration stays readable...
    with pytest.raises(ConfigError, match="does not exist"):
        apply_overrides(cfg, [])  # ...but is not used as it is
    assert apply_overrides(load_config_file(saved), ["render.path=orbit"]).render.path == "orbit"


def test_import_is_light():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, vid3d.config; "
            "print(sorted(m for m in ('torch', 'numpy', 'cv2', 'pycolmap') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
