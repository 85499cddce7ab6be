"""Shared fixtures for the core tests: the real-data folder and grids of any geometry.

Kept small and generic on purpose: several test files use it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pytest
import SimpleITK as sitk

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


def rotation_matrix(axis: Sequence[float], angle_deg: float) -> np.ndarray:
    """3x3 right-handed rotation by ``angle_deg`` about ``axis``."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = math.radians(angle_deg)
    return np.eye(3) + math.sin(t) * k + (1.0 - math.cos(t)) * k @ k


def build_grid(size: Sequence[int], spacing: Sequence[float], direction: Optional[np.ndarray] = None,
               origin: Optional[Sequence[float]] = None, center: Sequence[float] = (0.0, 0.0, 0.0),
               pixel_type: int = sitk.sitkUInt8) -> sitk.Image:
    """A zero image with the given grid; without ``origin`` its field of view is centred on ``center``."""
    image = sitk.Image([int(s) for s in size], pixel_type)
    matrix = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection(matrix.ravel().tolist())
    if origin is None:
        half = matrix @ np.diag(image.GetSpacing()) @ ((np.array(image.GetSize(), dtype=float) - 1.0) / 2.0)
        origin = np.asarray(center, dtype=float) - half
    image.SetOrigin([float(o) for o in origin])
    return image


@pytest.fixture
def grid_factory() -> Callable[..., sitk.Image]:
    """``build_grid`` as a fixture: ``grid_factory((64, 64, 20), (0.5, 0.5, 2.0), direction=R)``."""
    return build_grid


@pytest.fixture
def rotation() -> Callable[[Sequence[float], float], np.ndarray]:
    """``rotation_matrix`` as a fixture, for oblique directions: ``rotation((1, 1, 0), 20)``."""
    return rotation_matrix
