"""Per-bone registration through the Slicer logic, on real MRML nodes (slicer-core wheel), SimpleITK engine.

The phantom knee's moving MRI has the tibia and fibula flexed 15 deg relative to the fixed CT, so
each bone has its own known fixed -> moving transform. A segmentation node made from the phantom's
bone labels (femur; tibia with fibula) feeds ``registerPerBone``; each bone's transform node must
map RAS points like the truth within 1 mm and the flexion change must come out within 1 deg (the
issue's tolerances). Coarse grids (2 mm CT) keep each run to a few seconds.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.errors import CancelledError, InputError  # noqa: E402
from MultimodalKneeRegistrationLib.geometry import (  # noqa: E402
    apply_matrix,
    index_to_physical_matrix,
    lps_matrix_to_ras,
    transform_to_matrix,
)
from MultimodalKneeRegistrationLib.run import run  # noqa: E402
from MultimodalKneeRegistrationLib.settings import settings_for_preset  # noqa: E402
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair  # noqa: E402
from MultimodalKneeRegistrationLib.synthetic.phantom import BONES, KneePhantom  # noqa: E402
from MultimodalKneeRegistrationSlicer.coordinates import rasFromLpsPoints  # noqa: E402
from MultimodalKneeRegistrationSlicer.logic import KneeRegistrationLogic  # noqa: E402
from MultimodalKneeRegistrationSlicer.per_bone_adapter import segmentationSpace  # noqa: E402
from MultimodalKneeRegistrationSlicer.temporary_nodes import removeNodes  # noqa: E402
from MultimodalKneeRegistrationSlicer.transform_adapter import sitkTransformFromTransformNode  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import (  # noqa: E402
    addVolumeNodeFromSitkImage,
    ijkToRasOfNode,
    sitkImageFromVolumeNode,
    vtkMatrixFromArray,
)

FLEXION_DEG = 15.0
CENTER = (0.0, 5.0, 0.0)
#: Bone name -> phantom labels (the fibula moves with the tibia, so it belongs to the tibia's mask).
KNEE_BONES = {"femur": BONES["femur"], "tibia": BONES["tibia"] + BONES["fibula"]}
SETTINGS = settings_for_preset("fast-preview", fail_on_sanity_check=False)


@pytest.fixture(scope="module")
def flexed():
    """2 mm CT (fixed) and 1.3 x 1.3 x 4 mm MRI (moving), 6 deg / 5 mm apart, knee flexed 15 deg more."""
    return make_registration_pair(
        "ct-mri",
        (6.0, 5.0),
        fixed_grid=GridSpec((55, 55, 65), (2.0, 2.0, 2.0), center=CENTER),
        moving_grid=GridSpec((103, 103, 33), (1.3, 1.3, 4.0), center=CENTER),
        moving_flexion_deg=FLEXION_DEG,
    )


@pytest.fixture(autouse=True)
def segmentationsLogic(mrml):
    """The Segmentations module logic, as in Slicer: it registers the segment representations' converters."""
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLApplicationLogic(mrml.app)
    logic.SetMRMLScene(mrml.scene)
    mrml.app.SetModuleLogic("Segmentations", logic)
    return logic


def _boneLabelImage(phantomLabels: sitk.Image) -> sitk.Image:
    """Phantom tissue labels -> 1 femur, 2 tibia (with fibula), 0 elsewhere."""
    tissue = sitk.GetArrayViewFromImage(phantomLabels)
    bones = np.zeros(tissue.shape, dtype=np.uint8)
    for value, labels in enumerate(KNEE_BONES.values(), start=1):
        bones[np.isin(tissue, labels)] = value
    image = sitk.GetImageFromArray(bones)
    image.CopyInformation(phantomLabels)
    return image


def _fixedBoneLabels(pair) -> sitk.Image:
    return _boneLabelImage(pair.fixed_phantom.labels_like(pair.fixed))


def _movingBoneLabels(pair) -> sitk.Image:
    """The bones as the moving MRI shows them (flexed phantom, seen through the true offset)."""
    flexedKnee = KneePhantom(FLEXION_DEG)
    return _boneLabelImage(flexedKnee.labels_like(pair.moving, pair.true_transform.GetInverse()))


