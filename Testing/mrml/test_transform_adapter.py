"""Transform nodes written by the Slicer side map RAS points exactly as the core's LPS transforms do.

Independent check: Slicer's own ITK transform reader (``vtkSlicerTransformLogic.AddTransform``)
must give the same node matrix as ours for the same transform.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.errors import InputError  # noqa: E402
from MultimodalKneeRegistrationLib.geometry import apply_matrix, transform_to_matrix  # noqa: E402
from MultimodalKneeRegistrationSlicer.transform_adapter import (  # noqa: E402
    applyResultTransform,
    checkOutputTransformNode,
    setTransformNodeFromSitk,
    sitkTransformFromTransformNode,
    startTransform,
)
from MultimodalKneeRegistrationSlicer.volume_adapter import addVolumeNodeFromSitkImage  # noqa: E402

FLIP = np.array([-1.0, -1.0, 1.0])
POINTS_LPS = np.array([[0.0, 0.0, 0.0], [120.0, -35.0, 12.0], [-80.5, 44.0, -210.0], [3.0, 250.0, 77.0]])


def _rigid(angle_deg=17.0, axis=(0.3, -0.5, 0.8), translation=(12.0, -7.5, 30.0), center=(5.0, -20.0, 40.0)):
    transform = sitk.VersorRigid3DTransform()
    transform.SetCenter(center)
    transform.SetRotation((np.asarray(axis) / np.linalg.norm(axis)).tolist(), np.radians(angle_deg))
    transform.SetTranslation(translation)
    return transform


def _affine():
    affine = sitk.AffineTransform(3)
    affine.SetMatrix([1.05, 0.02, -0.03, 0.01, 0.97, 0.04, 0.02, -0.01, 1.1])
    affine.SetTranslation((4.0, -9.0, 2.5))
    affine.SetCenter((10.0, 0.0, -5.0))
    return affine


def _linear(scene, name="T", matrix=None):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    if matrix is not None:
        vtkMatrix = vtk.vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                vtkMatrix.SetElement(r, c, matrix[r, c])
        node.SetMatrixTransformToParent(vtkMatrix)
    return node


def _volume(scene, name):
    image = sitk.Image(8, 8, 8, sitk.sitkInt16) + 1
    image.SetOrigin((-20.0, 10.0, 5.0))
    return addVolumeNodeFromSitkImage(scene, image, name)


def _assertSameMapping(a: sitk.Transform, b: sitk.Transform, atol=1e-6):
    np.testing.assert_allclose(
        [a.TransformPoint(p.tolist()) for p in POINTS_LPS],
        [b.TransformPoint(p.tolist()) for p in POINTS_LPS],
        atol=atol,
    )


@pytest.mark.mrml
@pytest.mark.parametrize("make", [_rigid, _affine], ids=["rigid", "affine"])
def test_node_maps_ras_points_like_the_lps_transform(mrml, make):
    transform = make()
    node = _linear(mrml.scene)
    setTransformNodeFromSitk(node, transform)
    fromParent = node.GetTransformFromParent()
    for p in POINTS_LPS:
        expected = np.array(transform.TransformPoint(p.tolist())) * FLIP
        np.testing.assert_allclose(fromParent.TransformPoint((p * FLIP).tolist()), expected, atol=1e-6)
    back = sitkTransformFromTransformNode(node)
    _assertSameMapping(back, transform)
    assert back.GetName() == ("VersorRigid3DTransform" if make is _rigid else "AffineTransform")


@pytest.mark.mrml
@pytest.mark.parametrize("make", [_rigid, _affine], ids=["rigid", "affine"])
def test_same_matrix_as_slicers_own_itk_transform_reader(mrml, tmp_path, make):
    transform = make()
    path = tmp_path / "fixed_to_moving.tfm"
    sitk.WriteTransform(transform, str(path))
    loaded = mrml.transformLogic.AddTransform(str(path), mrml.scene)
    ours = _linear(mrml.scene)
    setTransformNodeFromSitk(ours, transform)
    a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    loaded.GetMatrixTransformToParent(a)
    ours.GetMatrixTransformToParent(b)
    np.testing.assert_allclose(
        [a.GetElement(r, c) for r in range(4) for c in range(4)],
        [b.GetElement(r, c) for r in range(4) for c in range(4)],
        atol=1e-9,
    )


@pytest.mark.mrml
def test_result_moves_moving_volume_onto_fixed_even_when_fixed_is_transformed(mrml):
    scene = mrml.scene
    fixedParent = _linear(scene, "fixed parent", transform_to_matrix(_rigid(25.0, (1, 1, 0), (40, 0, -3))))
    fixed, moving = _volume(scene, "fixed"), _volume(scene, "moving")
    fixed.SetAndObserveTransformNodeID(fixedParent.GetID())
    result = _rigid()
    output = _linear(scene, "output")
    applyResultTransform(result, fixed, moving, output)
    assert moving.GetParentTransformNode() is output
    assert output.GetParentTransformNode() is fixedParent
    for p in POINTS_LPS:  # p: a fixed-image point; result(p): the same anatomy in the moving image
        movingLocalRas = np.array(result.TransformPoint(p.tolist())) * FLIP
        fixedWorld = fixedParent.GetTransformToParent().TransformPoint((p * FLIP).tolist())
        toWorld = vtk.vtkGeneralTransform()
        output.GetTransformToWorld(toWorld)
        movingWorld = toWorld.TransformPoint(movingLocalRas.tolist())
        np.testing.assert_allclose(movingWorld, fixedWorld, atol=1e-6)


@pytest.mark.mrml
def test_start_comes_from_the_moving_volumes_centralize_transform(mrml):
    scene = mrml.scene
    fixed, moving = _volume(scene, "fixed"), _volume(scene, "moving")
    assert startTransform(fixed, moving)[0] is None
    centralize = _linear(
        scene, "centralize", transform_to_matrix(_rigid(0.0, translation=(0.0, 30.0, -55.0)))
    )
    moving.SetAndObserveTransformNodeID(centralize.GetID())
    start, description = startTransform(fixed, moving)
    assert "centralize" in description
    # The hand-made transform moves moving points to fixed points (RAS); the start maps fixed -> moving (LPS).
    fixedPointLps = np.array([10.0, 20.0, 30.0])
    movingPointRas = (
        np.linalg.inv(transform_to_matrix(_rigid(0.0, translation=(0.0, 30.0, -55.0))))
        @ np.r_[fixedPointLps * FLIP, 1.0]
    )
    np.testing.assert_allclose(
        start.TransformPoint(fixedPointLps.tolist()), movingPointRas[:3] * FLIP, atol=1e-9
    )


@pytest.mark.mrml
def test_explicit_initial_transform_wins_and_fixed_parent_counts(mrml):
    scene = mrml.scene
    fixed, moving = _volume(scene, "fixed"), _volume(scene, "moving")
    fixedParentMatrix = transform_to_matrix(_rigid(30.0, (0, 0, 1), (5.0, 5.0, 5.0)))
    initialMatrix = transform_to_matrix(_rigid(-12.0, (1, 0, 0), (-20.0, 0.0, 8.0)))
    fixed.SetAndObserveTransformNodeID(_linear(scene, "fixed parent", fixedParentMatrix).GetID())
    moving.SetAndObserveTransformNodeID(_linear(scene, "ignored", np.eye(4) * 1.0).GetID())
    start, description = startTransform(fixed, moving, _linear(scene, "initial", initialMatrix))
    assert "initial" in description
    expectedRas = np.linalg.inv(initialMatrix) @ fixedParentMatrix  # fixed local -> world -> moving local
    expectedLps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ expectedRas @ np.diag([-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(
        [start.TransformPoint(p.tolist()) for p in POINTS_LPS],
        apply_matrix(expectedLps, POINTS_LPS),
        atol=1e-6,
    )


@pytest.mark.mrml
def test_warping_start_transform_is_refused(mrml):
    scene = mrml.scene
    fixed, moving = _volume(scene, "fixed"), _volume(scene, "moving")
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    displacements = vtk.vtkImageData()
    displacements.SetDimensions(3, 3, 3)
    displacements.AllocateScalars(vtk.VTK_DOUBLE, 3)
    displacements.GetPointData().GetScalars().Fill(1.0)
    warp = vtk.vtkGridTransform()
    warp.SetDisplacementGridData(displacements)
    grid.SetAndObserveTransformFromParent(warp)
    moving.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match="non-linear"):
        startTransform(fixed, moving)


@pytest.mark.mrml
def test_output_transform_that_moves_the_fixed_volume_is_refused(mrml):
    scene = mrml.scene
    fixed = _volume(scene, "fixed")
    parent = _linear(scene, "parent")
    child = _linear(scene, "child")
    child.SetAndObserveTransformNodeID(parent.GetID())
    fixed.SetAndObserveTransformNodeID(child.GetID())
    for node in (child, parent):
        with pytest.raises(InputError, match="moves the fixed volume"):
            checkOutputTransformNode(node, fixed)
    checkOutputTransformNode(_linear(scene, "fresh"), fixed)
