"""Shared fixtures for the core tests: the real-data folder and grids of any geometry.

Kept small and generic on purpose: several test files use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import SimpleITK as sitk
from core_test_helpers import build_grid, rotation_matrix  # noqa: F401  (re-exported for fixtures)

#: ``shared/`` lies beside the repository root (this file is Testing/core/conftest.py).
_DEFAULT_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "porcine_ct_mr"


def porcine_data_folder() -> Path:
    """Where the porcine CT/MR data should be: $MKR_SHARED_DATA (the folder or its parent) or the default."""
    env = os.environ.get("MKR_SHARED_DATA")
    if not env:
        return _DEFAULT_DATA.resolve()
    base = Path(env)
    return (base / "porcine_ct_mr").resolve() if (base / "porcine_ct_mr").is_dir() else base.resolve()


@pytest.fixture(scope="session")
def porcine_dir() -> Path:
    """The real porcine CT/MR folder; the test is skipped (with the path looked at) when it is absent."""
    folder = porcine_data_folder()
    if not (folder / "CT.nrrd").is_file() or not (folder / "MR_T2.nrrd").is_file():
        pytest.skip(f"real data not found: {folder} has no CT.nrrd/MR_T2.nrrd "
                    "(set MKR_SHARED_DATA to the porcine_ct_mr folder)")
    return folder


@pytest.fixture
def grid_factory() -> Callable[..., sitk.Image]:
    """``build_grid`` as a fixture: ``grid_factory((64, 64, 20), (0.5, 0.5, 2.0), direction=R)``."""
    return build_grid


@pytest.fixture
def rotation() -> Callable[[Sequence[float], float], np.ndarray]:
    """``rotation_matrix`` as a fixture, for oblique directions: ``rotation((1, 1, 0), 20)``."""
    return rotation_matrix
