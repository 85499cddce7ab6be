"""Fixtures every test level shares (the real data folder); see ``testing_support``."""

from __future__ import annotations

from pathlib import Path

import pytest
from testing_support import require_porcine_data


@pytest.fixture(scope="session")
def porcine_dir() -> Path:
    """The real porcine CT/MR folder; the test is skipped (with the path looked at) when it is absent."""
    return require_porcine_data()