def _segmentation(scene, labelImage: sitk.Image, name: str, referenceVolume=None):
    """A segmentation node with one segment per bone (named after it), made like a user would import one."""
    labelmap = addVolumeNodeFromSitkImage(scene, labelImage, f"{name} labelmap", className="vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.CreateDefaultDisplayNodes()
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    removeNodes(scene, [labelmap])
    names = dict(enumerate(KNEE_BONES, start=1))
    for i in range(segmentation.GetSegmentation().GetNumberOfSegments()):
        segment = segmentation.GetSegmentation().GetNthSegment(i)
        segment.SetName(names[segment.GetLabelValue()].capitalize())  # "Femur": bone names are lower-cased
    if referenceVolume is not None:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    return segmentation


def _segmentationChecksum(segmentation) -> str:
    """Segment names plus the merged labelmap's voxels and geometry: changes if the node is modified."""
    merged = slicer.vtkOrientedImageData()
    assert segmentation.GenerateMergedLabelmapForAllSegments(merged, slicer.vtkSegmentation.EXTENT_UNION_OF_SEGMENTS)
    matrix = vtk.vtkMatrix4x4()
    merged.GetImageToWorldMatrix(matrix)
    digest = hashlib.sha256(vtk.util.numpy_support.vtk_to_numpy(merged.GetPointData().GetScalars()).tobytes())
    digest.update(str([matrix.GetElement(r, c) for r in range(4) for c in range(4)]).encode())
    segments = segmentation.GetSegmentation()
    digest.update(str([segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]).encode())
    return digest.hexdigest()


def _volumeChecksum(node) -> str:
    voxels = sitk.GetArrayFromImage(sitkImageFromVolumeNode(node))
    return hashlib.sha256(voxels.tobytes() + ijkToRasOfNode(node).tobytes()).hexdigest()


def _linear(scene, name: str, matrixRas: np.ndarray):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(vtkMatrixFromArray(matrixRas))
    return node


def _shift(offsetRas) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = offsetRas
    return matrix


def _bonePointsRas(labelImage: sitk.Image, value: int, step: int = 3) -> np.ndarray:
    """World (RAS) points at every ``step``-th voxel of one bone of a fixed-grid label image."""
    index = np.argwhere(sitk.GetArrayViewFromImage(labelImage) == value)[::step, ::-1].astype(float)
    return rasFromLpsPoints(apply_matrix(index_to_physical_matrix(labelImage), index))


def _mappedByNode(transformNode, pointsRas: np.ndarray) -> np.ndarray:
    """Where the node sends world points: into the local coordinates of a volume placed under it."""
    general = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, transformNode, general)
    return np.array([general.TransformPoint(p) for p in pointsRas.tolist()])


def _checkBones(out, pair, fixedLabels: sitk.Image, moving) -> None:
    """Each bone's transform node maps its bone's RAS points like the truth (< 1 mm); flexion within 1 deg."""
    assert sorted(out.transformNodes) == sorted(KNEE_BONES) == sorted(out.volumeNodes)
    for value, bone in enumerate(KNEE_BONES, start=1):
        node = out.transformNodes[bone]
        assert node.GetName() == f"{moving.GetName()} {bone} transform"
        points = _bonePointsRas(fixedLabels, value)
        truth = apply_matrix(lps_matrix_to_ras(transform_to_matrix(pair.bone_transforms[bone])), points)
        errors = np.linalg.norm(_mappedByNode(node, points) - truth, axis=1)
        print(f"{bone}: {len(points)} points, mean {errors.mean():.2f} mm, max {errors.max():.2f} mm")
        assert errors.mean() < 1.0 and errors.max() < 1.0, bone
        copy = out.volumeNodes[bone]
        assert copy.GetName() == f"{moving.GetName()} ({bone})"
        assert copy.GetParentTransformNode() is node
        assert _volumeChecksum(copy) == _volumeChecksum(moving)
    flexion = out.perBone.relative_rotation_deg("femur", "tibia")
    print(f"flexion change {flexion:.2f} deg (truth {FLEXION_DEG})")
    assert flexion == pytest.approx(FLEXION_DEG, abs=1.0)


