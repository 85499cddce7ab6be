"""The BRAINSFit path of the logic, with a FAKE BRAINSFit: the binary is absent outside Slicer.

Everything around BRAINSFit runs for real on MRML nodes (planning, the core's multi-start
initialisation, Crop Volume's voxel-based crop of the large image, the core's downsampling of the
fine image where Crop Volume cannot resample, temporary nodes, reading the result back, sanity
checks). The fake stands in for ``slicer.cli.run(slicer.modules.brainsfit, ...)``: it records the
parameter dictionary and the working volumes it was given, and answers like a BRAINSFit that
returns its initial transform unchanged (or fails, for the error path). What BRAINSFit itself would
compute is checked by the in-Slicer self-test (MultimodalKneeRegistrationTest), not here.
"""

from __future__ import annotations

import numpy as np
import pytest
import vtk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.brainsfit_parameters import (  # noqa: E402
    BRAINSFIT_ITERATION_CAP,
    BRAINSFIT_PARAMETER_NAMES,
)
from MultimodalKneeRegistrationLib.errors import RegistrationFailedError  # noqa: E402
from MultimodalKneeRegistrationLib.geometry import image_center, point_distances  # noqa: E402
from MultimodalKneeRegistrationLib.phantom import GridSpec, make_registration_pair  # noqa: E402
from MultimodalKneeRegistrationLib.settings import settings_for_preset  # noqa: E402
from MultimodalKneeRegistrationSlicer.logic import KneeRegistrationLogic  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import addVolumeNodeFromSitkImage, voxelCount  # noqa: E402

CENTER = (0.0, 5.0, 10.0)
CLI = slicer.vtkMRMLCommandLineModuleNode


@pytest.fixture(scope="module")
def pair():
    return make_registration_pair(
        "ct-mri",
        (10.0, 8.0),
        fixed_grid=GridSpec((80, 80, 70), (2.0, 2.0, 2.0), center=CENTER),
        moving_grid=GridSpec((90, 90, 20), (1.3, 1.3, 4.0), center=CENTER),
    )


class FakeBrainsFit:
    """Records what BRAINSFit would receive; "converges" on its initial transform or fails."""

    def __init__(self, scene, status=CLI.Completed, errorText=""):
        self.scene, self.status, self.errorText = scene, status, errorText
        self.parameters = None
        self.seen = {}

    def __call__(self, module, node, parameters, wait_for_completion=False, update_display=True):
        assert module == "brainsfit-module"
        self.parameters = dict(parameters)
        for role in ("fixedVolume", "movingVolume"):
            volume = self.scene.GetNodeByID(parameters[role])
            self.seen[role] = {
                "voxels": voxelCount(volume),
                "spacing": volume.GetSpacing(),
                "parent": volume.GetParentTransformNode(),
                "hidden": volume.GetHideFromEditors(),
            }
        initial = self.scene.GetNodeByID(parameters["initialTransform"])
        output = self.scene.GetNodeByID(parameters["linearTransform"])
        self.seen["initialIsLinearTransform"] = initial.IsA("vtkMRMLLinearTransformNode")
        if self.status == CLI.Completed:
            matrix = vtk.vtkMatrix4x4()
            initial.GetMatrixTransformToParent(matrix)
            output.SetMatrixTransformToParent(matrix)
        cliNode = CLI()
        self.scene.AddNode(cliNode)
        cliNode.SetErrorText(self.errorText)
        cliNode.SetStatus(self.status)
        return cliNode


def _setup(mrml, pair, fake):
    scene = mrml.scene
    fixed = addVolumeNodeFromSitkImage(scene, pair.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, pair.moving, "MR")
    logic = KneeRegistrationLogic(
        scene, mrml.cropLogic, brainsFitModule="brainsfit-module", cliRunFunction=fake, processEvents=None
    )
    return scene, fixed, moving, logic


