"""Registration pairs rendered from the knee phantom, with their true fixed -> moving transforms.

Why: every accuracy test and the demo need a fixed and a moving image of the same knee, on the grids
scanners produce (a fine micro-CT cube, thick-slice MRI, clinical CT, oblique or flipped), with the
answer known exactly. ``make_registration_pair`` renders them; ``PhantomPair.target_points`` gives
the points inside the knee where the error is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import (
    affine_from_matrix,
    apply_matrix,
    index_to_physical_matrix,
    rotation_angle_deg,
    transform_to_matrix,
)
from .phantom import BONES, LABELS, SHANK_BONES, KneePhantom, make_grid, rigid_transform


@dataclass(frozen=True)
class GridSpec:
    """A scanner grid: ``center`` is the phantom point (LPS mm) the field of view is centred on."""

    size: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    direction: Optional[Tuple[float, ...]] = None
    center: Tuple[float, float, float] = (0.0, 0.0, 0.0)


#: Typical grids: a 45 mm micro-CT cube of the joint, a knee MRI and a clinical CT (<= ~7 M voxels).
GRIDS: Dict[str, GridSpec] = {
    "microct": GridSpec((180, 180, 180), (0.25, 0.25, 0.25), center=(0.0, 8.0, 0.0)),
    "mri": GridSpec((320, 320, 60), (0.5, 0.5, 2.0), center=(0.0, 5.0, 10.0)),
    "ct": GridSpec((200, 200, 175), (0.8, 0.8, 0.8), center=(0.0, 5.0, 10.0)),
}
_MODALITY_OF_GRID = {"microct": "ct", "ct": "ct", "mri": "mri"}
#: Default offset's rotation axis and translation direction (oblique, so no axis is special).
OFFSET_AXIS = (0.4, 0.7, 0.6)
OFFSET_DIRECTION = (0.6, -0.48, 0.64)


@dataclass(frozen=True)
class PhantomPair:
    """A fixed/moving pair and its truth: ``true_transform`` maps fixed LPS points to moving points."""

    fixed: sitk.Image
    moving: sitk.Image
    true_transform: sitk.Transform
    description: str
    fixed_phantom: KneePhantom
    #: Per-bone truth (fixed -> moving); differs from ``true_transform`` for the shank when flexed.
    bone_transforms: Dict[str, sitk.Transform]

    def target_points(self, spacing_mm: float = 4.0) -> np.ndarray:
        """Fixed-space points inside the body that both fields of view contain, shape (N, 3).

        Example:
            >>> errors = point_distances(result.transform, pair.true_transform, pair.target_points())
        """
        to_lps = index_to_physical_matrix(self.fixed)
        step = np.maximum(1, np.round(spacing_mm / np.array(self.fixed.GetSpacing()))).astype(int)
        axes = [np.arange(0, n, s) + ((n - 1) % s) / 2.0 for n, s in zip(self.fixed.GetSize(), step)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        points = apply_matrix(to_lps, grid)
        mapped = apply_matrix(np.linalg.inv(index_to_physical_matrix(self.moving)),
                              apply_matrix(transform_to_matrix(self.true_transform), points))
        inside = np.all((mapped >= 0) & (mapped <= np.array(self.moving.GetSize()) - 1.0), axis=1)
        points = points[inside]
        return points[self.fixed_phantom.label_at(points) != LABELS["background"]]


def make_registration_pair(kind: str = "microct-mri", offset=(10.0, 8.0), *,
                           fixed_grid: Optional[GridSpec] = None, moving_grid: Optional[GridSpec] = None,
                           flexion_deg: float = 0.0, moving_flexion_deg: Optional[float] = None,
                           seed: int = 0, noise: bool = True) -> PhantomPair:
    """A synthetic pair "<fixed>-<moving>" ("microct-mri", "mri-microct", "ct-mri", "mri-ct").

    ``offset`` is the true fixed->moving transform, or (degrees, mm): a rotation about an oblique
    axis through the fixed image's centre and a translation of that length. The fixed image shows
    the phantom at its own LPS points; the moving one is rendered through the inverse of the truth.

    Example:
        >>> pair = make_registration_pair("microct-mri", (10.0, 8.0))
        >>> result = register(pair.fixed, pair.moving, settings_for_preset("mri-microct-knee"))
    """
    names = kind.split("-")
    if len(names) != 2 or any(n not in GRIDS for n in names):
        raise InputError(f"unknown phantom pair kind {kind!r}", "use e.g. 'microct-mri' or 'mri-ct'")
    fixed_grid = fixed_grid or GRIDS[names[0]]
    moving_grid = moving_grid or GRIDS[names[1]]
    fixed_phantom = KneePhantom(flexion_deg, seed)
    moving_phantom = KneePhantom(flexion_deg if moving_flexion_deg is None else moving_flexion_deg, seed + 1)
    fixed_ref = make_grid(fixed_grid.size, fixed_grid.spacing, None, fixed_grid.direction, fixed_grid.center)
    if isinstance(offset, sitk.Transform):
        truth = offset
    else:
        angle, distance = offset
        shift = np.asarray(OFFSET_DIRECTION) * distance
        truth = rigid_transform(OFFSET_AXIS, angle, shift, fixed_grid.center)
    moving_center = truth.TransformPoint([float(c) for c in moving_grid.center])
    moving_ref = make_grid(moving_grid.size, moving_grid.spacing, None, moving_grid.direction, moving_center)
    fixed = fixed_phantom.render_like(fixed_ref, _MODALITY_OF_GRID[names[0]], noise=noise)
    moving = moving_phantom.render_like(moving_ref, _MODALITY_OF_GRID[names[1]], truth.GetInverse(), noise)
    truth_matrix = transform_to_matrix(truth)
    shank = truth_matrix @ transform_to_matrix(moving_phantom.flexion_transform()) @ np.linalg.inv(
        transform_to_matrix(fixed_phantom.flexion_transform()))
    bones = {b: truth if b not in SHANK_BONES else affine_from_matrix(shank) for b in BONES}
    rotation = rotation_angle_deg(truth_matrix)
    shift = np.linalg.norm(truth.TransformPoint(fixed_grid.center) - np.asarray(fixed_grid.center))
    description = (f"phantom {kind}: fixed {fixed.GetSize()} at {fixed.GetSpacing()} mm, moving "
                   f"{moving.GetSize()} at {moving.GetSpacing()} mm; true offset {rotation:.1f} deg, "
                   f"{shift:.1f} mm at the fixed centre")
    return PhantomPair(fixed, moving, truth, description, fixed_phantom, bones)