@pytest.mark.mrml
def test_segmentation_of_the_fixed_ct_gives_one_transform_node_per_bone(mrml, flexed, nodeIds):
    scene = mrml.scene
    fixed = addVolumeNodeFromSitkImage(scene, flexed.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, flexed.moving, "MR")
    fixedLabels = _fixedBoneLabels(flexed)
    bones = _segmentation(scene, fixedLabels, "Bones", referenceVolume=fixed)
    inputs = {node.GetID(): _volumeChecksum(node) for node in (fixed, moving)}
    bonesBefore = (_segmentationChecksum(bones), bones.GetNumberOfDisplayNodes())
    logic = KneeRegistrationLogic(scene, mrml.cropLogic)

    boneLabels = logic.readBoneLabels(fixed, moving, bones)
    assert boneLabels.space == "fixed" and sorted(boneLabels.labels.names.values()) == ["femur", "tibia"]
    whole = logic.register(fixed, moving, SETTINGS)
    before = nodeIds(scene)
    progress = []
    out = logic.registerPerBone(
        fixed, moving, whole, settings=SETTINGS, boneLabels=boneLabels, progress=lambda f, m: progress.append(f)
    )

    _checkBones(out, flexed, fixedLabels, moving)
    created = {n.GetID() for n in list(out.transformNodes.values()) + list(out.volumeNodes.values())}
    created |= {n.GetDisplayNodeID() for n in out.volumeNodes.values()}
    assert nodeIds(scene) - before == created and before <= nodeIds(scene)  # nothing temporary is left
    assert {node.GetID(): _volumeChecksum(node) for node in (fixed, moving)} == inputs
    assert moving.GetParentTransformNode() is whole.outputTransformNode and fixed.GetParentTransformNode() is None
    assert (_segmentationChecksum(bones), bones.GetNumberOfDisplayNodes()) == bonesBefore
    assert bones.GetParentTransformNode() is None
    assert progress and progress[-1] == pytest.approx(1.0)
    summary = out.summary()
    assert "tibia relative to femur: rotated" in summary and "'MR femur transform'" in summary
    assert "segmentation 'Bones'" in summary and "fixed volume 'CT'" in summary
    _checkItIsTheCoreRun(out, fixed, moving, whole, boneLabels)


def _checkItIsTheCoreRun(out, fixed, moving, whole, boneLabels) -> None:
    """The bones are what the core's one ``run`` gives from the whole-volume result, and its report comes back.

    The same inputs through ``run(..., whole_volume=...)`` (deterministic: fixed seed and thread plan)
    give the same transform in each bone's node; the logic hands back that run's report, with the
    whole-volume result it started from and no second whole-volume registration.
    """
    core = run(sitkImageFromVolumeNode(fixed, "fixed"), sitkImageFromVolumeNode(moving, "moving"), SETTINGS,
               whole_volume=whole.result, bone_labels=boneLabels.labels, labels_space=boneLabels.space,
               resample=False, qc_mode=None)
    for bone in core.per_bone.bones:
        node = sitkTransformFromTransformNode(out.transformNodes[bone.name])
        assert np.allclose(transform_to_matrix(node), transform_to_matrix(bone.transform), atol=1e-6), bone.name
    report = out.report
    assert report["status"] == "ok" and report["command"] == "MultimodalKneeRegistrationLogic.registerPerBone"
    assert report["result"]["transform"] == whole.report["result"]["transform"]  # the given result, not a new one
    assert report["result"]["stages"] == whole.report["result"]["stages"]
    assert [b["name"] for b in report["per_bone"]["bones"]] == [b.name for b in core.per_bone.bones]
    for mine, theirs in zip(report["per_bone"]["bones"], core.report["per_bone"]["bones"]):
        assert mine["transform"] == theirs["transform"] and mine["status"] == theirs["status"]
    assert any("only the bones were registered" in note for note in report["notes"])


@pytest.mark.mrml
def test_segmentation_of_the_moving_mri_under_its_hand_made_transform(mrml, flexed, nodeIds):
    """The segmentation moves with the moving volume (same parent transform): it is read on the MRI's grid.

    The run starts from the hand-made "centralize" transform; the labels are read before the
    whole-volume registration puts the MRI under its result. ``whole=None`` means "the transform the
    moving volume is under now", i.e. that result.
    """
    scene = mrml.scene
    fixed = addVolumeNodeFromSitkImage(scene, flexed.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, flexed.moving, "MR")
    centralize = _linear(scene, "centralize", _shift([3.0, -4.0, 2.0]))
    moving.SetAndObserveTransformNodeID(centralize.GetID())
    bones = _segmentation(scene, _movingBoneLabels(flexed), "MR bones")
    bones.SetAndObserveTransformNodeID(centralize.GetID())
    bonesBefore = _segmentationChecksum(bones)
    logic = KneeRegistrationLogic(scene, mrml.cropLogic)

    boneLabels = logic.readBoneLabels(fixed, moving, bones)
    assert boneLabels.space == "moving" and "same transform as the moving volume" in boneLabels.source
    whole = logic.register(fixed, moving, SETTINGS)
    assert "centralize" in whole.startDescription
    _checkCancelKeepsTheWholeVolumeResult(logic, fixed, moving, whole, boneLabels)
    out = logic.registerPerBone(fixed, moving, None, settings=SETTINGS, boneLabels=boneLabels)

    _checkBones(out, flexed, _fixedBoneLabels(flexed), moving)
    assert out.perBone.labels_space == "moving"
    assert out.report["result"] is None and any("transform was given" in n for n in out.report["notes"])
    assert bones.GetParentTransformNode() is centralize and _segmentationChecksum(bones) == bonesBefore
    assert centralize.GetParentTransformNode() is None


