"""The grid ``registered_moving`` is written on: the fixed grid, or a coarser copy of it when huge.

Why: a micro-CT fixed image can have a billion voxels; the moving MRI resampled onto it would be a
multi-gigabyte file that shows nothing the MRI did not have. Above ``AUTO_RESAMPLE_VOXELS`` the
output goes on the finest coarser copy of the fixed grid that fits, and the outputs say so.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..geometry import coarser_grid

#: Above this many fixed voxels, ``registered_moving.nrrd`` goes onto a coarser copy of the fixed grid.
AUTO_RESAMPLE_VOXELS = 64_000_000


def resample_grid(fixed: sitk.Image, spacing_mm: Optional[float] = None) -> Tuple[Optional[sitk.Image], Optional[str]]:
    """(grid, note): None for the fixed grid itself; else a coarser copy and a sentence saying so.

    ``spacing_mm`` asks for at least that spacing; without it, only grids above
    ``AUTO_RESAMPLE_VOXELS`` are coarsened, to the finest spacing that fits.
    """
    spacing = np.array(fixed.GetSpacing())
    size = np.array(fixed.GetSize())
    reason = f"--resample-spacing {spacing_mm:g}" if spacing_mm is not None else ""
    if spacing_mm is None:
        if fixed.GetNumberOfPixels() <= AUTO_RESAMPLE_VOXELS:
            return None, None
        spacing_mm = _finest_fitting_spacing(spacing, size)
        reason = (f"the fixed grid has {fixed.GetNumberOfPixels() / 1e6:.0f} M voxels, "
                  f"over {AUTO_RESAMPLE_VOXELS // 1_000_000} M")
    new_spacing = np.maximum(spacing, spacing_mm)
    if np.allclose(new_spacing, spacing):
        return None, None
    new_size = np.maximum(np.round(size * spacing / new_spacing), 1).astype(int)
    grid = coarser_grid(fixed, new_spacing, new_size)
    note = (f"registered_moving is on a coarser copy of the fixed grid: {'x'.join(str(n) for n in new_size)} voxels "
            f"of {'x'.join(f'{s:.3g}' for s in new_spacing)} mm ({reason}), not the fixed image's "
            f"{'x'.join(str(n) for n in size)} of {'x'.join(f'{s:.3g}' for s in spacing)} mm")
    return grid, note


def _finest_fitting_spacing(spacing: np.ndarray, size: np.ndarray) -> float:
    def count(mm: float) -> float:
        return float(np.prod(np.round(size * spacing / np.maximum(spacing, mm))))

    # Finest spacing that fits: isotropic ``high`` always does (it spreads the whole volume).
    low, high = float(spacing.min()), float((np.prod(spacing * size) / AUTO_RESAMPLE_VOXELS) ** (1 / 3))
    high = max(high, low) * 1.01
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (low, middle) if count(middle) <= AUTO_RESAMPLE_VOXELS else (middle, high)
    return high
