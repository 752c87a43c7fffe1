"""Checks that keep the house in order: the module map, and who may touch pycolmap."""

from __future__ import annotations

import re
from pathlib import Path

import vid3d

PACKAGE = Path(vid3d.__file__).parent
PLUMBING = {"__init__.py", "__main__.py"}


def test_module_map_lists_every_module_once():
    mapped = re.findall(r"^\s{4}(vid3d/\S+\.py)\s", vid3d.__doc__, flags=re.M)
    modules = sorted(
        p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py") if p.name not in PLUMBING
    )
    assert len(mapped) == len(set(mapped)), "a module is listed twice"
    assert sorted(mapped) == modules, (
        f"missing from the map: {sorted(set(modules) - set(mapped))}; "
        f"listed but gone: {sorted(set(mapped) - set(modules))}"
    )


def test_only_the_sfm_adapter_imports_pycolmap():
    users = sorted(
        p.relative_to(PACKAGE.parent).as_posix()
        for p in PACKAGE.rglob("*.py")
        if re.search(r"^\s*(import pycolmap|from pycolmap)", p.read_text(), flags=re.M)
    )
    assert all(u.startswith("vid3d/sfm/") or u == "vid3d/doctor.py" for u in users), users


def test_every_module_says_what_it_owns():
    for p in PACKAGE.rglob("*.py"):
        if p.name == "__main__.py" or (p.name == "__init__.py" and not p.read_text().strip()):
            continue
        text = p.read_text().lstrip()
        assert text.startswith('"""'), f"{p} has no module docstring"