def _checkCancelKeepsTheWholeVolumeResult(logic, fixed, moving, whole, boneLabels) -> None:
    """Cancel pressed once the bones' run has begun: it raises, adds no node, and the whole-volume result stays."""
    scene = logic.scene
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    matrix = vtk.vtkMatrix4x4()
    whole.outputTransformNode.GetMatrixTransformToParent(matrix)
    reports = []
    with pytest.raises(CancelledError):
        logic.registerPerBone(fixed, moving, None, settings=SETTINGS, boneLabels=boneLabels,
                              progress=lambda f, m: reports.append(m), shouldCancel=lambda: bool(reports))
    assert reports
    assert {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())} == before
    assert moving.GetParentTransformNode() is whole.outputTransformNode
    after = vtk.vtkMatrix4x4()
    whole.outputTransformNode.GetMatrixTransformToParent(after)
    assert [after.GetElement(r, c) for r in range(4) for c in range(4)] == [
        matrix.GetElement(r, c) for r in range(4) for c in range(4)]


@pytest.mark.mrml
def test_which_volume_a_segmentation_belongs_to(mrml, flexed):
    scene = mrml.scene
    fixed = addVolumeNodeFromSitkImage(scene, flexed.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, flexed.moving, "MR")
    bones = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "bones")
    assert segmentationSpace(bones, fixed, moving)[0] == "fixed"  # all in world, drawn on neither
    bones.SetReferenceImageGeometryParameterFromVolumeNode(moving)
    assert segmentationSpace(bones, fixed, moving)[0] == "moving"  # all in world, drawn on the MRI
    result = _linear(scene, "result", np.eye(4))
    moving.SetAndObserveTransformNodeID(result.GetID())
    assert segmentationSpace(bones, fixed, moving)[0] == "fixed"  # shown over the fixed volume
    bones.SetAndObserveTransformNodeID(result.GetID())
    assert segmentationSpace(bones, fixed, moving)[0] == "moving"  # moves with the moving volume
    bones.SetAndObserveTransformNodeID(_linear(scene, "own", np.eye(4)).GetID())
    assert segmentationSpace(bones, fixed, moving)[0] == "fixed"  # shown somewhere: taken there


@pytest.mark.mrml
def test_a_segmentation_under_a_transform_is_read_where_it_is_shown(mrml, flexed):
    """Labels drawn 20 mm off and brought back by the segmentation's parent transform land on the CT's bones."""
    scene = mrml.scene
    fixed = addVolumeNodeFromSitkImage(scene, flexed.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, flexed.moving, "MR")
    truth = _fixedBoneLabels(flexed)
    offset = sitk.Image(truth)
    offset.SetOrigin((np.array(truth.GetOrigin()) + [0.0, 0.0, 20.0]).tolist())  # LPS: 20 mm superior
    bones = _segmentation(scene, offset, "Bones")
    bones.SetAndObserveTransformNodeID(_linear(scene, "back down", _shift([0.0, 0.0, -20.0])).GetID())

    read = KneeRegistrationLogic(scene, mrml.cropLogic).readBoneLabels(fixed, moving, bones)
    assert read.space == "fixed" and read.labels.names == {1: "femur", 2: "tibia"}
    resampled = sitk.Resample(read.labels.image, truth, sitk.Transform(), sitk.sitkNearestNeighbor)
    onFixedGrid = sitk.GetArrayFromImage(resampled)
    expected = sitk.GetArrayViewFromImage(truth)
    for value in (1, 2):
        overlap = np.count_nonzero((onFixedGrid == value) & (expected == value))
        dice = 2 * overlap / (np.count_nonzero(onFixedGrid == value) + np.count_nonzero(expected == value))
        assert dice > 0.95, (value, dice)


