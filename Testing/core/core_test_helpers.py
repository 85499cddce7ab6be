"""Grid and rotation helpers shared by the core tests (a uniquely named module, so that
``Testing/core`` and ``Testing/mrml`` conftests never shadow each other on import)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.synthetic.poses import axis_angle_matrix as rotation_matrix  # noqa: F401


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
