"""Crop Volume as the preparation step: a volume node the core reads as an image *source*, whose working
image Crop Volume's interpolated mode makes, on exactly the grid the planner chose.

Why: the forum's recipe was "Crop Volume the micro-CT with spacing multiplier 8". The planner gives
the fine image integer block factors per axis (``fixed_shrink``/``moving_shrink``) and the core
block-averages it (``steps.preprocessing.working_image``, which calls ``block_averaged(factors)`` on
any input that has it). Crop Volume's interpolated mode (``vtkSlicerCropVolumeLogic.cxx``,
``GetInterpolatedCropOutputGeometry`` and ``CropInterpolated``, same code in 5.6.2, 5.8.1 and 5.10.0)
writes a grid with spacing = input spacing x multiplier per axis (``IsotropicResampling`` off), axes
and edges those of the ROI (its ``ObjectToNode`` matrix) and ``int(ROI size / spacing + 0.001)``
voxels per axis, the first voxel's centre half a voxel inside the ROI's corner. So with the ROI set to
the edge box of the block grid, oriented like the volume, and the multiplier equal to the block
factor, Crop Volume's output grid *is* the block-averaged grid: its voxel centres are the blocks'
centres. ``blockGridRoi`` computes that ROI; ``CropVolumeSource.block_averaged`` runs the crop and
puts what it got on the planned grid (``onPlannedGrid``: checked against ``blockAveragedGeometry``).

What it is not: a block average. Linear interpolation at a block centre reads the 8 voxels around it
(all of the block for a factor of 2, the middle 2x2x2 for 4, the middle voxel alone for odd factors),
so it does not anti-alias; it is an option for users who want Crop Volume's own result, off by
default. Where the factors differ per axis (Crop Volume has one multiplier) or the volume has
NaN/infinite voxels, the core's block average is used instead and a note says so.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.io.sources import ArraySource

from .coordinates import imageGeometryFromIjkToRas
from .crop_volume import cropInterpolated
from .roi_adapter import temporaryRoi
from .temporary_nodes import removeNodes
from .volume_adapter import arrayViewOfVolumeNode, ijkToRasOfNode, sitkImageFromVolumeNode, vtkMatrixFromArray

#: How far (in voxels) Crop Volume's grid may be from the planned one: its origin reaches the CLI as text
#: with 6 significant digits (measured: up to 5e-5 mm on a 20 mm origin).
GRID_TOLERANCE = 1e-3


def blockGridRoi(ijkToRas: np.ndarray, size: Sequence[int], factors: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """(ROI ``ObjectToNode`` matrix (RAS), ROI size in mm) whose Crop Volume grid is the block grid.

    The block grid keeps ``size // factors`` whole blocks per axis from voxel 0 (what ``BinShrink``
    keeps); its edges run from index -0.5 to ``blocks * factors - 0.5``. The ROI's axes are the
    volume's (unit columns of ``ijkToRas``: oblique and flipped grids keep their axes), its centre
    the box's centre and its size the box's edge lengths.
    """
    factors = np.asarray(factors, dtype=int)
    kept = (np.asarray(size, dtype=int) // factors) * factors
    columns = np.asarray(ijkToRas, dtype=float)[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    matrix = np.eye(4)
    matrix[:3, :3] = columns / spacing
    matrix[:3, 3] = (np.asarray(ijkToRas, dtype=float) @ np.append((kept - 1) / 2.0, 1.0))[:3]
    return matrix, kept * spacing


def blockAveragedGeometry(origin, spacing, direction, size, factors) -> dict:
    """The grid ``downsample``/``BinShrink`` gives (LPS): block centres, spacing x factors, same axes."""
    factors = np.asarray(factors, dtype=int)
    spacing = np.asarray(spacing, dtype=float)
    axes = np.asarray(direction, dtype=float).reshape(3, 3)
    return {
        "size": tuple(int(n) for n in np.asarray(size, dtype=int) // factors),
        "spacing": tuple(spacing * factors),
        "origin": tuple(np.asarray(origin, dtype=float) + axes @ (spacing * (factors - 1) / 2.0)),
        "direction": tuple(axes.ravel()),
    }


def onPlannedGrid(image: sitk.Image, expected: dict, tolerance: float = GRID_TOLERANCE) -> Optional[sitk.Image]:
    """``image`` re-indexed onto the ``expected`` grid when both have the same voxel centres, else None.

    Crop Volume's output comes back right-handed (for a left-handed volume its third axis is reversed:
    same voxel centres, counted from the other end) and its origin with the 6 significant digits the
    CLI's point parameter carries. So the axes are matched as a signed permutation, the voxels put in
    the planned order, the first voxel's centre and the spacing checked to ``tolerance`` of a voxel,
    and the planned geometry set exactly.
    """
    outAxes = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    wantedAxes = np.asarray(expected["direction"], dtype=float).reshape(3, 3)
    relation = outAxes.T @ wantedAxes  # column j: the planned axis j in the output's axes
    signed = np.round(relation)
    if np.abs(relation - signed).max() > 1e-6 or not np.array_equal(np.sort(np.abs(signed), axis=0),
                                                                       [[0, 0, 0], [0, 0, 0], [1, 1, 1]]):
        return None
    order = [int(np.argmax(np.abs(signed[:, j]))) for j in range(3)]
    signs = [signed[order[j], j] for j in range(3)]
    size = np.asarray(image.GetSize())
    if tuple(int(size[order[j]]) for j in range(3)) != tuple(expected["size"]):
        return None
    first = [0, 0, 0]
    for j in range(3):
        first[order[j]] = 0 if signs[j] > 0 else int(size[order[j]]) - 1
    scale = min(expected["spacing"])
    spacing = np.asarray(image.GetSpacing())[order]
    origin = np.asarray(image.TransformIndexToPhysicalPoint(first))
    if max(np.abs(spacing - expected["spacing"]).max(), np.abs(origin - expected["origin"]).max()) > tolerance * scale:
        return None
    array = sitk.GetArrayFromImage(image)  # numpy axis 2 - i is image axis i
    array = np.transpose(array, [2 - order[2 - k] for k in range(3)])
    for j in range(3):
        if signs[j] < 0:
            array = np.flip(array, axis=2 - j)
    result = sitk.GetImageFromArray(np.ascontiguousarray(array))
    result.SetSpacing(expected["spacing"])
    result.SetOrigin(expected["origin"])
    result.SetDirection(expected["direction"])
    return result


class CropVolumeSource(ArraySource):
    """A scalar volume node as the core's image source, whose working image Crop Volume makes.

    The geometry (LPS, the node's own coordinates) is what the planner reads; ``block_averaged(factors)``
    (what ``working_image`` calls) runs Crop Volume where it can and falls back to the core's average
    of the node's voxels, in place, where it cannot; ``preview`` (checks, inspection) is always the
    core's average. ``notes`` says what was done.

    Example:
        >>> source = CropVolumeSource(slicer.mrmlScene, slicer.modules.cropvolume.logic(), microCtNode)
        >>> small = source.block_averaged((8, 8, 8))  # doctest: +SKIP
    """

    def __init__(self, scene, cropLogic, volumeNode, role: str = "volume") -> None:
        origin, spacing, direction = imageGeometryFromIjkToRas(ijkToRasOfNode(volumeNode))
        super().__init__(arrayViewOfVolumeNode(volumeNode), spacing, origin, direction, name=f"{role} image")
        self.scene, self.cropLogic, self.volumeNode, self.role = scene, cropLogic, volumeNode, role
        self.notes: List[str] = []
        self.note = ""

    def expectedGrid(self, factors: Sequence[int]) -> dict:
        """The planned working grid for ``factors`` (what the core's block average gives)."""
        return blockAveragedGeometry(self.GetOrigin(), self.GetSpacing(), self.GetDirection(), self.GetSize(), factors)

    def block_averaged(self, factors: Sequence[int]) -> sitk.Image:
        """The working image (float32) on the block grid of ``factors``: Crop Volume where it can."""
        factors = tuple(min(int(f), s) for f, s in zip(factors, self.GetSize()))
        if all(f == 1 for f in factors):
            return super().block_averaged(factors)
        reason = self._whyNotCropVolume(factors)
        if reason is None:
            image = onPlannedGrid(self._cropVolume(factors[0]), self.expectedGrid(factors))
            if image is not None:
                self.notes.append(
                    f"The {self.role} image was brought to its working grid by Crop Volume (interpolated, spacing "
                    f"multiplier {factors[0]}, linear interpolation at the block centres; not anti-aliased).")
                return sitk.Cast(image, sitk.sitkFloat32)
            reason = "Crop Volume's grid differed from the planned one"
        self.notes.append(f"The {self.role} image was block-averaged by {'x'.join(map(str, factors))} by the core "
                          f"instead of Crop Volume: {reason}.")
        return super().block_averaged(factors)

    def _whyNotCropVolume(self, factors) -> Optional[str]:
        if len(set(factors)) > 1:
            return "its block factors differ per axis and Crop Volume has one spacing multiplier"
        if self.array.dtype.kind == "f" and not np.all(np.isfinite(self.array)):
            return "it has NaN or infinite voxels"  # interpolation would spread them
        return None

    def _cropVolume(self, factor: int) -> sitk.Image:
        matrix, sizeMm = blockGridRoi(ijkToRasOfNode(self.volumeNode), self.GetSize(), (factor,) * 3)
        with temporaryRoi(self.scene, "MKR working grid") as roi:
            roi.SetAndObserveTransformNodeID(self.volumeNode.GetTransformNodeID())
            roi.SetAndObserveObjectToNodeMatrix(vtkMatrixFromArray(matrix))
            roi.SetSize(*[float(v) for v in sizeMm])
            output = cropInterpolated(self.scene, self.cropLogic, self.volumeNode, roi, float(factor),
                                      isotropic=False, outputName=f"MKR {self.role} working grid")
        try:
            return sitkImageFromVolumeNode(output, f"{self.role} (Crop Volume)")
        finally:
            removeNodes(self.scene, [output])
