from pathlib import Path

import pytest

from vid3d.workspace import atomic_dir, atomic_path, fingerprint_paths, write_json


def test_atomic_path_leaves_target_untouched_on_error(tmp_path: Path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_dir_swaps_only_when_complete(tmp_path: Path):
    target = tmp_path / "images"
    target.mkdir()
    (target / "old.jpg").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.jpg").write_text("2")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.jpg"]
    with atomic_dir(target) as tmp:
        (tmp / "new.jpg").write_text("2")
    assert [p.name for p in target.iterdir()] == ["new.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_fingerprint_changes_with_content(tmp_path: Path):
    write_json(tmp_path / "x.json", {"a": 1})
    before = fingerprint_paths([tmp_path])
    assert fingerprint_paths([tmp_path]) == before
    write_json(tmp_path / "x.json", {"a": 12})
    assert fingerprint_paths([tmp_path]) != before
