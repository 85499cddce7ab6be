"""Scalar volume nodes <-> SimpleITK images, geometry included (oblique, flipped, any pixel type).

Why: the core works on SimpleITK images in LPS; Slicer keeps voxels in a vtkImageData and the
geometry in the node's ``IJKToRAS`` matrix. A conversion here copies the voxels once and turns the
matrix into origin, spacing and direction through ``coordinates`` (the one RAS <-> LPS module).
Parent transforms are *not* applied: an image is always read in its node's own (local)
coordinates, and the logic accounts for transforms explicitly (``transform_adapter``).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk
from MultimodalKneeRegistrationLib.errors import InputError
from vtk.util import numpy_support

from .coordinates import ijkToRasFromImage, imageGeometryFromIjkToRas


def _arrayFromMatrix(vtkMatrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[vtkMatrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def vtkMatrixFromArray(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    """A vtkMatrix4x4 with the values of a 4x4 numpy array."""
    result = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            result.SetElement(r, c, float(matrix[r][c]))
    return result


def ijkToRasOfNode(volumeNode) -> np.ndarray:
    """The node's ``IJKToRAS`` as a numpy array."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return _arrayFromMatrix(matrix)


def sitkImageFromVolumeNode(volumeNode, name: str = "volume") -> sitk.Image:
    """A SimpleITK image (LPS) with a copy of the node's voxels and its local geometry.

    Raises ``InputError`` when the node has no voxels. Multi-component volumes come back as vector
    images; the core explains why it cannot register them.

    Example:
        >>> image = sitkImageFromVolumeNode(slicer.util.getNode("CTBrain"))  # doctest: +SKIP
    """
    imageData = volumeNode.GetImageData() if volumeNode is not None else None
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        label = volumeNode.GetName() if volumeNode is not None else "none"
        raise InputError(
            f"the {name} volume '{label}' has no voxels", "load the volume again or pick another one"
        )
    dims = imageData.GetDimensions()
    scalars = imageData.GetPointData().GetScalars()
    components = scalars.GetNumberOfComponents()
    array = numpy_support.vtk_to_numpy(scalars)
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    image = sitk.GetImageFromArray(array.reshape(shape), isVector=components > 1)
    origin, spacing, direction = imageGeometryFromIjkToRas(ijkToRasOfNode(volumeNode))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def arrayViewOfVolumeNode(volumeNode) -> np.ndarray:
    """The node's voxels as a (z, y, x) numpy view of its image data: no copy (scalar volumes only)."""
    imageData = volumeNode.GetImageData()
    dims = imageData.GetDimensions()
    return numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])


def sourceFromVolumeNode(volumeNode, name: str = "volume"):
    """The core's ``ArraySource`` over the node's voxels where they lie: a working image is averaged from
    them slab by slab, and no SimpleITK copy of a (large) volume is ever made.

    Example:
        >>> microct = sourceFromVolumeNode(slicer.util.getNode("microCT"), "moving")  # doctest: +SKIP
    """
    from MultimodalKneeRegistrationLib.io.sources import ArraySource

    origin, spacing, direction = imageGeometryFromIjkToRas(ijkToRasOfNode(volumeNode))
    return ArraySource(arrayViewOfVolumeNode(volumeNode), spacing, origin, direction, name=f"{name} volume")


def volumeBytes(volumeNode) -> int:
    """Memory the node's voxels take (0 without image data)."""
    imageData = volumeNode.GetImageData()
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        return 0
    scalars = imageData.GetPointData().GetScalars()
    return int(scalars.GetNumberOfTuples()) * scalars.GetNumberOfComponents() * scalars.GetDataTypeSize()


def updateVolumeNodeFromSitkImage(volumeNode, image: sitk.Image) -> None:
    """Replace the node's voxels and geometry by ``image`` (a copy); its parent transform is kept."""
    array = sitk.GetArrayFromImage(image)
    components = image.GetNumberOfComponentsPerPixel()
    flat = (
        np.ascontiguousarray(array).reshape(-1, components)
        if components > 1
        else np.ascontiguousarray(array).ravel()
    )
    scalars = numpy_support.numpy_to_vtk(flat, deep=True)
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(*[int(s) for s in image.GetSize()])
    imageData.GetPointData().SetScalars(scalars)
    wasModifying = volumeNode.StartModify()
    volumeNode.SetIJKToRASMatrix(vtkMatrixFromArray(ijkToRasFromImage(image)))
    volumeNode.SetAndObserveImageData(imageData)
    volumeNode.EndModify(wasModifying)


def addVolumeNodeFromSitkImage(
    scene, image: sitk.Image, name: str, hidden: bool = False, className: str = "vtkMRMLScalarVolumeNode"
):
    """A new volume node in ``scene`` holding ``image``; ``hidden`` ones are temporary working copies."""
    volumeNode = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(name))
    if hidden:
        volumeNode.SetHideFromEditors(True)
        volumeNode.SetSaveWithScene(False)
    updateVolumeNodeFromSitkImage(volumeNode, image)
    return volumeNode