@pytest.mark.mrml
def test_brainsfit_gets_the_plan_and_our_start_and_its_answer_is_written(mrml, pair, nodeIds):
    fake = FakeBrainsFit(mrml.scene)
    scene, fixed, moving, logic = _setup(mrml, pair, fake)
    assert logic.availableEngines() == ["SimpleITK", "BRAINSFit"]
    before = nodeIds(scene)
    out = logic.register(
        fixed, moving, settings_for_preset("fast-preview", roi_margin_mm=5.0), engine="BRAINSFit"
    )
    result, plan, params = out.result, out.result.plan, fake.parameters

    assert set(params) <= BRAINSFIT_PARAMETER_NAMES
    assert params["initializeTransformMode"] == "Off" and fake.seen["initialIsLinearTransform"]
    assert params["useRigid"] and not params["useAffine"] and not params["useScaleVersor3D"]
    expectedIterations = plan.number_of_iterations
    if getattr(result.settings, "optimizer", "RegularStepGradientDescent") != "RegularStepGradientDescent":
        expectedIterations = max(expectedIterations, BRAINSFIT_ITERATION_CAP)  # BRAINSFit stops on step size
    assert params["numberOfIterations"] == expectedIterations
    fixedSeen, movingSeen = fake.seen["fixedVolume"], fake.seen["movingVolume"]
    assert params["samplingPercentage"] == round(min(1.0, plan.metric_samples / fixedSeen["voxels"]), 6)
    # The phantom CT (fixed) covers more anatomy: cropped to the MR's footprint by Crop Volume.
    # The MR (moving) has the smaller voxels: downsampled (by the core here, no resampling CLI).
    assert plan.large_fov_image == "fixed" and plan.fine_image == "moving"
    assert fixedSeen["voxels"] < voxelCount(fixed)
    assert min(movingSeen["spacing"]) > min(moving.GetSpacing())
    assert fixedSeen["parent"] is None and movingSeen["parent"] is None
    assert fixedSeen["hidden"] and movingSeen["hidden"]

    # The fake returned the start it got, so the result is the core's initialisation, read back exactly.
    points = image_center(pair.fixed) + np.array([[0, 0, 0], [30, 0, 0], [0, 30, 0], [0, 0, 30.0]])
    assert point_distances(result.transform, result.initial_transform, points).max() < 1e-6
    assert point_distances(result.transform, pair.true_transform, points).mean() < 3.0  # the search is good
    assert result.metric_after < result.metric_before
    assert [s.name for s in result.stages] == ["Initialize (search)", "BRAINSFit Rigid"]
    assert nodeIds(scene) - before == {out.outputTransformNode.GetID()}
    assert moving.GetParentTransformNode() is out.outputTransformNode


@pytest.mark.mrml
def test_failed_brainsfit_raises_and_changes_nothing(mrml, pair, nodeIds):
    fake = FakeBrainsFit(
        mrml.scene,
        CLI.CompletedWithErrors,
        "ITK ERROR: MattesMutualInformationImageToImageMetricv4: Too many samples map outside "
        "moving image buffer",
    )
    scene, fixed, moving, logic = _setup(mrml, pair, fake)
    before = nodeIds(scene)
    with pytest.raises(RegistrationFailedError, match="Too many samples map outside"):
        logic.register(fixed, moving, settings_for_preset("fast-preview"), engine="BRAINSFit")
    assert nodeIds(scene) == before  # working volumes, ROI, transforms and the CLI node are all gone
    assert moving.GetParentTransformNode() is None


@pytest.mark.mrml
def test_affine_stages_switch_on_brainsfit_phases(mrml, pair):
    fake = FakeBrainsFit(mrml.scene)
    scene, fixed, moving, logic = _setup(mrml, pair, fake)
    settings = settings_for_preset("fast-preview", transform_stages=("Rigid", "ScaleVersor3D", "Affine"))
    logic.register(fixed, moving, settings, engine="BRAINSFit")
    assert (
        fake.parameters["useRigid"] and fake.parameters["useScaleVersor3D"] and fake.parameters["useAffine"]
    )
