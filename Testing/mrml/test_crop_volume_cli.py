"""Crop Volume's interpolated mode for real: Slicer's vtkSlicerCropVolumeLogic running the REAL
ResampleScalarVectorDWIVolume through Slicer's CLI logic (``cliScene``: ``slicer_core_cli``).

Checked: the grid Crop Volume documents; a failing resampling reported as a failure (defect 4: it used
to come out as "the ROI does not overlap"); the scene left as found (Crop Volume's own origin point
leaves a display node and takes the active place node); and ``CropVolumeSource``, the optional
preparation step, on exactly the planner's block grid for plain, oblique and flipped volumes. Skips,
naming the path, where ../shared/tools/slicer-cli is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.errors import EngineError, InputError  # noqa: E402
from MultimodalKneeRegistrationLib.geometry import Box, point_distances  # noqa: E402
from MultimodalKneeRegistrationLib.settings import settings_for_preset  # noqa: E402
from MultimodalKneeRegistrationLib.steps.planning import plan_registration  # noqa: E402
from MultimodalKneeRegistrationLib.steps.preprocessing import downsample, working_image  # noqa: E402
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair  # noqa: E402
from MultimodalKneeRegistrationSlicer.crop_volume import cropVolume, interpolatedOutputSize  # noqa: E402
from MultimodalKneeRegistrationSlicer.crop_volume_source import CropVolumeSource  # noqa: E402
from MultimodalKneeRegistrationSlicer.logic import KneeRegistrationLogic  # noqa: E402
from MultimodalKneeRegistrationSlicer.roi_adapter import temporaryRoi  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import (  # noqa: E402
    addVolumeNodeFromSitkImage,
    sitkImageFromVolumeNode,
)


def rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.array(sitk.VersorTransform(axis.tolist(), np.radians(degrees)).GetMatrix()).reshape(3, 3)


DIRECTIONS = {"plain": np.eye(3), "oblique": rotation((1.0, 2.0, -1.0), 20.0),
              "flipped": np.diag([-1.0, 1.0, 1.0]) @ rotation((0.0, 0.0, 1.0), 10.0)}


def _noisyRamp(direction=None) -> sitk.Image:
    rng = np.random.default_rng(0)
    array = rng.normal(0.0, 50.0, (30, 41, 52)) + np.linspace(0.0, 1000.0, 52)[None, None, :]
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing((0.3, 0.4, 0.5))
    image.SetOrigin((10.0, -20.0, 5.0))
    image.SetDirection(np.asarray(np.eye(3) if direction is None else direction, float).ravel().tolist())
    return image


def _ids(scene):
    """Node IDs, but the subject hierarchy (created on first use here; present from the start in Slicer)."""
    ids = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    return {i for i in ids if not i.startswith("vtkMRMLSubjectHierarchyNode")}


def _activePlace(cliScene):
    selection = cliScene.app.GetSelectionNode()
    return selection.GetActivePlaceNodeClassName(), selection.GetActivePlaceNodeID()


@pytest.mark.mrml
def test_interpolated_crop_writes_crop_volumes_grid_and_leaves_the_scene_as_found(cliScene):
    scene = cliScene.scene
    volume = addVolumeNodeFromSitkImage(scene, _noisyRamp(), "volume")
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "user's points")
    with temporaryRoi(scene, "roi", Box(np.array([-8.0, -14.0, 8.0]), np.array([-2.0, -6.0, 20.0])),
                      volumeNode=volume) as roi:
        expectedSize, expectedSpacing = interpolatedOutputSize(cliScene.cropLogic, roi, volume, 2.0, True)
        before = _ids(scene)
        cropped = cropVolume(scene, cliScene.cropLogic, volume, roi, spacingMultiplier=2.0)
        # Crop Volume's origin point (a markups node) got a display node and the active place node: undone.
        # What stays: the output, with the display and storage nodes the CLI logic read it back with.
        assert _ids(scene) - before == {cropped.GetID(), cropped.GetDisplayNodeID(), cropped.GetStorageNodeID()}
    assert _activePlace(cliScene) == ("vtkMRMLMarkupsFiducialNode", points.GetID())
    assert tuple(cropped.GetImageData().GetDimensions()) == expectedSize == (10, 13, 20)
    np.testing.assert_allclose(cropped.GetSpacing(), expectedSpacing)
    np.testing.assert_allclose(expectedSpacing, [0.6] * 3)  # isotropic: 2 x the smallest input spacing


@pytest.mark.mrml
def test_a_failed_resampling_is_a_failure_with_the_clis_message_not_a_missed_roi(cliScene):
    """An input the CLI cannot read (no voxels): CropInterpolated still returns 0, the CLI node's
    ErrorsMask says what happened."""
    scene = cliScene.scene
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no voxels")
    before = _ids(scene)
    with temporaryRoi(scene, "roi", Box(np.array([-5.0] * 3), np.array([5.0] * 3))) as roi:
        with pytest.raises(EngineError, match=r"resampling of 'no voxels' failed \(Completed with "
                                                          r"errors\).*(ImageFileReader|doesn't exist)") as raised:
            cropVolume(scene, cliScene.cropLogic, empty, roi, spacingMultiplier=2.0)
    assert "does not overlap" not in str(raised.value)
    assert _ids(scene) == before


@pytest.mark.mrml
@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_crop_volume_source_gives_exactly_the_planned_block_grid(cliScene, name):
    scene = cliScene.scene
    image = _noisyRamp(DIRECTIONS[name])
    node = addVolumeNodeFromSitkImage(scene, image, name)
    source = CropVolumeSource(scene, cliScene.cropLogic, node, "moving")
    before, active = _ids(scene), _activePlace(cliScene)
    asTheCoreSeesIt = sitkImageFromVolumeNode(node)  # the default path: the node's voxels, block-averaged
    for factor in (2, 3):
        ours, core = source.block_averaged((factor,) * 3), downsample(asTheCoreSeesIt, (factor,) * 3)
        assert "by Crop Volume" in source.notes[-1], source.notes
        assert ours.GetSize() == core.GetSize() and ours.GetSpacing() == core.GetSpacing()  # exact
        assert ours.GetOrigin() == pytest.approx(core.GetOrigin(), abs=1e-12)
        assert ours.GetDirection() == pytest.approx(core.GetDirection(), abs=1e-12)
        difference = sitk.GetArrayFromImage(ours) - sitk.GetArrayFromImage(core)
        if factor == 2:  # linear interpolation at a 2x2x2 block's centre is its mean (int16 output)
            assert np.abs(difference).max() <= 1.0
        else:  # odd blocks: the middle voxel, not the mean: noise is not averaged away
            assert np.std(sitk.GetArrayFromImage(ours) - sitk.GetArrayFromImage(core)) > 20.0
    assert _ids(scene) == before and _activePlace(cliScene) == active


@pytest.mark.mrml
def test_crop_volume_source_falls_back_to_the_block_average_and_says_why(cliScene):
    scene = cliScene.scene
    image = _noisyRamp()
    source = CropVolumeSource(scene, cliScene.cropLogic, addVolumeNodeFromSitkImage(scene, image, "CT"), "fixed")
    assert source.GetSize() == image.GetSize() and source.GetSpacing() == pytest.approx(image.GetSpacing())
    uneven = source.block_averaged((2, 2, 1))
    assert "block-averaged by 2x2x1 by the core instead of Crop Volume" in source.notes[-1]
    assert "differ per axis" in source.notes[-1]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(uneven), sitk.GetArrayFromImage(downsample(image, (2, 2, 1))))
    same = source.block_averaged((1, 1, 1))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(same), sitk.GetArrayFromImage(image).astype(np.float32))


@pytest.mark.mrml
def test_the_planner_reads_the_source_and_the_core_prepares_through_it(cliScene):
    """The header-only source passes where the core reads only geometry: the plan, and
    ``working_image`` (which calls ``block_averaged``)."""
    scene = cliScene.scene
    fine = _noisyRamp(DIRECTIONS["oblique"])
    coarse = sitk.Image([24, 24, 16], sitk.sitkInt16)
    coarse.SetSpacing((1.0, 1.0, 1.5))
    settings = settings_for_preset("mri-ct", spacing_multiplier=2.0)
    node = addVolumeNodeFromSitkImage(scene, fine, "fine")
    source = CropVolumeSource(scene, cliScene.cropLogic, node, "fixed")
    plan = plan_registration(source, coarse, settings)
    assert plan == plan_registration(sitkImageFromVolumeNode(node), coarse, settings)
    assert plan.fixed_shrink == (2, 2, 2)
    work = working_image(source, plan.fixed_shrink)
    assert work.GetSize() == tuple(int(n) for n in np.array(fine.GetSize()) // 2)
    assert "by Crop Volume" in source.notes[-1]


@pytest.mark.mrml
def test_logic_registers_through_crop_volume_preparation(cliScene):
    pair = make_registration_pair(
        "ct-mri", (10.0, 8.0),
        fixed_grid=GridSpec((80, 80, 70), (2.0, 2.0, 2.0), center=(0.0, 5.0, 10.0)),
        moving_grid=GridSpec((180, 180, 40), (0.65, 0.65, 2.0), center=(0.0, 5.0, 10.0)),
    )
    scene = cliScene.scene
    fixed = addVolumeNodeFromSitkImage(scene, pair.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, pair.moving, "MR")
    logic = KneeRegistrationLogic(scene, cliScene.cropLogic)
    before = _ids(scene)
    out = logic.register(fixed, moving, settings_for_preset("fast-preview", spacing_multiplier=3.0),
                         preparation="CropVolume")
    errors = point_distances(out.result.transform, pair.true_transform, pair.target_points())
    assert errors.mean() <= 0.5, f"{errors.mean():.2f} mm mean"
    assert out.result.plan.moving_shrink == (3, 3, 3)
    assert any("moving image was brought to its working grid by Crop Volume" in n for n in out.notes), out.notes
    assert any("by Crop Volume" in s for s in out.result.explanation)
    assert any("by Crop Volume" in s for s in out.report["plan"]["explanation"])
    assert _ids(scene) - before == {out.outputTransformNode.GetID()}


@pytest.mark.mrml
def test_crop_volume_preparation_needs_the_resample_cli(mrml):
    logic = KneeRegistrationLogic(mrml.scene, mrml.cropLogic)  # a scene without CLI modules
    image = _noisyRamp()
    fixed = addVolumeNodeFromSitkImage(mrml.scene, image, "CT")
    moving = addVolumeNodeFromSitkImage(mrml.scene, image, "MR")
    with pytest.raises(InputError, match="ResampleScalarVectorDWIVolume"):
        logic.register(fixed, moving, preparation="CropVolume")
    with pytest.raises(InputError, match="unknown preparation"):
        logic.register(fixed, moving, preparation="Resample")


@pytest.mark.mrml
@pytest.mark.slow
@pytest.mark.realdata
def test_porcine_pair_through_crop_volume_preparation(cliScene, porcine_dir):
    """The real CT (fixed) and MR through the logic, the CT brought to its 4x working grid by Crop Volume.

    Measured 2026-11-29 (loaded 2-core machine): 0.64 mm mean / 1.31 mm max over CT tissue points
    (the default block average: 0.39 / 0.56 mm, same settings); the crop itself 1.0 s. Tolerance:
    the issue's 1.5 mm mean, against the data set's reference (bone-aligned since 2026-11-29)."""
    import slicer_core_cli

    scene = cliScene.scene
    ct = slicer_core_cli.load_volume(scene, porcine_dir / "CT.nrrd", "CT")
    mr = slicer_core_cli.load_volume(scene, porcine_dir / "MR_T2.nrrd", "MR")
    reference = sitk.ReadTransform(str(porcine_dir / "reference_ct_to_mr.tfm"))
    image = sitkImageFromVolumeNode(ct)
    voxels = np.argwhere(sitk.GetArrayViewFromImage(image)[::8, ::8, ::8] > -300)[:, ::-1] * 8
    points = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in index]) for index in voxels])
    logic = KneeRegistrationLogic(scene, cliScene.cropLogic)
    out = logic.register(ct, mr, settings_for_preset("mri-ct", spacing_multiplier=4.0), preparation="CropVolume")
    errors = point_distances(out.result.transform, reference, points)
    assert out.result.passed_sanity_checks and out.result.plan.fixed_shrink == (4, 4, 4)
    assert any("fixed image was brought to its working grid by Crop Volume" in note for note in out.notes)
    assert errors.mean() <= 1.5, f"{errors.mean():.2f} mm mean"
