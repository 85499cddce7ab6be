"""``KneeRegistrationLogic.register`` on real MRML nodes (slicer-core wheel), SimpleITK engine.

A small synthetic knee pair (the core's phantom, known truth) exercises every option quickly; the
real porcine CT/MR pair checks the whole path against the reference transform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.errors import InputError  # noqa: E402
from MultimodalKneeRegistrationLib.geometry import (  # noqa: E402
    Box,  # noqa: E402
    apply_matrix,
    image_center,
    index_to_physical_matrix,
    point_distances,
    transform_to_matrix,
)
from MultimodalKneeRegistrationLib.settings import settings_for_preset  # noqa: E402
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair  # noqa: E402
from MultimodalKneeRegistrationSlicer.coordinates import rasMatrixFromTransform  # noqa: E402
from MultimodalKneeRegistrationSlicer.logic import KneeRegistrationLogic  # noqa: E402
from MultimodalKneeRegistrationSlicer.roi_adapter import addRoiNodeFromBox  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import (  # noqa: E402
    addVolumeNodeFromSitkImage,
    ijkToRasOfNode,
    sitkImageFromVolumeNode,
    vtkMatrixFromArray,
)

CENTER = (0.0, 5.0, 10.0)


@pytest.fixture(scope="module")
def pair():
    """CT (2 mm) fixed, MRI (1.3 x 1.3 x 4 mm) moving, 10 deg / 8 mm apart: renders in about a second."""
    return make_registration_pair(
        "ct-mri",
        (10.0, 8.0),
        fixed_grid=GridSpec((80, 80, 70), (2.0, 2.0, 2.0), center=CENTER),
        moving_grid=GridSpec((120, 120, 30), (1.3, 1.3, 4.0), center=CENTER),
    )


def _inner_points(image: sitk.Image, half_mm: float = 30.0) -> np.ndarray:
    offsets = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float) * half_mm
    return image_center(image) + np.vstack([offsets, np.zeros((1, 3))])


def _nodes(scene, pair):
    fixed = addVolumeNodeFromSitkImage(scene, pair.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, pair.moving, "MR")
    return fixed, moving


def _linear(scene, name, matrixRas):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(vtkMatrixFromArray(matrixRas))
    return node


@pytest.mark.mrml
def test_register_writes_parent_transform_output_volume_and_leaves_inputs_alone(mrml, pair, nodeIds):
    scene = mrml.scene
    fixed, moving = _nodes(scene, pair)
    movingVoxels = sitk.GetArrayFromImage(sitkImageFromVolumeNode(moving))
    movingGeometry = ijkToRasOfNode(moving)
    roi = addRoiNodeFromBox(
        scene, Box(np.array(CENTER) - 60.0, np.array(CENTER) + 60.0), "knee", hidden=False
    )
    outputVolume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR resampled")
    before = nodeIds(scene)
    progress = []
    logic = KneeRegistrationLogic(scene, mrml.cropLogic)
    assert logic.availableEngines() == ["SimpleITK"]  # no BRAINSFit CLI outside Slicer
    out = logic.register(
        fixed,
        moving,
        settings_for_preset("fast-preview"),
        roiNode=roi,
        outputVolumeNode=outputVolume,
        progress=lambda f, m: progress.append(f),
    )

    created = {out.outputTransformNode.GetID(), outputVolume.GetDisplayNodeID()}
    assert nodeIds(scene) - before == created  # no temporary node (or its display node) survives
    assert moving.GetParentTransformNode() is out.outputTransformNode
    assert out.outputTransformNode.GetName() == "MR to CT"
    errors = point_distances(out.result.transform, pair.true_transform, _inner_points(pair.fixed))
    assert errors.mean() < 1.5, errors
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitkImageFromVolumeNode(moving)), movingVoxels)
    np.testing.assert_array_equal(ijkToRasOfNode(moving), movingGeometry)  # not hardened
    np.testing.assert_allclose(ijkToRasOfNode(outputVolume), ijkToRasOfNode(fixed))
    assert outputVolume.GetImageData().GetDimensions() == fixed.GetImageData().GetDimensions()
    assert progress and progress[-1] == pytest.approx(1.0)
    summary = out.summary()
    assert "before" in summary and "after" in summary and "ROI 'knee'" in summary
    assert out.result.metric_after < out.result.metric_before


@pytest.mark.mrml
def test_moving_volumes_hand_made_transform_is_the_start(mrml, pair):
    """The forum user "centralized" the volumes by hand: that transform must be the starting point.

    With initialisation "Off" and a single iteration, the run's start is what the logic passed in;
    here the hand-made transform is the truth, so the start must be the truth exactly.
    """
    scene = mrml.scene
    fixed, moving = _nodes(scene, pair)
    centralize = _linear(scene, "centralize", np.linalg.inv(rasMatrixFromTransform(pair.true_transform)))
    moving.SetAndObserveTransformNodeID(centralize.GetID())
    settings = settings_for_preset(
        "fast-preview", initialize_transform_mode="Off", number_of_iterations=1, fail_on_sanity_check=False
    )
    out = KneeRegistrationLogic(scene, mrml.cropLogic).register(fixed, moving, settings)
    points = _inner_points(pair.fixed)
    assert point_distances(out.result.initial_transform, pair.true_transform, points).max() < 1e-6
    assert "centralize" in out.startDescription
    assert moving.GetParentTransformNode() is out.outputTransformNode
    assert scene.IsNodePresent(centralize) and centralize.GetParentTransformNode() is None  # untouched


@pytest.mark.mrml
def test_harden_only_when_asked(mrml, pair):
    """``harden=True`` bakes the result into the moving volume's geometry (voxels untouched)."""
    scene = mrml.scene
    fixed, moving = _nodes(scene, pair)
    before = ijkToRasOfNode(moving)
    settings = settings_for_preset(
        "fast-preview", initialize_transform_mode="Off", number_of_iterations=1, fail_on_sanity_check=False
    )
    out = KneeRegistrationLogic(scene, mrml.cropLogic).register(fixed, moving, settings, harden=True)
    assert moving.GetParentTransformNode() is None
    toParent = np.linalg.inv(rasMatrixFromTransform(out.result.transform))
    np.testing.assert_allclose(ijkToRasOfNode(moving), toParent @ before, atol=1e-6)
    assert "hardened" in out.summary()


