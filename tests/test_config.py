from pathlib import Path

import pytest

from vid3d.config import (Config, apply_overrides, dump_config, load_config, load_config_file,
                          parse_override, preset_names)
from vid3d.errors import ConfigError


def test_presets_load_and_differ():
    assert {"default", "fast"} <= set(preset_names())
    default, fast = load_config("default"), load_config("fast")
    assert fast.splat.scaled().steps < default.splat.scaled().steps < load_config("quality").splat.scaled().steps
    assert fast.splat.scaled().refine_stop < fast.splat.scaled().steps  # the schedule keeps its shape
    assert fast.frames.max_size < default.frames.max_size
    assert default.splat == Config().splat  # default.toml changes nothing


def test_overrides_are_typed():
    cfg = load_config("fast", ["splat.steps=123", "splat.lr_means=1", 'render.resolution="480p"',
                               "render.resolution=1080p", "device=cpu"])
    assert cfg.splat.steps == 123
    assert cfg.splat.lr_means == 1.0 and isinstance(cfg.splat.lr_means, float)
    assert cfg.render.resolution == "1080p"  # a bare word is a string
    assert cfg.device == "cpu"
    assert parse_override("splat.background=[1, 1, 1]") == {"splat": {"background": [1, 1, 1]}}
    assert apply_overrides(cfg, ["splat.background=[1, 1, 1]"]).splat.background == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("bad", ["splat.nope=1", "nope.steps=1", "splat.steps=fast",
                                 "splat.steps", "a.b.c=1"])
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
