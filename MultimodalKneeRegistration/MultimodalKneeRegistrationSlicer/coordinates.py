"""Every RAS <-> LPS conversion of the Slicer side, in one place (numpy and SimpleITK only).

Why: Slicer stores geometry in RAS, ITK (and so the core and BRAINSFit) in LPS; x and y change
sign. Getting one sign wrong moves a volume by twice its offset from the origin, which looks like
a failed registration. Conventions used throughout:

- a volume's ``IJKToRAS`` matrix is ``F @ index_to_physical_matrix(image)`` with ``F`` =
  diag(-1, -1, 1, 1) (the core's ``geometry.LPS_TO_RAS``);
- a registration transform maps *fixed* points to *moving* points. In RAS its matrix is
  ``F @ M_lps @ F``. That is the matrix Slicer shows as a linear transform node's
  "transform from parent" when it reads the same ITK file, so it is what we store there.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.geometry import (
    LPS_TO_RAS,
    Box,
    index_to_physical_matrix,
    lps_matrix_to_ras,
    ras_matrix_to_lps,
    transform_from_matrix,
    transform_to_matrix,
)

_FLIP = np.array([-1.0, -1.0, 1.0])


def rasFromLpsPoints(points: np.ndarray) -> np.ndarray:
    """(N, 3) LPS points as RAS (the conversion is its own inverse; see ``lpsFromRasPoints``)."""
    return np.asarray(points, dtype=float) * _FLIP


lpsFromRasPoints = rasFromLpsPoints


def ijkToRasFromImage(image: sitk.Image) -> np.ndarray:
    """The 4x4 ``IJKToRAS`` matrix of a volume node holding ``image`` (oblique and flipped grids too)."""
    return LPS_TO_RAS @ index_to_physical_matrix(image)


def imageGeometryFromIjkToRas(
    ijkToRas: np.ndarray,
) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    """(origin, spacing, direction) in LPS, as SimpleITK wants them, from a node's ``IJKToRAS``.

    Spacing is the length of each column; a left-handed grid keeps its negative determinant in the
    direction matrix, exactly as ITK stores it.
    """
    ijkToLps = LPS_TO_RAS @ np.asarray(ijkToRas, dtype=float)
    columns = ijkToLps[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"IJKToRAS has a zero-length axis (spacing {spacing.tolist()})")
    direction = columns / spacing
    return tuple(ijkToLps[:3, 3].tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def rasMatrixFromTransform(transform: sitk.Transform) -> np.ndarray:
    """4x4 RAS matrix of a linear fixed -> moving LPS transform (a node's "transform from parent")."""
    return lps_matrix_to_ras(transform_to_matrix(transform))


def transformFromRasMatrix(
    matrixRas: np.ndarray, center: Sequence[float] = (0.0, 0.0, 0.0)
) -> sitk.Transform:
    """The LPS SimpleITK transform of a 4x4 RAS point-mapping matrix.

    A rigid matrix gives a ``VersorRigid3DTransform`` (what BRAINSFit's rigid stage writes), any
    other an ``AffineTransform``; ``center`` (LPS) is the rotation centre, which changes the
    parameters but not the mapping.
    """
    return transform_from_matrix(ras_matrix_to_lps(np.asarray(matrixRas, dtype=float)), center)


def boxFromRasPoints(pointsRas: np.ndarray) -> Box:
    """Axis-aligned LPS box around (N, 3) RAS points (e.g. the 8 corners of a rotated ROI)."""
    return Box.around(lpsFromRasPoints(pointsRas))


def rasCenterAndSizeFromBox(box: Box) -> Tuple[np.ndarray, np.ndarray]:
    """Centre (RAS) and edge lengths (mm) of an LPS box: what a markups ROI node stores."""
    return rasFromLpsPoints(box.center[None, :])[0], np.asarray(box.size, dtype=float)
