"""Volume node <-> SimpleITK round trips on real MRML nodes, including oblique and flipped grids.

The decisive check compares against two independent readers of the same file: Slicer's own NRRD
reader (``vtkSlicerVolumesLogic.AddArchetypeVolume``, RAS) and ITK's (``sitk.ReadImage``, LPS). If
our RAS <-> LPS handling were wrong anywhere, the geometry from the node would not match ITK's.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.errors import InputError  # noqa: E402
from MultimodalKneeRegistrationLib.geometry import index_to_physical_matrix  # noqa: E402
from MultimodalKneeRegistrationSlicer.coordinates import ijkToRasFromImage  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import (  # noqa: E402
    addVolumeNodeFromSitkImage,
    ijkToRasOfNode,
    sitkImageFromVolumeNode,
)

_ROT = np.array([[0.8660254, -0.5, 0.0], [0.4330127, 0.75, -0.5], [0.25, 0.4330127, 0.8660254]])
GEOMETRIES = {
    "axial": np.eye(3),
    "oblique": _ROT,
    "flipped": np.diag([1.0, -1.0, 1.0]) @ _ROT,  # left-handed index axes (determinant -1)
    "sagittal-permuted": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
}


def _image(direction: np.ndarray, pixel=sitk.sitkInt16) -> sitk.Image:
    rng = np.random.default_rng(7)
    array = rng.integers(-1000, 3000, size=(9, 11, 13)).astype(
        sitk.GetArrayViewFromImage(sitk.Image(1, 1, 1, pixel)).dtype
    )
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.39, 0.5, 2.5))
    image.SetOrigin((-101.5, 37.25, -12.0))
    image.SetDirection(direction.ravel().tolist())
    return image


def _assertSameImage(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert a.GetPixelID() == b.GetPixelID()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


@pytest.mark.mrml
@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_round_trip_keeps_voxels_and_geometry(mrml, name):
    image = _image(GEOMETRIES[name])
    node = addVolumeNodeFromSitkImage(mrml.scene, image, "roundtrip")
    _assertSameImage(sitkImageFromVolumeNode(node), image)


def _assertSamePhysicalImage(a: sitk.Image, b: sitk.Image) -> None:
    """Same voxel values at the same physical points (grids may differ in index order)."""
    assert a.GetNumberOfPixels() == b.GetNumberOfPixels()
    resampled = sitk.Resample(a, b, sitk.Transform(), sitk.sitkNearestNeighbor, -12345.0, b.GetPixelID())
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(resampled), sitk.GetArrayViewFromImage(b))


@pytest.mark.mrml
@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_node_geometry_matches_slicer_and_itk_readers(mrml, tmp_path, name):
    image = _image(GEOMETRIES[name], sitk.sitkFloat32)
    path = tmp_path / f"{name}.nrrd"
    sitk.WriteImage(image, str(path))
    node = mrml.volumesLogic.AddArchetypeVolume(str(path), name)
    assert node is not None
    itkImage = sitk.ReadImage(str(path))
    fromNode = sitkImageFromVolumeNode(node)
    _assertSamePhysicalImage(fromNode, itkImage)
    if np.linalg.det(GEOMETRIES[name]) > 0:
        # Slicer keeps the index order of right-handed grids: voxel (i, j, k) must be the same point,
        # RAS by Slicer's reader, LPS by ITK's.
        ijk = np.array([[0, 0, 0], [12, 0, 0], [0, 10, 0], [0, 0, 8], [12, 10, 8]], dtype=float)
        ras = (ijkToRasOfNode(node) @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
        lps = np.array([itkImage.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in ijk])
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-5)
        _assertSameImage(fromNode, itkImage)


@pytest.mark.mrml
def test_ijk_to_ras_is_lps_index_matrix_with_x_and_y_negated():
    image = _image(GEOMETRIES["flipped"])
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ index_to_physical_matrix(image)
    np.testing.assert_allclose(ijkToRasFromImage(image), expected)
    # negating x and y keeps the handedness: a left-handed LPS grid stays left-handed in RAS
    assert np.linalg.det(expected[:3, :3]) < 0


@pytest.mark.mrml
def test_float_and_unsigned_pixel_types_survive(mrml):
    for pixel in (sitk.sitkFloat64, sitk.sitkUInt16, sitk.sitkUInt8):
        image = _image(GEOMETRIES["oblique"], pixel)
        node = addVolumeNodeFromSitkImage(mrml.scene, image, "typed")
        _assertSameImage(sitkImageFromVolumeNode(node), image)


@pytest.mark.mrml
def test_vector_volume_comes_back_as_vector_image(mrml):
    rgb = sitk.Compose([_image(np.eye(3), sitk.sitkUInt8)] * 3)
    node = addVolumeNodeFromSitkImage(mrml.scene, rgb, "rgb", className="vtkMRMLVectorVolumeNode")
    back = sitkImageFromVolumeNode(node)
    assert back.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(rgb))


@pytest.mark.mrml
def test_node_without_voxels_is_a_readable_input_error(mrml):
    empty = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="'empty' has no voxels"):
        sitkImageFromVolumeNode(empty, "fixed")


@pytest.mark.mrml
def test_parent_transform_is_not_applied(mrml):
    """Images are read in their own coordinates; transforms are the logic's business."""
    import vtk

    image = _image(np.eye(3))
    node = addVolumeNodeFromSitkImage(mrml.scene, image, "moved")
    transformNode = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 50.0)
    transformNode.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transformNode.GetID())
    _assertSameImage(sitkImageFromVolumeNode(node), image)
