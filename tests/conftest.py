"""Shared fixtures: paths of the shared real test data, and the small synthetic scene."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
GARDEN = DATA / "gsplat" / "test_garden.npz"  # gsplat's garden scene: cameras, points, splats


def data_path(relative: str) -> Path:
    """A file of the shared test data.

    Without it the test is skipped on a developer's machine, but fails in CI (``CI`` set):
    a CI run must never pass by testing nothing.
    """
    path = DATA / relative
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared test data {path} is missing in CI")
        pytest.skip(f"shared test data {path} is not present")
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The synthetic scene of :func:`tests.synthetic.make_scene`, made once per test module."""
    from tests.synthetic import make_scene

    return make_scene(tmp_path_factory.mktemp("scene"))
