"""Shared fixtures for the core tests: the real-data folder and grids of any geometry.

Kept small and generic on purpose: several test files use it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pytest
import SimpleITK as sitk
from core_test_helpers import build_grid, rotation_matrix  # noqa: F401  (re-exported for fixtures)


@pytest.fixture
def grid_factory() -> Callable[..., sitk.Image]:
    """``build_grid`` as a fixture: ``grid_factory((64, 64, 20), (0.5, 0.5, 2.0), direction=R)``."""
    return build_grid


@pytest.fixture
def rotation() -> Callable[[Sequence[float], float], np.ndarray]:
    """``rotation_matrix`` as a fixture, for oblique directions: ``rotation((1, 1, 0), 20)``."""
    return rotation_matrix
