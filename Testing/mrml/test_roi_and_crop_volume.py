"""Markups ROI <-> core Box, and Crop Volume's voxel-based cropping, on real MRML nodes.

Interpolated cropping (spacing multiplier > 1) needs the ResampleScalarVectorDWIVolume CLI module,
which a plain slicer-core scene does not have: that path is checked to fail cleanly here; it runs for
real, through Slicer's CLI logic, in test_crop_volume_cli.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.errors import EngineError, InputError  # noqa: E402
from MultimodalKneeRegistrationLib.geometry import Box  # noqa: E402
from MultimodalKneeRegistrationLib.steps.preprocessing import crop_to_box  # noqa: E402
from MultimodalKneeRegistrationSlicer.crop_volume import cropVolume  # noqa: E402
from MultimodalKneeRegistrationSlicer.roi_adapter import (  # noqa: E402
    addRoiNodeFromBox,
    boxFromRoiNode,
    roiCornersWorld,
    temporaryRoi,
    updateRoiNodeFromBox,
)
from MultimodalKneeRegistrationSlicer.volume_adapter import (  # noqa: E402
    addVolumeNodeFromSitkImage,
    sitkImageFromVolumeNode,
)


def _shift(scene, x=0.0, y=0.0, z=0.0):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    for axis, value in enumerate((x, y, z)):
        matrix.SetElement(axis, 3, value)
    node.SetMatrixTransformToParent(matrix)
    return node


def _ramp(spacing=(0.5, 0.8, 1.2), origin=(-10.0, 5.0, 20.0)) -> sitk.Image:
    array = np.arange(40 * 30 * 20, dtype=np.int16).reshape(20, 30, 40)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


@pytest.mark.mrml
def test_roi_node_box_round_trip(mrml):
    box = Box(np.array([-30.0, 12.0, 40.0]), np.array([-5.0, 52.0, 47.5]))
    roi = addRoiNodeFromBox(mrml.scene, box, "roi", hidden=False)
    np.testing.assert_allclose(roi.GetSize(), box.size)
    center = [0.0, 0.0, 0.0]
    roi.GetCenter(center)
    np.testing.assert_allclose(center, box.center * [-1, -1, 1])  # RAS
    back = boxFromRoiNode(roi)
    np.testing.assert_allclose(back.lower, box.lower)
    np.testing.assert_allclose(back.upper, box.upper)


@pytest.mark.mrml
def test_rotated_transformed_roi_gives_its_bounding_box_in_the_volume_coordinates(mrml):
    scene = mrml.scene
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "rotated")
    rotation = vtk.vtkMatrix4x4()
    angle = np.radians(30.0)
    rotation.SetElement(0, 0, np.cos(angle))
    rotation.SetElement(0, 1, -np.sin(angle))
    rotation.SetElement(1, 0, np.sin(angle))
    rotation.SetElement(1, 1, np.cos(angle))
    roi.SetAndObserveObjectToNodeMatrix(rotation)
    roi.SetCenter(10.0, 20.0, 30.0)
    roi.SetSize(20.0, 10.0, 6.0)
    roi.SetAndObserveTransformNodeID(_shift(scene, x=100.0).GetID())
    corners = roiCornersWorld(roi)
    halfX = 10 * np.cos(angle) + 5 * np.sin(angle)
    np.testing.assert_allclose(corners[:, 0].min(), 110.0 - halfX)
    np.testing.assert_allclose(corners[:, 2].max(), 33.0)
    volume = addVolumeNodeFromSitkImage(scene, _ramp(), "volume")
    volume.SetAndObserveTransformNodeID(_shift(scene, x=100.0, z=-30.0).GetID())
    box = boxFromRoiNode(roi, volume)  # volume coordinates = world shifted back by (100, 0, -30), then LPS
    np.testing.assert_allclose(box.lower[[0, 2]], [-(10.0 + halfX), 30.0 + 30.0 - 3.0])
    np.testing.assert_allclose(box.upper[[0, 2]], [-(10.0 - halfX), 30.0 + 30.0 + 3.0])


@pytest.mark.mrml
def test_update_roi_resets_rotation_and_follows_the_volume(mrml):
    scene = mrml.scene
    volume = addVolumeNodeFromSitkImage(scene, _ramp(), "volume")
    parent = _shift(scene, y=-12.0)
    volume.SetAndObserveTransformNodeID(parent.GetID())
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    tilted = vtk.vtkMatrix4x4()
    tilted.SetElement(0, 1, 1.0)
    tilted.SetElement(1, 0, 1.0)
    tilted.SetElement(0, 0, 0.0)
    tilted.SetElement(1, 1, 0.0)
    roi.SetAndObserveObjectToNodeMatrix(tilted)
    box = Box(np.array([0.0, 10.0, 25.0]), np.array([8.0, 20.0, 35.0]))
    updateRoiNodeFromBox(roi, box, volume)
    assert roi.GetParentTransformNode() is parent
    back = boxFromRoiNode(roi, volume)
    np.testing.assert_allclose(back.lower, box.lower, atol=1e-9)
    np.testing.assert_allclose(back.upper, box.upper, atol=1e-9)


@pytest.mark.mrml
def test_voxel_based_crop_volume_matches_core_crop(mrml, nodeIds):
    scene = mrml.scene
    image = _ramp()
    volume = addVolumeNodeFromSitkImage(scene, image, "volume")
    parent = _shift(scene, x=40.0, y=-3.0)
    volume.SetAndObserveTransformNodeID(parent.GetID())
    box = Box(np.array([-5.2, 9.1, 25.0]), np.array([2.9, 20.3, 36.6]))
    roi = addRoiNodeFromBox(scene, box, "crop region", volumeNode=volume)
    before = nodeIds(scene)
    cropped = cropVolume(scene, mrml.cropLogic, volume, roi)
    assert nodeIds(scene) - before == {cropped.GetID()}  # the parameter node is gone
    assert cropped.GetParentTransformNode() is None  # local coordinates, ready for a CLI
    assert volume.GetParentTransformNode() is parent  # the input is untouched
    ours, core = sitkImageFromVolumeNode(cropped), crop_to_box(image, box)
    assert 0 < ours.GetNumberOfPixels() < image.GetNumberOfPixels()
    # Crop Volume keeps the voxels lying wholly inside the box, the core every voxel the box touches:
    # Crop Volume's region must be inside the core's, voxel for voxel, at most 2 voxels less a side.
    index = np.array(core.TransformPhysicalPointToIndex(ours.GetOrigin()))
    size = np.array(ours.GetSize())
    assert np.all(index >= 0) and np.all(index + size <= np.array(core.GetSize()))
    assert np.all((np.array(core.GetSize()) - size >= 1) & (np.array(core.GetSize()) - size <= 4))
    expected = sitk.GetArrayViewFromImage(core)[
        index[2] : index[2] + size[2], index[1] : index[1] + size[1], index[0] : index[0] + size[0]
    ]
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(ours), expected)
    np.testing.assert_allclose(ours.GetSpacing(), image.GetSpacing())


@pytest.mark.mrml
def test_crop_outside_the_volume_is_an_input_error_and_leaves_nothing(mrml, nodeIds):
    scene = mrml.scene
    volume = addVolumeNodeFromSitkImage(scene, _ramp(), "volume")
    roi = addRoiNodeFromBox(scene, Box(np.array([500.0] * 3), np.array([510.0] * 3)), "far away")
    before = nodeIds(scene)
    with pytest.raises(InputError, match="does not overlap"):
        cropVolume(scene, mrml.cropLogic, volume, roi)
    assert nodeIds(scene) == before


@pytest.mark.mrml
def test_interpolated_crop_without_cli_modules_fails_cleanly(mrml, nodeIds):
    """The wheel has no ResampleScalarVectorDWIVolume CLI: the logic must not take this path here."""
    scene = mrml.scene
    volume = addVolumeNodeFromSitkImage(scene, _ramp(), "volume")
    roi = addRoiNodeFromBox(scene, Box(np.array([-8.0, 8.0, 22.0]), np.array([2.0, 20.0, 40.0])), "roi")
    before = nodeIds(scene)
    with pytest.raises(EngineError, match="error code -3"):
        cropVolume(scene, mrml.cropLogic, volume, roi, spacingMultiplier=4.0)
    assert nodeIds(scene) == before
    with pytest.raises(InputError, match="below 1"):
        cropVolume(scene, mrml.cropLogic, volume, roi, spacingMultiplier=0.5)


def _activePlace(mrml):
    selection = mrml.app.GetSelectionNode()
    return selection.GetActivePlaceNodeClassName(), selection.GetActivePlaceNodeID()


@pytest.mark.mrml
def test_temporary_roi_is_never_shown_and_gives_the_users_markups_list_back(mrml, nodeIds):
    """Defect 3, with the real Markups logic: it gives every added ROI a visible display node and makes
    it the active place node; a temporary ROI's display node is hidden at once, and afterwards the
    user's list is active again and no display node is left."""
    scene = mrml.scene
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "user's points")
    assert _activePlace(mrml) == ("vtkMRMLMarkupsFiducialNode", points.GetID())  # what the Markups logic does
    volume = addVolumeNodeFromSitkImage(scene, _ramp(), "volume")
    before = nodeIds(scene)
    box = Box(np.array([-8.0, 8.0, 22.0]), np.array([2.0, 20.0, 40.0]))
    with temporaryRoi(scene, "MKR crop", box, volumeNode=volume) as roi:
        assert _activePlace(mrml) == ("vtkMRMLMarkupsROINode", roi.GetID())  # the logic took over ...
        display = roi.GetDisplayNode()
        assert display is not None and not display.GetVisibility()  # ... but nothing is shown
        assert roi.GetHideFromEditors() and not roi.GetSaveWithScene()
        cropped = cropVolume(scene, mrml.cropLogic, volume, roi)
    assert _activePlace(mrml) == ("vtkMRMLMarkupsFiducialNode", points.GetID())
    assert nodeIds(scene) - before == {cropped.GetID()}
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROIDisplayNode") == 0


@pytest.mark.mrml
def test_temporary_roi_cleans_up_when_the_work_inside_fails(mrml, nodeIds):
    scene = mrml.scene
    before, active = nodeIds(scene), _activePlace(mrml)
    with pytest.raises(InputError, match="does not overlap"):
        with temporaryRoi(scene, "MKR crop", Box(np.array([500.0] * 3), np.array([510.0] * 3))) as roi:
            cropVolume(scene, mrml.cropLogic, addVolumeNodeFromSitkImage(scene, _ramp(), "volume"), roi)
    assert {i for i in nodeIds(scene) if "Volume" not in i} == {i for i in before if "Volume" not in i}
    assert _activePlace(mrml) == active
