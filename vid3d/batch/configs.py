"""Per-video configuration: the ``vid3d.toml`` override files that apply to a video and
the configuration they layer over the batch preset (precedence: :mod:`vid3d.batch`)."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vid3d.config import Config, apply_data, apply_overrides, find_preset, load_config
from vid3d.errors import ConfigError

OVERRIDE_NAME = "vid3d.toml"
"""A folder's override file; ``<stem>.vid3d.toml`` is one video's."""


def override_files(video: Path, folder: Path) -> list[Path]:
    """The override files that apply to a video, weakest first (see :mod:`vid3d.batch`)."""
    video, folder = Path(video), Path(folder)
    rel_dir = video.parent.relative_to(folder)
    dirs = [folder] + [folder / Path(*rel_dir.parts[: i + 1]) for i in range(len(rel_dir.parts))]
    files = [d / OVERRIDE_NAME for d in dirs]
    files.append(video.parent / f"{video.stem}.{OVERRIDE_NAME}")
    return [f for f in files if f.is_file()]


def video_config(
    video: Path, folder: Path, preset: str = "default", overrides: Sequence[str] = ()
) -> tuple[Config, list[Path]]:
    """The configuration of one video of a batch.

    Args:
        video: The video.
        folder: The batch folder (override files are looked for from here down).
        preset: The batch preset: a bundled name or a TOML file. Default: "default".
        overrides: ``SECTION.FIELD=VALUE`` strings applied last.

    Returns:
        The configuration, and the override files it read (weakest first).
    """
    files = override_files(video, folder)
    layers = []
    for f in files:
        data = _read_override(f)
        named = _preset_named(data, f)
        if named is not None:  # the most specific file that names one wins
            preset = named
        layers.append(({k: v for k, v in data.items() if k != "preset"}, f))
    cfg = load_config(preset)
    for data, f in layers:
        apply_data(cfg, data, str(f))
    return apply_overrides(cfg, list(overrides)), files


def _read_override(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}", "fix or remove the file") from e


def _preset_named(data: dict[str, Any], path: Path) -> str | None:
    """The preset an override file names (a relative ``.toml`` one is next to the file),
    checked to exist; None when it names none."""
    name = data.get("preset")
    if not isinstance(name, str):
        return None
    if name.endswith(".toml") and not Path(name).is_absolute():
        name = str(path.parent / name)  # a preset file next to the override file
    find_preset(name)  # fail early with the file named in the message
    return name