@pytest.mark.mrml
def test_invalid_inputs_are_refused_before_any_work(mrml, pair, nodeIds):
    scene = mrml.scene
    fixed, moving = _nodes(scene, pair)
    logic = KneeRegistrationLogic(scene, mrml.cropLogic)
    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    label.SetAndObserveImageData(vtk.vtkImageData())
    before = nodeIds(scene)
    cases = [
        (dict(fixedNode=None, movingNode=moving), "no fixed volume"),
        (dict(fixedNode=fixed, movingNode=fixed), "same node"),
        (dict(fixedNode=label, movingNode=moving), "not a grey-level scalar volume"),
        (dict(fixedNode=fixed, movingNode=moving, engine="BRAINSFit"), "BRAINSFit engine is not available"),
        (dict(fixedNode=fixed, movingNode=moving, outputVolumeNode=moving), "inputs are never overwritten"),
        (
            dict(
                fixedNode=fixed,
                movingNode=moving,
                roiNode=scene.AddNewNodeByClass("vtkMRMLLinearTransformNode"),
            ),
            "is not a markups ROI",
        ),
    ]
    before = nodeIds(scene)
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            logic.register(settings=settings_for_preset("fast-preview"), **kwargs)
    assert nodeIds(scene) == before
    assert moving.GetParentTransformNode() is None


def _tissue_points(ct: sitk.Image, mr: sitk.Image, reference: sitk.Transform) -> np.ndarray:
    """CT voxels (8 mm grid) showing tissue (> -300 HU) whose reference position lies inside the MR."""
    array = sitk.GetArrayViewFromImage(ct)[::13, ::20, ::20]
    index = np.argwhere(array > -300)[:, ::-1] * np.array([20, 20, 13])
    points = apply_matrix(index_to_physical_matrix(ct), index.astype(float))
    inMr = apply_matrix(
        np.linalg.inv(index_to_physical_matrix(mr)), apply_matrix(transform_to_matrix(reference), points)
    )
    inside = np.all((inMr >= 0) & (inMr <= np.array(mr.GetSize()) - 1), axis=1)
    return points[inside]