@pytest.mark.mrml
def test_fine_volumes_are_read_on_a_grid_of_about_1_mm(mrml, flexed):
    """A 0.4 mm (micro-CT-like) grid is merged 3 x 3 x 3: same field of view, same bone, 27 times fewer voxels."""
    scene = mrml.scene
    fine = sitk.Image([60, 60, 45], sitk.sitkInt16)
    fine.SetSpacing([0.4, 0.4, 0.4])
    fine.SetOrigin([-5.0, 3.0, 7.0])
    centre = np.array(fine.TransformContinuousIndexToPhysicalPoint([30.0, 28.0, 20.0]))
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in fine.GetSize()], indexing="ij"), axis=-1)
    points = apply_matrix(index_to_physical_matrix(fine), grid.reshape(-1, 3).astype(float)).reshape(grid.shape)
    ball = (np.linalg.norm(points - centre, axis=-1) <= 6.0).transpose(2, 1, 0)
    labels = sitk.GetImageFromArray(ball.astype(np.uint8))
    labels.CopyInformation(fine)
    microCt = addVolumeNodeFromSitkImage(scene, sitk.Cast(labels, sitk.sitkInt16) * 1000, "microCT")
    moving = addVolumeNodeFromSitkImage(scene, flexed.moving, "MR")
    bones = _segmentation(scene, labels, "Ball")

    read = KneeRegistrationLogic(scene, mrml.cropLogic).readBoneLabels(microCt, moving, bones)
    image = read.labels.image
    assert read.space == "fixed" and image.GetSpacing() == pytest.approx((1.2, 1.2, 1.2))
    assert image.GetSize() == (20, 20, 15)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(image)
    assert np.linalg.norm(np.array(stats.GetCentroid(1)) - centre) < 0.3
    assert stats.GetPhysicalSize(1) == pytest.approx(4 / 3 * np.pi * 6.0**3, rel=0.1)


@pytest.mark.mrml
def test_bones_are_found_automatically_in_the_ct(mrml, flexed):
    scene = mrml.scene
    fixed = addVolumeNodeFromSitkImage(scene, flexed.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, flexed.moving, "MR")
    read = KneeRegistrationLogic(scene, mrml.cropLogic).readBoneLabels(fixed, moving)
    assert read.space == "fixed" and "found automatically" in read.source
    assert {"femur", "tibia"} <= set(read.labels.names.values())
    swapped = KneeRegistrationLogic(scene, mrml.cropLogic).readBoneLabels(moving, fixed)
    assert swapped.space == "moving"


@pytest.mark.mrml
def test_unusable_bone_inputs_are_clear_input_errors_and_write_nothing(mrml, flexed, nodeIds):
    scene = mrml.scene
    fixed = addVolumeNodeFromSitkImage(scene, flexed.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, flexed.moving, "MR")
    otherMr = addVolumeNodeFromSitkImage(scene, flexed.moving, "MR 2")
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    blank = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "blank")
    blank.GetSegmentation().AddEmptySegment("femur")
    faraway = _segmentation(scene, _fixedBoneLabels(flexed), "far away")
    faraway.SetAndObserveTransformNodeID(_linear(scene, "far", _shift([0.0, 0.0, 500.0])).GetID())
    logic = KneeRegistrationLogic(scene, mrml.cropLogic)
    cases = [
        (dict(fixedNode=fixed, movingNode=moving, segmentationNode=empty), "'empty' has no segments"),
        (dict(fixedNode=fixed, movingNode=moving, segmentationNode=blank), "'blank' has no voxel over the fixed"),
        (dict(fixedNode=fixed, movingNode=moving, segmentationNode=faraway), "no voxel over the fixed volume 'CT'"),
        (dict(fixedNode=fixed, movingNode=moving, segmentationNode=moving), "'MR' is not a segmentation"),
        (dict(fixedNode=otherMr, movingNode=moving), "needs a CT"),
        (dict(fixedNode=fixed, movingNode=moving, whole="identity"), "not a registration result"),
    ]
    before = nodeIds(scene)
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            logic.registerPerBone(settings=SETTINGS, **kwargs)
    with pytest.raises(InputError, match="has no segments"):
        logic.readBoneLabels(fixed, moving, empty)
    assert nodeIds(scene) == before
    assert moving.GetParentTransformNode() is None and empty.GetSegmentation().GetNumberOfSegments() == 0
