"""Shared fixtures: paths of the shared real test data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def data_path(relative: str) -> Path:
    """A file of the shared test data; skips the test when the data is not checked out."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"shared test data {path} is not present")
    return path