@pytest.mark.mrml
@pytest.mark.slow
@pytest.mark.realdata
def test_porcine_ct_mr_through_the_logic_matches_the_reference(mrml, porcine_dir):
    """The forum case end to end: DICOM-like volumes loaded by Slicer's reader, MR centralized by hand."""
    scene = mrml.scene
    ct = mrml.volumesLogic.AddArchetypeVolume(str(porcine_dir / "CT.nrrd"), "CT")
    mr = mrml.volumesLogic.AddArchetypeVolume(str(porcine_dir / "MR_T2.nrrd"), "MR_T2")
    ctImage, mrImage = sitkImageFromVolumeNode(ct), sitkImageFromVolumeNode(mr)
    shift = np.eye(4)
    shift[:3, 3] = (image_center(ctImage) - image_center(mrImage)) * [-1, -1, 1]  # centres together, in RAS
    mr.SetAndObserveTransformNodeID(_linear(scene, "centralize", shift).GetID())
    out = KneeRegistrationLogic(scene, mrml.cropLogic).register(ct, mr, settings_for_preset("mri-ct"))
    reference = sitk.ReadTransform(
        str(Path(__file__).resolve().parents[1] / "data" / "porcine_ct_to_mr_bone_aligned.tfm")
    )
    points = _tissue_points(ctImage, mrImage, reference)
    errors = point_distances(out.result.transform, reference, points)
    print(
        f"porcine through the logic: {len(points)} points, mean {errors.mean():.2f} mm, "
        f"max {errors.max():.2f} mm, {out.seconds:.1f} s"
    )
    assert len(points) > 500
    # Measured 0.76 mm mean / 1.99 mm max against the bone-aligned reference (Testing/data/README.md;
    # the data set's own file aligns only the outline). Issue 3 asks for 1.5 mm; the core's benchmark
    # target is 1.0 mm.
    assert errors.mean() <= 1.0
    assert errors.max() <= 2.5
    assert out.result.passed_sanity_checks


@pytest.mark.mrml
def test_large_volumes_reach_the_core_in_place_and_register_identically(mrml, pair, monkeypatch):
    """Issue 14: a volume over the limit is averaged where its voxels lie (no SimpleITK copy); the
    working images, hence the transform, are bit-identical to the copied ones'."""
    import MultimodalKneeRegistrationSlicer.logic as logicModule
    from MultimodalKneeRegistrationLib.io.sources import ArraySource
    from MultimodalKneeRegistrationSlicer.volume_adapter import arrayViewOfVolumeNode, sourceFromVolumeNode

    fixed, moving = _nodes(mrml.scene, pair)
    source = sourceFromVolumeNode(moving, "moving")
    assert isinstance(source, ArraySource) and np.shares_memory(source.array, arrayViewOfVolumeNode(moving))
    settings = settings_for_preset("fast-preview")
    logic = KneeRegistrationLogic(mrml.scene, mrml.cropLogic)
    copied = logic.register(fixed, moving, settings).result.transform.GetParameters()
    moving.SetAndObserveTransformNodeID(None)
    monkeypatch.setattr(logicModule, "IN_PLACE_ABOVE_BYTES", 0)
    out = logic.register(fixed, moving, settings)
    assert out.result.transform.GetParameters() == copied
    assert any("averaged where it lies in memory" in s for s in out.result.plan.explanation)


@pytest.mark.mrml
@pytest.mark.parametrize(
    "className, components",
    [("vtkMRMLVectorVolumeNode", 3), ("vtkMRMLDiffusionWeightedVolumeNode", 7), ("vtkMRMLScalarVolumeNode", 3)],
)
def test_volumes_with_several_components_are_refused_before_any_work(mrml, pair, nodeIds, monkeypatch,
                                                                      className, components):
    """Vector and DWI volume nodes derive from vtkMRMLScalarVolumeNode; they used to pass validation
    and fail in the in-place path with a numpy reshape error. Now the validation names the fix."""
    import MultimodalKneeRegistrationSlicer.logic as logicModule

    monkeypatch.setattr(logicModule, "IN_PLACE_ABOVE_BYTES", 0)  # every volume in place, where it failed
    scene = mrml.scene
    fixed, moving = _nodes(scene, pair)
    vector = addVolumeNodeFromSitkImage(scene, sitk.Compose([pair.moving] * components), "multi", className=className)
    assert vector.IsA("vtkMRMLScalarVolumeNode") and vector.GetClassName() == className
    logic = KneeRegistrationLogic(scene, mrml.cropLogic)
    before = nodeIds(scene)
    wanted = rf"the (fixed|moving) volume 'multi' has {components} values per voxel.*Vector to Scalar Volume"
    for kwargs in (dict(fixedNode=fixed, movingNode=vector), dict(fixedNode=vector, movingNode=moving)):
        with pytest.raises(InputError, match=wanted):
            logic.register(settings=settings_for_preset("fast-preview"), **kwargs)
    with pytest.raises(InputError, match=wanted):
        logic.registerPerBone(fixed, vector)
    assert nodeIds(scene) == before and vector.GetParentTransformNode() is None
